"""Characters: named bundles of 1-2 reference images, usable as ``character_N``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.domain.errors import InvalidRequest, NotFound
from flowgate.domain.ids import ParsedMediaId, parse_media_generation_id
from flowgate.services.users import Caller
from flowgate.storage import media_rows
from flowgate.storage.models import Character

_CHARACTER_RE = re.compile(r"^character:(?P<uid>\d+)-(?P<id>[0-9a-f]{32})$")
MAX_IMAGES = 2
_FIELDS = {"name", "images", "reference_1", "reference_2"}


def character_id(user_id: int, internal_id: str) -> str:
    """The public id: ``character:{uid}-{hex}``."""
    return f"character:{user_id}-{internal_id}"


class CharacterService:
    """Create, list, read and delete characters; resolve them for generation."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    def _render(self, row: Character) -> dict[str, Any]:
        return {
            "characterId": character_id(row.user_id, row.id),
            "name": row.name,
            "images": list(row.media_ids),
            "created": row.created_at.astimezone(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }

    async def create(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /characters ``{"name", "images": [id, id?]}`` (or ``reference_1/2``)."""
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown field(s): {', '.join(unknown)}; send name and images "
                "(a list of 1-2 image mediaGenerationIds)"
            )
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidRequest("name is required: a string of 1-200 characters")
        images = body.get("images")
        if images is None:
            images = [body[k] for k in ("reference_1", "reference_2") if body.get(k)]
        if isinstance(images, str):
            images = [images]
        if not isinstance(images, list) or not 1 <= len(images) <= MAX_IMAGES:
            raise InvalidRequest("images must be a list of 1 or 2 image mediaGenerationIds")
        parsed = [
            parse_media_generation_id(v, field="images")
            if isinstance(v, str)
            else parse_media_generation_id("", field="images")
            for v in images
        ]
        async with self._sessions.begin() as session:
            for ref in parsed:
                await self._check_owned(session, caller, ref)
            row = Character(
                id=uuid.uuid4().hex,
                user_id=caller.user_id,
                name=name.strip(),
                media_ids=list(images),
            )
            session.add(row)
            await session.flush()
            return self._render(row)

    async def _check_owned(self, session: AsyncSession, caller: Caller, ref: ParsedMediaId) -> None:
        if ref.kind != "image":
            raise InvalidRequest("images must be image mediaGenerationIds, got a video")
        row = await media_rows.media_by_id(session, ref.media_id)
        if ref.user_id != caller.user_id or row is None or row.user_id != caller.user_id:
            raise NotFound("image not found (it must be one of your uploads or generated images)")

    async def _row(self, session: AsyncSession, caller: Caller, public_id: str) -> Character:
        match = _CHARACTER_RE.match(public_id)
        row = await session.get(Character, match["id"]) if match else None
        if row is None or row.user_id != caller.user_id:
            raise NotFound(f"Character {public_id} not found")
        return row

    async def list_all(self, caller: Caller) -> dict[str, Any]:
        """GET /characters."""
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(Character)
                    .where(Character.user_id == caller.user_id)
                    .order_by(Character.created_at)
                )
            ).all()
        return {"characters": [self._render(r) for r in rows]}

    async def get(self, caller: Caller, public_id: str) -> dict[str, Any]:
        """GET /characters/{id}."""
        async with self._sessions() as session:
            return self._render(await self._row(session, caller, public_id))

    async def delete(self, caller: Caller, public_id: str) -> dict[str, str]:
        """DELETE /characters/{id}."""
        async with self._sessions.begin() as session:
            row = await self._row(session, caller, public_id)
            await session.delete(row)
        return {"message": f"Character {public_id} deleted"}

    async def media_ids(self, caller: Caller, public_id: str, *, field: str) -> list[ParsedMediaId]:
        """The images of a character used as ``field`` (404 when not the caller's)."""
        async with self._sessions() as session:
            try:
                row = await self._row(session, caller, public_id)
            except NotFound:
                raise NotFound(f"{field}: character {public_id} not found") from None
        return [parse_media_generation_id(v, field=field) for v in row.media_ids]
