"""``flowgate serve`` with ``FLOWGATE_WORKERS`` > 1: several server processes on one port.

Each worker is a whole flowgate instance (DESIGN §1.4) with its own instance id,
``ID/0`` … ``ID/N-1``, sharing the PostgreSQL database. Every worker binds the port
itself with ``SO_REUSEPORT``, so the kernel spreads new connections over them (a
shared listening socket would let one busy worker accept most of a burst). This
process only prepares the database once, starts the workers, restarts one that dies
(its jobs come back to it at once, under the same id) and stops them all on SIGTERM or
SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from flowgate import __version__
from flowgate.config import Settings
from flowgate.runtime import bootstrap, open_runtime

# A worker that exits sooner than this after its start failed to start (a taken port,
# a bad database): restarting it would only loop, so everything stops.
STARTUP_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 30.0


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other workers may bind as well."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


async def _prepare(settings: Settings) -> str | None:
    # Migrations, the secret key and the first user, once, before any worker starts.
    runtime = await open_runtime(settings)
    try:
        return await bootstrap(runtime)
    finally:
        await runtime.close()


def run_workers(settings: Settings, worker_args: list[str]) -> int:
    """Run ``settings.workers`` workers until stopped; the exit code for the command."""
    token = asyncio.run(_prepare(settings))
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
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started: dict[int, float] = {}
    workers: dict[int, subprocess.Popen[bytes]] = {}

    def start(index: int) -> None:
        workers[index] = subprocess.Popen([*command, str(index)])
        started[index] = time.monotonic()

    for index in range(settings.workers):
        start(index)
    code = 0
    while not stopping:
        time.sleep(0.2)
        for index, worker in list(workers.items()):
            status = worker.poll()
            if status is None or stopping:
                continue
            if time.monotonic() - started[index] < STARTUP_SECONDS:
                print(f"flowgate: worker {index} failed to start (exit {status})", file=sys.stderr)
                stopping, code = True, status or 1
                break
            print(f"flowgate: worker {index} exited ({status}); restarting it", file=sys.stderr)
            start(index)
    _stop_all(list(workers.values()))
    return code


def _stop_all(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
