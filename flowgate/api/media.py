"""GET /media/{id}: signed, expiring downloads (with Range support for videos)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from flowgate.api.deps import RuntimeDep

router = APIRouter(tags=["media"])


# One route per method, so each has its own operationId in /openapi.json.
@router.get("/media/{media_id}", summary="Download a stored file")
@router.head("/media/{media_id}", summary="Download a stored file")
async def get_media(
    media_id: str, runtime: RuntimeDep, exp: str | None = None, sig: str | None = None
) -> FileResponse:
    """403 for a bad or expired signature, 404 when the file is gone."""
    found = await runtime.media.download(media_id, exp, sig)
    return FileResponse(
        found.path,
        media_type=found.mime,
        filename=found.filename,
        content_disposition_type="inline",
        headers={"Cache-Control": "private, max-age=3600"},
    )
