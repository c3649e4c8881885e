"""The Gemini API provider: Nano Banana (``:generateContent``) and Imagen (``:predict``).

Plain REST over the shared ``aiohttp.ClientSession`` (see ``UPSTREAMS.md`` for why not
the SDK). Responses are read through tolerant pydantic models; every non-200 is
turned into :class:`~flowgate.domain.errors.UpstreamError` carrying the Google
error's status, reason, quota ids and retry delay, so the balancer can act on it
and the API layer can pass the body through.

The API key travels only in the ``x-goog-api-key`` header. It never appears in
URLs, exception messages, log lines or ``repr``; Google quotes the key in some
error messages (``Consumer 'api_key:…' has been suspended``), so error bodies are
scrubbed before they are kept.
"""

from __future__ import annotations

import binascii
import json
import logging
import re
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pybase64
from aiohttp.abc import AbstractStreamWriter
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from yarl import URL

from flowgate.domain.errors import (
    ContentBlocked,
    GoogleErrorInfo,
    UpstreamError,
    UpstreamUnreachable,
)
from flowgate.providers.base import (
    ContentImageRequest,
    GeneratedImage,
    HealthReport,
    InlineImage,
    PredictImageRequest,
    VideoOperation,
    VideoStartRequest,
)
from flowgate.providers.http_pool import HttpPool

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

logger = logging.getLogger(__name__)

API_VERSION = "v1beta"
HEALTH_PAGE_SIZE = 1000
MAX_HEALTH_PAGES = 50  # a misbehaving upstream must not keep the health check looping
REDACTED = "[REDACTED]"
NO_IMAGE_DETAIL = "upstream returned no image"

# finishReason values meaning "the safety filter (or policy) stopped the image".
BLOCKING_FINISH_REASONS = frozenset(
    {
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "IMAGE_OTHER",
        "NO_IMAGE",
        "SAFETY",
        "PROHIBITED_CONTENT",
        "RECITATION",
        "BLOCKLIST",
        "SPII",
    }
)

# Google's canonical status names for errors whose body is not Google JSON.
_STATUS_BY_HTTP_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_DURATION_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class _Wire(BaseModel):
    """Base of the response models: camelCase or snake_case names, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)


WireT = TypeVar("WireT", bound=_Wire)


class Blob(_Wire):
    """``inlineData``."""

    mime_type: str | None = None
    data: str | None = None


class Part(_Wire):
    """One part of a candidate's content."""

    text: str | None = None
    thought: bool | None = None
    inline_data: Blob | None = None


class Content(_Wire):
    """A candidate's ``content``."""

    role: str | None = None
    parts: list[Part] = []


class Candidate(_Wire):
    """One entry of ``candidates``."""

    content: Content | None = None
    finish_reason: str | None = None
    finish_message: str | None = None
    index: int | None = None


class PromptFeedback(_Wire):
    """``promptFeedback``: set when the prompt itself was blocked."""

    block_reason: str | None = None
    block_reason_message: str | None = None


class GenerateContentResponse(_Wire):
    """Body of a 200 ``:generateContent`` answer."""

    candidates: list[Candidate] = []
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: dict[str, Any] | None = None
    model_version: str | None = None
    response_id: str | None = None


class ImagenPrediction(_Wire):
    """One entry of ``predictions``: an image or a filtered slot."""

    bytes_base64_encoded: str | None = None
    mime_type: str | None = None
    rai_filtered_reason: str | None = None


class PredictResponse(_Wire):
    """Body of a 200 ``:predict`` answer (``{}`` when everything was filtered)."""

    predictions: list[ImagenPrediction] = []


class ModelInfo(_Wire):
    """One entry of ``models``."""

    name: str
    display_name: str | None = None
    supported_generation_methods: list[str] = []


class OperationError(_Wire):
    """``error`` of a failed long-running operation."""

    code: int | None = None
    message: str | None = None


class VideoFile(_Wire):
    """``video`` of a generated sample."""

    uri: str | None = None


class GeneratedSample(_Wire):
    """One generated video."""

    video: VideoFile | None = None


class GenerateVideoResponse(_Wire):
    """``response.generateVideoResponse``."""

    generated_samples: list[GeneratedSample] = []
    rai_media_filtered_count: int | None = None
    rai_media_filtered_reasons: list[str] = []


class OperationResult(_Wire):
    """``response`` of a finished operation."""

    generate_video_response: GenerateVideoResponse | None = None


class OperationResponse(_Wire):
    """``GET /v1beta/{operation}``."""

    name: str | None = None
    done: bool = False
    error: OperationError | None = None
    response: OperationResult | None = None


class ListModelsResponse(_Wire):
    """Body of ``GET /v1beta/models``."""

    models: list[ModelInfo] = []
    next_page_token: str | None = None


def parse_retry_delay(value: Any) -> float | None:
    """Seconds from a ``RetryInfo.retryDelay``: ``"26s"``, ``"58.8s"``, ``"0.5s"``.

    Also reads the proto object form ``{"seconds": 26, "nanos": 500000000}``.
    Returns ``None`` for anything unreadable.
    """
    if isinstance(value, dict):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value)
    if match is None:
        return None
    return float(match.group(1)) * _DURATION_UNIT_SECONDS[match.group(2) or "s"]


def redact(value: Any, secret: str) -> Any:
    """``value`` (any JSON) with every occurrence of ``secret`` in its strings replaced."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, REDACTED)
    if isinstance(value, dict):
        return {key: redact(item, secret) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, secret) for item in value]
    return value


def parse_google_error(http_status: int, body: bytes, *, secret: str = "") -> GoogleErrorInfo:
    """Read a Google error answer into :class:`GoogleErrorInfo`.

    ``raw`` is the ``error`` object as received (with ``secret`` scrubbed out), so the
    API layer can pass it through. A body that is not Google JSON (a proxy's HTML
    page, an empty 502) gives the HTTP status and a short text message.
    """
    error = _error_object(body)
    if error is None:
        text = " ".join(body.decode("utf-8", "replace").split())[:200]
        message = f"upstream answered HTTP {http_status}" + (f": {text}" if text else "")
        return GoogleErrorInfo(
            code=http_status,
            message=redact(message, secret),
            status=_STATUS_BY_HTTP_CODE.get(http_status, ""),
        )
    error = redact(error, secret)
    reason: str | None = None
    quota_ids: list[str] = []
    retry_delay: float | None = None
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", "")).rsplit("/", 1)[-1]
        if kind == "google.rpc.ErrorInfo" and reason is None:
            reason = str(detail.get("reason") or "") or None
        elif kind == "google.rpc.QuotaFailure":
            violations = detail.get("violations")
            for violation in violations if isinstance(violations, list) else []:
                if isinstance(violation, dict) and violation.get("quotaId"):
                    quota_ids.append(str(violation["quotaId"]))
        elif kind == "google.rpc.RetryInfo":
            retry_delay = parse_retry_delay(detail.get("retryDelay"))
    code = error.get("code")
    return GoogleErrorInfo(
        code=code if isinstance(code, int) and not isinstance(code, bool) else http_status,
        message=str(error.get("message") or f"upstream answered HTTP {http_status}"),
        status=str(error.get("status") or _STATUS_BY_HTTP_CODE.get(http_status, "")),
        reason=reason,
        quota_ids=tuple(quota_ids),
        retry_delay_seconds=retry_delay,
        raw=error,
    )


def _error_object(body: bytes) -> dict[str, Any] | None:
    try:
        decoded = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    # Some Google front ends wrap the error in a one-element list.
    if isinstance(decoded, list) and decoded:
        decoded = decoded[0]
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        return dict(decoded["error"])
    return None


class GeminiProvider:
    """An :class:`~flowgate.providers.base.ImageProvider` for one Gemini API key."""

    def __init__(self, http: HttpPool, *, base_url: str, api_key: str) -> None:
        self._http = http
        base = base_url.rstrip("/")
        # Accept a base URL given with the version too ("…/v1beta").
        self._base_url = base.removesuffix(f"/{API_VERSION}")
        self._api_key = api_key

    def __repr__(self) -> str:
        return f"GeminiProvider(base_url={self._base_url!r}, api_key=<redacted>)"

    @property
    def base_url(self) -> str:
        """The upstream's base URL (without ``/v1beta``)."""
        return self._base_url

    async def health_check(self) -> HealthReport:
        """List the models the key can use (following ``nextPageToken``)."""
        model_ids: list[str] = []
        page_token: str | None = None
        for _ in range(MAX_HEALTH_PAGES):
            params = {"pageSize": str(HEALTH_PAGE_SIZE)}
            if page_token:
                params["pageToken"] = page_token
            body = await self._call("GET", "models", params=params, what="models.list")
            page = self._read(ListModelsResponse, body, "models.list")
            model_ids.extend(model.name.removeprefix("models/") for model in page.models)
            if not page.next_page_token or page.next_page_token == page_token:
                break
            page_token = page.next_page_token
        return HealthReport(models=model_ids)

    async def generate_content_image(self, request: ContentImageRequest) -> GeneratedImage:
        """One ``:generateContent`` call; the first non-thought image of the answer."""
        parts: list[dict[str, Any]] = [{"text": request.prompt}]
        parts.extend(_inline(reference) for reference in request.references)
        generation_config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
        if request.seed is not None:
            generation_config["seed"] = request.seed
        image_config: dict[str, str] = {}
        if request.aspect_ratio is not None:
            image_config["aspectRatio"] = request.aspect_ratio
        if request.image_size is not None:
            image_config["imageSize"] = request.image_size
        if image_config:
            generation_config["imageConfig"] = image_config
        payload = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": generation_config,
        }
        what = f"{request.upstream_model}:generateContent"
        body = await self._call(
            "POST",
            _model_path(request.upstream_model, "generateContent"),
            json_body=payload,
            what=what,
        )
        answer = self._read(GenerateContentResponse, body, what)
        return _first_image(answer, what)

    async def predict_images(self, request: PredictImageRequest) -> list[GeneratedImage]:
        """One Imagen ``:predict`` call with ``sampleCount``; filtered slots are dropped."""
        parameters: dict[str, Any] = {"sampleCount": request.count}
        if request.aspect_ratio is not None:
            parameters["aspectRatio"] = request.aspect_ratio
        payload = {"instances": [{"prompt": request.prompt}], "parameters": parameters}
        what = f"{request.upstream_model}:predict"
        body = await self._call(
            "POST", _model_path(request.upstream_model, "predict"), json_body=payload, what=what
        )
        answer = self._read(PredictResponse, body, what)
        images: list[GeneratedImage] = []
        filtered: list[str] = []
        for prediction in answer.predictions:
            if prediction.bytes_base64_encoded:
                data = _decode_image_data(prediction.bytes_base64_encoded, what)
                images.append(GeneratedImage(mime=prediction.mime_type or "image/png", data=data))
            elif prediction.rai_filtered_reason:
                filtered.append(prediction.rai_filtered_reason)
        if images:
            return images
        if filtered:
            raise ContentBlocked(f"all images were filtered: {filtered[0]}")
        raise ContentBlocked(NO_IMAGE_DETAIL)

    async def start_video(self, request: VideoStartRequest) -> str:
        """``:predictLongRunning`` for one video; the operation name to poll."""
        instance: dict[str, Any] = {"prompt": request.prompt}
        if request.start_frame is not None:
            instance["image"] = _inline(request.start_frame)
        if request.last_frame is not None:
            instance["lastFrame"] = _inline(request.last_frame)
        if request.references:
            instance["referenceImages"] = [
                {"image": _inline(ref), "referenceType": "asset"} for ref in request.references
            ]
        if request.source_video_uri is not None:
            instance["video"] = {"uri": request.source_video_uri}
        parameters: dict[str, Any] = {
            "aspectRatio": request.aspect_ratio,
            "durationSeconds": request.duration_seconds,
            "resolution": request.resolution,
            "numberOfVideos": 1,
        }
        # The Gemini API's Veo takes no seed (Vertex AI's does): it is only recorded.
        what = f"{request.upstream_model}:predictLongRunning"
        body = await self._call(
            "POST",
            _model_path(request.upstream_model, "predictLongRunning"),
            json_body={"instances": [instance], "parameters": parameters},
            what=what,
        )
        name = self._read(OperationResponse, body, what).name
        if not name:
            raise UpstreamUnreachable(f"upstream {self._host()} answered {what} without a name")
        return name

    async def get_operation(self, name: str) -> VideoOperation:
        """``GET /v1beta/{name}``; a finished operation's video URIs, error or filter."""
        body = await self._call("GET", quote(name, safe="/"), what="operations.get")
        answer = self._read(OperationResponse, body, "operations.get")
        if not answer.done:
            return VideoOperation(name=name, done=False)
        if answer.error is not None:
            return VideoOperation(
                name=name,
                done=True,
                error_code=answer.error.code,
                error_message=answer.error.message or "operation failed",
            )
        result = answer.response.generate_video_response if answer.response else None
        uris = tuple(
            sample.video.uri
            for sample in (result.generated_samples if result else [])
            if sample.video is not None and sample.video.uri
        )
        reasons = tuple(result.rai_media_filtered_reasons) if result else ()
        return VideoOperation(name=name, done=True, video_uris=uris, filtered_reasons=reasons)

    async def download(self, uri: str) -> bytes:
        """Fetch an output; the key goes only to the upstream's own host.

        Google answers file downloads with a redirect to a storage host: that hop is
        followed without the key.
        """
        own = URL(self._base_url)
        url = URL(uri)
        headers = {"x-goog-api-key": self._api_key} if url.host == own.host else {}
        try:
            for _ in range(5):
                async with self._http.get(url, headers=headers, allow_redirects=False) as response:
                    status, content = response.status, await response.read()
                    location = response.headers.get("location")
                if status in REDIRECT_STATUSES and location:
                    url = url.join(URL(location))
                    if url.host != own.host or url.port != own.port:
                        headers = {}
                    continue
                break
        except (aiohttp.ClientError, OSError, ValueError) as exc:  # TimeoutError is an OSError
            detail = redact(str(exc), self._api_key) or exc.__class__.__name__
            raise UpstreamUnreachable(f"could not download from {url.host}: {detail}") from None
        if status != 200:
            info = parse_google_error(status, content, secret=self._api_key)
            raise UpstreamError(info, http_status=status)
        return content

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> bytes:
        """Send one request; the body of a 200 (for :meth:`_read`), or raise the matching
        error."""
        url = f"{self._base_url}/{API_VERSION}/{path}"
        try:
            status, content = await self._exchange(method, url, params, json_body)
        except TimeoutError as exc:
            raise UpstreamUnreachable(
                f"upstream {self._host()} timed out on {what} ({exc.__class__.__name__})"
            ) from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # OSError too: a socket error aiohttp does not wrap is still "unreachable".
            detail = redact(str(exc), self._api_key) or exc.__class__.__name__
            raise UpstreamUnreachable(
                f"could not reach upstream {self._host()} for {what}: {detail}"
            ) from None
        if status != 200:
            info = parse_google_error(status, content, secret=self._api_key)
            logger.info(
                "upstream %s answered %s %s (reason=%s quota=%s)",
                what,
                status,
                info.status,
                info.reason,
                ",".join(info.quota_ids) or "-",
            )
            raise UpstreamError(info, http_status=status)
        return content

    async def _exchange(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        json_body: dict[str, Any] | None,
    ) -> tuple[int, bytes]:
        encoded = None if json_body is None else json.dumps(json_body).encode()
        retried = False
        while True:
            body = None if encoded is None else _RequestBody(encoded)
            try:
                async with self._http.request(
                    method,
                    url,
                    params=params,
                    data=body,
                    headers={"x-goog-api-key": self._api_key},
                    # A redirect could hand the key to whatever host it names; the API
                    # never redirects.
                    allow_redirects=False,
                ) as response:
                    return response.status, await response.read()
            except aiohttp.ClientConnectionError as exc:
                # A request the connection failed under before all of it was written was
                # never applied upstream, so it may go once more on a new connection
                # (RFC 9112 §9.3.1). The usual cause: a kept-alive connection the upstream
                # closed just as it was taken from the pool. aiohttp itself retries only
                # idempotent methods, and generation calls are POSTs.
                if (
                    retried
                    or body is None
                    or body.written
                    or isinstance(exc, (aiohttp.ClientConnectorError, TimeoutError))
                ):
                    raise
                retried = True
                logger.info("connection closed before the request to %s was sent; again", url)

    def _read(self, model: type[WireT], content: bytes, what: str) -> WireT:
        # Parsed and validated in one pass (pydantic-core): for an answer holding a 2 MB
        # base64 image, ~0.4 ms instead of ~2.2 ms for json.loads and model_validate.
        try:
            return model.model_validate_json(content)
        except ValidationError as exc:
            if any(error["type"] == "json_invalid" for error in exc.errors()):
                detail = "with HTTP 200 but no JSON"
            else:
                detail = "with an unexpected body"
            raise UpstreamUnreachable(f"upstream {self._host()} answered {what} {detail}") from None

    def _host(self) -> str:
        try:
            return URL(self._base_url).host or self._base_url
        except ValueError:
            return "(invalid base URL)"


class _RequestBody(aiohttp.BytesPayload):
    """A JSON request body that knows whether all of it was handed to the connection."""

    written = False

    def __init__(self, value: bytes) -> None:
        super().__init__(value, content_type="application/json")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await super().write(writer)
        self.written = True

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        await super().write_with_length(writer, content_length)
        self.written = True


def _inline(image: InlineImage) -> dict[str, Any]:
    return {
        "inlineData": {
            "mimeType": image.mime,
            "data": pybase64.b64encode(image.data).decode("ascii"),
        }
    }


def _model_path(model_id: str, action: str) -> str:
    # Model ids come from configuration (modelMap): never let one add path segments.
    return f"models/{quote(model_id, safe='.-_')}:{action}"


def _decode_image_data(encoded: str, what: str) -> bytes:
    try:
        return pybase64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise UpstreamUnreachable(
            f"upstream answered {what} with image data that is not base64"
        ) from None


def _first_image(answer: GenerateContentResponse, what: str) -> GeneratedImage:
    """The first non-thought image, or ``ContentBlocked`` saying why there is none."""
    feedback = answer.prompt_feedback
    if feedback is not None and feedback.block_reason:
        detail = f"prompt blocked (blockReason {feedback.block_reason})"
        if feedback.block_reason_message:
            detail += f": {feedback.block_reason_message}"
        raise ContentBlocked(detail)
    for candidate in answer.candidates:
        parts = candidate.content.parts if candidate.content else []
        visible = [part for part in parts if not part.thought]
        texts = [part.text for part in visible if part.text]
        for part in visible:
            blob = part.inline_data
            if blob is not None and blob.data and (blob.mime_type or "image/").startswith("image/"):
                return GeneratedImage(
                    mime=blob.mime_type or "image/png",
                    data=_decode_image_data(blob.data, what),
                    text="\n".join(texts) or None,
                )
    for candidate in answer.candidates:
        if candidate.finish_reason in BLOCKING_FINISH_REASONS:
            detail = f"image blocked (finishReason {candidate.finish_reason})"
            if candidate.finish_message:
                detail += f": {candidate.finish_message}"
            raise ContentBlocked(detail)
    raise ContentBlocked(NO_IMAGE_DETAIL)
