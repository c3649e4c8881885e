"""Benchmark: instructions of single steps of the sync image path (callgrind).

``bench/instructions.py`` counts a whole request; under callgrind its net figure moves
by ±2-3 % between runs of the same code (the once-a-second work shared by a window's
requests), which hides a change worth 1-3 %. This runs one step in a loop in a fresh
interpreter under ``valgrind --tool=callgrind``, twice (``--small`` and ``--large``
iterations), and prints the difference divided by the extra iterations: the step's own
instructions, without the interpreter's start. The count repeats to a few hundred
instructions. Steps:

- *acquire*: ``AccountPicker.acquire`` and ``Lease.release`` on a cached snapshot of
  three accounts (no database: the snapshot is the one a refresh would have stored);
- *media_row*: the column values of a generated image's media row and its INSERT
  statement, as ``ImageService`` hands them to the write queue;
- *job*: a ``Job`` built as ``JobService.create`` builds it.

    .venv/bin/python -m bench.hot_steps [--step acquire|media_row|job] [--small 1000]
                                        [--large 6000]

About 30 s per step. Compare two versions of flowgate by running this in each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.servers import machine_line

STEPS = ("acquire", "media_row", "job")


def _acquire(iterations: int) -> None:
    from flowgate.balancer.picker import AccountPicker, _Snapshot
    from flowgate.balancer.slots import SlotBoard
    from flowgate.storage.models import Account
    from flowgate.storage.stats import EventCounts

    accounts = [
        Account(
            id=n,
            user_id=1,
            email=f"account{n}@example.com",
            provider="gemini",
            health="OK",
            max_concurrency=1000,
        )
        for n in (1, 2, 3)
    ]
    picker = AccountPicker(None, SlotBoard(), queue_timeout_seconds=5)  # type: ignore[arg-type]
    picker._snapshots[1] = _Snapshot(
        taken=float("inf"),  # never older than the cache's second: no refresh
        accounts=accounts,
        counts={(a.email, "image"): EventCounts(completed=5) for a in accounts},
        executing_db={},
        executing_local={a.id: 0 for a in accounts},
        quarantine=[],
    )

    async def loop() -> None:
        for _ in range(iterations):
            lease = await picker.acquire(1, model="nano-banana-2", email=None)
            lease.release()

    asyncio.run(loop())


def _media_row(iterations: int) -> None:
    from flowgate.services.media import MediaService
    from flowgate.storage.models import Media
    from flowgate.storage.writes import insert_values

    data = b"\x89PNG" + bytes(18_000)
    for seed in range(iterations):
        insert_values(
            Media,
            MediaService.values(
                user_id=1,
                data=data,
                kind="image",
                source="generated",
                mime="image/png",
                width=1024,
                height=1024,
                account_email="account1@example.com",
                model="nano-banana-2",
                job_id="job",
                extra={"seed": seed, "prompt": "a lighthouse", "aspectRatio": "1:1"},
                digest="0" * 64,
            ),
        )


def _job(iterations: int) -> None:
    from flowgate.storage.models import Job

    for _ in range(iterations):
        now = datetime.now(UTC)
        Job(
            id="job",
            internal={"reserved": 1},
            user_id=1,
            kind="image",
            operation="generate",
            status="started",
            account_email="account1@example.com",
            model="nano-banana-2",
            request={"prompt": "a lighthouse"},
            reply_url=None,
            owner="instance",
            created_at=now,
            updated_at=now,
            started_at=now,
        )


RUNNERS: dict[str, Callable[[int], None]] = {
    "acquire": _acquire,
    "media_row": _media_row,
    "job": _job,
}


def count(step: str, iterations: int) -> int:
    """Instructions of a fresh interpreter that runs ``step`` ``iterations`` times."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "callgrind.out"
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.hot_steps",
                "--run",
                step,
                "--iterations",
                str(iterations),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        found = re.search(r"Collected : (\d+)", result.stderr)
        if found is None:
            raise RuntimeError(f"no callgrind total for {step}: {result.stderr[-2000:]}")
        return int(found.group(1))


def main() -> None:
    """Print each step's instructions per iteration."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", choices=STEPS, action="append")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=6000)
    parser.add_argument("--run", choices=STEPS, help=argparse.SUPPRESS)  # inside valgrind
    parser.add_argument("--iterations", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        RUNNERS[args.run](args.iterations)
        return
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    print(machine_line())
    print("| step | instructions per iteration |")
    print("|---|---|")
    for step in args.step or STEPS:
        extra = count(step, args.large) - count(step, args.small)
        print(f"| {step} | {extra / (args.large - args.small) / 1000:,.1f} k |")


if __name__ == "__main__":
    main()
