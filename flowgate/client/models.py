"""Typed request and response bodies of the ``/v1/google-flow`` API.

Python attributes are snake_case; the wire names (camelCase, ``jobid``,
``reference_N``) are their aliases. Response models keep fields the server adds
later (``extra="allow"``), so an older client still reads a newer server.
``model_dump(by_alias=True, exclude_none=True)`` gives the wire JSON back.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

JobStatus = Literal["created", "started", "completed", "failed"]
UpscaleResolution = Literal["2k", "4k"]
FINISHED_JOB_STATUSES: frozenset[str] = frozenset({"completed", "failed"})


class ResponseModel(BaseModel):
    """Base of response bodies: camelCase on the wire, unknown fields kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class RequestModel(BaseModel):
    """Base of request bodies: camelCase on the wire, unknown fields refused (typos fail here)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_body(self) -> dict[str, Any]:
        """The JSON body to send: wire names, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ------------------------------------------------------------------------------ accounts


class AccountCreate(RequestModel):
    """``POST /accounts``: add an account, or update the one with the same email."""

    email: str
    provider: Literal["gemini", "sandbox"] | None = None
    api_key: str | None = None
    base_url: str | None = None
    model_map: dict[str, str] | None = None
    max_concurrency: int | None = None
    tier: Literal["free", "paid"] | None = None
    upscale: Literal["auto", "local"] | None = None


class Account(ResponseModel):
    """One account as ``GET /accounts/{email}`` and ``POST /accounts`` show it."""

    email: str
    provider: str | None = None
    created: str | None = None
    updated: str | None = None
    health: str | None = None
    api_key: str | None = None  # masked by the server (``AIza…x9``)
    base_url: str | None = None
    model_map: dict[str, str] = Field(default_factory=dict)
    max_concurrency: int | None = None
    tier: str | None = None
    upscale: str | None = None
    health_checked: str | None = None
    models: list[str] | None = None  # only when health is "OK"

    @property
    def healthy(self) -> bool:
        """True when ``health`` is ``"OK"``."""
        return self.health == "OK"


class AccountSummary(ResponseModel):
    """A value of the ``GET /accounts`` map (keyed by email)."""

    created: str | None = None
    health: str | None = None
    provider: str | None = None
    max_concurrency: int | None = None
    tier: str | None = None

    @property
    def healthy(self) -> bool:
        """True when ``health`` is ``"OK"``."""
        return self.health == "OK"


class SavedAccount(ResponseModel):
    """What ``POST /accounts`` did: ``created`` (201) or updated (200), and the account."""

    created: bool
    account: Account


class Message(ResponseModel):
    """``{"message": "..."}`` answers (deletions)."""

    message: str


# ------------------------------------------------------------------------------ assets


class MediaIdBox(ResponseModel):
    """The contract nests the uploaded id one level deep."""

    media_generation_id: str


class AssetUpload(ResponseModel):
    """``POST /assets[/{email}]``: the reference id to pass as ``reference_N``."""

    media_generation_id: MediaIdBox
    width: int | None = None
    height: int | None = None
    email: str | None = None

    @property
    def id(self) -> str:
        """The ``mediaGenerationId`` string (``mediaGenerationId.mediaGenerationId``)."""
        return self.media_generation_id.media_generation_id


# ------------------------------------------------------------------------------ images


class ImageRequest(RequestModel):
    """``POST /images``. The server applies defaults and validates (see docs/images.md).

    ``references`` are ``reference_N`` ids: a list is numbered from 1; a dict
    ``{N: id}`` keeps its numbers (so inline ``@reference_N`` markers still
    match). ``characters`` likewise for ``character_N``.
    """

    prompt: str
    model: str | None = None
    aspect_ratio: str | None = None
    count: int | None = None
    seed: int | None = None
    references: dict[int, str] | list[str] = Field(default_factory=list)
    characters: dict[int, str] | list[str] = Field(default_factory=list)
    email: str | None = None
    reply_url: str | None = None
    reply_ref: str | None = None

    def to_body(self) -> dict[str, Any]:
        """The JSON body, with ``reference_N`` / ``character_N`` keys."""
        body = self.model_dump(
            by_alias=True, exclude_none=True, exclude={"references", "characters"}, mode="json"
        )
        for prefix, values in (("reference", self.references), ("character", self.characters)):
            numbered = values if isinstance(values, dict) else dict(enumerate(values, start=1))
            for number in sorted(numbered):
                body[f"{prefix}_{number}"] = numbered[number]
        return body


class GeneratedImage(ResponseModel):
    """``media[].image.generatedImage``: one output image."""

    media_generation_id: str
    fife_url: str = ""
    seed: int | None = None
    prompt: str | None = None
    media_visibility: str | None = None
    model_name_type: str | None = None
    workflow_id: str | None = None
    aspect_ratio: str | None = None
    request_data: dict[str, Any] | None = None


class ImageHolder(ResponseModel):
    """``media[].image``."""

    generated_image: GeneratedImage


class ImageMedia(ResponseModel):
    """One entry of ``media``."""

    image: ImageHolder
    name: str | None = None
    workflow_id: str | None = None


class ImageResult(ResponseModel):
    """``POST /images`` 200: the job id and 1-4 images."""

    job_id: str
    media: list[ImageMedia] = Field(default_factory=list)

    @property
    def images(self) -> list[GeneratedImage]:
        """The generated images, in order."""
        return [m.image.generated_image for m in self.media]


class UpscaleRequest(RequestModel):
    """``POST /images/upscale``: an image made by nano-banana-2 / nano-banana-pro."""

    media_generation_id: str
    resolution: UpscaleResolution | None = None


class UpscaleResult(ResponseModel):
    """``POST /images/upscale`` 200: the upscaled image as base64 JPEG."""

    encoded_image: str
    upscaler: str | None = None
    media_generation_id: str | None = None

    def image_bytes(self) -> bytes:
        """The decoded image."""
        return base64.b64decode(self.encoded_image)


# ------------------------------------------------------------------------------ jobs


class Job(ResponseModel):
    """A job record (``GET /jobs/{id}``, webhook payloads)."""

    jobid: str
    type: str
    status: str
    created: str | None = None
    updated: str | None = None
    request: dict[str, Any] = Field(default_factory=dict)
    response: dict[str, Any] | None = None
    error: str | dict[str, Any] | None = None
    error_details: str | None = None
    code: int | None = None

    @property
    def finished(self) -> bool:
        """True once the job is ``completed`` or ``failed``."""
        return self.status in FINISHED_JOB_STATUSES

    @property
    def images(self) -> list[GeneratedImage]:
        """The output images of a completed image job (empty otherwise)."""
        media = (self.response or {}).get("media") or []
        return [ImageMedia.model_validate(m).image.generated_image for m in media]


class JobStats(ResponseModel):
    """``GET /jobs?options=…``: load-balancing statistics of the last 15 minutes."""

    emails: list[str] = Field(default_factory=list)
    images: dict[str, Any] = Field(default_factory=dict)
    videos: dict[str, Any] = Field(default_factory=dict)
    combined: dict[str, Any] = Field(default_factory=dict)
    quarantine: dict[str, Any] | None = None

    def executing_job_ids(self) -> list[str]:
        """Ids of the image and video jobs running now (needs ``options`` executing/history)."""
        ids: list[str] = []
        for bucket in (self.images, self.videos):
            ids.extend((bucket.get("executing") or {}).keys())
        return ids


# ------------------------------------------------------------------------------ characters


class CharacterCreate(RequestModel):
    """``POST /characters``: a name and 1-2 image ``mediaGenerationId``s."""

    name: str
    images: list[str]


class Character(ResponseModel):
    """A character, usable as ``character_N`` in ``POST /images``."""

    character_id: str
    name: str
    images: list[str] = Field(default_factory=list)
    created: str | None = None


class CharacterList(ResponseModel):
    """``GET /characters``."""

    characters: list[Character] = Field(default_factory=list)


# ------------------------------------------------------------------------------ webhooks


class WebhookSecret(ResponseModel):
    """``GET /webhooks/secret``: how to verify the webhooks flowgate sends."""

    secret: str
    algorithm: str | None = None
    signature_header: str | None = None
    timestamp_header: str | None = None
    signed_content: str | None = None


class Download(BaseModel):
    """A downloaded file (``fifeUrl``): its bytes and content type."""

    data: bytes
    content_type: str


# ------------------------------------------------------------------------------ videos


class VideoRequest(RequestModel):
    """``POST /videos`` (see docs/videos.md). ``async_`` is sent as ``async``."""

    prompt: str
    model: str | None = None
    aspect_ratio: str | None = None
    duration: int | None = None
    count: int | None = None
    seed: int | None = None
    start_image: str | None = None
    end_image: str | None = None
    reference_images: list[str] = Field(default_factory=list)
    email: str | None = None
    reply_url: str | None = None
    reply_ref: str | None = None
    async_: bool | None = Field(default=None, alias="async")

    def to_body(self) -> dict[str, Any]:
        """The JSON body, with ``referenceImage_N`` keys."""
        body = self.model_dump(
            by_alias=True, exclude_none=True, exclude={"reference_images"}, mode="json"
        )
        for number, value in enumerate(self.reference_images, start=1):
            body[f"referenceImage_{number}"] = value
        return body


class GeneratedVideo(ResponseModel):
    """``operations[].operation.metadata.video``: one output clip."""

    media_generation_id: str
    fife_url: str = ""
    serving_base_uri: str = ""
    seed: int | None = None
    prompt: str | None = None
    model: str | None = None
    aspect_ratio: str | None = None


class VideoResult(ResponseModel):
    """The 200 body of POST /videos, /videos/extend and /videos/upscale."""

    job_id: str
    operations: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def videos(self) -> list[GeneratedVideo]:
        """The successful clips."""
        return [
            GeneratedVideo.model_validate(op["operation"]["metadata"]["video"])
            for op in self.operations
            if op.get("status") == "MEDIA_GENERATION_STATUS_SUCCESSFUL"
            and "metadata" in op.get("operation", {})
        ]


class ConcatenateResult(ResponseModel):
    """``POST /videos/concatenate``."""

    job_id: str
    status: str
    inputs_count: int
    encoded_video: str
    media_generation_id: str | None = None


class GifResult(ResponseModel):
    """``POST /videos/gif``."""

    encoded_gif: str
