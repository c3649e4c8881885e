"""Benchmark: instructions flowgate executes per sync image request (callgrind).

CPU seconds per request move with the VM: on the 2-core VMs of issue 9 the same code
gave 1.7 to 5.1 ms at concurrency 1 within one day, so a change worth 3 % cannot be seen
in them. An instruction count can: callgrind counts the instructions a process runs,
whatever else the machine does. It is not time (cache misses and system calls cost
more than their instructions), so this is for comparing two versions of flowgate, not
for the targets, which ``bench/overhead.py`` measures.

The sandbox (``--fixed-image``) and flowgate both run under ``valgrind --tool=callgrind``
with instrumentation off while they start. For each window the one process measured is
switched on and its counters zeroed; the load generator sends closed-loop requests; then
the counters are dumped. Windows:

- *idle*: flowgate with no requests, for the instructions its timers run per second
  (heartbeats, snapshot refreshes). Under callgrind a request takes 25-40× longer, so
  the timers run that much more often per request than in real time; *net* subtracts
  them;
- *direct*: the sandbox answering the ``:generateContent`` call itself (the yardstick);
- *flowgate*: flowgate answering ``POST /v1/google-flow/images`` (``count`` 1).

    .venv/bin/python -m bench.instructions [--seconds 30] [--backend postgres]
                                           [--rate 8 --concurrency 4]   # for A/B runs

With ``--seconds 20 --warmup 10`` a run takes ~90 s.

Under load flowgate also does work once a second that it does not do idle (the
account snapshot, the token cache, the WAL checkpoint: ~8 M instructions per second
under callgrind), so *net* still holds that work divided by the requests of the window.
Closed-loop, the number of requests in a window moves with the VM (190-289 in 20 s on
one AMD EPYC VM), and net per request moved with it (5.76-6.17 M for code differing by
< 1 %). ``--rate`` sends a fixed number of requests per second instead (open loop, at
most ``--concurrency`` at once), so two versions share that work over as many requests:
eight runs at ``--rate 8`` gave 6.55-6.67 M. Compare runs made at the same rate only.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from bench.loadgen import LoadSpec, RequestTemplate, run_in_process
from bench.overhead import API_KEY, direct_request, flowgate_request
from bench.servers import Flowgate, Sandbox, Scratch, machine_line

START_SECONDS = 600.0  # starting Python under valgrind, instrumentation off: ~10-30 s


def _launcher(out: Path) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
    ]


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _dumped_instructions(out: Path, before: set[Path]) -> int:
    """The instruction total of the dump that appeared since ``before``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = sorted(set(out.parent.glob(out.name + "*")) - before)
        for path in new:
            for line in path.read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError(f"no callgrind dump for {out}")


def count_window(pid: int, out: Path, seconds: float, load: LoadSpec | None) -> tuple[int, int]:
    """Instructions of ``pid`` during one window, and the requests answered in it."""
    before = set(out.parent.glob(out.name + "*"))
    _control(pid, "--instr=on")
    _control(pid, "--zero")
    answered = 0
    if load is None:
        time.sleep(seconds)
    else:
        result = run_in_process(load)
        if result["ok"] != result["requests"]:
            raise RuntimeError(f"{result['requests'] - result['ok']} requests failed: {result}")
        answered = int(result["ok"])
    _control(pid, "--dump")
    _control(pid, "--instr=off")
    return _dumped_instructions(out, before), answered


def window_load(
    port: int, template: RequestTemplate, concurrency: int, seconds: float, rate: float
) -> LoadSpec:
    """``concurrency`` workers sending one request after another for ``seconds``, or with
    ``rate`` > 0, requests sent at that rate (at most ``concurrency`` at once)."""
    return LoadSpec(
        host="127.0.0.1",
        port=port,
        requests=[template],
        mode="rate" if rate > 0 else "closed",
        concurrency=concurrency,
        duration=seconds,
        warmup=0.0,
        rate=rate,
        timeout=600.0,
    )


def main() -> None:
    """Run the three windows and print instructions per request."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each window")
    parser.add_argument("--warmup", type=float, default=20.0, help="requests before counting")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="send this many requests per second instead of one after another (A/B runs: "
        "the same rate in both, so the once-a-second work is shared by as many requests)",
    )
    args = parser.parse_args()
    print(machine_line())
    with Scratch() as work:
        sandbox_out = work / "callgrind.sandbox"
        flowgate_out = work / "callgrind.flowgate"
        sandbox = Sandbox(work, launcher=_launcher(sandbox_out), start_timeout=START_SECONDS)
        with (
            sandbox.start(),
            Flowgate(
                work,
                backend=args.backend,
                launcher=_launcher(flowgate_out),
                start_timeout=START_SECONDS,
            ) as gateway,
        ):
            gateway.start()
            gateway.add_sandbox_account(
                gateway.token, "bench@example.com", sandbox, api_key=API_KEY, max_concurrency=1000
            )
            through = flowgate_request(gateway.token)
            # Instrumentation off: first requests fill caches and compile statements.
            run_in_process(window_load(gateway.port, through, args.concurrency, args.warmup, 0))
            idle, _ = count_window(gateway.pid, flowgate_out, args.seconds, None)
            direct, direct_n = count_window(
                sandbox.pid,
                sandbox_out,
                args.seconds,
                window_load(
                    sandbox.port, direct_request(), args.concurrency, args.seconds, args.rate
                ),
            )
            started = time.monotonic()
            total, n = count_window(
                gateway.pid,
                flowgate_out,
                args.seconds,
                window_load(gateway.port, through, args.concurrency, args.seconds, args.rate),
            )
            elapsed = time.monotonic() - started
    idle_per_s = idle / args.seconds
    net = total - idle_per_s * elapsed
    sending = f"{args.rate:g} requests/s, at most" if args.rate > 0 else "concurrency"
    print(f"backend {args.backend}, {sending} {args.concurrency}, windows of {args.seconds:g} s")
    print("| window | requests | instructions (M) | M per request | net M per request |")
    print("|---|---|---|---|---|")
    print(f"| flowgate idle | 0 | {idle / 1e6:.1f} | - | {idle_per_s / 1e6:.2f} per s |")
    per_direct = direct / direct_n
    print(f"| direct (sandbox) | {direct_n} | {direct / 1e6:.1f} | {per_direct / 1e6:.3f} | - |")
    print(f"| flowgate | {n} | {total / 1e6:.1f} | {total / n / 1e6:.3f} | {net / n / 1e6:.3f} |")
    print(f"flowgate net / direct: {net / n / per_direct:.2f}")


if __name__ == "__main__":
    main()
