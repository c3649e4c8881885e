"""Queries on upstream accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from flowgate.storage.models import Account


async def account_by_email(session: AsyncSession, user_id: int, email: str) -> Account | None:
    """The caller's account with this email."""
    return await session.scalar(
        select(Account).where(Account.user_id == user_id, Account.email == email)
    )


async def accounts_of(session: AsyncSession, user_id: int) -> list[Account]:
    """All accounts of one user, oldest first."""
    rows = await session.scalars(
        select(Account).where(Account.user_id == user_id).order_by(Account.id)
    )
    return list(rows.all())


async def accounts_due_for_check(session: AsyncSession, older_than: datetime) -> list[Account]:
    """Accounts whose last health check is older than ``older_than`` (or never ran)."""
    rows = await session.scalars(
        select(Account).where(
            or_(Account.health_checked_at.is_(None), Account.health_checked_at < older_than)
        )
    )
    return list(rows.all())


async def claim_health_check(
    session: AsyncSession, account_id: int, seen: datetime | None, now: datetime
) -> bool:
    """Compare-and-set the check time so only one instance checks an account per round."""
    condition = (
        Account.health_checked_at.is_(None) if seen is None else Account.health_checked_at == seen
    )
    result = await session.execute(
        update(Account).where(Account.id == account_id, condition).values(health_checked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
