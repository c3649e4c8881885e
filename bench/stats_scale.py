"""Benchmark: GET /jobs statistics and account selection with 10k and 1M old job rows.

Fills a scratch database (SQLite file, and a fresh PostgreSQL database) with bulk SQL
inserts — not through the API: one user with four accounts, ``--rows`` old jobs and
as many old job events spread over the last 30 days, plus a realistic recent window
(200 finished attempts in the last 15 minutes and 8 running jobs). Then it times, in
process, the two reads that run on live traffic:

- ``JobStatsService.stats`` (what ``GET /v1/google-flow/jobs`` answers), ``summary``
  and ``history``;
- account selection: ``AccountPicker.acquire`` with its one-second cache dropped
  first, so every call reads accounts, 15-minute event counts, running jobs and
  quarantine entries from the database.

    .venv/bin/python -m bench.stats_scale [--rows 10000,1000000] [--backend sqlite,postgres]
        [--calls 50] [--try-index]

Prints the mean and p95 milliseconds per call at each size and the query plans of the
statistics queries. ``--try-index`` first replaces the job_events index by the one this
benchmark suggests (``(user_id, finished_at)``) to show what it changes. Target: time per call
does not grow with old rows; ≤ 10 ms per selection.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.servers import Scratch, create_pg_database, drop_pg_database, machine_line
from flowgate.balancer.picker import WINDOW, AccountPicker
from flowgate.balancer.slots import SlotBoard
from flowgate.clock import system_clock
from flowgate.services.job_stats import JobStatsService
from flowgate.services.users import Caller
from flowgate.storage.db import create_engine, session_factory
from flowgate.storage.migrate import migrate

TARGET_SELECTION_MS = 10.0
ACCOUNTS = 4
USER_ID = 1
OTHER_USER_ID = 2

_SQLITE_SERIES = (
    "WITH RECURSIVE s(n) AS (SELECT {start} UNION ALL SELECT n + 1 FROM s WHERE n < {end})"
)


def _sqlite_time(seconds_ago: str) -> str:
    # SQLAlchemy's SQLite DateTime text format, so range comparisons stay correct.
    return (
        f"strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || ({seconds_ago}) || ' seconds') || '.000000'"
    )


def _pg_time(seconds_ago: str) -> str:
    return f"now() - ({seconds_ago}) * interval '1 second'"


def fill_statements(dialect: str, start: int, end: int, *, recent: bool) -> list[str]:
    """SQL that adds jobs and job events ``start``..``end`` (old ones, or the recent window)."""
    sqlite = dialect == "sqlite"
    series = _SQLITE_SERIES.format(start=start, end=end) + " " if sqlite else ""
    source = "s" if sqlite else f"generate_series({start}::bigint, {end}::bigint) AS s(n)"
    when = _sqlite_time if sqlite else _pg_time
    # Old rows: between 1 hour and 30 days ago; recent ones: within the last 14 minutes.
    ago = "(n * 37) % 840 + 5" if recent else "3600 + (n * 7919) % 2588400"
    # Nine in ten old rows belong to the measured user, the rest to another user.
    user = (
        str(USER_ID) if recent else f"CASE WHEN n % 10 = 0 THEN {OTHER_USER_ID} ELSE {USER_ID} END"
    )
    email = f"'acct-' || (n % {ACCOUNTS}) || '@example.com'"
    concat_id = "'j' || n || 'i-u1-bench-bot:google-flow'"
    status = "CASE WHEN n % 25 = 0 THEN 429 WHEN n % 40 = 0 THEN 503 ELSE 200 END"
    request_json = '\'{"prompt": "bench row", "count": 1, "model": "nano-banana-2"}\''
    false = "0" if sqlite else "false"
    jobs = (
        f"{series}INSERT INTO jobs (id, user_id, kind, operation, status, account_email, model, "
        "request, code, purged, owner, created_at, updated_at, started_at, finished_at) "
        f"SELECT {concat_id}, {user}, 'image', 'generate', 'completed', {email}, "
        f"'nano-banana-2', {request_json}, 200, {false}, 'bench', {when(ago)}, {when(ago)}, "
        f"{when(ago)}, {when(ago)} FROM {source}"
    )
    events = (
        f"{series}INSERT INTO job_events (user_id, account_email, kind, model, job_id, "
        "http_status, response_ms, finished_at) "
        f"SELECT {user}, {email}, 'image', 'nano-banana-2', {concat_id}, {status}, "
        f"800 + n % 5000, {when(ago)} FROM {source}"
    )
    return [jobs, events]


async def seed(engine: AsyncEngine) -> None:
    """Users, their accounts, and a few running jobs (created now)."""
    sqlite = engine.dialect.name == "sqlite"
    now = _sqlite_time("0") if sqlite else "now()"
    false = "0" if sqlite else "false"
    async with engine.begin() as conn:
        for uid in (USER_ID, OTHER_USER_ID):
            await conn.execute(
                text(
                    "INSERT INTO users (id, name, disabled, webhook_secret, created_at) "
                    f"VALUES ({uid}, 'bench-{uid}', {false}, 'x', {now})"
                )
            )
            for n in range(ACCOUNTS):
                await conn.execute(
                    text(
                        "INSERT INTO accounts (user_id, email, provider, secret_encrypted, "
                        "secret_hint, model_map, max_concurrency, tier, upscale, health, models, "
                        "created_at, updated_at) VALUES "
                        f"({uid}, 'acct-{n}@example.com', 'sandbox', '', '', '{{}}', 1000, "
                        f"'paid', 'auto', 'OK', '[]', {now}, {now})"
                    )
                )
        for n in range(8):
            await conn.execute(
                text(
                    "INSERT INTO jobs (id, user_id, kind, operation, status, account_email, model, "
                    "request, purged, owner, created_at, updated_at) VALUES "
                    f"('running-{n}', {USER_ID}, 'image', 'generate', 'started', "
                    f"'acct-{n % ACCOUNTS}@example.com', 'nano-banana-2', '{{}}', {false}, "
                    f"'bench', {now}, {now})"
                )
            )


async def add_rows(engine: AsyncEngine, start: int, end: int, *, recent: bool = False) -> float:
    """Insert rows ``start``..``end``; seconds it took."""
    began = time.perf_counter()
    async with engine.begin() as conn:
        for statement in fill_statements(engine.dialect.name, start, end, recent=recent):
            await conn.execute(text(statement))
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execute(text("COMMIT"))
            await conn.execute(text("ANALYZE jobs"))
            await conn.execute(text("ANALYZE job_events"))
    else:
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    return time.perf_counter() - began


async def time_calls(calls: int, action: Any) -> tuple[float, float]:
    """Mean and p95 milliseconds of ``calls`` awaits of ``action()`` (after 3 warm-ups)."""
    for _ in range(3):
        await action()
    timings = []
    for _ in range(calls):
        began = time.perf_counter()
        await action()
        timings.append((time.perf_counter() - began) * 1000)
    timings.sort()
    return statistics.fmean(timings), timings[int(0.95 * (len(timings) - 1))]


async def measure(engine: AsyncEngine, calls: int) -> dict[str, tuple[float, float]]:
    """Milliseconds per call of the statistics and of account selection."""
    sessions = session_factory(engine)
    caller = Caller(USER_ID, "bench-1", "x")
    stats = JobStatsService(sessions, system_clock)
    picker = AccountPicker(sessions, SlotBoard(), queue_timeout_seconds=1)

    async def select() -> None:
        picker.forget(USER_ID)  # no cache: every selection reads the database
        lease = await picker.acquire(USER_ID, model="nano-banana-2", email=None)
        lease.release()

    async def summary() -> None:
        await stats.stats(caller, "summary")

    async def history() -> None:
        await stats.stats(caller, "history")

    return {
        "GET /jobs summary": await time_calls(calls, summary),
        "GET /jobs history": await time_calls(calls, history),
        "account selection": await time_calls(calls, select),
    }


async def plans(engine: AsyncEngine) -> list[str]:
    """Query plans of the window queries (event counts, running jobs)."""
    sqlite = engine.dialect.name == "sqlite"
    since = _sqlite_time(str(int(WINDOW.total_seconds()))) if sqlite else _pg_time("900")
    queries = {
        "event counts": (
            "SELECT account_email, kind, count(*) FROM job_events "
            f"WHERE user_id = {USER_ID} AND finished_at >= {since} GROUP BY account_email, kind"
        ),
        "recent events (history)": (
            f"SELECT * FROM job_events WHERE user_id = {USER_ID} AND finished_at >= {since} "
            "ORDER BY finished_at DESC LIMIT 40"
        ),
        # No ORDER BY, as in flowgate.storage.stats.running_jobs (which sorts in Python).
        "running jobs (executing, history)": (
            f"SELECT * FROM jobs WHERE user_id = {USER_ID} AND status IN ('created', 'started')"
        ),
        "running jobs per account": (
            "SELECT account_email, kind, count(*) FROM jobs WHERE user_id = "
            f"{USER_ID} AND status IN ('created', 'started') AND account_email IS NOT NULL "
            "GROUP BY account_email, kind"
        ),
    }
    lines = []
    async with engine.connect() as conn:
        for name, query in queries.items():
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            rows = (await conn.execute(text(explain + query))).all()
            detail = " | ".join(str(row[-1]) for row in rows)
            lines.append(f"  {name}: {detail}")
    return lines


# The index this benchmark suggested instead of (user_id, account_email, finished_at); since
# migrations 0006 and 0007 it is the schema's own, so --try-index changes nothing any more.
PROPOSED_INDEX = (
    "DROP INDEX IF EXISTS ix_job_events_account_time",
    "CREATE INDEX IF NOT EXISTS ix_job_events_user_time ON job_events (user_id, finished_at)",
)


async def run_backend(
    backend: str, sizes: list[int], calls: int, work: Path, *, try_index: bool
) -> None:
    """Fill and measure one backend at every size."""
    if backend == "postgres":
        url = create_pg_database()
    else:
        url = f"sqlite+aiosqlite:///{work / 'stats.db'}"
    engine = create_engine(url)
    try:
        await migrate(engine)
        if try_index:
            # Not flowgate's schema: the index this benchmark suggests, to show its effect.
            async with engine.begin() as conn:
                for statement in PROPOSED_INDEX:
                    await conn.execute(text(statement))
        await seed(engine)
        await add_rows(engine, 10_000_000, 10_000_199, recent=True)
        filled = 0
        for size in sizes:
            seconds = await add_rows(engine, filled + 1, size)
            filled = size
            figures = await measure(engine, calls)
            line = "; ".join(
                f"{name} {mean:.2f} ms (p95 {p95:.2f})" for name, (mean, p95) in figures.items()
            )
            print(
                f"{backend} {size:>9,} old jobs + events (filled in {seconds:.0f} s): {line}",
                flush=True,
            )
        for line in await plans(engine):
            print(line)
    finally:
        await engine.dispose()
        if backend == "postgres":
            drop_pg_database(url)


def main() -> None:
    """Run the benchmark on each backend."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000,1000000")
    parser.add_argument("--backend", default="sqlite,postgres")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument(
        "--try-index",
        action="store_true",
        help="the indexes this benchmark suggests (see PROPOSED_INDEX)",
    )
    args = parser.parse_args()
    print(machine_line(), flush=True)
    sizes = [int(size) for size in args.rows.split(",")]
    window = WINDOW / timedelta(minutes=1)
    print(f"window {window:g} min; target ≤ {TARGET_SELECTION_MS:g} ms per selection")
    with Scratch() as work:
        for backend in args.backend.split(","):
            asyncio.run(run_backend(backend, sizes, args.calls, work, try_index=args.try_index))


if __name__ == "__main__":
    main()
