"""Each ``/v1/google-flow`` endpoint as data: the request to send and how to read its answer.

:class:`~flowgate.client.Client` and :class:`~flowgate.client.AsyncClient`
run the same :class:`ApiCall` values, so an endpoint is defined once here and
each client gains it with a one-line method. Adding videos means adding
``generate_videos(...)`` here (and its models) plus one method per client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from flowgate.client.models import (
    Account,
    AccountCreate,
    AccountSummary,
    AssetUpload,
    Character,
    CharacterCreate,
    CharacterList,
    ConcatenateResult,
    GifResult,
    ImageRequest,
    ImageResult,
    Job,
    JobStats,
    Message,
    SavedAccount,
    UpscaleRequest,
    UpscaleResolution,
    UpscaleResult,
    VideoRequest,
    VideoResult,
    WebhookSecret,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
API_PREFIX = "/v1/google-flow"
_ACCOUNT_MAP = TypeAdapter(dict[str, AccountSummary])


@dataclass(frozen=True)
class ApiCall(Generic[T]):
    """One request (path relative to ``/v1/google-flow``) and the reader of its 2xx answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] | None = None


def api_base_url(url: str) -> str:
    """``http://host:8080`` or ``…/v1/google-flow`` → the API base ending in ``/v1/google-flow``."""
    base = url.strip().rstrip("/")
    return base if base.endswith(API_PREFIX) else base + API_PREFIX


def _segment(value: str) -> str:
    # Emails and job ids contain '@', ':' and '*'; encode everything but unreserved characters.
    return quote(value, safe="")


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: cls.model_validate(response.json())


# ------------------------------------------------------------------------------ accounts


def list_accounts() -> ApiCall[dict[str, AccountSummary]]:
    """``GET /accounts``: the caller's accounts keyed by email."""
    return ApiCall("GET", "/accounts", lambda r: _ACCOUNT_MAP.validate_python(r.json()))


def get_account(email: str) -> ApiCall[Account]:
    """``GET /accounts/{email}``."""
    return ApiCall("GET", f"/accounts/{_segment(email)}", _model(Account))


def add_account(account: AccountCreate) -> ApiCall[SavedAccount]:
    """``POST /accounts``: 201 created, 200 updated."""
    return ApiCall(
        "POST",
        "/accounts",
        lambda r: SavedAccount(
            created=r.status_code == 201, account=Account.model_validate(r.json())
        ),
        json=account.to_body(),
    )


def delete_account(email: str) -> ApiCall[Message]:
    """``DELETE /accounts/{email}``."""
    return ApiCall("DELETE", f"/accounts/{_segment(email)}", _model(Message))


# ------------------------------------------------------------------------------ assets, images


def upload_asset(data: bytes, content_type: str, email: str | None = None) -> ApiCall[AssetUpload]:
    """``POST /assets[/{email}]`` with the raw image bytes."""
    path = "/assets" if email is None else f"/assets/{_segment(email)}"
    return ApiCall(
        "POST", path, _model(AssetUpload), content=data, headers={"Content-Type": content_type}
    )


def generate_images(request: ImageRequest | Mapping[str, Any]) -> ApiCall[ImageResult]:
    """``POST /images`` (synchronous: answers when the images exist)."""
    body = request.to_body() if isinstance(request, ImageRequest) else dict(request)
    return ApiCall("POST", "/images", _model(ImageResult), json=body)


def upscale_image(
    media_generation_id: str, resolution: UpscaleResolution | None = None
) -> ApiCall[UpscaleResult]:
    """``POST /images/upscale``: 2k (default) or 4k of a nano-banana image."""
    body = UpscaleRequest(media_generation_id=media_generation_id, resolution=resolution)
    return ApiCall("POST", "/images/upscale", _model(UpscaleResult), json=body.to_body())


# ------------------------------------------------------------------------------ videos


def _video_body(request: VideoRequest | Mapping[str, Any]) -> dict[str, Any]:
    return request.to_body() if isinstance(request, VideoRequest) else dict(request)


def generate_videos(request: VideoRequest | Mapping[str, Any]) -> ApiCall[VideoResult]:
    """``POST /videos``, sync: answers when the clips are stored (408 past the limit)."""
    body = {k: v for k, v in _video_body(request).items() if k != "async"}
    return ApiCall("POST", "/videos", _model(VideoResult), json=body)


def start_videos(request: VideoRequest | Mapping[str, Any]) -> ApiCall[Job]:
    """``POST /videos`` with ``async: true``: the job record at once (201)."""
    return ApiCall("POST", "/videos", _model(Job), json={**_video_body(request), "async": True})


def extend_video(media_generation_id: str, prompt: str, **options: Any) -> ApiCall[VideoResult]:
    """``POST /videos/extend`` (sync): ``model``, ``count``, ``seed`` … as keyword options."""
    body = {"mediaGenerationId": media_generation_id, "prompt": prompt, **options}
    return ApiCall("POST", "/videos/extend", _model(VideoResult), json=body)


def concatenate_videos(media: list[Mapping[str, Any]]) -> ApiCall[ConcatenateResult]:
    """``POST /videos/concatenate``: ``[{mediaGenerationId, trimStart, trimEnd}, …]``."""
    return ApiCall(
        "POST",
        "/videos/concatenate",
        _model(ConcatenateResult),
        json={"media": [dict(m) for m in media]},
    )


def video_gif(media_generation_id: str) -> ApiCall[GifResult]:
    """``POST /videos/gif``."""
    return ApiCall(
        "POST", "/videos/gif", _model(GifResult), json={"mediaGenerationId": media_generation_id}
    )


def upscale_video(media_generation_id: str, resolution: str = "1080p") -> ApiCall[VideoResult]:
    """``POST /videos/upscale`` (sync): ``1080p`` or ``4K``."""
    return ApiCall(
        "POST",
        "/videos/upscale",
        _model(VideoResult),
        json={"mediaGenerationId": media_generation_id, "resolution": resolution},
    )


# ------------------------------------------------------------------------------ jobs


def get_job(job_id: str) -> ApiCall[Job]:
    """``GET /jobs/{jobId}``."""
    return ApiCall("GET", f"/jobs/{_segment(job_id)}", _model(Job))


def job_stats(options: str | None = None) -> ApiCall[JobStats]:
    """``GET /jobs?options=summary|executing|history``."""
    params = {"options": options} if options else None
    return ApiCall("GET", "/jobs", _model(JobStats), params=params)


# ------------------------------------------------------------------------------ characters


def create_character(name: str, images: list[str]) -> ApiCall[Character]:
    """``POST /characters``."""
    body = CharacterCreate(name=name, images=images).to_body()
    return ApiCall("POST", "/characters", _model(Character), json=body)


def list_characters() -> ApiCall[list[Character]]:
    """``GET /characters``."""
    return ApiCall(
        "GET", "/characters", lambda r: CharacterList.model_validate(r.json()).characters
    )


def get_character(character_id: str) -> ApiCall[Character]:
    """``GET /characters/{id}``."""
    return ApiCall("GET", f"/characters/{_segment(character_id)}", _model(Character))


def delete_character(character_id: str) -> ApiCall[Message]:
    """``DELETE /characters/{id}``."""
    return ApiCall("DELETE", f"/characters/{_segment(character_id)}", _model(Message))


# ------------------------------------------------------------------------------ webhooks


def webhook_secret() -> ApiCall[WebhookSecret]:
    """``GET /webhooks/secret``."""
    return ApiCall("GET", "/webhooks/secret", _model(WebhookSecret))
