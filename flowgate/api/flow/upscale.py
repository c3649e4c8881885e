"""/v1/google-flow/images/upscale (contract §5 C2)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flowgate.api.body import read_text_fields
from flowgate.api.deps import CallerDep, RuntimeDep
from flowgate.api.response_schemas import BASE64, IMAGE_ID, json_response, response_object

router = APIRouter(tags=["images"])

_UPSCALE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["mediaGenerationId"],
                    "properties": {
                        "mediaGenerationId": {"type": "string"},
                        "resolution": {"type": "string", "enum": ["2k", "4k"], "default": "2k"},
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


_UPSCALE_200 = json_response(
    200,
    response_object(
        {
            "encodedImage": {**BASE64, "description": "The upscaled JPEG, base64"},
            "upscaler": {
                "type": "string",
                "description": "flowgate's addition: nano-banana-pro (upstream) or lanczos (local)",
            },
            "mediaGenerationId": {
                **IMAGE_ID,
                "description": "flowgate's addition: the stored result (usable as reference_N)",
            },
        },
        required=["encodedImage", "upscaler", "mediaGenerationId"],
    ),
    "The upscaled image",
)


@router.post(
    "/images/upscale",
    openapi_extra=_UPSCALE_BODY,
    responses=_UPSCALE_200,
    summary="Upscale an image to 2K/4K",
)
async def upscale_image(request: Request, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """JSON or multipart/form-data; answers ``encodedImage`` (base64 JPEG), ``upscaler``, id."""
    fields = await read_text_fields(
        request,
        runtime.settings.max_json_bytes,
        instead="send the mediaGenerationId of an image made by POST /images",
    )
    form = not request.headers.get("content-type", "").startswith("application/json")
    return await runtime.upscale.upscale(caller, fields, form=form)
