"""/v1/google-flow/videos… (contract §6)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from flowgate.api.body import read_fields
from flowgate.api.deps import CallerDep, RuntimeDep

router = APIRouter(tags=["videos"])


def _is_form(request: Request) -> bool:
    return not request.headers.get("content-type", "").startswith("application/json")


@router.post("/videos", summary="Generate videos with Veo (sync, or async with 201)")
async def generate_videos(request: Request, runtime: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """Sync: 200 when the clips are stored (408 after the polling limit). Async: 201 job."""
    fields, _ = await read_fields(request, runtime.settings.max_json_bytes)
    status, body = await runtime.videos.generate(caller, fields, form=_is_form(request))
    return JSONResponse(body, status_code=status)


@router.post("/videos/extend", summary="Extend a video by 8 seconds")
async def extend_video(request: Request, runtime: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """As POST /videos, from the end of a stored clip."""
    fields, _ = await read_fields(request, runtime.settings.max_json_bytes)
    status, body = await runtime.videos.extend(caller, fields, form=_is_form(request))
    return JSONResponse(body, status_code=status)


@router.post("/videos/concatenate", summary="Join 2-10 videos (ffmpeg)")
async def concatenate_videos(
    request: Request, runtime: RuntimeDep, caller: CallerDep
) -> dict[str, Any]:
    """``{media: [{mediaGenerationId, trimStart, trimEnd}]}`` → ``encodedVideo``."""
    fields, _ = await read_fields(request, runtime.settings.max_json_bytes)
    return await runtime.videos.concatenate(caller, fields)


@router.post("/videos/gif", summary="A GIF of a video")
async def video_gif(request: Request, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """``{mediaGenerationId}`` → ``encodedGif``."""
    fields, _ = await read_fields(request, runtime.settings.max_json_bytes)
    return await runtime.videos.gif(caller, fields)


@router.post("/videos/upscale", summary="Upscale a video to 1080p or 4K")
async def upscale_video(request: Request, runtime: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """Lanczos with ffmpeg; a repeat returns the stored result as ``rawBytes``."""
    fields, _ = await read_fields(request, runtime.settings.max_json_bytes)
    status, body = await runtime.videos.upscale(caller, fields, form=_is_form(request))
    return JSONResponse(body, status_code=status)
