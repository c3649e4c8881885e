"""The quarantine store: entries in the database, shared by every instance."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from flowgate.storage.models import QuarantineEntry


async def active_entries(
    session: AsyncSession, user_id: int, now: datetime
) -> list[QuarantineEntry]:
    """The user's entries that have not expired."""
    rows = await session.scalars(
        select(QuarantineEntry).where(
            QuarantineEntry.user_id == user_id, QuarantineEntry.until > now
        )
    )
    return list(rows.all())


async def put_entry(
    session: AsyncSession,
    *,
    user_id: int,
    account_id: int,
    account_email: str,
    model: str,
    reason: str,
    until: datetime,
) -> None:
    """Insert or replace the entry for (account, model); a later ``until`` never shrinks."""
    existing = await session.scalar(
        select(QuarantineEntry).where(
            QuarantineEntry.account_id == account_id, QuarantineEntry.model == model
        )
    )
    if existing is None:
        session.add(
            QuarantineEntry(
                user_id=user_id,
                account_id=account_id,
                account_email=account_email,
                model=model,
                reason=reason,
                until=until,
            )
        )
        return
    if existing.until < until:
        existing.until = until
        existing.reason = reason


async def clear_account(session: AsyncSession, account_id: int) -> None:
    """Remove every entry of an account (e.g. after it is re-added)."""
    await session.execute(delete(QuarantineEntry).where(QuarantineEntry.account_id == account_id))
