"""Benchmark: what flowgate adds to one image request, against the same upstream call made directly.

Three processes: a standalone sandbox upstream in ``--fixed-image`` mode with no delay
(one pre-rendered picture, so drawing does not dominate), a flowgate server (one
sandbox account pointing at it, ``maxConcurrency`` 1000), and the load generator
(``bench/loadgen.py``: one kept-alive connection per worker). For each concurrency it
runs ``POST /v1/google-flow/images`` (``nano-banana-2``, ``count`` 1) through flowgate,
then the ``:generateContent`` call flowgate makes, sent straight to the sandbox.

    .venv/bin/python -m bench.overhead [--backend sqlite|postgres] [--concurrency 1,16,64]
        [--duration 10] [--warmup 3] [--profile DIR] [--json FILE] [--image-kb N]

``--image-kb 1500`` pads the sandbox's picture to a real generated image's size (the
default ~18 kB picture keeps the cost of the bytes themselves out of the figures).

Reports throughput, p50/p95/p99, flowgate's CPU seconds per request (``/proc/PID/stat``
over the measured window, every thread of the server), the sandbox's and the load
generator's CPU per request, and the ratios flowgate/direct. ``--profile DIR`` also
records the server with py-spy during the highest-concurrency run (``pip install py-spy``)
and prints where its CPU goes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.loadgen import LoadSpec, RequestTemplate, run_in_process
from bench.servers import Flowgate, Sandbox, Scratch, machine_line

UPSTREAM_MODEL = "gemini-3.1-flash-image-preview"
API_KEY = "sandbox-bench"
TARGET_CPU_MS = 2.5
TARGET_RPS_64 = 300.0
TARGET_ADDED_P50_MS = 5.0


def flowgate_request(token: str) -> RequestTemplate:
    """POST /v1/google-flow/images, one nano-banana-2 image; ``{n}`` numbers the prompt."""
    return RequestTemplate(
        "POST",
        "/v1/google-flow/images",
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        '{"prompt": "overhead bench {n}", "model": "nano-banana-2", "count": 1}',
    )


def direct_request() -> RequestTemplate:
    """The ``:generateContent`` body flowgate's Gemini provider sends for that request."""
    body = {
        "contents": [{"role": "user", "parts": [{"text": "overhead bench {n}"}]}],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "seed": 12345,
            "imageConfig": {"aspectRatio": "16:9"},
        },
    }
    return RequestTemplate(
        "POST",
        f"/v1beta/models/{UPSTREAM_MODEL}:generateContent",
        {"x-goog-api-key": API_KEY, "Content-Type": "application/json"},
        json.dumps(body),
    )


def start_profile(
    pid: int, seconds: float, out: Path, rate: int = 200
) -> subprocess.Popen[bytes] | None:
    """py-spy in the background on ``pid`` (collapsed stacks), or None when not installed."""
    spy = shutil.which("py-spy") or str(Path(__file__).resolve().parent.parent / ".venv/bin/py-spy")
    if not Path(spy).exists():
        print("  (py-spy not installed: pip install py-spy)")
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--gil",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize_profile(path: Path, top: int = 25) -> str:
    """Share of samples per frame: self time, and inclusive time of flowgate's own frames."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if "flowgate/" in frame or "sqlalchemy" in frame or "starlette" in frame:
                inclusive[frame] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "self time (top):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("inclusive (flowgate, sqlalchemy, starlette frames):")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def measure(
    target: str,
    port: int,
    template: RequestTemplate,
    concurrency: int,
    args: argparse.Namespace,
    pids: dict[str, int],
) -> dict[str, Any]:
    """One closed-loop run; CPU per request of every watched process."""
    spec = LoadSpec(
        host="127.0.0.1",
        port=port,
        requests=[template],
        mode="closed",
        concurrency=concurrency,
        duration=args.duration,
        warmup=args.warmup,
        watch_pids=list(pids.values()),
    )
    result = run_in_process(spec)
    ok = max(1, result["ok"])
    cpu = {name: result["cpu_s"][str(pid)] for name, pid in pids.items()}
    result["cpu_ms_per_request"] = {name: 1000 * seconds / ok for name, seconds in cpu.items()}
    result["loadgen_cpu_ms_per_request"] = 1000 * result["loadgen_cpu_s"] / ok
    result["target"] = target
    result["concurrency"] = concurrency
    return result


def fmt_row(r: dict[str, Any]) -> str:
    """One line of the results table."""
    cpu = r["cpu_ms_per_request"]
    flowgate_cpu = f"{cpu['flowgate']:.2f}" if "flowgate" in cpu else "-"
    return (
        f"| {r['target']:8} | {r['concurrency']:3} | {r['throughput_rps']:7.1f} | "
        f"{r['p50_ms']:7.2f} | {r['p95_ms']:7.2f} | {r['p99_ms']:7.2f} | {flowgate_cpu:>5} | "
        f"{cpu['sandbox']:.2f} | {r['loadgen_cpu_ms_per_request']:.2f} | "
        f"{r['ok']}/{r['requests']} |"
    )


def main() -> None:
    """Run the benchmark and print the table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--profile", type=Path, help="py-spy the server at the top concurrency")
    parser.add_argument(
        "--image-kb", type=int, default=0, help="image size (default ~18 kB; a real one ~1500)"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    machine = machine_line()
    print(machine)
    rows: list[dict[str, Any]] = []
    keep = bool(os.environ.get("FLOWGATE_BENCH_KEEP"))
    with Scratch(keep=keep) as work, Sandbox(work, fixed_image_kb=args.image_kb).start() as sandbox:
        with Flowgate(work, backend=args.backend).start() as gateway:
            gateway.add_sandbox_account(
                gateway.token, "bench@example.com", sandbox, api_key=API_KEY, max_concurrency=1000
            )
            for level in levels:
                rows.append(
                    measure(
                        "direct",
                        sandbox.port,
                        direct_request(),
                        level,
                        args,
                        {"sandbox": sandbox.pid},
                    )
                )
                profiler = None
                if args.profile and level == max(levels):
                    args.profile.mkdir(parents=True, exist_ok=True)
                    out = args.profile / f"flowgate-c{level}.txt"
                    profiler = start_profile(gateway.pid, args.warmup + args.duration, out)
                rows.append(
                    measure(
                        "flowgate",
                        gateway.port,
                        flowgate_request(gateway.token),
                        level,
                        args,
                        {"flowgate": gateway.pid, "sandbox": sandbox.pid},
                    )
                )
                if profiler is not None:
                    profiler.wait(timeout=args.warmup + args.duration + 60)
                    time.sleep(0.5)
                    print(summarize_profile(args.profile / f"flowgate-c{level}.txt"))
            if any(r["ok"] < r["requests"] for r in rows):
                # The scratch directory goes with the run: show why requests failed now.
                print("server errors (flowgate log):")
                for line in gateway.log.read_text().splitlines():
                    if '"ERROR"' in line:
                        # A traceback's last lines name the error; its first ones don't.
                        print("  " + (line if len(line) <= 2000 else line[-2000:]))
    print(f"backend: {args.backend}; window {args.duration:g} s after {args.warmup:g} s warm-up")
    print(
        "| via | conc | req/s | p50 ms | p95 ms | p99 ms | flowgate CPU ms/req "
        "| sandbox CPU ms/req | loadgen CPU ms/req | ok/sent |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(fmt_row(r))
    print()
    print("| conc | throughput flowgate/direct | p50 added ms | p99 added ms | p50 ratio |")
    print("|---|---|---|---|---|")
    by = {(r["target"], r["concurrency"]): r for r in rows}
    verdicts = []
    for level in levels:
        d, f = by[("direct", level)], by[("flowgate", level)]
        print(
            f"| {level} | {f['throughput_rps'] / d['throughput_rps']:.2f} | "
            f"{f['p50_ms'] - d['p50_ms']:.2f} | {f['p99_ms'] - d['p99_ms']:.2f} | "
            f"{f['p50_ms'] / d['p50_ms']:.2f} |"
        )
    cpu_worst = max(by[("flowgate", c)]["cpu_ms_per_request"]["flowgate"] for c in levels)
    verdicts.append(f"flowgate CPU/request ≤ {TARGET_CPU_MS} ms: worst {cpu_worst:.2f} ms")
    if 64 in levels:
        rps = by[("flowgate", 64)]["throughput_rps"]
        verdicts.append(f"≥ {TARGET_RPS_64:g} req/s at concurrency 64: {rps:.0f}")
    if 1 in levels:
        added = by[("flowgate", 1)]["p50_ms"] - by[("direct", 1)]["p50_ms"]
        verdicts.append(f"≤ {TARGET_ADDED_P50_MS:g} ms added at p50, concurrency 1: {added:.2f}")
    print("\n".join(verdicts))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
