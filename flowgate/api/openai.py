"""OpenAI-compatible Images API: /v1/images/generations, /v1/images/edits, /v1/models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from flowgate.api.body import check_text, read_fields
from flowgate.api.deps import CallerDep, RuntimeDep
from flowgate.api.errors import route_class_rendering
from flowgate.domain.errors import FlowgateError, http_status_for_code

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout",
    429: "rate_limit_exceeded",
}
_CODES = {
    401: "invalid_api_key",
    402: "insufficient_quota",
    404: "not_found",
    429: "rate_limit_exceeded",
}


def openai_error(exc: FlowgateError) -> JSONResponse:
    """flowgate's error in OpenAI's envelope ``{"error": {"message", "type", "code"}}``."""
    status = exc.status if 400 <= exc.status <= 599 else http_status_for_code(exc.status)
    body = {
        "error": {
            "message": exc.message,
            "type": _TYPES.get(status, "server_error"),
            "code": _CODES.get(status),
            "param": None,
        }
    }
    return JSONResponse(body, status_code=status, headers=exc.headers())


router = APIRouter(prefix="/v1", tags=["openai"], route_class=route_class_rendering(openai_error))


@router.post("/images/generations", summary="OpenAI-compatible image generation")
async def generations(request: Request, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """``model`` (a flowgate image model), ``prompt``, ``n`` 1-4, ``size``, ``response_format``."""
    fields, _ = await read_fields(request, runtime.settings.max_json_bytes)
    return await runtime.openai.generations(caller, fields)


@router.post("/images/edits", summary="OpenAI-compatible image edits (images as references)")
async def edits(request: Request, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """Multipart: ``image`` / ``image[]`` files, ``prompt``, ``n``, ``size``, ``model``."""
    form = await request.form(max_files=20, max_fields=50)
    fields: dict[str, Any] = {}
    files: list[tuple[str, UploadFile]] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            files.append((key, value))
        else:
            fields[key] = value
    check_text(fields)
    return await runtime.openai.edits(caller, fields, files)


@router.get("/models", summary="The image models (OpenAI format)")
async def models(runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """``{"object": "list", "data": [{"id", "object": "model", ...}]}``."""
    return runtime.openai.models()
