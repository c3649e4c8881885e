"""The task API of seed 003: ``x-api-key`` auth and ``{"code", "message", "data"}`` bodies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.responses import JSONResponse

from flowgate.api.body import read_fields
from flowgate.api.deps import RuntimeDep, TokenCaller
from flowgate.api.errors import route_class_rendering
from flowgate.domain.errors import FlowgateError
from flowgate.services.users import Caller

# flowgate's statuses in the seed's code vocabulary (400 validation → 422).
_CODES = {400: 422, 401: 401, 402: 402, 403: 404, 404: 404, 408: 500, 410: 404, 429: 429}


def task_error(exc: FlowgateError) -> JSONResponse:
    """``{"code", "message", "data": null}`` with the HTTP status equal to ``code``."""
    code = _CODES.get(exc.status, 500)
    return JSONResponse(
        {"code": code, "message": exc.message, "data": None},
        status_code=code,
        headers=exc.headers(),
    )


def ok(data: Any) -> dict[str, Any]:
    """A success body."""
    return {"code": 200, "message": "success", "data": data}


task_caller = TokenCaller(
    APIKey(**{"in": APIKeyIn.header}, name="x-api-key", description="A flowgate API token"),
    "x-api-key",
    header="x-api-key",
)
TaskCaller = Annotated[Caller, Depends(task_caller)]
router = APIRouter(
    prefix="/api/v1/client", tags=["tasks"], route_class=route_class_rendering(task_error)
)


@router.post("/job/CreateTask", summary="Create an image task")
async def create_task(request: Request, runtime: RuntimeDep, caller: TaskCaller) -> dict[str, Any]:
    """``{model, input: {prompt, aspect_ratio, output_format, image_urls}, callback_url}``."""
    fields, _ = await read_fields(request, runtime.settings.max_json_bytes)
    return ok(await runtime.task_api.create(caller, fields))


@router.get("/job/TaskInfo", summary="A task's status and result")
async def task_info(
    runtime: RuntimeDep, caller: TaskCaller, task_id: str | None = None
) -> dict[str, Any]:
    """Statuses pending | running | success | failed; ``result.media_urls`` when done."""
    return ok(await runtime.task_api.info(caller, task_id))


@router.get("/account/balance", summary="The credit balance")
async def balance(runtime: RuntimeDep, caller: TaskCaller) -> dict[str, Any]:
    """``{"balance": N}``; ``null`` with ``unlimited: true`` when no balance is set."""
    return ok(await runtime.task_api.balance(caller))
