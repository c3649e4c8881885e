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
import signal
import subprocess
import sys
import time

from flowgate import __version__
from flowgate.config import Settings
from flowgate.listening import port_is_free
from flowgate.supervisor import STOP_SIGNALS, Flock, hand_over, start_worker, supervise


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
    if not port_is_free(settings.host, settings.port):
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
    # Loaded here, once, so every worker forked below shares these pages with the others
    # instead of importing its own copy. Frozen, they are never walked by a collection,
    # which would write to (and so copy) every page.
    import flowgate.server  # noqa: F401

    gc.collect()
    gc.freeze()
    # Held (pending) from the first fork until the supervisor's handlers are in place:
    # the mask outlives the exec, so a stop asked meanwhile is not lost or fatal.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    blob = pickle.dumps(settings)
    started = time.monotonic()
    workers = {index: start_worker(blob, index) for index in range(settings.workers)}
    flock = Flock(blob, workers, started)
    hand_over(flock)
    return supervise(flock)  # only if the exec failed: supervise from this process


if __name__ == "__main__":
    # The child of prepare_database: settings pickled on stdin (from the parent, never
    # from elsewhere), the token on stdout; errors go to stderr with a traceback.
    print(asyncio.run(_prepare(pickle.loads(sys.stdin.buffer.read()))) or "")
