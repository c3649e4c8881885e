"""Listing queries behind the dashboard: a user's jobs, media and webhook deliveries.

Pages are keyset-paginated on ``(created_at, id)`` (newest first), so a page stays
correct while new rows arrive and costs the same at any depth.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from flowgate.storage.models import Job, Media, WebhookDelivery


async def jobs_page(
    session: AsyncSession,
    user_id: int,
    *,
    status: str | None,
    kind: str | None,
    model: str | None,
    limit: int,
    before: Job | None,
) -> list[Job]:
    """The user's jobs, newest first, matching the filters, older than ``before``."""
    query = select(Job).where(Job.user_id == user_id, Job.purged.is_(False))
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if model is not None:
        query = query.where(Job.model == model)
    if before is not None:
        query = query.where(
            or_(
                Job.created_at < before.created_at,
                and_(Job.created_at == before.created_at, Job.id < before.id),
            )
        )
    rows = await session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit))
    return list(rows.all())


async def job_of_user(session: AsyncSession, user_id: int, job_id: str) -> Job | None:
    """The job if it exists, is not purged and belongs to ``user_id``."""
    job = await session.get(Job, job_id)
    if job is None or job.user_id != user_id or job.purged:
        return None
    return job


async def job_models(session: AsyncSession, user_id: int) -> list[str]:
    """The distinct models the user's jobs used (for a filter list)."""
    rows = await session.scalars(
        select(Job.model).where(Job.user_id == user_id, Job.model.is_not(None)).distinct()
    )
    return sorted(str(m) for m in rows.all())


async def media_of_jobs(
    session: AsyncSession, user_id: int, job_ids: Sequence[str]
) -> dict[str, list[Media]]:
    """``job id → its outputs`` (in creation order) for the user's jobs."""
    if not job_ids:
        return {}
    rows = await session.scalars(
        select(Media)
        .where(Media.user_id == user_id, Media.job_id.in_(list(job_ids)))
        .order_by(Media.created_at, Media.id)
    )
    found: dict[str, list[Media]] = {}
    for row in rows.all():
        found.setdefault(str(row.job_id), []).append(row)
    return found


async def media_by_ids(session: AsyncSession, user_id: int, ids: Sequence[str]) -> list[Media]:
    """The user's media rows among ``ids``."""
    if not ids:
        return []
    rows = await session.scalars(
        select(Media).where(Media.user_id == user_id, Media.id.in_(list(ids)))
    )
    return list(rows.all())


async def deliveries_of_job(
    session: AsyncSession, user_id: int, job_id: str
) -> list[WebhookDelivery]:
    """The webhook deliveries of one of the user's jobs, in posting order."""
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.user_id == user_id, WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.seq)
    )
    return list(rows.all())


async def media_page(
    session: AsyncSession,
    user_id: int,
    *,
    kind: str | None,
    limit: int,
    before: Media | None,
) -> list[Media]:
    """The user's media, newest first, of ``kind`` if given, older than ``before``."""
    query = select(Media).where(Media.user_id == user_id)
    if kind is not None:
        query = query.where(Media.kind == kind)
    if before is not None:
        query = query.where(
            or_(
                Media.created_at < before.created_at,
                and_(Media.created_at == before.created_at, Media.id < before.id),
            )
        )
    rows = await session.scalars(
        query.order_by(Media.created_at.desc(), Media.id.desc()).limit(limit)
    )
    return list(rows.all())
