"""The sandbox ASGI app: an imitation of the Gemini REST API (``/v1beta/...``).

All routes are relative, so the app works standalone (``flowgate.sandbox.server``)
and mounted inside flowgate (``/sandbox/gemini``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
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
from flowgate.sandbox.drawing import draw_fixed_picture, open_reference
from flowgate.sandbox.generate_content import (
    blocked_image_response,
    blocked_prompt_response,
    parse_generate_content,
    render_generate_content,
)
from flowgate.sandbox.google_errors import (
    BAD_IMAGE_MESSAGE,
    GoogleApiError,
    invalid_argument,
    not_found,
    permission_denied,
    unimplemented,
)
from flowgate.sandbox.imagen_predict import (
    filtered_predict_response,
    parse_predict,
    render_predict,
)
from flowgate.sandbox.quotas import QuotaBook, QuotaLease, parse_quota_body
from flowgate.sandbox.veo_operations import Outcome, SandboxFile, VeoStore
from flowgate.sandbox.veo_predict import VideoRequest, file_id_of_uri, parse_predict_long_running
from flowgate.sandbox.video_drawing import (
    EXTENSION_SECONDS,
    MAX_VIDEO_SECONDS,
    ClipSegment,
    VideoRecipe,
    fixed_recipe,
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
    quotas: QuotaBook
    veo: VeoStore


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
        {
            kind: draw_fixed_picture(kind, padded_to=config.fixed_image_bytes)
            for kind in ("PNG", "JPEG")
        }
        if config.fixed_image
        else None
    )
    state = SandboxState(
        config=config,
        calls=CallLog(config.call_log_size),
        fixed_pictures=fixed,
        quotas=QuotaBook(config.quotas, config.now),
        veo=VeoStore(config.now, config.max_video_files),
    )

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
        work: Callable[[], Awaitable[dict[str, Any] | Response]],
    ) -> Response:
        """Check the key, run ``work``, render a Google error on failure, log the call."""
        received = datetime.now(UTC)
        key = api_key_of(request)
        response: Response
        try:
            check_api_key(key)
            result = await work()
            response = result if isinstance(result, Response) else JSONResponse(result)
        except GoogleApiError as error:
            response = JSONResponse(error.body(), status_code=error.http_status)
        state.calls.record(
            key=key, model=model, method=method, status=response.status_code, received=received
        )
        return response

    async def admin(work: Callable[[], Awaitable[dict[str, Any]]]) -> JSONResponse:
        """Run a ``/_sandbox`` tool; its errors have Google's shape too."""
        try:
            return JSONResponse(await work())
        except GoogleApiError as error:
            return JSONResponse(error.body(), status_code=error.http_status)

    @app.get("/")
    async def about() -> dict[str, Any]:
        """What this is, for someone who opens the base URL in a browser."""
        return {
            "sandbox": True,
            "description": "flowgate sandbox: an imitation of the Gemini API that draws "
            "deterministic test pictures and videos. Not Google; no AI.",
            "models": "v1beta/models",
            "calls": "_sandbox/calls",
            "quotas": "_sandbox/quotas",
            "docs": "docs/sandbox.md in the flowgate repository",
        }

    @app.get("/v1beta/models")
    async def list_models(request: Request) -> Response:
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
    async def get_model(model_id: str, request: Request) -> Response:
        """``models.get``."""

        async def work() -> dict[str, Any]:
            model = MODELS_BY_ID.get(model_id)
            if model is None:
                raise not_found(f"models/{model_id} is not found for API version v1beta.")
            return model.listing()

        return await answer(request, model=model_id, method="get", work=work)

    @app.post("/v1beta/models/{model_action}")
    async def model_action(model_action: str, request: Request) -> Response:
        """``models/{id}:{action}``; FastAPI cannot route on ``:``, so split it here."""
        model_id, colon, action = model_action.rpartition(":")
        if not colon:
            model_id, action = model_action, ""

        async def work() -> dict[str, Any]:
            model = _model_for_action(model_id, action)
            key = api_key_of(request) or ""
            if action == "generateContent":
                return await _generate_content(state, model, request, key)
            if action == "predict":
                return await _predict(state, model, request, key)
            if action == "predictLongRunning":
                return await _predict_long_running(state, model, request, key)
            raise unimplemented(f"The sandbox does not implement {action} yet.")

        return await answer(request, model=model_id, method=action, work=work)

    @app.get("/v1beta/models/{model_id}/operations/{operation_id}")
    async def get_model_operation(model_id: str, operation_id: str, request: Request) -> Response:
        """Poll a Veo operation by its full name ``models/{model}/operations/{id}``."""
        return await _get_operation(model_id, operation_id, request)

    @app.get("/v1beta/operations/{operation_id}")
    async def get_operation(operation_id: str, request: Request) -> Response:
        """Poll a Veo operation by its id alone."""
        return await _get_operation(None, operation_id, request)

    async def _get_operation(model_id: str | None, operation_id: str, request: Request) -> Response:
        async def work() -> dict[str, Any]:
            operation = state.veo.operation(operation_id)
            if (
                operation is None
                or operation.key != api_key_of(request)
                or model_id not in (None, operation.model_id)
            ):
                name = f"models/{model_id}/operations/{operation_id}" if model_id else operation_id
                raise not_found(f"Operation {name} not found.")
            base = _base_url(request)
            return state.veo.response(operation, lambda file_id: _download_url(base, file_id))

        return await answer(request, model=model_id, method="operations.get", work=work)

    @app.get("/v1beta/files/{file_action}")
    async def get_file(file_action: str, request: Request) -> Response:
        """``files/{id}`` (metadata) and ``files/{id}:download?alt=media`` (the MP4)."""
        file_id, colon, action = file_action.partition(":")

        async def work() -> dict[str, Any] | Response:
            if colon and action != "download":
                raise not_found("Method not found.")
            file = state.veo.file(file_id)
            data = None
            if file is not None and file.owner_key == api_key_of(request):
                data = await state.veo.file_data(file)
            if file is None or data is None:
                raise permission_denied(
                    f"You do not have permission to access the File {file_id} or it may not exist."
                )
            base = _base_url(request)
            if not action:
                return _file_metadata(file, data, base)
            if request.query_params.get("alt") != "media":
                raise invalid_argument("Add alt=media to download the file's content.")
            if state.config.video_download_redirect:
                return RedirectResponse(
                    f"{base}/_sandbox/downloads/{file.download_token}", status_code=302
                )
            return Response(data, media_type="video/mp4")

        method = "files.download" if action else "files.get"
        return await answer(request, model=None, method=method, work=work)

    @app.get("/_sandbox/downloads/{token}")
    async def download_target(token: str, request: Request) -> Response:
        """Where ``:download`` redirects: the bytes, for anyone holding the secret link.

        Google redirects to another host that needs no key. Here the target is
        on the same host, so the sandbox cannot refuse a forwarded key without
        breaking a client that strips the key only when the host changes; it
        logs the key (if any) instead: a test asserts ``key`` is ``None`` on
        ``download-target`` calls to prove a client does not forward it.
        """
        file = state.veo.file_by_token(token)
        data = None if file is None else await state.veo.file_data(file)
        response: Response
        if data is None:
            error = not_found("The download link has expired or never existed.")
            response = JSONResponse(error.body(), status_code=error.http_status)
        else:
            response = Response(data, media_type="video/mp4")
        state.calls.record(
            key=api_key_of(request),
            model=None,
            method="download-target",
            status=response.status_code,
        )
        return response

    @app.delete("/_sandbox/files/{file_id}")
    async def expire_file(file_id: str) -> JSONResponse:
        """Expire a generated video now (to test "reference expired upstream")."""

        async def work() -> dict[str, Any]:
            if not state.veo.expire(file_id):
                raise not_found(f"No sandbox file {file_id}.")
            return {"expired": f"files/{file_id}"}

        return await admin(work)

    @app.get("/_sandbox/quotas")
    async def list_quotas() -> JSONResponse:
        """Every quota rule with its current usage per model."""

        async def work() -> dict[str, Any]:
            return {"quotas": state.quotas.as_json()}

        return await admin(work)

    @app.put("/_sandbox/quotas/{key}")
    async def put_quota(key: str, request: Request) -> JSONResponse:
        """Set the key's rule for one model (``model``) or for every model; counters restart."""

        async def work() -> dict[str, Any]:
            quota = parse_quota_body(await _json_body(request))
            state.quotas.set(key, quota)
            return quota.as_json(key)

        return await admin(work)

    @app.delete("/_sandbox/quotas/{key}")
    async def delete_quota(key: str, request: Request) -> JSONResponse:
        """Drop the key's rules (``?model=`` only that model's) and restart its counters."""

        async def work() -> dict[str, Any]:
            model = request.query_params.get("model") or None
            removed = state.quotas.remove(key, model.removeprefix("models/") if model else None)
            return {"removed": removed}

        return await admin(work)

    @app.delete("/_sandbox/quotas")
    async def clear_quotas() -> JSONResponse:
        """Drop every rule and every counter."""

        async def work() -> dict[str, Any]:
            state.quotas.clear()
            return {"quotas": []}

        return await admin(work)

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


@asynccontextmanager
async def _admitted(
    state: SandboxState, key: str, model: SandboxModel, directives: Directives
) -> AsyncIterator[QuotaLease]:
    """Count the request against the key's quota, wait the asked latency, raise a fault.

    Every generation passes here after its body was validated (invalid
    requests count against no quota). The quota's concurrency slot is held
    until the block ends, unless the caller moves it to a running operation.
    """
    lease = state.quotas.admit(key, model.model_id)
    try:
        delay_ms = max(state.config.default_delay_ms, directives.delay_ms)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        error = error_for_fault(directives, model.model_id)
        if error is not None:
            raise error
        yield lease
    finally:
        lease.release()


def _image_directives(prompt: str) -> Directives:
    directives = parse_directives(prompt)
    if directives.is_video_only():
        raise invalid_argument(
            "Sandbox directives video-fail and video-seconds apply only to Veo "
            "(:predictLongRunning)."
        )
    return directives


async def _generate_content(
    state: SandboxState, model: SandboxModel, request: Request, key: str
) -> dict[str, Any]:
    parsed = parse_generate_content(model, await _json_body(request))
    directives = _image_directives(parsed.prompt)
    async with _admitted(state, key, model, directives):
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


async def _predict(
    state: SandboxState, model: SandboxModel, request: Request, key: str
) -> dict[str, Any]:
    parsed = parse_predict(model, await _json_body(request))
    directives = _image_directives(parsed.prompt)
    async with _admitted(state, key, model, directives):
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


async def _predict_long_running(
    state: SandboxState, model: SandboxModel, request: Request, key: str
) -> dict[str, Any]:
    """Start a Veo operation: validate, admit, then render in the background."""
    parsed = parse_predict_long_running(await _json_body(request))
    directives = parse_directives(parsed.prompt)
    source = _source_video(state, parsed, key)
    await asyncio.to_thread(_check_images_decode, parsed)
    recipe = _video_recipe(state, model, parsed, source)
    seconds = (
        state.config.video_seconds if directives.video_seconds is None else directives.video_seconds
    )
    outcome: Outcome = "video"
    if directives.fault == "video-fail":
        outcome = "failed"
    elif directives.fault in ("unsafe", "unsafe-image"):
        outcome = "filtered"
    async with _admitted(state, key, model, directives) as lease:
        operation = state.veo.start(
            model_id=model.model_id, key=key, recipe=recipe, seconds=seconds, outcome=outcome
        )
        # A running video keeps its concurrency slot until it is done, not just this request.
        lease.hold_until(operation.finish_at)
    return {"name": operation.name}


def _source_video(state: SandboxState, parsed: VideoRequest, key: str) -> SandboxFile | None:
    """The earlier output an extension continues; 400 unless it is this key's, and alive."""
    if parsed.source_uri is None:
        return None
    file_id = file_id_of_uri(parsed.source_uri)
    file = None if file_id is None else state.veo.file(file_id)
    if file is None or file.owner_key != key:
        raise invalid_argument(
            f"video.uri {parsed.source_uri[:200]} does not name a video this project generated, "
            "or it has expired (generated videos are kept for 2 days). Only Veo outputs can "
            "be extended."
        )
    if file.recipe.seconds + EXTENSION_SECONDS > MAX_VIDEO_SECONDS:
        raise invalid_argument(
            f"The video is {file.recipe.seconds} s long; an extension adds "
            f"{EXTENSION_SECONDS} s and videos can be at most {MAX_VIDEO_SECONDS} s."
        )
    return file


def _check_images_decode(parsed: VideoRequest) -> None:
    """400 for an image that is not one (blocking: decodes every image)."""
    for image in parsed.images():
        try:
            open_reference(image.data)
        except ValueError:
            raise invalid_argument(BAD_IMAGE_MESSAGE) from None


def _video_recipe(
    state: SandboxState, model: SandboxModel, parsed: VideoRequest, source: SandboxFile | None
) -> VideoRecipe:
    prompt = strip_directives(parsed.prompt)
    if source is not None:
        aspect_ratio = source.recipe.aspect_ratio
        seconds = source.recipe.seconds + EXTENSION_SECONDS
    else:
        aspect_ratio = parsed.aspect_ratio or "16:9"
        seconds = parsed.duration_seconds
    if state.fixed_pictures is not None:
        return fixed_recipe(aspect_ratio, seconds)
    if source is not None:
        return source.recipe.extended(
            ClipSegment(
                model_id=model.model_id,
                prompt=prompt,
                aspect_ratio=aspect_ratio,
                resolution=parsed.resolution,
                seconds=EXTENSION_SECONDS,
                extends=source.file_id,
            )
        )
    segment = ClipSegment(
        model_id=model.model_id,
        prompt=prompt,
        aspect_ratio=aspect_ratio,
        resolution=parsed.resolution,
        seconds=seconds,
        first_frame=parsed.image.data if parsed.image else None,
        last_frame=parsed.last_frame.data if parsed.last_frame else None,
        references=tuple(reference.data for reference in parsed.references),
    )
    return VideoRecipe(segments=(segment,))


def _base_url(request: Request) -> str:
    """The sandbox's own base URL as the caller reached it, mount prefix included."""
    root = request.scope.get("root_path", "")
    return str(request.url.replace(path=root, query="", fragment="")).rstrip("/")


def _download_url(base: str, file_id: str) -> str:
    return f"{base}/v1beta/files/{file_id}:download?alt=media"


def _file_metadata(file: SandboxFile, data: bytes, base: str) -> dict[str, Any]:
    """A Files API ``File`` object for a generated video."""
    created = _rfc3339(file.available_at)
    return {
        "name": f"files/{file.file_id}",
        "mimeType": "video/mp4",
        "sizeBytes": str(len(data)),
        "createTime": created,
        "updateTime": created,
        "expirationTime": _rfc3339(file.expires_at),
        "sha256Hash": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        "uri": f"{base}/v1beta/files/{file.file_id}",
        "downloadUri": _download_url(base, file.file_id),
        "state": "ACTIVE",
        "source": "GENERATED",
    }


def _rfc3339(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


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
