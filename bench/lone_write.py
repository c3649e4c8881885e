"""Benchmark: one write batch at a time through the write queue on PostgreSQL.

When requests come one at a time, each write-queue batch holds one request's writes: a
sync image job's INSERT, then its ending (image row, statistics event, job UPDATE). The
queue sends the INSERT in autocommit (one round trip instead of BEGIN, INSERT, COMMIT)
and the ending as one statement (one round trip instead of five). This runs
``--writes`` of each, one after the other, through a real queue on a fresh PostgreSQL
database, alternating two ways in one process: ``transaction`` is the queue with both
shortcuts turned off, ``one statement`` the queue as it is. It prints wall and CPU
milliseconds per batch for each shape and way.

    .venv/bin/python -m bench.lone_write [--writes 1000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.servers import create_pg_database, drop_pg_database, machine_line
from flowgate.storage import write_queue as queue_module
from flowgate.storage.db import create_engine, session_factory, write_queue
from flowgate.storage.migrate import migrate
from flowgate.storage.models import Job, JobEvent, Media, User
from flowgate.storage.writes import insert_row, insert_values, together, update_job

WAYS = ("transaction", "one statement")
SHAPES = ("job INSERT", "job ending")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _job(job_id: str) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=job_id,
        user_id=1,
        kind="image",
        operation="generate",
        status="started",
        request={"prompt": "lone write bench"},
        owner="bench",
        created_at=now,
        updated_at=now,
    )


def _ending(job_id: str) -> queue_module.Steps:
    """What a sync image job's end writes (as ``ImageService`` and ``JobService`` do)."""
    now = datetime.now(UTC)
    image = {
        "id": f"media-{job_id}",
        "user_id": 1,
        "kind": "image",
        "source": "generated",
        "mime": "image/png",
        "size": 18000,
        "width": 1024,
        "height": 576,
        "sha256": "ab" * 32,
        "job_id": job_id,
        "extra": {"seed": 1, "prompt": "lone write bench", "aspectRatio": "16:9"},
        "created_at": now,
    }
    attempt = {
        "user_id": 1,
        "account_email": "bench@example.com",
        "kind": "image",
        "model": "nano-banana-2",
        "job_id": job_id,
        "http_status": 200,
        "response_ms": 5,
        "finished_at": now,
    }
    return together(
        insert_values(Media, image),
        insert_values(JobEvent, attempt),
        update_job(
            job_id,
            status="completed",
            response={"media": [{"mediaGenerationId": f"media-{job_id}"}]},
            error=None,
            code=200,
            internal={"reserved": 1},
            updated_at=now,
            finished_at=now,
        ),
    )


def _never(*_args: Any) -> None:
    return None  # the shortcut is off: every batch takes the transaction path


async def run(writes: int, rounds: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(wall ms, CPU ms) per batch of each round, for every shape and way."""
    url = create_pg_database()
    engine = create_engine(url)
    lone_statement = queue_module._lone_statement
    one_statement = queue_module.WriteQueue._one_statement
    results: dict[tuple[str, str], list[tuple[float, float]]] = {
        (shape, way): [] for shape in SHAPES for way in WAYS
    }
    queue = write_queue(engine, session_factory(engine))
    try:
        await migrate(engine)
        async with session_factory(engine).begin() as session:
            session.add(User(name="owner", webhook_secret="s"))
        number = 0
        for _ in range(rounds):
            for way in WAYS:
                on = way == "one statement"
                queue_module._lone_statement = lone_statement if on else _never  # type: ignore[assignment]
                queue_module.WriteQueue._one_statement = one_statement if on else _never  # type: ignore[method-assign,assignment]
                ids = [f"job-{number + n}" for n in range(writes)]
                number += writes
                shapes: dict[str, Callable[[str], Any]] = {
                    "job INSERT": lambda job_id: together(insert_row(_job(job_id))),
                    "job ending": _ending,
                }
                for shape, write in shapes.items():
                    wall, cpu = time.perf_counter(), _cpu_seconds()
                    for job_id in ids:
                        await queue.run(write(job_id))
                    results[(shape, way)].append(
                        (
                            (time.perf_counter() - wall) * 1000 / writes,
                            (_cpu_seconds() - cpu) * 1000 / writes,
                        )
                    )
    finally:
        queue_module._lone_statement = lone_statement
        queue_module.WriteQueue._one_statement = one_statement  # type: ignore[method-assign]
        await queue.close()
        await engine.dispose()
        drop_pg_database(url)
    return results


def main() -> None:
    """Run both ways in alternation and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    print(machine_line())
    results = asyncio.run(run(args.writes, args.rounds))
    print(f"{args.writes} batches of each shape per round, {args.rounds} rounds of each way")
    print(
        "| shape | way | wall ms/batch (median) | CPU ms/batch (median) "
        "| wall, rounds | CPU, rounds |"
    )
    print("|---|---|---|---|---|---|")
    for (shape, way), figures in results.items():
        walls = [wall for wall, _ in figures]
        cpus = [cpu for _, cpu in figures]
        print(
            f"| {shape} | {way} | {statistics.median(walls):.3f} | {statistics.median(cpus):.3f} "
            f"| {' '.join(f'{w:.2f}' for w in walls)} | {' '.join(f'{c:.2f}' for c in cpus)} |"
        )


if __name__ == "__main__":
    main()
