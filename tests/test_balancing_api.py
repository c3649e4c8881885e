"""Balancing through real servers: quarantine, no_eligible_account, queue, GET /jobs, instances."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from tests.gateway import Gateway, free_port

PATH = "/v1/google-flow/images"


def sandbox_accounts(gw: Gateway, token: str, n: int, **extra: object) -> list[str]:
    emails = []
    with gw.client(token) as client:
        for i in range(n):
            email = f"bal{i}-{uuid.uuid4().hex[:6]}@example.com"
            body = {"email": email, "provider": "sandbox", "apiKey": f"sandbox-{email}", **extra}
            assert client.post("/v1/google-flow/accounts", json=body).status_code == 201
            emails.append(email)
    return emails


def upstream_calls(gw: Gateway) -> int:
    """Image generation calls the shared sandbox has answered (not the operation polls of
    async videos that earlier tests on this gateway may leave running)."""
    logged = httpx.get(f"{gw.base_url}/sandbox/gemini/_sandbox/calls").json()["calls"]
    return sum(1 for call in logged if call["method"] in ("generateContent", "predict"))


def account_of(response: httpx.Response) -> str:
    mgid = response.json()["media"][0]["image"]["generatedImage"]["mediaGenerationId"]
    return bytes.fromhex(mgid.split("-email:")[1].split("-image:")[0]).decode()


def test_all_quarantined_answers_429_at_once(gateway: Gateway) -> None:
    token = gateway.new_user()
    a, b = sandbox_accounts(gateway, token, 2)
    with gateway.client(token) as client:
        first = client.post(
            PATH, json={"prompt": "[sandbox:429-daily] x", "model": "nano-banana-pro", "count": 1}
        )
        # Retried once on the other account, which hits the same quota: the upstream 429 stands.
        assert first.status_code == 429
        assert first.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        before = upstream_calls(gateway)
        resp = client.post(PATH, json={"prompt": "fine", "model": "nano-banana-pro", "count": 1})
        assert upstream_calls(gateway) == before  # answered with no upstream call
        assert resp.status_code == 429
        body = resp.json()
        assert set(body) == {"error", "message", "retryAfter", "skipReasons"}
        assert body["error"] == "no_eligible_account"
        midnight = (datetime.now(UTC) + timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        assert body["retryAfter"] == (midnight + timedelta(seconds=10)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z"
        )
        assert "daily quota" in body["message"] and "nano-banana-pro" in body["message"]
        assert sorted(body["skipReasons"], key=lambda s: s["email"]) == [
            {
                "email": a,
                "reason": "PUBLIC_ERROR_PER_MODEL_DAILY_QUOTA_REACHED",
                "model": "nano-banana-pro",
            },
            {
                "email": b,
                "reason": "PUBLIC_ERROR_PER_MODEL_DAILY_QUOTA_REACHED",
                "model": "nano-banana-pro",
            },
        ]
        seconds = int(resp.headers["Retry-After"])
        assert abs(seconds - (midnight - datetime.now(UTC)).total_seconds()) < 30
        # Other models are untouched.
        assert (
            client.post(
                PATH, json={"prompt": "ok", "model": "nano-banana-2", "count": 1}
            ).status_code
            == 200
        )
        # Explicit email bypasses quarantine and reaches the upstream.
        before = upstream_calls(gateway)
        direct = client.post(
            PATH, json={"prompt": "direct", "model": "nano-banana-pro", "count": 1, "email": a}
        )
        assert direct.status_code == 200, direct.text
        assert upstream_calls(gateway) == before + 1
        stats = client.get("/v1/google-flow/jobs").json()
        assert {e["reason"] for e in stats["quarantine"][a]} == {
            "PUBLIC_ERROR_PER_MODEL_DAILY_QUOTA_REACHED"
        }
        assert stats["images"]["summary"][a]["rateLimited"] == 1
        assert stats["images"]["summary"][a]["score"] >= 20


def test_per_minute_throttle_expires(gateway: Gateway) -> None:
    token = gateway.new_user()
    (a,) = sandbox_accounts(gateway, token, 1)
    with gateway.client(token) as client:
        limited = client.post(
            PATH,
            json={"prompt": "[sandbox:429-minute=1.5] x", "model": "nano-banana-2", "count": 1},
        )
        assert limited.status_code == 429
        blocked = client.post(PATH, json={"prompt": "x", "model": "nano-banana-2", "count": 1})
        assert blocked.status_code == 429
        assert blocked.json()["skipReasons"] == [
            {"email": a, "reason": "PUBLIC_ERROR_USER_REQUESTS_THROTTLED", "model": "nano-banana-2"}
        ]
        time.sleep(1.8)
        assert (
            client.post(
                PATH, json={"prompt": "x", "model": "nano-banana-2", "count": 1}
            ).status_code
            == 200
        )


def test_quota_failure_is_retried_on_another_account(gateway: Gateway) -> None:
    token = gateway.new_user()
    bad, good = sandbox_accounts(gateway, token, 2)
    with gateway.client(token) as client:
        # Quarantine `bad` for this model first, through an explicit request...
        client.post(
            PATH,
            json={
                "prompt": "[sandbox:429-minute=60] x",
                "model": "nano-banana-2",
                "count": 1,
                "email": bad,
            },
        )
        # ...then every request without email lands on `good`.
        for _ in range(4):
            resp = client.post(PATH, json={"prompt": "y", "model": "nano-banana-2", "count": 1})
            assert resp.status_code == 200
            assert account_of(resp) == good


def test_daily_quarantine_lifts_at_midnight(gateway_factory) -> None:
    # The server's clock says 23:59:35 now: the setup below (a server start, a users
    # command, two accounts) must see the 429 recorded before the server's midnight, and
    # takes seconds on a loaded machine.
    headroom = 25.0
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    offset = (midnight - now).total_seconds() - headroom
    midnight_here = time.monotonic() + headroom  # when the server's clock reaches midnight
    gw = gateway_factory(
        "sqlite",
        FLOWGATE_CLOCK_OFFSET_SECONDS=str(offset),
        FLOWGATE_QUARANTINE_MIDNIGHT_MARGIN_SECONDS="0",
    )
    gw.start()
    token = gw.new_user()
    a, b = sandbox_accounts(gw, token, 2)
    with gw.client(token) as client:
        client.post(
            PATH,
            json={"prompt": "[sandbox:429-daily] x", "model": "imagen-4", "count": 1, "email": a},
        )
        used = {account_of(client.post(PATH, json={"prompt": "p", "count": 1})) for _ in range(5)}
        assert used == {b}
        quarantine = client.get("/v1/google-flow/jobs").json()["quarantine"]
        assert [entry["until"] for entry in quarantine[a]] == [
            midnight.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        ], "the setup outlasted the headroom: the 429 came after the server's midnight"
        time.sleep(max(0.0, midnight_here - time.monotonic()) + 1)  # past the server's midnight
        assert a not in client.get("/v1/google-flow/jobs").json()["quarantine"]
        # `a` still scores worse (its 429 counts for 15 minutes), so take `b` out to see `a` used.
        client.post(
            PATH,
            json={
                "prompt": "[sandbox:429-minute=60] x",
                "model": "imagen-4",
                "count": 1,
                "email": b,
            },
        )
        resp = client.post(PATH, json={"prompt": "p", "count": 1})
        assert resp.status_code == 200, resp.text
        assert account_of(resp) == a


def test_full_accounts_queue_then_429_busy(gateway_factory) -> None:
    gw = gateway_factory("sqlite", FLOWGATE_QUEUE_TIMEOUT_SECONDS="0.5")
    gw.start()
    (a,) = sandbox_accounts(gw, gw.token, 1, maxConcurrency=1)
    slow: dict[str, httpx.Response] = {}

    def hold() -> None:
        with gw.client() as client:
            slow["r"] = client.post(
                PATH, json={"prompt": "[sandbox:delay=3000] x", "count": 1, "email": a}
            )

    worker = threading.Thread(target=hold)
    worker.start()
    time.sleep(1.0)
    with gw.client() as client:
        busy = client.post(PATH, json={"prompt": "y", "count": 1, "email": a})
    worker.join()
    assert slow["r"].status_code == 200
    assert busy.status_code == 429
    assert int(busy.headers["Retry-After"]) >= 1
    assert "maxConcurrency" in busy.json()["error"]


def test_jobs_statistics_options(gateway: Gateway) -> None:
    token = gateway.new_user()
    (a,) = sandbox_accounts(gateway, token, 1)
    with gateway.client(token) as client:
        ok = client.post(PATH, json={"prompt": "x", "count": 1})
        assert ok.status_code == 200
        client.post(PATH, json={"prompt": "[sandbox:503] x", "count": 1, "email": a})
        summary = client.get("/v1/google-flow/jobs").json()
        assert summary["emails"] == [a]
        entry = summary["images"]["summary"][a]
        assert (entry["completed"], entry["failed"], entry["rateLimited"]) == (1, 1, 0)
        assert entry["score"] == 10
        assert entry["avgResponseTime"] > 0
        assert summary["combined"]["summary"][a]["score"] == 10
        assert "executing" not in summary["images"]
        history = client.get("/v1/google-flow/jobs", params={"options": "history"}).json()
        statuses = sorted(h["httpStatus"] for h in history["images"]["history"].values())
        assert statuses == [200, 503]
        assert ok.json()["jobId"] in history["images"]["history"]
        assert history["images"]["executing"] == {}
        bad = client.get("/v1/google-flow/jobs", params={"options": "all"})
        assert bad.status_code == 400
        assert bad.json() == {
            "error": "Invalid options parameter. Use: summary, executing, or history"
        }


def test_two_instances_share_quarantine(gateway_factory) -> None:
    first = gateway_factory("postgres", FLOWGATE_SECRET_KEY="shared-secret-for-both-instances")
    first.start()
    second = Gateway(
        "postgres", first.data_dir, first.database_url, free_port(), dict(first.extra_env)
    )
    second.start()
    try:
        token = first.new_user()
        (a,) = sandbox_accounts(first, token, 1)
        with first.client(token) as client:
            assert (
                client.post(
                    PATH,
                    json={"prompt": "[sandbox:429-daily] x", "model": "nano-banana-2", "count": 1},
                ).status_code
                == 429
            )
        with second.client(token) as client:
            resp = client.post(PATH, json={"prompt": "x", "model": "nano-banana-2", "count": 1})
            assert resp.status_code == 429
            assert resp.json()["skipReasons"][0]["email"] == a
            assert (
                client.get("/v1/google-flow/jobs").json()["images"]["summary"][a]["rateLimited"]
                == 1
            )
    finally:
        second.stop()


def test_sandbox_quota_moves_traffic_to_the_other_account(gateway: Gateway) -> None:
    token = gateway.new_user()
    limited, spare = sandbox_accounts(gateway, token, 2)
    sandbox = f"{gateway.base_url}/sandbox/gemini/_sandbox/quotas"
    # A Google-like per-minute quota of 2 requests on the first account's key.
    put = httpx.put(f"{sandbox}/sandbox-{limited}", json={"perMinute": 2})
    assert put.status_code == 200, put.text
    try:
        with gateway.client(token) as client:
            body = {"prompt": "q", "model": "nano-banana-2", "count": 1}
            codes = [
                client.post(PATH, json={**body, "email": limited}).status_code for _ in range(3)
            ]
            assert codes == [200, 200, 429]  # the sandbox's real quota answer, passed through
            used = {account_of(client.post(PATH, json=body)) for _ in range(4)}
            assert used == {spare}
            stats = client.get("/v1/google-flow/jobs").json()
        (entry,) = stats["quarantine"][limited]
        assert entry["reason"] == "PUBLIC_ERROR_USER_REQUESTS_THROTTLED"
        assert entry["model"] == "nano-banana-2"
        until = datetime.fromisoformat(entry["until"].replace("Z", "+00:00"))
        # RetryInfo carries the time to the end of the sandbox's minute window.
        assert timedelta(0) < until - datetime.now(UTC) <= timedelta(seconds=61)
    finally:
        httpx.delete(f"{sandbox}/sandbox-{limited}")
