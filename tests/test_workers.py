"""``flowgate serve`` with FLOWGATE_WORKERS: several instances on one port (PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.procstat import child_pids, rss_mb
from tests.gateway import Gateway


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def anonymous_shared_mb(pid: int) -> float:
    """Anonymous memory (the Python heap, not files) that ``pid`` shares with another
    process, MB: pages a forked worker still shares with the other workers."""
    shared_kb = 0
    anonymous = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            anonymous = len(fields) == 5 or fields[5] == "[heap]"
        elif anonymous and fields[0] in ("Shared_Clean:", "Shared_Dirty:"):
            shared_kb += int(fields[1])
    return shared_kb / 1024


def instances_answering(gateway: Gateway, wanted: set[str], timeout: float = 30) -> set[str]:
    """Instance ids seen on /healthz over new connections, until all of ``wanted`` answered."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not wanted <= seen and time.monotonic() < deadline:
        try:
            # A new connection each time: the kernel picks the worker per connection.
            answer = httpx.get(f"{gateway.base_url}/healthz", timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)  # a worker restarting
            continue
        if answer.status_code == 200:
            seen.add(answer.json()["instance"])
    return seen


def test_workers_share_the_port_each_an_instance(
    gateway_factory: Callable[..., Gateway],
) -> None:
    gateway = gateway_factory("postgres", FLOWGATE_WORKERS="2", FLOWGATE_INSTANCE_ID="wk")
    gateway.start()
    assert gateway.token  # the first user is made once, by the parent, and shown
    assert "".join(gateway.output).count("FLOWGATE_TOKEN=") == 1
    assert instances_answering(gateway, {"wk/0", "wk/1"}) == {"wk/0", "wk/1"}
    job_ids = []
    for _ in range(6):  # each on a new connection, so both workers serve some
        answer = httpx.post(
            f"{gateway.base_url}/v1/google-flow/images",
            json={"prompt": "two workers", "model": "nano-banana-2", "count": 1},
            headers={"Authorization": f"Bearer {gateway.token}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        job_ids.append(answer.json()["jobId"])
    for job_id in job_ids:  # one database: any worker reads any worker's job
        record = httpx.get(
            f"{gateway.base_url}/v1/google-flow/jobs/{job_id}",
            headers={"Authorization": f"Bearer {gateway.token}"},
            timeout=30,
        )
        assert record.status_code == 200, record.text
        assert record.json()["status"] == "completed"

    supervisor = gateway.proc.pid  # type: ignore[union-attr]
    workers = set(child_pids(supervisor))
    assert len(workers) == 2
    # Forked from the first process after it loaded the server's modules, the workers
    # share that heap with each other instead of each importing its own copy (which would
    # share none of it)...
    for pid in workers:
        assert anonymous_shared_mb(pid) > 20, (pid, anonymous_shared_mb(pid))
    # ...and that process then became a lean supervisor (same pid), holding no copy of
    # those modules: a process that loaded them holds ~100 MB.
    assert rss_mb(supervisor) < 40, rss_mb(supervisor)
    gateway.stop()  # SIGTERM to the parent stops every worker
    assert gateway.proc is not None and gateway.proc.returncode == 0
    assert not any(alive(pid) for pid in workers)


def test_a_worker_that_dies_is_started_again(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory("postgres", FLOWGATE_WORKERS="2", FLOWGATE_INSTANCE_ID="wr")
    gateway.start()
    assert instances_answering(gateway, {"wr/0", "wr/1"}) == {"wr/0", "wr/1"}
    time.sleep(10)  # past the start-up window, in which a death stops everything instead
    before = set(child_pids(gateway.proc.pid))  # type: ignore[union-attr]
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = set(child_pids(gateway.proc.pid))  # type: ignore[union-attr]
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    assert len(now) == 2 and victim not in now
    assert instances_answering(gateway, {"wr/0", "wr/1"}) == {"wr/0", "wr/1"}
    assert "restarting it" in "".join(gateway.output)

    # A second server on the same port is refused, not silently let in beside these.
    second = gateway.cli("serve", check=False)
    assert second.returncode == 1 and "in use" in second.stderr

    # If the supervising process dies, its workers go too (no orphans on the port).
    os.kill(gateway.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in now) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in now)


def test_a_stop_while_a_worker_starts_again_stops_everything(
    gateway_factory: Callable[..., Gateway],
) -> None:
    gateway = gateway_factory("postgres", FLOWGATE_WORKERS="2", FLOWGATE_INSTANCE_ID="wt")
    gateway.start()
    assert instances_answering(gateway, {"wt/0", "wt/1"}) == {"wt/0", "wt/1"}
    time.sleep(10)  # past the start-up window
    assert gateway.proc is not None
    first = set(child_pids(gateway.proc.pid))
    os.kill(min(first), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while "restarting it" not in "".join(gateway.output) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "restarting it" in "".join(gateway.output)
    # The supervisor waits 1 s, then forks the new worker, which spends the next ~0.7 s
    # (longer on a slow machine) importing the server: SIGTERM lands in that import.
    time.sleep(1.3)
    started_again = set(child_pids(gateway.proc.pid)) - first
    gateway.stop()  # SIGTERM; after 20 s without an exit, SIGKILL (-9)
    assert gateway.proc.returncode == 0, "".join(gateway.output[-20:])
    assert not any(alive(pid) for pid in first | started_again)


def test_workers_on_sqlite_are_refused(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory("sqlite", FLOWGATE_WORKERS="2")
    result = gateway.cli("serve", check=False)
    assert result.returncode == 2
    assert "FLOWGATE_WORKERS" in result.stderr and "PostgreSQL" in result.stderr


def test_the_supervisor_loads_only_the_standard_library() -> None:
    # Whatever it imported beyond that, it would hold for as long as the workers run.
    script = (
        "import sys; before = set(sys.modules); import flowgate.supervisor; "
        "print(' '.join({m.split('.')[0] for m in set(sys.modules) - before}))"
    )
    added = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "flowgate" in added
    assert set(added) - set(sys.stdlib_module_names) - {"flowgate"} == set()
