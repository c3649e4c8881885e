"""``flowgate serve`` with ``FLOWGATE_WORKERS`` > 1: several server processes on one port.

Each worker is a whole flowgate instance (DESIGN §1.4) with its own instance id,
``ID/0`` … ``ID/N-1``, sharing the PostgreSQL database. Every worker binds the port
itself with ``SO_REUSEPORT``, so the kernel spreads new connections over them (a
shared listening socket would let one busy worker accept most of a burst). This
process has the database prepared once (in a short-lived child, so Alembic's imports
go with it), loads the server's modules and forks the workers from itself, so they
share those pages instead of each importing its own copy; it restarts a worker that
dies (its jobs come back to it at once, under the same id) and stops them all on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import traceback
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
    # Runs in the worker: SIGTERM when the supervising process dies, so no worker
    # outlives it and serves on under a name a new supervisor will reuse.
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


def _fork_worker(settings: Settings, index: int) -> int:
    """Start worker ``index`` as a fork of this process; its pid."""
    supervisor = os.getpid()
    sys.stdout.flush()  # else the worker would print what is still buffered once more
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    # The worker. It never returns into the caller: its exit code is the process's.
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # uvicorn installs its own
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent()
        if os.getppid() == supervisor:  # else the supervisor died before the prctl
            from flowgate.server import serve_app

            worker = settings.for_worker(index)
            code = 0 if serve_app(worker, reuse_port_socket(worker.host, worker.port)) else 3
    except SystemExit as exit_:  # sys.exit(None) is a success, as for any process
        code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_code(pid: int, *, block: bool) -> int | None:
    """The exit code of worker ``pid`` once it ended (128 + N if killed by signal N)."""
    ended, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    if ended == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


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
    # Loaded here, once, so every worker forked below shares these pages with this
    # process and with each other instead of importing its own copy. Frozen, they are
    # never walked by a collection, which would write to (and so copy) every page.
    import flowgate.server  # noqa: F401

    gc.collect()
    gc.freeze()
    signals = 0
    workers: dict[int, int] = {}  # index -> pid
    ended: set[int] = set()  # pids already waited for

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # asked twice: stop now, as a second Ctrl-C does for uvicorn
            for pid in set(workers.values()) - ended:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    first_start = time.monotonic()
    for index in range(settings.workers):
        workers[index] = _fork_worker(settings, index)
    code = 0
    while not signals:
        time.sleep(0.2)
        for index, pid in list(workers.items()):
            status = _exit_code(pid, block=False)
            if status is None:
                continue
            ended.add(pid)
            if signals:
                continue
            if time.monotonic() - first_start < STARTUP_SECONDS:
                print(f"flowgate: worker {index} failed to start (exit {status})", file=sys.stderr)
                code = status or 1
                stop(signal.SIGTERM, None)
                break
            print(f"flowgate: worker {index} exited ({status}); restarting it", file=sys.stderr)
            time.sleep(RESTART_PAUSE_SECONDS)
            workers[index] = _fork_worker(settings, index)
    running = set(workers.values()) - ended
    for pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    # Like one uvicorn process, a worker finishes its requests first; no deadline here.
    for pid in running:
        with contextlib.suppress(ChildProcessError):
            _exit_code(pid, block=True)
    return code


if __name__ == "__main__":
    # The child of prepare_database: settings pickled on stdin (from the parent, never
    # from elsewhere), the token on stdout; errors go to stderr with a traceback.
    print(asyncio.run(_prepare(pickle.loads(sys.stdin.buffer.read()))) or "")
