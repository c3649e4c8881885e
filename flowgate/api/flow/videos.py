"""/v1/google-flow/videos… (contract §6)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from flowgate.api.body import read_text_fields
from flowgate.api.body_schemas import media_id_schema, nullable, object_schema, request_body
from flowgate.api.deps import CallerDep, RuntimeDep
from flowgate.api.response_schemas import (
    BASE64,
    FINISHED_OPERATIONS,
    PENDING_OPERATIONS,
    SUCCESSFUL,
    SUCCESSFUL_OPERATION,
    VIDEO_ID,
    job_id_schema,
    job_record,
    json_response,
    response_object,
)
from flowgate.domain.captcha import (
    CAPTCHA_ORDER_MAX_ENTRIES,
    CAPTCHA_PROVIDERS,
    CAPTCHA_RETRY_MAX,
    CAPTCHA_RETRY_MIN,
    CAPTCHA_TOKEN_MAX_LENGTH,
)
from flowgate.domain.catalogue import (
    DEFAULT_VIDEO_ASPECT_RATIO,
    DEFAULT_VIDEO_MODEL,
    VIDEO_ASPECT_RATIO_ALIASES,
    VIDEO_ASPECT_RATIOS,
    VIDEO_MODELS,
)
from flowgate.domain.image_request import (
    EMAIL_MAX_LENGTH,
    PROMPT_MAX_LENGTH,
    REPLY_REF_MAX_LENGTH,
    REPLY_URL_MAX_LENGTH,
    SEED_MAX,
    SEED_MIN,
)
from flowgate.domain.video_request import (
    DEFAULT_VIDEO_COUNT,
    DEFAULT_VIDEO_DURATION,
    REFERENCE_IMAGE_FIELDS,
    VIDEO_COUNT_MAX,
    VIDEO_COUNT_MIN,
    VIDEO_DURATIONS,
)
from flowgate.domain.video_tools_request import (
    CONCAT_MAX,
    CONCAT_MIN,
    MAX_TRIM_SECONDS,
    UPSCALE_RESOLUTIONS,
)

router = APIRouter(tags=["videos"])


def _words_pattern(words: Iterable[str]) -> str:
    alternatives = "|".join(words)
    return rf"^\s*(?:{alternatives})\s*$"


_PROMPT = {
    "type": "string",
    "pattern": r"\S",
    "maxLength": PROMPT_MAX_LENGTH,
    "description": "What to show: non-blank text",
}
_SEED = {"type": "integer", "minimum": SEED_MIN, "maximum": SEED_MAX}
_COUNT = {
    "type": "integer",
    "minimum": VIDEO_COUNT_MIN,
    "maximum": VIDEO_COUNT_MAX,
    "default": DEFAULT_VIDEO_COUNT,
}
_ASYNC = {"type": "boolean", "default": False, "description": "true: answer 201 with the job"}
_FORM_BOOLEAN = {
    "anyOf": [
        {"type": "boolean"},
        {
            "type": "string",
            "pattern": _words_pattern(("true", "false", "1", "0", "yes", "no", "on", "off")),
        },
    ],
    "description": "true false 1 0 yes no on off (case-insensitive)",
}
_REPLY: dict[str, dict[str, Any]] = {
    "replyUrl": {
        "type": "string",
        "maxLength": REPLY_URL_MAX_LENGTH,
        "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\x00-\x1f]+$",
        "description": "Absolute http(s) URL called on created, started, completed, failed",
    },
    "replyRef": {"type": "string", "maxLength": REPLY_REF_MAX_LENGTH},
}
_PROVIDER = "(?:" + "|".join(CAPTCHA_PROVIDERS) + ")"
_CAPTCHA: dict[str, dict[str, Any]] = {
    "captchaToken": {"type": "string", "pattern": r"\S", "maxLength": CAPTCHA_TOKEN_MAX_LENGTH},
    "captchaRetry": {"type": "integer", "minimum": CAPTCHA_RETRY_MIN, "maximum": CAPTCHA_RETRY_MAX},
    "captchaOrder": {
        "type": "string",
        "pattern": (
            rf"^\s*{_PROVIDER}\s*(?:,\s*{_PROVIDER}\s*){{0,{CAPTCHA_ORDER_MAX_ENTRIES - 1}}}$"
        ),
        "description": "Provider names (any case), comma-separated: EzCaptcha,CapSolver",
    },
}
_CAPTCHA_RULE = (
    "At most one of captchaToken, captchaRetry, captchaOrder (validated, then ignored: "
    "flowgate solves no captchas)."
)


def _enum(values: Iterable[str], default: str, note: str = "") -> dict[str, Any]:
    return {
        "type": "string",
        "enum": list(values),
        "default": default,
        "description": f"Case-insensitive{note}",
    }


_VIDEO_MODEL = _enum(VIDEO_MODELS, DEFAULT_VIDEO_MODEL)
_VIDEO_PROPERTIES: dict[str, dict[str, Any]] = {
    "prompt": _PROMPT,
    "model": {
        "anyOf": [
            _VIDEO_MODEL,
            {"type": "string", "description": "A model name one of your accounts maps in modelMap"},
        ]
    },
    "aspectRatio": _enum(
        (*VIDEO_ASPECT_RATIOS, *VIDEO_ASPECT_RATIO_ALIASES),
        DEFAULT_VIDEO_ASPECT_RATIO,
        "; 16:9 is landscape, 9:16 portrait",
    ),
    "count": _COUNT,
    "duration": {
        "type": "integer",
        "enum": list(VIDEO_DURATIONS),
        "default": DEFAULT_VIDEO_DURATION,
    },
    "seed": _SEED,
    "startImage": media_id_schema("image", padded=True),
    "endImage": media_id_schema("image", padded=True),
    **{name: media_id_schema("image", padded=True) for name in REFERENCE_IMAGE_FIELDS},
    "async": _ASYNC,
    "email": {
        "type": "string",
        "maxLength": EMAIL_MAX_LENGTH,
        "pattern": r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$",
        "description": "Use this account (default: the balancer picks one)",
    },
    **_REPLY,
    **_CAPTCHA,
}
_VIDEO_BODY = request_body(
    _VIDEO_PROPERTIES,
    required=["prompt"],
    form_overrides={"async": _FORM_BOOLEAN},
    description=(
        "Mode by image fields: none (text-to-video), startImage, startImage + endImage, or "
        "referenceImage_1..3 (not with startImage/endImage; duration 8). " + _CAPTCHA_RULE
    ),
)
_EXTEND_BODY = request_body(
    {
        "mediaGenerationId": media_id_schema("video"),
        "prompt": _PROMPT,
        "model": _VIDEO_MODEL,
        "count": _COUNT,
        "seed": _SEED,
        "async": _ASYNC,
        **_REPLY,
        **_CAPTCHA,
    },
    required=["mediaGenerationId", "prompt"],
    form_overrides={"async": _FORM_BOOLEAN},
    description="An 8 s continuation of one of your videos. " + _CAPTCHA_RULE,
)
_TRIM = {"type": "number", "minimum": 0, "maximum": MAX_TRIM_SECONDS, "default": 0}
_CONCAT_BODY = request_body(
    {
        "media": {
            "type": "array",
            "minItems": CONCAT_MIN,
            "maxItems": CONCAT_MAX,
            "items": object_schema(
                {
                    "mediaGenerationId": media_id_schema("video"),
                    "trimStart": _TRIM,
                    "trimEnd": _TRIM,
                },
                ["mediaGenerationId"],
                nullable,
                "One input; trims in seconds",
            ),
        }
    },
    required=["media"],
    multipart=False,
    description="Your videos, joined in order: same account, same aspect ratio.",
)
_GIF_BODY = request_body(
    {"mediaGenerationId": media_id_schema("video")},
    required=["mediaGenerationId"],
    description="One of your videos.",
)
_UPSCALE_BODY = request_body(
    {
        "mediaGenerationId": media_id_schema("video"),
        "resolution": _enum(UPSCALE_RESOLUTIONS, UPSCALE_RESOLUTIONS[0]),
        "async": _ASYNC,
        **_REPLY,
        **_CAPTCHA,
    },
    required=["mediaGenerationId"],
    form_overrides={"async": _FORM_BOOLEAN},
    description="One of your videos. " + _CAPTCHA_RULE,
)

_VIDEO_JOB_ID = job_id_schema("video")
_CLIPS_200 = json_response(
    200,
    response_object(
        {
            "jobId": _VIDEO_JOB_ID,
            "operations": {**FINISHED_OPERATIONS, "contains": SUCCESSFUL_OPERATION},
        },
        required=["jobId", "operations"],
        description="One operation per clip: made, or failed when others were made",
    ),
    "The clips, stored",
)
# An async call answers the job record as created, with its pending upstream operations.
_SUBMITTED_201 = json_response(
    201,
    job_record(
        "video",
        status=["created"],
        response=response_object({"operations": PENDING_OPERATIONS}, required=["operations"]),
        response_required=True,
    ),
    "async: the job record (poll GET /jobs/{jobId}, or use replyUrl)",
)
_VIDEO_RESPONSES = {**_CLIPS_200, **_SUBMITTED_201}
_CONCAT_200 = json_response(
    200,
    response_object(
        {
            "jobId": _VIDEO_JOB_ID,
            "status": {"type": "string", "enum": [SUCCESSFUL]},
            "inputsCount": {"type": "integer", "minimum": CONCAT_MIN, "maximum": CONCAT_MAX},
            "encodedVideo": {**BASE64, "description": "The joined MP4, base64"},
            "mediaGenerationId": {**VIDEO_ID, "description": "flowgate's addition: stored result"},
        },
        required=["jobId", "status", "inputsCount", "encodedVideo", "mediaGenerationId"],
    ),
    "The joined video",
)
_GIF_200 = json_response(
    200,
    response_object(
        {"encodedGif": {**BASE64, "description": "The GIF, base64"}}, required=["encodedGif"]
    ),
    "The GIF",
)
_UPSCALE_RESPONSES = {
    **json_response(
        200,
        response_object(
            {
                "jobId": _VIDEO_JOB_ID,
                "operations": {
                    **FINISHED_OPERATIONS,
                    "maxItems": 1,
                    "items": SUCCESSFUL_OPERATION,
                },
                "upscaler": {"type": "string", "description": "flowgate's addition"},
            },
            required=["jobId", "operations", "upscaler"],
            description="The upscaled clip (a repeat: the stored one, with rawBytes)",
        ),
        "The upscaled video (also for a repeat in async mode)",
    ),
    # The work starts after the answer: the record has no response yet.
    **json_response(
        201, job_record("video", status=["created"]), "async: the job record, as created"
    ),
}


_VIDEO_IDS = "send the mediaGenerationId of a video made by POST /videos"


def _is_form(request: Request) -> bool:
    return not request.headers.get("content-type", "").startswith("application/json")


@router.post(
    "/videos",
    openapi_extra=_VIDEO_BODY,
    responses=_VIDEO_RESPONSES,
    summary="Generate videos with Veo (sync, or async with 201)",
)
async def generate_videos(request: Request, runtime: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """Sync: 200 when the clips are stored (408 after the polling limit). Async: 201 job."""
    fields = await read_text_fields(
        request,
        runtime.settings.max_json_bytes,
        instead="upload images with POST /assets and pass their mediaGenerationId as "
        "startImage, endImage or referenceImage_N",
    )
    status, body = await runtime.videos.generate(caller, fields, form=_is_form(request))
    return JSONResponse(body, status_code=status)


@router.post(
    "/videos/extend",
    openapi_extra=_EXTEND_BODY,
    responses=_VIDEO_RESPONSES,
    summary="Extend a video by 8 seconds",
)
async def extend_video(request: Request, runtime: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """As POST /videos, from the end of a stored clip."""
    fields = await read_text_fields(request, runtime.settings.max_json_bytes, instead=_VIDEO_IDS)
    status, body = await runtime.videos.extend(caller, fields, form=_is_form(request))
    return JSONResponse(body, status_code=status)


@router.post(
    "/videos/concatenate",
    openapi_extra=_CONCAT_BODY,
    responses=_CONCAT_200,
    summary="Join 2-10 videos (ffmpeg)",
)
async def concatenate_videos(
    request: Request, runtime: RuntimeDep, caller: CallerDep
) -> dict[str, Any]:
    """``{media: [{mediaGenerationId, trimStart, trimEnd}]}`` → ``encodedVideo``."""
    fields = await read_text_fields(request, runtime.settings.max_json_bytes, instead=_VIDEO_IDS)
    return await runtime.videos.concatenate(caller, fields)


@router.post("/videos/gif", openapi_extra=_GIF_BODY, responses=_GIF_200, summary="A GIF of a video")
async def video_gif(request: Request, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """``{mediaGenerationId}`` → ``encodedGif``."""
    fields = await read_text_fields(request, runtime.settings.max_json_bytes, instead=_VIDEO_IDS)
    return await runtime.videos.gif(caller, fields)


@router.post(
    "/videos/upscale",
    openapi_extra=_UPSCALE_BODY,
    responses=_UPSCALE_RESPONSES,
    summary="Upscale a video to 1080p or 4K",
)
async def upscale_video(request: Request, runtime: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """Lanczos with ffmpeg; a repeat returns the stored result as ``rawBytes``."""
    fields = await read_text_fields(request, runtime.settings.max_json_bytes, instead=_VIDEO_IDS)
    status, body = await runtime.videos.upscale(caller, fields, form=_is_form(request))
    return JSONResponse(body, status_code=status)
