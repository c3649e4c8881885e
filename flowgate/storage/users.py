"""Queries on users and API tokens."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from flowgate.storage.models import ApiToken, User


async def count_users(session: AsyncSession) -> int:
    """Number of users."""
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def user_by_name(session: AsyncSession, name: str) -> User | None:
    """The user called ``name``."""
    return await session.scalar(select(User).where(User.name == name))


async def user_by_id(session: AsyncSession, user_id: int) -> User | None:
    """The user with this id."""
    return await session.get(User, user_id)


async def token_with_user(session: AsyncSession, token_hash: str) -> tuple[ApiToken, User] | None:
    """The live token with this hash and its user."""
    row = (
        await session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == token_hash, ApiToken.revoked.is_(False))
        )
    ).first()
    return (row[0], row[1]) if row else None


async def all_users(session: AsyncSession) -> list[User]:
    """Every user, oldest first."""
    return list((await session.scalars(select(User).order_by(User.id))).all())
