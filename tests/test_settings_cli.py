"""Settings fail at start with one clear line; the users CLI works on a real database."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
import uuid

from tests.gateway import PG_SERVER_URL, Gateway, create_pg_database, drop_pg_database, psql


def _serve_with(env_extra: dict[str, str], tmp_path) -> subprocess.CompletedProcess[str]:
    return _flowgate(["serve"], env_extra, tmp_path)


def _flowgate(
    args: list[str], env_extra: dict[str, str], tmp_path
) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWGATE_")}
    env.update({"FLOWGATE_DATA_DIR": str(tmp_path)}, **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "flowgate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_settings_fail_with_one_line(tmp_path) -> None:
    cases = {
        "FLOWGATE_PORT": "eighty",
        "FLOWGATE_DATABASE_URL": "mysql://x",
        "FLOWGATE_PUBLIC_URL": "ftp://host",
        "FLOWGATE_SANDBOX": "maybe",
        "FLOWGATE_LOG_LEVEL": "LOUD",
    }
    for name, value in cases.items():
        result = _serve_with({name: value}, tmp_path)
        assert result.returncode == 2, (name, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, (name, result.stderr)
        assert name in lines[0], lines[0]


def test_the_command_line_loads_no_server_code() -> None:
    # Client commands and --help start without the server's imports (seconds on a slow
    # machine); serve and the users commands import it when they run.
    probe = "import sys, flowgate.cli; print(sorted(set(sys.modules) & set(sys.argv[1:])))"
    heavy = ("flowgate.runtime", "flowgate.app", "sqlalchemy", "alembic", "aiohttp", "PIL")
    result = subprocess.run(
        [sys.executable, "-c", probe, *heavy], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_serve_stops_with_one_line_when_the_database_cannot_be_reached(tmp_path) -> None:
    name = f"flowgate_missing_{uuid.uuid4().hex[:8]}"
    refused = "postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/flowgate"
    cases = [
        ({"FLOWGATE_DATABASE_URL": refused}, "ConnectionRefusedError"),
        ({"FLOWGATE_DATABASE_URL": f"{PG_SERVER_URL}/{name}"}, f'"{name}" does not exist'),
        ({"FLOWGATE_WORKERS": "2", "FLOWGATE_DATABASE_URL": refused}, "ConnectionRefusedError"),
    ]
    for env, reason in cases:
        result = _serve_with(env, tmp_path)
        assert result.returncode == 1, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("flowgate: cannot connect to the database postgresql"), last
        assert reason in last and "FLOWGATE_DATABASE_URL" in last, last
        assert "Traceback" not in result.stderr, result.stderr
        assert "hunter2" not in result.stderr
        assert "listening" not in result.stdout


def test_workers_stop_before_starting_when_the_database_cannot_be_prepared(tmp_path) -> None:
    # Reachable, but stamped with a revision this flowgate does not know (a newer one's).
    url = create_pg_database()
    try:
        psql(
            "CREATE TABLE alembic_version (version_num varchar(32));"
            "INSERT INTO alembic_version VALUES ('ffffffffffff')",
            database=url.rsplit("/", 1)[1],
        )
        result = _serve_with({"FLOWGATE_WORKERS": "2", "FLOWGATE_DATABASE_URL": url}, tmp_path)
    finally:
        drop_pg_database(url)
    assert result.returncode == 1, result.stderr
    assert "Can't locate revision identified by 'ffffffffffff'" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "flowgate: preparing the database failed (exit 1)"
    )
    assert "listening" not in result.stdout


def test_in_memory_sqlite_is_refused(tmp_path) -> None:
    for url in ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite://"):
        result = _serve_with({"FLOWGATE_DATABASE_URL": url}, tmp_path)
        assert result.returncode == 2, result.stderr
        assert "FLOWGATE_DATABASE_URL" in result.stderr
        assert "in-memory SQLite database is not supported" in result.stderr


def test_unknown_toml_key_fails_clearly(tmp_path) -> None:
    config = tmp_path / "flowgate.toml"
    config.write_text("[flowgate]\nprot = 1\n")
    result = _serve_with({"FLOWGATE_CONFIG": str(config)}, tmp_path)
    assert result.returncode == 2
    assert "FLOWGATE_PROT" in result.stderr


def test_users_cli_create_list_disable(gateway: Gateway) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    created = gateway.cli("users", "create", name)
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("fg_") and len(token) > 40
    listing = gateway.cli("users", "list", "--json").stdout
    assert name in listing
    assert token not in listing  # only the hash is stored
    duplicate = gateway.cli("users", "create", name, check=False)
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert gateway.cli("users", "disable", name).returncode == 0
    assert '"disabled": true' in gateway.cli("users", "list", "--json").stdout
    missing = gateway.cli("users", "disable", "nobody-" + uuid.uuid4().hex, check=False)
    assert missing.returncode == 1


def test_a_users_command_on_a_sqlite_file_locked_elsewhere_stops_with_one_line(tmp_path) -> None:
    env = {"FLOWGATE_SQLITE_BUSY_SECONDS": "1"}
    first = _flowgate(["users", "create", "ann"], env, tmp_path)  # makes the database
    assert first.returncode == 0, first.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "flowgate.db")) as other_program:
        other_program.isolation_level = None
        other_program.execute("BEGIN IMMEDIATE")  # the one write lock, held
        locked = _flowgate(["users", "create", "bob"], env, tmp_path)
        other_program.execute("ROLLBACK")
    assert locked.returncode == 1, locked.stderr
    assert "Traceback" not in locked.stderr
    last = locked.stderr.strip().splitlines()[-1]
    assert "locked by another program" in last and "FLOWGATE_SQLITE_BUSY_SECONDS" in last
    assert _flowgate(["users", "create", "bob"], env, tmp_path).returncode == 0


def test_serve_on_a_sqlite_file_locked_elsewhere_stops_with_one_line(tmp_path) -> None:
    env = {"FLOWGATE_SQLITE_BUSY_SECONDS": "1", "FLOWGATE_PORT": "1"}  # port never bound
    assert _flowgate(["users", "create", "ann"], env, tmp_path).returncode == 0
    with contextlib.closing(sqlite3.connect(tmp_path / "flowgate.db")) as other_program:
        other_program.isolation_level = None
        other_program.execute("BEGIN IMMEDIATE")
        locked = _serve_with(env, tmp_path)
        other_program.execute("ROLLBACK")
    assert locked.returncode == 1, locked.stderr
    assert "Traceback" not in locked.stderr
    last = locked.stderr.strip().splitlines()[-1]
    assert "locked by another program" in last and "FLOWGATE_SQLITE_BUSY_SECONDS" in last


def test_serve_starts_with_no_settings_but_a_data_dir(tmp_path) -> None:
    """The first run of a new install: no database URL, so SQLite in the data dir."""
    import os

    import httpx

    from tests.gateway import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWGATE_")}
    env.update(FLOWGATE_DATA_DIR=str(tmp_path), FLOWGATE_PORT=str(port))
    server = subprocess.Popen(
        [sys.executable, "-m", "flowgate", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = None
        for _ in range(300):
            if server.poll() is not None:
                break
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert health is not None and health.status_code == 200, output[-2000:]
    assert (tmp_path / "flowgate.db").exists()
    assert "FLOWGATE_TOKEN=" in output
