"""Benchmark: 2,000 clients each hold one sync image request while the upstream takes 10 s.

A standalone sandbox answers every generation after ``--delay`` ms (default 10,000,
``--fixed-image``); flowgate has three sandbox accounts of ``maxConcurrency`` 1000
and an upstream pool of 2,500 connections (``FLOWGATE_UPSTREAM_MAX_CONNECTIONS``), so
nothing queues inside flowgate. The load generator opens ``--clients`` kept-alive
connections first, then every client sends one ``POST /v1/google-flow/images``
(count 1) at the same moment and waits for its answer. Before that, the same 2,000
clients send the upstream call itself straight to the sandbox (``direct``), so the
latency flowgate adds is measured against the same upstream, load generator and
machine in one run.

    .venv/bin/python -m bench.held [--clients 2000] [--delay 10000] [--backend sqlite|postgres]

Reports: how many succeeded, flowgate's RSS when idle (after start and a few warm-up
requests) and at peak (``VmHWM``, and the highest ``VmRSS`` sampled every 0.2 s),
the latency distribution, the latency flowgate adds (its p50/p99 minus the direct
run's; the target) and the latency above the upstream's delay (which also holds what
the sandbox and the load generator take for 2,000 simultaneous requests), and the CPU
seconds each process spent. Targets: every request succeeds, idle ≤ 150 MB,
peak ≤ 600 MB, p99 added ≤ 1 s.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.loadgen import LoadSpec, RequestTemplate, run_in_process
from bench.overhead import direct_request, flowgate_request, start_profile, summarize_profile
from bench.procstat import open_fds, peak_rss_mb, rss_mb
from bench.servers import Flowgate, Sandbox, Scratch, machine_line

TARGET_IDLE_MB = 150.0
TARGET_PEAK_MB = 600.0
TARGET_ADDED_P99_MS = 1000.0


class RssSampler:
    """Samples a process's RSS and open files every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.rss: list[float] = []
        self.fds: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.rss.append(rss_mb(self.pid))
                self.fds.append(open_fds(self.pid))
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--delay", type=int, default=10_000, help="upstream delay, ms")
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="py-spy flowgate during the burst; write raw stacks to FILE and summarize them",
    )
    args = parser.parse_args()
    print(machine_line(), flush=True)
    env = {"FLOWGATE_UPSTREAM_MAX_CONNECTIONS": str(args.clients + 500)}
    result: dict[str, Any]

    def burst(port: int, template: RequestTemplate, pids: list[int]) -> dict[str, Any]:
        spec = LoadSpec(
            "127.0.0.1",
            port,
            [template],
            mode="burst",
            concurrency=args.clients,
            per_worker=1,
            connect_batch=200,
            timeout=args.delay / 1000 + 120,
            watch_pids=pids,
        )
        return run_in_process(spec)

    with Scratch() as work, Sandbox(work, delay_ms=args.delay).start() as sandbox:
        direct = burst(sandbox.port, direct_request(), [sandbox.pid])
        with Flowgate(work, backend=args.backend, env=env).start() as gateway:
            accounts = max(1, -(-args.clients // 1000)) + 1
            for n in range(accounts):
                gateway.add_sandbox_account(
                    gateway.token,
                    f"held-{n}@example.com",
                    sandbox,
                    api_key=f"sandbox-held-{n}",
                    max_concurrency=1000,
                )
            # A few requests first, so "idle" means started and warmed up, not fresh.
            warm = LoadSpec(
                "127.0.0.1",
                gateway.port,
                [flowgate_request(gateway.token)],
                mode="burst",
                concurrency=4,
                per_worker=1,
                timeout=args.delay / 1000 + 60,
            )
            run_in_process(warm)
            time.sleep(2)
            idle = rss_mb(gateway.pid)
            idle_fds = open_fds(gateway.pid)
            sandbox.clear_calls()
            spy = (
                start_profile(gateway.pid, args.delay / 1000 + 15, args.profile)
                if args.profile
                else None
            )
            with RssSampler(gateway.pid) as sampler:
                result = burst(
                    gateway.port, flowgate_request(gateway.token), [gateway.pid, sandbox.pid]
                )
            starts = sorted(
                datetime.fromisoformat(c["at"].replace("Z", "+00:00")).timestamp()
                for c in sandbox.calls()
                if c["method"] == "generateContent"
            )
            time.sleep(2)
            if spy is not None:
                spy.wait()
            after = rss_mb(gateway.pid)
            hwm = peak_rss_mb(gateway.pid)
    delay_ms = float(args.delay)
    print(f"backend {args.backend}; {args.clients} clients, upstream delay {args.delay} ms")
    print(f"succeeded: {result['ok']}/{result['requests']} (statuses {result['statuses']})")
    if result["errors"]:
        print(f"client errors: {result['errors']}")
    for body in result.get("error_bodies", []):
        print(f"  e.g. {body[:200]}")
    print(f"RSS idle: {idle:.0f} MB (target ≤ {TARGET_IDLE_MB:g}); open files idle {idle_fds}")
    print(
        f"RSS peak: VmHWM {hwm:.0f} MB, highest sample {max(sampler.rss, default=0):.0f} MB "
        f"(target ≤ {TARGET_PEAK_MB:g}); after the run {after:.0f} MB; "
        f"open files peak {max(sampler.fds, default=0)}"
    )
    print(
        f"latency p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, "
        f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms"
    )
    print(
        f"direct to the sandbox: {direct['ok']}/{direct['requests']} succeeded, "
        f"p50 {direct['p50_ms']:.0f} ms, p99 {direct['p99_ms']:.0f} ms, "
        f"max {direct['max_ms']:.0f} ms"
    )
    print(
        f"added by flowgate (flowgate minus direct): "
        f"p50 {result['p50_ms'] - direct['p50_ms']:.0f} ms, "
        f"p99 {result['p99_ms'] - direct['p99_ms']:.0f} ms (target ≤ {TARGET_ADDED_P99_MS:g})"
    )
    print(
        f"above the upstream's {args.delay} ms: p50 {result['p50_ms'] - delay_ms:.0f} ms, "
        f"p99 {result['p99_ms'] - delay_ms:.0f} ms, max {result['max_ms'] - delay_ms:.0f} ms "
        f"(direct: p99 {direct['p99_ms'] - delay_ms:.0f} ms)"
    )
    cpu = result["cpu_s"]
    direct_sandbox_cpu = direct["cpu_s"][str(sandbox.pid)]
    print(
        f"CPU during the flowgate run: flowgate {cpu[str(gateway.pid)]:.2f} s "
        f"({1000 * cpu[str(gateway.pid)] / max(1, result['ok']):.2f} ms per request), "
        f"sandbox {cpu[str(sandbox.pid)]:.2f} s (direct run: {direct_sandbox_cpu:.2f} s), "
        f"load generator {result['loadgen_cpu_s']:.2f} s"
    )
    if starts:
        print(
            f"upstream calls: {len(starts)}; the sandbox logged the last one "
            f"{starts[-1] - starts[0]:.1f} s after the first (each is logged when answered, "
            "all after the same delay: the spread is how long flowgate took to forward them)"
        )

    if args.profile and args.profile.exists():
        print(summarize_profile(args.profile, top=40))


if __name__ == "__main__":
    main()
