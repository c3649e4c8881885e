"""/v1/google-flow/assets and /images (contract §4, §5 C1)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flowgate.api.body import read_limited, read_text_fields
from flowgate.api.deps import CallerDep, RuntimeDep, runtime_of
from flowgate.api.response_schemas import (
    INTEGER,
    MEDIA_GENERATION_ID_OBJECT,
    MEDIA_LIST,
    job_id_schema,
    json_response,
    response_object,
)

router = APIRouter(tags=["images"])

_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["prompt"],
                    "properties": {
                        "prompt": {"type": "string"},
                        "model": {
                            "type": "string",
                            "enum": ["imagen-4", "nano-banana-2", "nano-banana", "nano-banana-pro"],
                        },
                        "aspectRatio": {
                            "type": "string",
                            "enum": [
                                "16:9",
                                "4:3",
                                "1:1",
                                "3:4",
                                "9:16",
                                "auto",
                                "landscape",
                                "portrait",
                            ],
                        },
                        "count": {"type": "integer", "minimum": 1, "maximum": 4},
                        "seed": {"type": "integer", "minimum": 0},
                        "email": {"type": "string"},
                        "replyUrl": {"type": "string"},
                        "replyRef": {"type": "string"},
                        **{f"reference_{n}": {"type": "string"} for n in range(1, 11)},
                        **{f"character_{n}": {"type": "string"} for n in range(1, 8)},
                        "captchaToken": {"type": "string"},
                        "captchaRetry": {"type": "integer", "minimum": 1, "maximum": 10},
                        "captchaOrder": {"type": "string"},
                    },
                }
            },
            "multipart/form-data": {"schema": {"type": "object"}},
        },
    }
}

_ASSET_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            mime: {"schema": {"type": "string", "format": "binary"}}
            for mime in ("image/png", "image/jpeg", "image/webp")
        },
    }
}


_ASSET_200 = json_response(
    200,
    response_object(
        {
            "mediaGenerationId": MEDIA_GENERATION_ID_OBJECT,
            "width": INTEGER,
            "height": INTEGER,
            "email": {
                "type": ["string", "null"],
                "description": "The account the upload is labelled with (null: none usable)",
            },
        },
        required=["mediaGenerationId", "width", "height", "email"],
        description="The stored upload; its id is nested one level (contract §4)",
    ),
    "Uploaded",
)
_IMAGES_200 = json_response(
    200,
    response_object(
        {"jobId": job_id_schema("image"), "media": MEDIA_LIST},
        required=["jobId", "media"],
        description="The images made, one media entry each (fewer than count when some failed)",
    ),
    "The images, stored",
)


async def _upload(request: Request, runtime: Any, caller: Any, email: str | None) -> dict[str, Any]:
    limit = runtime.settings.max_upload_bytes
    data = await read_limited(request, limit)
    return await runtime.images.upload(caller, data, request.headers.get("content-type"), email)


@router.post(
    "/assets",
    openapi_extra=_ASSET_BODY,
    responses=_ASSET_200,
    summary="Upload an image (raw bytes)",
)
async def upload_asset(request: Request, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """Raw PNG, JPEG or WebP bytes with their Content-Type, ≤ 20 MiB."""
    return await _upload(request, runtime, caller, None)


@router.post(
    "/assets/{email}",
    openapi_extra=_ASSET_BODY,
    responses=_ASSET_200,
    summary="Upload an image for an account",
)
async def upload_asset_for(
    email: str, request: Request, runtime: RuntimeDep, caller: CallerDep
) -> dict[str, Any]:
    """As POST /assets, labelled with the given account (404 if unknown)."""
    return await _upload(request, runtime, caller, email)


@router.post(
    "/images",
    openapi_extra=_IMAGE_BODY,
    responses=_IMAGES_200,
    summary="Generate images (sync)",
)
async def generate_images(request: Request, caller: CallerDep) -> dict[str, Any]:
    """JSON or multipart/form-data; answers when the images are stored."""
    runtime = runtime_of(request)  # not a dependency: each one costs on the busiest route
    fields = await read_text_fields(
        request,
        runtime.settings.max_json_bytes,
        instead="upload images with POST /assets and pass their mediaGenerationId as reference_N",
    )
    form = not request.headers.get("content-type", "").startswith("application/json")
    return await runtime.images.generate(caller, fields, form=form)
