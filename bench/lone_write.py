"""Benchmark: one write at a time through the write queue on PostgreSQL.

When requests come one at a time, most write-queue batches hold one statement (a sync
image job's INSERT). The queue sends such a batch in autocommit: one round trip instead
of BEGIN, the statement and COMMIT. This runs ``--writes`` job INSERTs one after the
other through a real queue on a fresh PostgreSQL database, alternating the two ways in
one process (``transaction`` is the queue with its lone-statement path turned off), and
prints wall and CPU milliseconds per write for each round.

    .venv/bin/python -m bench.lone_write [--writes 1000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from datetime import UTC, datetime

from bench.servers import create_pg_database, drop_pg_database, machine_line
from flowgate.storage import write_queue as queue_module
from flowgate.storage.db import create_engine, session_factory, write_queue
from flowgate.storage.migrate import migrate
from flowgate.storage.models import Job, User
from flowgate.storage.writes import insert_row, together


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


def _never_lone(_writes: list[queue_module.Write]) -> queue_module.Statement | None:
    return None  # every batch takes the transaction path


async def run(writes: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(wall ms, CPU ms) per write of each round, for both ways."""
    url = create_pg_database()
    engine = create_engine(url)
    lone_statement = queue_module._lone_statement
    results: dict[str, list[tuple[float, float]]] = {"transaction": [], "autocommit": []}
    queue = write_queue(engine, session_factory(engine))
    try:
        await migrate(engine)
        async with session_factory(engine).begin() as session:
            session.add(User(name="owner", webhook_secret="s"))
        number = 0
        for _ in range(rounds):
            for way in results:
                swap = lone_statement if way == "autocommit" else _never_lone
                queue_module._lone_statement = swap  # type: ignore[assignment]
                wall, cpu = time.perf_counter(), _cpu_seconds()
                for _ in range(writes):
                    number += 1
                    await queue.run(together(insert_row(_job(f"job-{number}"))))
                results[way].append(
                    (
                        (time.perf_counter() - wall) * 1000 / writes,
                        (_cpu_seconds() - cpu) * 1000 / writes,
                    )
                )
    finally:
        queue_module._lone_statement = lone_statement
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
    print(f"{args.writes} lone job INSERTs per round, {args.rounds} rounds of each way")
    print("| way | wall ms/write (median) | CPU ms/write (median) | wall, rounds | CPU, rounds |")
    print("|---|---|---|---|---|")
    for way, figures in results.items():
        walls = [wall for wall, _ in figures]
        cpus = [cpu for _, cpu in figures]
        print(
            f"| {way} | {statistics.median(walls):.3f} | {statistics.median(cpus):.3f} | "
            f"{' '.join(f'{w:.2f}' for w in walls)} | {' '.join(f'{c:.2f}' for c in cpus)} |"
        )


if __name__ == "__main__":
    main()
