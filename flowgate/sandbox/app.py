"""The sandbox ASGI app: an imitation of the Gemini REST API (``/v1beta/...``).

All routes are relative, so the app works standalone (``flowgate.sandbox.server``)
and mounted inside flowgate (``/sandbox/gemini``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowgate.sandbox.api_keys import api_key_of, check_api_key
from flowgate.sandbox.call_log import CallLog
from flowgate.sandbox.catalogue import KNOWN_ACTIONS, MODELS_BY_ID, SANDBOX_MODELS, SandboxModel
from flowgate.sandbox.config import SandboxConfig
from flowgate.sandbox.directives import (
    Directives,
    error_for_fault,
    parse_directives,
    strip_directives,
)
from flowgate.sandbox.drawing import draw_fixed_picture
from flowgate.sandbox.generate_content import (
    blocked_image_response,
    blocked_prompt_response,
    parse_generate_content,
    render_generate_content,
)
from flowgate.sandbox.google_errors import (
    GoogleApiError,
    invalid_argument,
    not_found,
    unimplemented,
)
from flowgate.sandbox.imagen_predict import (
    filtered_predict_response,
    parse_predict,
    render_predict,
)

SANDBOX_HEADER = (b"x-flowgate-sandbox", b"1")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000  # Google's own cap; SandboxConfig.max_page_size may lower it


@dataclass
class SandboxState:
    """What one sandbox app keeps between requests."""

    config: SandboxConfig
    calls: CallLog
    # Benchmark mode: one pre-rendered picture per output format ("PNG", "JPEG").
    fixed_pictures: dict[str, bytes] | None


class SandboxLabelMiddleware:
    """Adds ``x-flowgate-sandbox: 1`` to every response (plain ASGI: no per-request cost)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_labelled(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), SANDBOX_HEADER]}
            await send(message)

        await self.app(scope, receive, send_labelled)


def create_sandbox_app(config: SandboxConfig | None = None) -> FastAPI:
    """Build a sandbox app; each app has its own call log."""
    config = config or SandboxConfig()
    fixed = (
        {"PNG": draw_fixed_picture("PNG"), "JPEG": draw_fixed_picture("JPEG")}
        if config.fixed_image
        else None
    )
    state = SandboxState(config=config, calls=CallLog(config.call_log_size), fixed_pictures=fixed)

    app = FastAPI(
        title="flowgate sandbox (imitation Gemini API)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.sandbox = state
    app.add_middleware(SandboxLabelMiddleware)

    async def http_error(request: Request, exc: Exception) -> Response:
        # Unknown paths and wrong HTTP methods: Google answers 404 for both.
        del request
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        error = not_found("Method not found.") if status in (404, 405) else None
        if error is None:
            error = GoogleApiError(status, "UNKNOWN", str(exc))
        return JSONResponse(error.body(), status_code=error.http_status)

    app.add_exception_handler(StarletteHTTPException, http_error)

    async def answer(
        request: Request,
        *,
        model: str | None,
        method: str,
        work: Callable[[], Awaitable[dict[str, Any]]],
    ) -> JSONResponse:
        """Check the key, run ``work``, render a Google error on failure, log the call."""
        key = api_key_of(request)
        try:
            check_api_key(key)
            body, status = await work(), 200
        except GoogleApiError as error:
            body, status = error.body(), error.http_status
        state.calls.record(key=key, model=model, method=method, status=status)
        return JSONResponse(body, status_code=status)

    @app.get("/")
    async def about() -> dict[str, Any]:
        """What this is, for someone who opens the base URL in a browser."""
        return {
            "sandbox": True,
            "description": "flowgate sandbox: an imitation of the Gemini API that draws "
            "deterministic test pictures. Not Google; no AI.",
            "models": "v1beta/models",
            "calls": "_sandbox/calls",
        }

    @app.get("/v1beta/models")
    async def list_models(request: Request) -> JSONResponse:
        """``models.list`` with ``pageSize`` / ``pageToken`` paging."""

        async def work() -> dict[str, Any]:
            page_size = min(
                _page_size(request.query_params.get("pageSize")), state.config.max_page_size
            )
            offset = _page_offset(request.query_params.get("pageToken"))
            page = SANDBOX_MODELS[offset : offset + page_size]
            body: dict[str, Any] = {"models": [model.listing() for model in page]}
            if offset + page_size < len(SANDBOX_MODELS):
                body["nextPageToken"] = _page_token(offset + page_size)
            return body

        return await answer(request, model=None, method="list", work=work)

    @app.get("/v1beta/models/{model_id}")
    async def get_model(model_id: str, request: Request) -> JSONResponse:
        """``models.get``."""

        async def work() -> dict[str, Any]:
            model = MODELS_BY_ID.get(model_id)
            if model is None:
                raise not_found(f"models/{model_id} is not found for API version v1beta.")
            return model.listing()

        return await answer(request, model=model_id, method="get", work=work)

    @app.post("/v1beta/models/{model_action}")
    async def model_action(model_action: str, request: Request) -> JSONResponse:
        """``models/{id}:{action}``; FastAPI cannot route on ``:``, so split it here."""
        model_id, colon, action = model_action.rpartition(":")
        if not colon:
            model_id, action = model_action, ""

        async def work() -> dict[str, Any]:
            model = _model_for_action(model_id, action)
            if action == "generateContent":
                return await _generate_content(state, model, request)
            if action == "predict":
                return await _predict(state, model, request)
            raise unimplemented(f"The sandbox does not implement {action} yet.")

        return await answer(request, model=model_id, method=action, work=work)

    @app.get("/_sandbox/calls")
    async def list_calls() -> dict[str, Any]:
        """The call log, oldest first (a test tool, not part of the Gemini API)."""
        return {"calls": state.calls.as_json()}

    @app.delete("/_sandbox/calls")
    async def clear_calls() -> dict[str, Any]:
        """Empty the call log."""
        state.calls.clear()
        return {"calls": []}

    return app


def _model_for_action(model_id: str, action: str) -> SandboxModel:
    if action not in KNOWN_ACTIONS:
        raise not_found("Method not found.")
    model = MODELS_BY_ID.get(model_id)
    if model is None:
        raise not_found(
            f"models/{model_id} is not found for API version v1beta, or is not supported for "
            f"{action}. Call ListModels to see the list of available models and their "
            "supported methods."
        )
    if action not in model.methods:
        raise invalid_argument(
            f"models/{model_id} does not support {action}. Call ListModels to see the list of "
            "available models and their supported methods."
        )
    return model


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise invalid_argument("Invalid JSON payload received. Unexpected token.") from None


async def _admit(state: SandboxState, model: SandboxModel, directives: Directives) -> None:
    """Wait the asked latency, then raise the fault the prompt asked for, if any.

    This is the one place every generation passes before drawing; per-key quotas
    (see :class:`SandboxConfig`) belong here too.
    """
    delay_ms = max(state.config.default_delay_ms, directives.delay_ms)
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    error = error_for_fault(directives, model.model_id)
    if error is not None:
        raise error


async def _generate_content(
    state: SandboxState, model: SandboxModel, request: Request
) -> dict[str, Any]:
    parsed = parse_generate_content(model, await _json_body(request))
    directives = parse_directives(parsed.prompt)
    await _admit(state, model, directives)
    if directives.fault == "unsafe":
        return blocked_prompt_response(model, parsed)
    if directives.fault == "unsafe-image":
        return blocked_image_response(model, parsed)
    display_prompt = strip_directives(parsed.prompt)
    fixed_png = state.fixed_pictures["PNG"] if state.fixed_pictures else None
    if fixed_png is not None and not parsed.references:
        # Nothing to decode or draw: a thread hop would cost more than the work.
        return render_generate_content(model, parsed, display_prompt, fixed_png)
    return await asyncio.to_thread(
        render_generate_content, model, parsed, display_prompt, fixed_png
    )


async def _predict(state: SandboxState, model: SandboxModel, request: Request) -> dict[str, Any]:
    parsed = parse_predict(model, await _json_body(request))
    directives = parse_directives(parsed.prompt)
    await _admit(state, model, directives)
    if directives.fault == "unsafe" or (
        directives.fault == "unsafe-image" and parsed.sample_count == 1
    ):
        return filtered_predict_response(parsed)
    filter_first = directives.fault == "unsafe-image"
    display_prompt = strip_directives(parsed.prompt)
    if state.fixed_pictures is not None:
        return render_predict(
            model, parsed, display_prompt, state.fixed_pictures, filter_first=filter_first
        )
    return await asyncio.to_thread(
        render_predict, model, parsed, display_prompt, None, filter_first=filter_first
    )


def _page_size(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(value)
    except ValueError:
        raise invalid_argument(
            f"Invalid value at 'page_size' (TYPE_INT32), \"{value[:40]}\""
        ) from None
    if size < 0:
        raise invalid_argument("page_size must not be negative.")
    # Google treats 0 as "the default" and clamps large sizes to its maximum.
    return min(size, MAX_PAGE_SIZE) if size else DEFAULT_PAGE_SIZE


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        prefix, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        offset = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid_argument("Invalid page token.") from None
    if prefix != "offset" or offset < 0:
        raise invalid_argument("Invalid page token.")
    return offset
