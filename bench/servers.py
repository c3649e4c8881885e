"""The processes a benchmark runs: a standalone sandbox upstream and a flowgate server.

Both listen on free loopback ports, log to files in a scratch directory, and are
stopped (SIGTERM, then SIGKILL) when their ``with`` block ends.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from bench.procstat import child_pids

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER_URL = os.environ.get("FLOWGATE_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _raise_fd_limit() -> None:
    # 2,000 held requests need 2,000 client sockets plus 2,000 upstream sockets.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited at start:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=1, headers={"x-goog-api-key": "bench"})
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.args!r} did not answer at {url}:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes] | None, *, kill: bool = False) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def psql(sql: str, database: str = "postgres") -> str:
    """Run one SQL statement with ``psql`` on the benchmark PostgreSQL server."""
    rest = PG_SERVER_URL.split("://", 1)[1]
    user, _, hostport = rest.rpartition("@")
    host, _, port = hostport.partition(":")
    result = subprocess.run(
        [
            *("psql", "-h", host, "-p", port or "5432", "-U", user or "postgres"),
            *("-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def create_pg_database() -> str:
    """A fresh PostgreSQL database; returns its async URL."""
    name = f"flowgate_bench_{uuid.uuid4().hex[:10]}"
    psql(f"CREATE DATABASE {name}")
    return f"{PG_SERVER_URL}/{name}"


def drop_pg_database(url: str) -> None:
    """Drop a database made by :func:`create_pg_database`."""
    psql(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


class _Process:
    """Context manager base: ``stop()`` on exit."""

    proc: subprocess.Popen[bytes] | None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) and wait."""
        _stop(self.proc, kill=kill)

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class Sandbox(_Process):
    """``python -m flowgate.sandbox.server`` on its own port."""

    work_dir: Path
    fixed_image: bool = True
    fixed_image_kb: int = 0  # pad the fixed picture to this size (0: ~18 kB)
    delay_ms: int = 0
    video_seconds: float | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    launcher: list[str] = field(default_factory=list)  # a command to run it under (valgrind)
    start_timeout: float = 60.0

    @property
    def base_url(self) -> str:
        """Where the sandbox answers (no path: accounts put this in ``baseUrl``)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Sandbox:
        """Start it and wait until it answers."""
        log = self.work_dir / f"sandbox-{self.port}.log"
        args = [*self.launcher, sys.executable, "-m", "flowgate.sandbox.server"]
        args += ["--port", str(self.port)]
        args += ["--log-level", "warning", "--delay-ms", str(self.delay_ms)]
        if self.fixed_image:
            args += ["--fixed-image", "--fixed-image-kb", str(self.fixed_image_kb)]
        if self.video_seconds is not None:
            args += ["--video-seconds", str(self.video_seconds)]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_raise_fd_limit, cwd=ROOT
            )
        _wait_http(f"{self.base_url}/_sandbox/calls", self.proc, log, self.start_timeout)
        return self

    def set_quota(self, key: str, **limits: Any) -> None:
        """``PUT /_sandbox/quotas/{key}`` (``perMinute``, ``perDay``, ``concurrent``, ``model``)."""
        httpx.put(f"{self.base_url}/_sandbox/quotas/{key}", json=limits).raise_for_status()

    def calls(self) -> list[dict[str, Any]]:
        """The sandbox's call log (oldest first)."""
        calls: list[dict[str, Any]] = httpx.get(f"{self.base_url}/_sandbox/calls").json()["calls"]
        return calls

    def clear_calls(self) -> None:
        """Empty the call log."""
        httpx.delete(f"{self.base_url}/_sandbox/calls").raise_for_status()


@dataclass
class Flowgate(_Process):
    """``flowgate serve`` on a scratch data dir (SQLite, or a fresh PostgreSQL database)."""

    work_dir: Path
    backend: str = "sqlite"
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    database_url: str = ""
    launcher: list[str] = field(default_factory=list)  # a command to run it under (valgrind)
    start_timeout: float = 60.0

    def __post_init__(self) -> None:
        self.data_dir = self.work_dir / f"flowgate-{self.port}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.data_dir / "server.log"
        if self.backend == "postgres":
            self.database_url = create_pg_database()
        else:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'flowgate.db'}"

    @property
    def base_url(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def full_env(self) -> dict[str, str]:
        """The environment of the server and of its CLI commands."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWGATE_")}
        env.update(
            FLOWGATE_DATA_DIR=str(self.data_dir),
            FLOWGATE_DATABASE_URL=self.database_url,
            FLOWGATE_PORT=str(self.port),
            FLOWGATE_HOST="127.0.0.1",
            FLOWGATE_SANDBOX="0",
            FLOWGATE_LOG_LEVEL="WARNING",
            FLOWGATE_WEBHOOK_ALLOW_PRIVATE="1",
        )
        env.update(self.env)
        return env

    def start(self) -> Flowgate:
        """Start it, wait for /healthz, and read the first start's admin token."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.launcher, sys.executable, "-m", "flowgate", "serve"],
                env=self.full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_raise_fd_limit,
                cwd=ROOT,
            )
        _wait_http(f"{self.base_url}/healthz", self.proc, self.log, self.start_timeout)
        for line in self.log.read_text().splitlines():
            if line.strip().startswith("FLOWGATE_TOKEN="):
                self.token = line.strip().split("=", 1)[1]
        return self

    @property
    def server_pids(self) -> list[int]:
        """The processes serving requests: the workers when there are several, else it."""
        return child_pids(self.pid) or [self.pid]

    @property
    def all_pids(self) -> list[int]:
        """Every process of the server: with workers, the supervisor as well as them."""
        return [self.pid, *child_pids(self.pid)]

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server; the scratch database stays until :meth:`dispose`."""
        _stop(self.proc, kill=kill)

    def dispose(self) -> None:
        """Stop and drop the PostgreSQL database (the work dir is the caller's)."""
        self.stop()
        if self.backend == "postgres" and self.database_url:
            drop_pg_database(self.database_url)
            self.database_url = ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()

    def new_user(self, name: str | None = None) -> str:
        """``flowgate users create NAME``; returns the token."""
        result = subprocess.run(
            [sys.executable, "-m", "flowgate", "users", "create", name or uuid.uuid4().hex[:8]],
            env=self.full_env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        return result.stdout.strip().splitlines()[-1]

    def add_sandbox_account(
        self, token: str, email: str, sandbox: Sandbox, *, api_key: str, max_concurrency: int
    ) -> None:
        """An account of provider ``sandbox`` that talks to ``sandbox`` with ``api_key``."""
        body = {
            "email": email,
            "provider": "sandbox",
            "apiKey": api_key,
            "baseUrl": sandbox.base_url,
            "maxConcurrency": max_concurrency,
        }
        resp = httpx.post(
            f"{self.base_url}/v1/google-flow/accounts",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        if resp.status_code not in (200, 201):
            raise RuntimeError(f"adding account {email}: {resp.status_code} {resp.text}")


class Scratch:
    """A temporary work directory, removed at exit unless ``keep``."""

    def __init__(self, keep: bool = False) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="flowgate-bench-"))
        self.keep = keep

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


def machine_line() -> str:
    """CPU model, cores, Python and the date, for the results header."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()
    return (
        f"{model}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"load average before the run {load[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
