"""Benchmark: 2,000 clients each hold one sync image request while the upstream takes 10 s.

A standalone sandbox answers every generation after ``--delay`` ms (default 10,000,
``--fixed-image``); flowgate has three sandbox accounts of ``maxConcurrency`` 1000
and an upstream pool of 2,500 connections (``FLOWGATE_UPSTREAM_MAX_CONNECTIONS``), so
nothing queues inside flowgate. Two ways for 2,000 clients to arrive:

- *burst*: the load generator opens ``--clients`` kept-alive connections first, then
  every client sends one ``POST /v1/google-flow/images`` (count 1) at the same moment;
- *steady*: requests are sent at ``clients / delay`` per second (200/s) for three
  upstream delays, so from the end of the first delay on ~2,000 are held at every
  moment; only requests sent after that ramp are counted.

Each is run first straight to the sandbox (``direct``: the upstream call itself, same
load generator, same machine, same run), then through flowgate; the latency flowgate
adds is its p50/p99 minus the direct run's.

The first burst finds flowgate with no open upstream connection, so it opens 2,000
while the direct run's load generator had opened its own before. ``--bursts N`` sends
N bursts through flowgate, 2 s apart: the later ones find the first one's connections
still open (kept 30 s), which shows what the connecting costs of the added latency.

    .venv/bin/python -m bench.held [--clients 2000] [--delay 10000] [--backend sqlite|postgres]
                                   [--arrival both|burst|steady] [--profile FILE]
                                   [--profile-seconds S]   # e.g. 2: the burst's way in
                                   [--workers N]   # FLOWGATE_WORKERS, PostgreSQL only
                                   [--bursts N]    # N bursts through flowgate, 2 s apart

Reports: how many succeeded, flowgate's RSS when idle (after start and a few warm-up
requests) and at peak (``VmHWM``, and the highest ``VmRSS`` sampled every 0.2 s), its
PSS idle and after the run (with workers, the pages they share with each other
counted once rather than in every process), and per arrival pattern the latency
distribution, the latency flowgate adds, the latency above the upstream's delay (which
also holds what the sandbox and the load generator take), for the burst when its calls
came into the sandbox (the sandbox's call log, from the moment the burst was sent: the
part of the latency before the upstream's delay starts) and the CPU seconds each process
spent. Targets: every request succeeds,
idle ≤ 150 MB, peak ≤ 600 MB, p99 added ≤ 1 s.
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
from bench.procstat import open_fds, peak_rss_mb, pss_mb, rss_mb
from bench.servers import Flowgate, Sandbox, Scratch, machine_line

TARGET_IDLE_MB = 150.0
TARGET_PEAK_MB = 600.0
TARGET_ADDED_P99_MS = 1000.0


class RssSampler:
    """Samples the summed RSS and open files of processes every ``interval`` s in a thread."""

    def __init__(self, pids: list[int], interval: float = 0.2) -> None:
        self.pids = pids
        self.interval = interval
        self.rss: list[float] = []
        self.fds: list[int] = []
        self.times: list[float] = []  # time.monotonic() of each sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.rss.append(sum(rss_mb(pid) for pid in self.pids))
                self.fds.append(sum(open_fds(pid) for pid in self.pids))
                self.times.append(time.monotonic())
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def sandbox_arrivals(sandbox: Sandbox) -> list[float]:
    """When each generation call came into the sandbox (epoch seconds), earliest first."""
    return sorted(
        datetime.fromisoformat(call["received"]).timestamp()
        for call in sandbox.calls()
        if call["method"] == "generateContent"
    )


def report(name: str, direct: dict[str, Any], through: dict[str, Any], delay_ms: float) -> None:
    """One arrival pattern's figures: flowgate against the direct run."""
    print(f"-- {name}")
    print(
        f"succeeded: {through['ok']}/{through['requests']} (statuses {through['statuses']}); "
        f"most held at once {through['peak_in_flight'] or through['requests']}"
    )
    if through["errors"]:
        print(f"client errors: {through['errors']}")
    for body in dict.fromkeys(through.get("error_bodies", [])):
        print(f"  answered: {body[:400]}")
    for label, r in (("direct to the sandbox", direct), ("through flowgate", through)):
        print(
            f"{label}: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, "
            f"p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms ({r['ok']}/{r['requests']} ok)"
        )
    print(
        f"added by flowgate (flowgate minus direct): "
        f"p50 {through['p50_ms'] - direct['p50_ms']:.0f} ms, "
        f"p99 {through['p99_ms'] - direct['p99_ms']:.0f} ms (target ≤ {TARGET_ADDED_P99_MS:g})"
    )
    direct_above = direct["p99_ms"] - delay_ms
    print(
        f"above the upstream's {delay_ms:.0f} ms: p50 {through['p50_ms'] - delay_ms:.0f} ms, "
        f"p99 {through['p99_ms'] - delay_ms:.0f} ms (direct: p99 {direct_above:.0f} ms)"
    )
    for label, r in (("direct", direct), ("through flowgate", through)):
        # When the calls came into the sandbox, counted from the moment the burst was sent:
        # the latency before the upstream's delay starts.
        if r["arrivals"] is None:
            continue
        reached = [at - r["started_at"] for at in r["arrivals"]]
        if len(reached) != r["sent"]:
            print(f"upstream reached ({label}): {len(reached)} calls logged for {r['sent']} sent")
        elif reached:
            print(
                f"upstream reached ({label}): first after {reached[0]:.2f} s, half after "
                f"{reached[len(reached) // 2]:.2f} s, all after {reached[-1]:.2f} s"
            )
    gateway_cpu, sandbox_cpu = (through["cpu_s"][k] for k in ("flowgate", "sandbox"))
    # CPU covers the whole run, ramp included: per request sent, not per request counted.
    per_request = 1000 * gateway_cpu / max(1, through["sent"])
    print(
        f"CPU: flowgate {gateway_cpu:.2f} s ({per_request:.2f} ms per request), "
        f"sandbox {sandbox_cpu:.2f} s (direct run: {direct['cpu_s']['sandbox']:.2f} s), "
        f"load generator {through['loadgen_cpu_s']:.2f} s"
    )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--delay", type=int, default=10_000, help="upstream delay, ms")
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--arrival", default="both", choices=("both", "burst", "steady"))
    parser.add_argument("--workers", type=int, default=1, help="FLOWGATE_WORKERS (PostgreSQL)")
    parser.add_argument(
        "--bursts",
        type=int,
        default=1,
        help="bursts sent through flowgate, 2 s apart (later ones reuse its open upstream "
        "connections)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="py-spy flowgate during the burst; write raw stacks to FILE and summarize them",
    )
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=None,
        metavar="S",
        help="profile only the first S seconds (e.g. 3: the burst's way to the upstream)",
    )
    args = parser.parse_args()
    print(machine_line(), flush=True)
    arrivals = ("burst", "steady") if args.arrival == "both" else (args.arrival,)
    delay_s = args.delay / 1000
    env = {
        "FLOWGATE_UPSTREAM_MAX_CONNECTIONS": str(args.clients + 500),
        "FLOWGATE_WORKERS": str(args.workers),
    }

    def load(
        sandbox: Sandbox,
        arrival: str,
        port: int,
        template: RequestTemplate,
        pids: dict[str, list[int]],
    ) -> Any:
        spec = LoadSpec(
            "127.0.0.1",
            port,
            [template],
            mode="burst" if arrival == "burst" else "rate",
            concurrency=args.clients if arrival == "burst" else 2 * args.clients,
            per_worker=1,
            connect_batch=200,
            rate=args.clients / delay_s,
            duration=3 * delay_s,
            measure_after=delay_s,
            timeout=delay_s + 120,
            watch_pids=[pid for group in pids.values() for pid in group],
        )
        sandbox.clear_calls()
        result = run_in_process(spec)
        # Only the burst: the steady run's calls outnumber the sandbox's call log.
        result["arrivals"] = sandbox_arrivals(sandbox) if arrival == "burst" else None
        result["cpu_s"] = {
            name: sum(result["cpu_s"][str(pid)] for pid in group) for name, group in pids.items()
        }
        return result

    direct: dict[str, Any] = {}
    through: dict[str, list[Any]] = {}
    with Scratch() as work, Sandbox(work, delay_ms=args.delay).start() as sandbox:
        for arrival in arrivals:
            direct[arrival] = load(
                sandbox, arrival, sandbox.port, direct_request(), {"sandbox": [sandbox.pid]}
            )
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
                timeout=delay_s + 60,
            )
            run_in_process(warm)
            time.sleep(2)
            servers = gateway.server_pids  # the workers, when there are several
            assert len(servers) == args.workers, servers
            # Memory and CPU count every process, the workers' supervisor too.
            processes = gateway.all_pids
            idle = sum(rss_mb(pid) for pid in processes)
            idle_pss = sum(pss_mb(pid) for pid in processes)
            idle_fds = sum(open_fds(pid) for pid in processes)
            pids = {"flowgate": processes, "sandbox": [sandbox.pid]}
            spy = (
                start_profile(
                    servers[0], args.profile_seconds or delay_s + 15, args.profile, rate=1000
                )
                if args.profile
                else None
            )
            with RssSampler(processes) as sampler:
                for arrival in arrivals:
                    runs = through[arrival] = []
                    for _ in range(args.bursts if arrival == "burst" else 1):
                        template = flowgate_request(gateway.token)
                        runs.append(load(sandbox, arrival, gateway.port, template, pids))
                        time.sleep(2)
            if spy is not None:
                spy.wait()
            after = sum(rss_mb(pid) for pid in processes)
            after_pss = sum(pss_mb(pid) for pid in processes)
            hwm = sum(peak_rss_mb(pid) for pid in processes)
    print(
        f"backend {args.backend}, {args.workers} worker(s); {args.clients} clients, "
        f"upstream delay {args.delay} ms (RSS and CPU: every process, "
        "with workers their supervisor too)"
    )
    print(f"RSS idle: {idle:.0f} MB (target ≤ {TARGET_IDLE_MB:g}); open files idle {idle_fds}")
    # RSS counts a page shared by several processes once in each; PSS counts it once.
    print(f"PSS idle: {idle_pss:.0f} MB; after the run {after_pss:.0f} MB")
    print(
        f"RSS peak: VmHWM {hwm:.0f} MB, highest sample {max(sampler.rss, default=0):.0f} MB "
        f"(target ≤ {TARGET_PEAK_MB:g}); after the run {after:.0f} MB; "
        f"open files peak {max(sampler.fds, default=0)}"
    )
    for arrival in arrivals:
        runs = through[arrival]
        for n, run in enumerate(runs, start=1):
            name = arrival if len(runs) == 1 else f"{arrival} {n} of {len(runs)}"
            if n > 1:
                name += " (upstream connections already open)"
            report(name, direct[arrival], run, float(args.delay))
    if args.profile and args.profile.exists():
        print(summarize_profile(args.profile, top=40))


if __name__ == "__main__":
    main()
