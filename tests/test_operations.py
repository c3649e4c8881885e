"""Operating flowgate: background health checks, the standalone sandbox command, JSON logs."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import time
from urllib.parse import quote

import httpx
import pytest

from tests.gateway import free_port, psql


def start_standalone_sandbox(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowgate", "sandbox", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            httpx.get(
                f"http://127.0.0.1:{port}/v1beta/models",
                headers={"x-goog-api-key": "k"},
                timeout=0.5,
            )
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("standalone sandbox did not start")


def wait_for_health(client: httpx.Client, email: str, ok: bool, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    health = ""
    while time.monotonic() < deadline:
        health = client.get(f"/v1/google-flow/accounts/{quote(email)}").json()["health"]
        if (health == "OK") == ok:
            return health
        time.sleep(0.2)
    raise AssertionError(f"health stayed {health!r}")


def test_background_health_check_follows_the_upstream(gateway_factory) -> None:
    port = free_port()
    sandbox = start_standalone_sandbox(port)
    gw = gateway_factory("sqlite", FLOWGATE_HEALTH_CHECK_INTERVAL_SECONDS="1")
    gw.start()
    email = "standalone@example.com"
    try:
        with gw.client() as client:
            added = client.post(
                "/v1/google-flow/accounts",
                json={
                    "email": email,
                    "provider": "gemini",
                    "apiKey": "AIzaStandaloneKey00",
                    "baseUrl": f"http://127.0.0.1:{port}",
                },
            )
            assert added.status_code == 201, added.text
            sandbox.kill()
            sandbox.wait()
            health = wait_for_health(client, email, ok=False)
            assert (
                health != "OK"
                and "models" not in client.get(f"/v1/google-flow/accounts/{quote(email)}").json()
            )
            # An unhealthy account leaves the pool: only the bootstrap sandbox account is used.
            stats = client.get("/v1/google-flow/jobs").json()
            assert email not in stats["emails"]
            sandbox = start_standalone_sandbox(port)
            assert wait_for_health(client, email, ok=True) == "OK"
    finally:
        sandbox.kill()


def test_logs_are_json_lines_with_the_request_id(gateway_factory) -> None:
    gw = gateway_factory("sqlite", FLOWGATE_LOG_LEVEL="INFO")
    gw.start()
    with gw.client() as client:
        resp = client.get("/v1/google-flow/accounts", headers={"X-Request-ID": "rid-test-42"})
        assert resp.headers["x-request-id"] == "rid-test-42"
    time.sleep(0.3)
    entries = []
    for line in gw.output:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    access = [e for e in entries if e.get("request_id") == "rid-test-42"]
    assert access, gw.output[-5:]
    assert access[0]["logger"] == "flowgate.access"
    assert access[0]["status"] == 200
    assert "/v1/google-flow/accounts" in access[0]["message"]


def sqlite_database(gw) -> contextlib.closing[sqlite3.Connection]:
    """A connection of this test's own to the server's SQLite file."""
    return contextlib.closing(sqlite3.connect(gw.database_url.split("///", 1)[1]))


def remove_jobs_table(gw) -> None:
    """Break the database under a running server: no code path expects this."""
    with sqlite_database(gw) as database:
        database.execute("ALTER TABLE jobs RENAME TO jobs_elsewhere")
        database.commit()


def credits_of(gw, name: str) -> int | None:
    with sqlite_database(gw) as database:
        (credits,) = database.execute(
            "SELECT credits FROM users WHERE name = ?", (name,)
        ).fetchone()
    return credits


def test_an_unexpected_error_names_its_request_id_in_answer_and_log(gateway_factory) -> None:
    """A 500 tells the client an id to report, and the one log line of the error has it."""
    gw = gateway_factory("sqlite")
    gw.start()
    with gw.client() as client:
        before = client.post("/v1/google-flow/images", json={"prompt": "lighthouse"})
        assert before.status_code == 200, before.text
        remove_jobs_table(gw)
        resp = client.post("/v1/google-flow/images", json={"prompt": "lighthouse"})
    assert resp.status_code == 500, resp.text
    request_id = resp.headers["x-request-id"]
    assert len(request_id) == 16
    assert f"request id {request_id}" in resp.json()["error"]
    time.sleep(0.3)
    lines = list(gw.output)
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    errors = [entry for entry in logged if entry.get("request_id") == request_id]
    assert [entry["message"] for entry in errors] == ["unhandled error"], errors
    # The 500 is a whole answer: the connection stays open for the client's next request.
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        body = b'{"prompt": "lighthouse"}'
        raw.sendall(
            b"POST /v1/google-flow/images HTTP/1.1\r\nHost: flowgate\r\n"
            b"Authorization: Bearer " + gw.token.encode() + b"\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            answer += raw.recv(65536)
        assert answer.startswith(b"HTTP/1.1 500"), answer
        raw.settimeout(0.5)
        with pytest.raises(TimeoutError):
            raw.recv(1)  # b"" would mean the server closed the connection
    assert "no such table: jobs" in errors[0]["exception"]
    # Logged once, as JSON: not repeated as uvicorn's bare multi-line traceback.
    assert not [line for line in lines if "Traceback" in line and not line.startswith("{")]
    assert not [line for line in lines if "Exception in ASGI application" in line]


def test_credits_come_back_when_the_job_cannot_be_stored(gateway_factory) -> None:
    """The credits are reserved before the job row is written; when that write fails no
    record holds them, so they must be given back at once, not lost."""
    gw = gateway_factory("sqlite")
    gw.start()
    gw.cli("users", "credit", "admin", "=10")
    with gw.client() as client:
        paid = client.post("/v1/google-flow/images", json={"prompt": "lighthouse", "count": 2})
        assert paid.status_code == 200, paid.text
        assert credits_of(gw, "admin") == 8  # imagen-4: 1 credit per image
        remove_jobs_table(gw)
        lost = client.post("/v1/google-flow/images", json={"prompt": "lighthouse", "count": 2})
        assert lost.status_code == 500, lost.text
        videos = client.post(
            "/v1/google-flow/videos",
            json={"prompt": "waves", "model": "veo-3.1-lite", "async": True},
        )
        assert videos.status_code == 500, videos.text
    assert credits_of(gw, "admin") == 8  # veo-3.1-lite would have taken 5


def test_a_database_that_refuses_connections_is_a_503_until_it_is_back(gateway_factory) -> None:
    """PostgreSQL stops taking connections under a running server (a restart, a
    failover): clients get 503 with Retry-After, not 500, and service resumes by itself."""
    gw = gateway_factory("postgres")
    gw.start()
    name = gw.database_url.rsplit("/", 1)[1]
    with gw.client() as client:
        assert client.post("/v1/google-flow/images", json={"prompt": "before"}).status_code == 200
        psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        end_every_session(name)
        try:
            first = client.post("/v1/google-flow/images", json={"prompt": "during"})
            down = client.post("/v1/google-flow/images", json={"prompt": "during"})
            listing = client.get("/v1/google-flow/jobs")
        finally:
            psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        back = client.post("/v1/google-flow/images", json={"prompt": "after"})
    for resp in (first, down, listing):
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"] == "5"
        assert "database is not answering" in resp.json()["error"]
    assert back.status_code == 200, back.text
    time.sleep(0.3)
    causes = [line for line in gw.output if "cannot connect to the database" in line]
    assert causes and "not currently accepting connections" in causes[0]
    assert not [line for line in gw.output if '"unhandled error"' in line]


def end_every_session(database: str) -> None:
    """What a PostgreSQL restart or a proxy's idle timeout does to flowgate's connections
    (waits until each backend is gone)."""
    psql(
        f"SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{database}'"
    )


def test_connections_the_database_ended_cost_no_request(gateway_factory) -> None:
    """PostgreSQL ends every session of a running server and keeps running (a restart
    that was quick, an idle timeout, a proxy): the next requests, sent at once, find
    new connections instead of failing on the dead ones."""
    gw = gateway_factory("postgres")
    gw.start()
    name = gw.database_url.rsplit("/", 1)[1]
    with gw.client() as client:
        for prompt in ("first", "second", "third"):
            done = client.post("/v1/google-flow/images", json={"prompt": prompt})
            assert done.status_code == 200, done.text
            end_every_session(name)
        job = client.get(f"/v1/google-flow/jobs/{done.json()['jobId']}")
    assert job.status_code == 200 and job.json()["status"] == "completed", job.text
    time.sleep(0.3)
    assert not [line for line in gw.output if '"unhandled error"' in line]


def test_a_sqlite_file_locked_by_another_program_is_a_503_that_says_so(gateway_factory) -> None:
    """Another program holds SQLite's one write lock (an open write transaction): after
    FLOWGATE_SQLITE_BUSY_SECONDS a request gets 503 with Retry-After and what to do, not a
    500 asking for a bug report; its credits come back, and service resumes once the lock
    is released."""
    gw = gateway_factory("sqlite", FLOWGATE_SQLITE_BUSY_SECONDS="1")
    gw.start()
    gw.cli("users", "credit", "admin", "=10")
    with gw.client() as client, sqlite_database(gw) as other_program:
        before = client.post("/v1/google-flow/images", json={"prompt": "before", "count": 1})
        assert before.status_code == 200, before.text
        other_program.isolation_level = None
        other_program.execute("BEGIN IMMEDIATE")  # the write lock, held
        started = time.monotonic()
        locked = client.post("/v1/google-flow/images", json={"prompt": "during", "count": 2})
        waited = time.monotonic() - started
        other_program.execute("ROLLBACK")
        back = client.post("/v1/google-flow/images", json={"prompt": "after", "count": 1})
    assert locked.status_code == 503, locked.text
    assert locked.headers["retry-after"] == "5"
    assert "locked by another program" in locked.json()["error"]
    assert waited < 10  # the configured second, not the default 30
    assert back.status_code == 200, back.text
    assert credits_of(gw, "admin") == 8  # before and after: 1 each; "during" gave its 2 back
    time.sleep(0.3)
    assert any("stayed locked by another program" in line for line in gw.output)
    assert not [line for line in gw.output if '"unhandled error"' in line]
