"""``flowgate serve`` with ``FLOWGATE_WORKERS`` > 1: several server processes on one port.

Each worker is a whole flowgate instance (DESIGN §1.4) with its own instance id,
``ID/0`` … ``ID/N-1``, sharing the PostgreSQL database. Every worker binds the port
itself with ``SO_REUSEPORT``, so the kernel spreads new connections over them (a
shared listening socket would let one busy worker accept most of a burst). This
process only has the database prepared once, starts the workers, restarts one that dies
(its jobs come back to it at once, under the same id) and stops them all on SIGTERM or
SIGINT. It never imports the server itself (SQLAlchemy, Alembic, FastAPI, aiohttp): the
preparation runs in a short-lived child, so the supervisor stays a small process beside
the workers.
"""

from __future__ import annotations

import asyncio
import ctypes
import pickle
import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from flowgate import __version__
from flowgate.config import Settings

# A worker that exits this soon after its first start failed to start (a bad database,
# a bad setting): restarting it would only loop, so everything stops. Later deaths are
# restarted, RESTART_PAUSE_SECONDS apart.
STARTUP_SECONDS = 10.0
RESTART_PAUSE_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def _listen_address(host: str, port: int) -> tuple[Any, ...]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]


def _port_is_free(host: str, port: int) -> bool:
    # Without SO_REUSEPORT this bind fails while anything (an earlier flowgate's
    # workers included) holds the port, which SO_REUSEPORT alone would silently share.
    family, kind, proto, _, address = _listen_address(host, port)
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    # Runs in the worker before exec: SIGTERM when the supervising process dies, so no
    # worker outlives it and serves on under a name a new supervisor will reuse.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other workers may bind as well."""
    family, kind, proto, _, address = _listen_address(host, port)
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


async def _prepare(settings: Settings) -> str | None:
    from flowgate.runtime import bootstrap, open_runtime

    runtime = await open_runtime(settings)
    try:
        return await bootstrap(runtime)
    finally:
        await runtime.close()


def prepare_database(settings: Settings) -> tuple[int, str | None]:
    """Migrations, the secret key and the first user, once, before any worker starts,
    in a child process (what it imports is freed with it): its exit code and the first
    user's token."""
    done = subprocess.run(
        [sys.executable, "-m", "flowgate.workers"],
        input=pickle.dumps(settings),
        stdout=subprocess.PIPE,
        check=False,
    )
    if done.returncode != 0:
        return done.returncode, None
    words = done.stdout.decode().split()  # the token is the last word printed, if any
    return 0, words[-1] if words else None


def run_workers(settings: Settings, worker_args: list[str]) -> int:
    """Run ``settings.workers`` workers until stopped; the exit code for the command."""
    if not _port_is_free(settings.host, settings.port):
        print(f"flowgate: {settings.host}:{settings.port} is in use", file=sys.stderr)
        return 1
    code, token = prepare_database(settings)
    if code != 0:
        print(f"flowgate: preparing the database failed (exit {code})", file=sys.stderr)
        return code
    base = settings.effective_instance_id
    print(
        f"flowgate {__version__} listening on {settings.public_url} with {settings.workers} "
        f"workers (instances {base}/0 … {base}/{settings.workers - 1})",
        flush=True,
    )
    if token:
        print("  first start: created user 'admin'; its API token (shown once):", flush=True)
        print(f"  FLOWGATE_TOKEN={token}", flush=True)
    command = [sys.executable, "-m", "flowgate", "serve", *worker_args, "--worker"]
    signals = 0

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # asked twice: stop now, as a second Ctrl-C does for uvicorn
            for worker in workers.values():
                if worker.poll() is None:
                    worker.kill()

    workers: dict[int, subprocess.Popen[bytes]] = {}
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    first_start = time.monotonic()
    for index in range(settings.workers):
        workers[index] = subprocess.Popen([*command, str(index)], preexec_fn=_die_with_parent)
    code = 0
    while not signals:
        time.sleep(0.2)
        for index, worker in list(workers.items()):
            status = worker.poll()
            if status is None or signals:
                continue
            status = 128 - status if status < 0 else status  # killed by signal N: 128 + N
            if time.monotonic() - first_start < STARTUP_SECONDS:
                print(f"flowgate: worker {index} failed to start (exit {status})", file=sys.stderr)
                code = status or 1
                stop(signal.SIGTERM, None)
                break
            print(f"flowgate: worker {index} exited ({status}); restarting it", file=sys.stderr)
            time.sleep(RESTART_PAUSE_SECONDS)
            workers[index] = subprocess.Popen([*command, str(index)], preexec_fn=_die_with_parent)
    for worker in workers.values():
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    # Like one uvicorn process, a worker finishes its requests first; no deadline here.
    for worker in workers.values():
        worker.wait()
    return code


if __name__ == "__main__":
    # The child of prepare_database: settings pickled on stdin (from the parent, never
    # from elsewhere), the token on stdout; errors go to stderr with a traceback.
    print(asyncio.run(_prepare(pickle.loads(sys.stdin.buffer.read()))) or "")
