"""Benchmark: goodput under per-minute quotas — four accounts, offered load at 80 % of their total.

A standalone sandbox enforces a per-minute request quota on each of four API keys
(``PUT /_sandbox/quotas/{key}``), answering Google's real 429 (QuotaFailure with a
per-minute quota id, RetryInfo until the window ends) once a key's fixed 60-second
window is full. flowgate has one sandbox account per key. The load generator starts
``POST /v1/google-flow/images`` (nano-banana-2, count 1) at a steady rate of
``--load`` × (4 × quota) per minute, open loop, for ``--seconds``.

    .venv/bin/python -m bench.goodput [--quota 30] [--load 0.8] [--seconds 180]
        [--delay 1000] [--backend sqlite|postgres]

Reports the share of client requests that succeeded, the upstream calls spent per
successful image (every ``:generateContent`` the sandbox logged, 429s included), how
the calls spread over the keys, and why failed requests failed. Targets: ≥ 99 %
succeed, ≤ 1.15 upstream calls per success.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from bench.loadgen import LoadSpec, run_in_process
from bench.overhead import flowgate_request
from bench.servers import Flowgate, Sandbox, Scratch, machine_line

KEYS = 4
TARGET_SUCCESS = 0.99
TARGET_CALLS_PER_SUCCESS = 1.15


def failure_reasons(samples: list[dict[str, Any]]) -> Counter[str]:
    """Failed answers grouped by status and error text (first 90 characters)."""
    reasons: Counter[str] = Counter()
    for sample in samples:
        if 200 <= sample["status"] < 300:
            continue
        text = sample.get("body") or ""
        try:
            body = json.loads(text)
            message = body.get("message") or body.get("error") or text
            if isinstance(message, dict):
                message = message.get("message", str(message))
        except (ValueError, AttributeError):
            message = text
        reasons[f"{sample['status']} {str(message)[:90]}"] += 1
    return reasons


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quota", type=int, default=30, help="requests per minute per key")
    parser.add_argument("--load", type=float, default=0.8, help="share of the pool's capacity")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--delay", type=int, default=1000, help="upstream latency, ms")
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    print(machine_line(), flush=True)
    rate = args.load * KEYS * args.quota / 60.0
    keys = [f"sandbox-quota-{n}" for n in range(KEYS)]
    with Scratch() as work, Sandbox(work, delay_ms=args.delay).start() as sandbox:
        with Flowgate(work, backend=args.backend).start() as gateway:
            for n, key in enumerate(keys):
                gateway.add_sandbox_account(
                    gateway.token,
                    f"quota-{n}@example.com",
                    sandbox,
                    api_key=key,
                    max_concurrency=16,
                )
                sandbox.set_quota(key, perMinute=args.quota)
            sandbox.clear_calls()
            spec = LoadSpec(
                "127.0.0.1",
                gateway.port,
                [flowgate_request(gateway.token)],
                mode="rate",
                rate=rate,
                concurrency=256,
                duration=args.seconds,
                timeout=120,
                keep_bodies=True,
            )
            result = run_in_process(spec)
            calls = [c for c in sandbox.calls() if c["method"] == "generateContent"]
    ok = result["ok"]
    sent = result["requests"]
    by_key: dict[str, Counter[int]] = {key: Counter() for key in keys}
    for call in calls:
        by_key.setdefault(call["key"], Counter())[call["status"]] += 1
    print(
        f"backend {args.backend}; quota {args.quota}/min on each of {KEYS} keys "
        f"(pool {KEYS * args.quota}/min); offered {rate * 60:.0f}/min ({args.load:.0%}) "
        f"for {args.seconds:g} s; upstream latency {args.delay} ms"
    )
    print(
        f"client requests: {sent}, succeeded {ok} ({ok / max(1, sent):.2%}); {result['statuses']}"
    )
    print(
        f"upstream calls: {len(calls)} ({sum(1 for c in calls if c['status'] == 429)} answered "
        f"429) = {len(calls) / max(1, ok):.3f} per successful image"
    )
    for key, counts in by_key.items():
        print(f"  {key}: {dict(sorted(counts.items()))}")
    print(f"latency of successes: p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms")
    for reason, count in failure_reasons(result["samples"]).most_common(8):
        print(f"  {count} × {reason}")
    if result["errors"]:
        print(f"client-side: {result['errors']}")
    verdict_ok = ok / max(1, sent) >= TARGET_SUCCESS
    verdict_calls = len(calls) / max(1, ok) <= TARGET_CALLS_PER_SUCCESS
    print(
        f"target ≥ {TARGET_SUCCESS:.0%} succeed: {'met' if verdict_ok else 'NOT met'}; "
        f"≤ {TARGET_CALLS_PER_SUCCESS} upstream calls per success: "
        f"{'met' if verdict_calls else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
