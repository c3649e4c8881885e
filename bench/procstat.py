"""What the kernel says about a process: CPU seconds, resident memory, open files (/proc)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far (``/proc/PID/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Field 2 (comm) may hold spaces; the fields after its closing parenthesis are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def child_pids(pid: int) -> list[int]:
    """Live child processes of ``pid`` (the workers of ``flowgate serve``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(parent) == pid and state != "Z":
            found.append(int(entry))
    return sorted(found)


def _status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    """Resident memory now, MB (``VmRSS``)."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """Highest resident memory since start, MB (``VmHWM``)."""
    return _status_kb(pid, "VmHWM") / 1024


def pss_mb(pid: int) -> float:
    """Proportional set size now, MB: each resident page divided by the number of
    processes that map it, so the sum over processes sharing pages (forked workers and
    their supervisor) counts each page once (``/proc/PID/smaps_rollup``)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    """Open file descriptors (sockets included)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class CpuMeter:
    """CPU seconds a process spends between :meth:`start` and :meth:`stop`."""

    pid: int
    started: float = 0.0
    spent: float = 0.0

    def start(self) -> None:
        """Remember the CPU time now."""
        self.started = cpu_seconds(self.pid)

    def stop(self) -> float:
        """CPU seconds since :meth:`start`."""
        self.spent = cpu_seconds(self.pid) - self.started
        return self.spent
