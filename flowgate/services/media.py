"""Keeping media: store bytes with their metadata, sign URLs, serve downloads."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.domain.errors import Forbidden, InvalidRequest, NotFound
from flowgate.domain.ids import is_internal_media_id, new_media_id
from flowgate.domain.signing import signature_valid, signed_media_url
from flowgate.media import video as ffmpeg
from flowgate.services.users import Caller
from flowgate.storage import listings, media_rows
from flowgate.storage.media_store import MediaStore
from flowgate.storage.models import Media
from flowgate.storage.write_queue import WriteQueue
from flowgate.storage.writes import insert_row, together


@dataclass(frozen=True)
class Download:
    """A file ready to be served."""

    path: Path
    mime: str
    filename: str


@dataclass(frozen=True)
class MediaPage:
    """One page of :meth:`MediaService.list_media`; ``next_before`` is None on the last page."""

    items: list[Media]
    next_before: str | None


MEDIA_KINDS = ("image", "video")
MAX_MEDIA_PAGE = 200

_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "image/gif": "gif",
}


def thumbnail_id(video_media_id: str) -> str:
    """The media id of a video's first-frame JPEG (``servingBaseUri``)."""
    return f"{video_media_id}-thumb"


class MediaService:
    """The media store plus its metadata rows and signed links."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writes: WriteQueue,
        store: MediaStore,
        *,
        secret: str,
        public_url: str,
        url_ttl_seconds: int,
    ) -> None:
        self._sessions = sessions
        self._writes = writes
        self.store = store
        self._secret = secret
        self._public_url = public_url
        self._ttl = url_ttl_seconds

    @staticmethod
    def values(
        *,
        user_id: int,
        data: bytes,
        kind: str,
        source: str,
        mime: str,
        digest: str,
        width: int | None = None,
        height: int | None = None,
        account_email: str | None = None,
        model: str | None = None,
        job_id: str | None = None,
        extra: dict[str, Any] | None = None,
        media_id: str | None = None,
        upscale_of: str | None = None,
        upscale_resolution: str | None = None,
    ) -> dict[str, Any]:
        """The column values of the metadata row of bytes already stored under ``digest``.

        For :func:`~flowgate.storage.writes.insert_values`: on the image path an ORM
        object would be built only to be read back (its attribute events cost more than
        the INSERT's Python side).
        """
        return {
            "id": media_id or new_media_id(),
            "user_id": user_id,
            "account_email": account_email,
            "kind": kind,
            "source": source,
            "mime": mime,
            "size": len(data),
            "width": width,
            "height": height,
            "sha256": digest,
            "model": model,
            "job_id": job_id,
            "extra": extra or {},
            "upscale_of": upscale_of,
            "upscale_resolution": upscale_resolution,
            "created_at": datetime.now(UTC),
        }

    @staticmethod
    def row(**fields: Any) -> Media:
        """The metadata row (not yet written) of :meth:`values`' ``fields``."""
        return Media(**MediaService.values(**fields))

    async def insert(self, *rows: Media) -> None:
        """Commit metadata rows (their files were stored first with :meth:`put`)."""
        await self._writes.run(together(*(insert_row(row) for row in rows)))

    async def put(self, data: bytes) -> str:
        """Store bytes durably (outside any transaction); their SHA-256."""
        return await self.store.put(data)

    async def save_video(
        self,
        *,
        user_id: int,
        job_id: str,
        model: str | None,
        data: bytes,
        account_email: str | None,
        source: str,
        extra: dict[str, Any],
        upscale_of: str | None = None,
        upscale_resolution: str | None = None,
    ) -> Media:
        """Keep an MP4 and its first-frame JPEG (``servingBaseUri``) in one transaction."""
        info = await ffmpeg.probe(data)
        thumb = await ffmpeg.first_frame_jpeg(data, max_side=640)
        video_digest, thumb_digest = await asyncio.gather(self.put(data), self.put(thumb))
        row = self.row(
            user_id=user_id,
            data=data,
            kind="video",
            source=source,
            mime="video/mp4",
            width=info.width,
            height=info.height,
            account_email=account_email,
            model=model,
            job_id=job_id,
            extra={**extra, "duration": info.duration_seconds},
            upscale_of=upscale_of,
            upscale_resolution=upscale_resolution,
            digest=video_digest,
        )
        thumb_row = self.row(
            user_id=user_id,
            data=thumb,
            kind="image",
            source="derived",
            mime="image/jpeg",
            account_email=account_email,
            job_id=job_id,
            media_id=thumbnail_id(row.id),
            extra={"thumbnailOf": row.id},
            digest=thumb_digest,
        )
        await self.insert(row, thumb_row)
        return row

    def signed_url(self, media_id: str, *, now: float | None = None) -> str:
        """A link that downloads the file until it expires (default 24 h)."""
        expires_at = int((now or time.time()) + self._ttl)
        return signed_media_url(self._public_url, self._secret, media_id, expires_at)

    def refresh_links(self, value: Any) -> Any:
        """A copy of a stored response with every ``fifeUrl`` signed afresh.

        Records keep media ids, not links: links expire, records do not.
        """
        if isinstance(value, list):
            return [self.refresh_links(item) for item in value]
        if not isinstance(value, dict):
            return value
        copy = {key: self.refresh_links(item) for key, item in value.items()}
        if "fifeUrl" in copy and isinstance(copy.get("mediaGenerationId"), str):
            media_id = copy["mediaGenerationId"].rsplit(":", 1)[-1]
            if is_internal_media_id(media_id):
                copy["fifeUrl"] = self.signed_url(media_id)
                if "servingBaseUri" in copy:  # a video: its first-frame JPEG
                    copy["servingBaseUri"] = self.signed_url(thumbnail_id(media_id))
        return copy

    async def owned(self, user_id: int, media_id: str) -> Media:
        """The user's media row; another user's or unknown media is 404 alike."""
        if not is_internal_media_id(media_id):
            raise NotFound("media not found")
        async with self._sessions() as session:
            row = await media_rows.media_by_id(session, media_id)
        if row is None or row.user_id != user_id:
            raise NotFound("media not found")
        return row

    async def download(self, media_id: str, exp: str | None, sig: str | None) -> Download:
        """Check the signature and expiry, then locate the file (403 if bad, 404 if gone)."""
        if not is_internal_media_id(media_id) or not exp or not sig or not exp.isdigit():
            raise Forbidden("Invalid or expired media link")
        if not signature_valid(self._secret, media_id, int(exp), sig, time.time()):
            raise Forbidden("Invalid or expired media link")
        async with self._sessions() as session:
            row = await media_rows.media_by_id(session, media_id)
        if row is None or not self.store.exists(row.sha256):
            raise NotFound("media not found")
        ext = _EXTENSIONS.get(row.mime, "bin")
        return Download(self.store.path_for(row.sha256), row.mime, f"{media_id}.{ext}")

    async def list_media(
        self,
        caller: Caller,
        *,
        kind: str | None = None,
        limit: int = 60,
        before: str | None = None,
    ) -> MediaPage:
        """The caller's uploads and outputs, newest first; ``before`` is the last id shown."""
        if kind and kind not in MEDIA_KINDS:
            raise InvalidRequest(f"kind must be image or video (got {kind!r})")
        if not 1 <= limit <= MAX_MEDIA_PAGE:
            raise InvalidRequest(f"limit must be 1-{MAX_MEDIA_PAGE} (got {limit})")
        anchor = await self.owned(caller.user_id, before) if before else None
        async with self._sessions() as session:
            rows = await listings.media_page(
                session, caller.user_id, kind=kind or None, limit=limit + 1, before=anchor
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return MediaPage(rows, rows[-1].id if more else None)

    async def owned_download(self, caller: Caller, media_id: str) -> Download:
        """The caller's own file without a signed link (the dashboard's session is the proof)."""
        row = await self.owned(caller.user_id, media_id)
        if not self.store.exists(row.sha256):
            raise NotFound("media not found")
        ext = _EXTENSIONS.get(row.mime, "bin")
        return Download(self.store.path_for(row.sha256), row.mime, f"{media_id}.{ext}")
