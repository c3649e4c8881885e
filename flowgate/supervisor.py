"""The supervisor of ``FLOWGATE_WORKERS`` > 1, once the workers run: a lean process.

``flowgate serve`` loads the server's modules and forks the workers from itself (see
:mod:`flowgate.workers`), then replaces its own image with this module (``exec``). The
pid stays the same, so the workers stay its children (``waitpid``, their parent-death
signal) and a service manager sees no change; what goes is the loaded copy of the
modules: the pages the workers have written to since the fork would otherwise be held
twice, once in each worker and once, unused, here (~30 MB with two workers, a fifth
of what the three processes held in all). Only the standard library is imported here.

The supervisor restarts a worker that dies (its jobs come back to it at once, under the
same id) and stops them all on SIGTERM or SIGINT. A restarted worker is forked from
this lean process and loads the modules itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from types import FrameType

# A worker that exits this soon after its first start failed to start (a bad database,
# a bad setting): restarting it would only loop, so everything stops. Later deaths are
# restarted, RESTART_PAUSE_SECONDS apart.
STARTUP_SECONDS = 10.0
RESTART_PAUSE_SECONDS = 1.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_PR_SET_PDEATHSIG = 1


@dataclass
class Flock:
    """What the supervisor needs: the pickled settings (opaque here, unpickled only in a
    new worker), the workers by index, and when the first of them started."""

    settings: bytes
    workers: dict[int, int]  # index -> pid
    started: float  # time.monotonic(), the same clock in every process


def start_worker(settings: bytes, index: int) -> int:
    """Fork worker ``index``; its pid. The child serves until stopped and never returns."""
    supervisor = os.getpid()
    sys.stdout.flush()  # else the worker would print what is still buffered once more
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        # First, before the seconds a restarted worker spends importing: the stop
        # handlers are the supervisor's (a SIGTERM would only be counted in this copy of
        # it), and a stop blocked for the supervisor must reach this process now.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # uvicorn installs its own later
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if os.getppid() == supervisor:  # else the supervisor died before the prctl
            from flowgate.server import run_worker  # loaded already, unless restarting

            code = run_worker(settings, index)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with_parent() -> None:
    # SIGTERM when the supervising process dies, so no worker outlives it and serves on
    # under a name a new supervisor will reuse. (An exec of the supervisor does not count.)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def hand_over(flock: Flock) -> None:
    """Replace this process with the lean supervisor of ``flock``; returns only if that
    failed (logged), and the caller then supervises from this process."""
    header = json.dumps({"workers": flock.workers, "started": flock.started}).encode()
    # A file in memory, not a pipe: the whole state is written before anyone reads it.
    state = os.memfd_create("flowgate-supervisor", 0)
    os.set_inheritable(state, True)  # kept open across the exec
    data = memoryview(header + b"\n" + flock.settings)
    while data:
        data = data[os.write(state, data) :]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, "-m", "flowgate.supervisor", str(state)])
    except OSError as error:
        os.close(state)
        print(f"flowgate: no lean supervisor ({error}); supervising from here", file=sys.stderr)


def _read_flock(fd: int) -> Flock:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    header, _, settings = b"".join(chunks).partition(b"\n")
    fields = json.loads(header)
    workers = {int(index): pid for index, pid in fields["workers"].items()}
    return Flock(settings, workers, fields["started"])


def _exit_code(pid: int, *, block: bool) -> int | None:
    """The exit code of worker ``pid`` once it ended (128 + N if killed by signal N)."""
    ended, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    if ended == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def supervise(flock: Flock) -> int:
    """Watch the workers until stopped; the exit code for ``flowgate serve``."""
    signals = 0
    workers = flock.workers
    ended: set[int] = set()  # pids already waited for

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # asked twice: stop now, as a second Ctrl-C does for uvicorn
            for pid in set(workers.values()) - ended:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a stop asked meanwhile runs now
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
            if time.monotonic() - flock.started < STARTUP_SECONDS:
                print(f"flowgate: worker {index} failed to start (exit {status})", file=sys.stderr)
                code = status or 1
                stop(signal.SIGTERM, None)
                break
            print(f"flowgate: worker {index} exited ({status}); restarting it", file=sys.stderr)
            time.sleep(RESTART_PAUSE_SECONDS)
            if signals:  # asked to stop during the pause: nothing to start
                break
            workers[index] = start_worker(flock.settings, index)
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
    sys.exit(supervise(_read_flock(int(sys.argv[1]))))
