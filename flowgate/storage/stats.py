"""Queries behind the 15-minute statistics (scores and GET /jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from flowgate.storage.models import Job, JobEvent

RUNNING = ("created", "started")


@dataclass(frozen=True)
class EventCounts:
    """Finished attempts of one account (and kind) in the window."""

    completed: int = 0
    failed: int = 0
    rate_limited: int = 0
    total_ms: int = 0


async def event_counts(
    session: AsyncSession, user_id: int, since: datetime
) -> dict[tuple[str, str], EventCounts]:
    """``(email, kind) → counts`` over job events finished since ``since``."""
    status = JobEvent.http_status
    rows = await session.execute(
        select(
            JobEvent.account_email,
            JobEvent.kind,
            func.sum(case((status < 400, 1), else_=0)),
            func.sum(case((status == 429, 1), else_=0)),
            func.sum(case(((status >= 400) & (status != 429), 1), else_=0)),
            func.sum(case((status < 400, JobEvent.response_ms), else_=0)),
        )
        .where(JobEvent.user_id == user_id, JobEvent.finished_at >= since)
        .group_by(JobEvent.account_email, JobEvent.kind)
    )
    return {
        (email, kind): EventCounts(int(ok or 0), int(failed or 0), int(limited or 0), int(ms or 0))
        for email, kind, ok, limited, failed, ms in rows.all()
    }


async def executing_counts(session: AsyncSession, user_id: int) -> dict[tuple[str, str], int]:
    """``(email, kind) → running jobs`` (every instance's, from the database)."""
    rows = await session.execute(
        select(Job.account_email, Job.kind, func.count())
        .where(Job.user_id == user_id, Job.status.in_(RUNNING), Job.account_email.is_not(None))
        .group_by(Job.account_email, Job.kind)
    )
    return {(email, kind): int(n) for email, kind, n in rows.all()}


async def running_jobs(session: AsyncSession, user_id: int) -> list[Job]:
    """The user's running jobs."""
    rows = await session.scalars(select(Job).where(Job.user_id == user_id, Job.status.in_(RUNNING)))
    # Sorted here: an ORDER BY created_at lets SQLite walk every job of the user by date.
    return sorted(rows.all(), key=lambda job: job.created_at)


async def recent_events(
    session: AsyncSession, user_id: int, since: datetime, limit: int
) -> list[JobEvent]:
    """The newest finished attempts since ``since``."""
    rows = await session.scalars(
        select(JobEvent)
        .where(JobEvent.user_id == user_id, JobEvent.finished_at >= since)
        .order_by(JobEvent.finished_at.desc())
        .limit(limit)
    )
    return list(rows.all())
