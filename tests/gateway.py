"""Real flowgate servers for tests: a subprocess on a loopback port (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PG_SERVER_URL = os.environ.get("FLOWGATE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
BACKENDS = ("sqlite", "postgres")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def psql(sql: str, database: str = "postgres") -> None:
    """Run ``sql`` with psql in ``database`` of the test server (raises when it fails)."""
    # PG_SERVER_URL looks like postgresql+asyncpg://user@host:port
    rest = PG_SERVER_URL.split("://", 1)[1]
    user, _, hostport = rest.rpartition("@")
    host, _, port = hostport.partition(":")
    subprocess.run(
        [
            "psql",
            "-h",
            host,
            "-p",
            port or "5432",
            "-U",
            user or "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
    )


def create_pg_database() -> str:
    """A fresh, empty PostgreSQL database; returns its async URL."""
    name = f"flowgate_test_{uuid.uuid4().hex[:12]}"
    psql(f"CREATE DATABASE {name}")
    return f"{PG_SERVER_URL}/{name}"


def drop_pg_database(url: str) -> None:
    """Drop a database made by :func:`create_pg_database`."""
    name = url.rsplit("/", 1)[1]
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class Gateway:
    """One flowgate server process and what a test needs to talk to it."""

    backend: str
    data_dir: Path
    database_url: str
    port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    token: str = ""
    output: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWGATE_")}
        env.update(
            FLOWGATE_DATA_DIR=str(self.data_dir),
            FLOWGATE_DATABASE_URL=self.database_url,
            FLOWGATE_PORT=str(self.port),
            FLOWGATE_HOST="127.0.0.1",
            FLOWGATE_SANDBOX="1",
            FLOWGATE_WEBHOOK_ALLOW_PRIVATE="1",
            FLOWGATE_LOG_LEVEL="WARNING",
            FLOWGATE_VIDEO_POLL_SECONDS="0.3",
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until /healthz answers 200."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowgate", "serve"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("flowgate exited at start:\n" + "".join(self.output[-50:]))
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("flowgate did not become healthy:\n" + "".join(self.output[-50:]))
        for line in self.output:
            if line.strip().startswith("FLOWGATE_TOKEN="):
                self.token = line.strip().split("=", 1)[1]

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (graceful) or SIGKILL (crash)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same database and data dir."""
        self.stop(kill=kill)
        self.start()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``flowgate ARGS`` against this server's database and settings."""
        return subprocess.run(
            [sys.executable, "-m", "flowgate", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def new_user(self, name: str | None = None) -> str:
        """Create a user through the CLI; return its token (the last line it prints)."""
        result = self.cli("users", "create", name or f"user-{uuid.uuid4().hex[:8]}")
        return result.stdout.strip().splitlines()[-1]

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        """An HTTP client with the bearer token set (the bootstrap user's by default)."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def make_gateway(backend: str, **extra_env: str) -> Gateway:
    """A not-yet-started gateway on a fresh database of ``backend``."""
    data_dir = Path(tempfile.mkdtemp(prefix="flowgate-test-"))
    if backend == "postgres":
        database_url = create_pg_database()
    else:
        database_url = f"sqlite+aiosqlite:///{data_dir / 'flowgate.db'}"
    return Gateway(backend, data_dir, database_url, free_port(), dict(extra_env))


def dispose_gateway(gateway: Gateway) -> None:
    """Stop it and remove its database and files."""
    gateway.stop()
    if gateway.backend == "postgres":
        drop_pg_database(gateway.database_url)
    shutil.rmtree(gateway.data_dir, ignore_errors=True)
