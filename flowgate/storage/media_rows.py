"""Queries on media metadata rows."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from flowgate.storage.models import Media


async def media_by_id(session: AsyncSession, media_id: str) -> Media | None:
    """The media row with this internal id."""
    return await session.get(Media, media_id)
