"""``flowgate serve`` with ``FLOWGATE_WORKERS`` > 1: several server processes on one port.

Each worker is a whole flowgate instance (DESIGN §1.4) with its own instance id,
``ID/0`` … ``ID/N-1``, sharing the PostgreSQL database. Every worker binds the port
itself with ``SO_REUSEPORT``, so the kernel spreads new connections over them (a
shared listening socket would let one busy worker accept most of a burst). This
process has the database prepared once (in a short-lived child, so Alembic's imports
go with it), loads the server's modules and forks the workers from itself, so they
share those pages instead of each importing its own copy. Then it becomes the lean
supervisor of :mod:`flowgate.supervisor` (same pid), which restarts a worker that
dies and stops them all on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
import socket
import subprocess
import sys
import time

from flowgate import __version__
from flowgate.config import Settings
from flowgate.server import listen_address
from flowgate.supervisor import Flock, hand_over, start_worker


def _port_is_free(host: str, port: int) -> bool:
    # Without SO_REUSEPORT this bind fails while anything (an earlier flowgate's
    # workers included) holds the port, which SO_REUSEPORT alone would silently share.
    family, kind, proto, _, address = listen_address(host, port)
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


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


def run_workers(settings: Settings) -> int:
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
    # The server's modules are loaded (imported above), once, so every worker forked below
    # shares these pages with the others instead of importing its own copy. Frozen, they
    # are never walked by a collection, which would write to (and so copy) every page.
    gc.collect()
    gc.freeze()
    blob = pickle.dumps(settings)
    started = time.monotonic()
    workers = {index: start_worker(blob, index) for index in range(settings.workers)}
    hand_over(Flock(blob, workers, started))
    return 0  # not reached: this process is now the supervisor


if __name__ == "__main__":
    # The child of prepare_database: settings pickled on stdin (from the parent, never
    # from elsewhere), the token on stdout; errors go to stderr with a traceback.
    print(asyncio.run(_prepare(pickle.loads(sys.stdin.buffer.read()))) or "")
