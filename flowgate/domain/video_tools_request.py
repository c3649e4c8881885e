"""Request rules of POST /videos/extend, /concatenate, /gif and /upscale (contract §6). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowgate.domain.captcha import CAPTCHA_FIELDS, validate_captcha_fields
from flowgate.domain.catalogue import DEFAULT_VIDEO_MODEL, resolve_video_model
from flowgate.domain.errors import InvalidRequest
from flowgate.domain.ids import parse_media_generation_id
from flowgate.domain.image_request import (
    SEED_MAX,
    SEED_MIN,
    is_absent,
    read_optional_integer,
    read_prompt,
    read_reply_ref,
    read_reply_url,
    read_string,
)
from flowgate.domain.video_request import read_boolean

MAX_TRIM_SECONDS = 8.0
CONCAT_MIN, CONCAT_MAX = 2, 10
UPSCALE_RESOLUTIONS = ("1080p", "4K")


def _check_names(data: Mapping[str, Any], allowed: frozenset[str], endpoint: str) -> None:
    if not isinstance(data, Mapping):
        raise InvalidRequest("The request body must be a JSON object")
    unknown = sorted(str(name) for name in data if name not in allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown parameter(s) for {endpoint}: {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(allowed))}"
        )


def _video_id(data: Mapping[str, Any], *, form: bool) -> str:
    value = data.get("mediaGenerationId")
    if is_absent(value, form=form):
        raise InvalidRequest("mediaGenerationId is required")
    text = read_string(value, field="mediaGenerationId", form=form)
    parse_media_generation_id(text)
    return text


def _flag(data: Mapping[str, Any], name: str, *, form: bool) -> bool:
    value = data.get(name)
    return False if is_absent(value, form=form) else read_boolean(value, field=name, form=form)


def _optional(data: Mapping[str, Any], name: str, *, form: bool) -> Any:
    value = data.get(name)
    return None if is_absent(value, form=form) else value


@dataclass(frozen=True)
class ExtendSpec:
    """A valid POST /videos/extend."""

    media_generation_id: str
    prompt: str
    model: str
    count: int
    seed: int | None
    async_mode: bool
    reply_url: str | None
    reply_ref: str | None


_EXTEND_FIELDS = frozenset(
    {
        "mediaGenerationId",
        "prompt",
        "model",
        "count",
        "seed",
        "async",
        "replyUrl",
        "replyRef",
        *CAPTCHA_FIELDS,
    }
)


def parse_extend_request(data: Mapping[str, Any], *, form: bool = False) -> ExtendSpec:
    """Validate POST /videos/extend (model default veo-3.1-fast, count 1-4 default 1)."""
    _check_names(data, _EXTEND_FIELDS, "POST /videos/extend")
    validate_captcha_fields(data, form=form)
    media_id = _video_id(data, form=form)
    prompt = read_prompt(_optional(data, "prompt", form=form), form=form)
    raw_model = _optional(data, "model", form=form)
    model = resolve_video_model(
        read_string(raw_model, field="model", form=form)
        if raw_model is not None
        else DEFAULT_VIDEO_MODEL
    ).name
    count = read_optional_integer(data, "count", form=form, minimum=1, maximum=4, default=1)
    seed = read_optional_integer(
        data, "seed", form=form, minimum=SEED_MIN, maximum=SEED_MAX, default=None
    )
    raw_url = _optional(data, "replyUrl", form=form)
    raw_ref = _optional(data, "replyRef", form=form)
    return ExtendSpec(
        media_generation_id=media_id,
        prompt=prompt,
        model=model,
        count=count,
        seed=seed,
        async_mode=_flag(data, "async", form=form),
        reply_url=None if raw_url is None else read_reply_url(raw_url, form=form),
        reply_ref=None if raw_ref is None else read_reply_ref(raw_ref, form=form),
    )


@dataclass(frozen=True)
class ConcatItem:
    """One input of a concatenation."""

    media_generation_id: str
    trim_start: float
    trim_end: float

    def echo(self) -> dict[str, Any]:
        """As echoed in the job record."""
        return {
            "mediaGenerationId": self.media_generation_id,
            "trimStart": self.trim_start,
            "trimEnd": self.trim_end,
        }


@dataclass(frozen=True)
class ConcatSpec:
    """A valid POST /videos/concatenate."""

    items: tuple[ConcatItem, ...]


def _trim(value: Any, field: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{field} must be a number of seconds from 0 to 8")
    # Compared as sent: float() of a JSON integer with 309+ digits overflows; NaN compares false.
    if not 0 <= value <= MAX_TRIM_SECONDS:
        shown = "a number far out of range" if abs(value) >= 1e6 else value
        raise InvalidRequest(f"{field} must be from 0 to 8 seconds, got {shown}")
    return float(value)


def parse_concat_request(data: Mapping[str, Any]) -> ConcatSpec:
    """Validate POST /videos/concatenate: ``media``, 2-10 items with id and trims."""
    _check_names(data, frozenset({"media"}), "POST /videos/concatenate")
    media = data.get("media")
    if not isinstance(media, list) or not CONCAT_MIN <= len(media) <= CONCAT_MAX:
        raise InvalidRequest(
            "media must be a list of 2 to 10 items like "
            '{"mediaGenerationId": "...-video:...", "trimStart": 0, "trimEnd": 0}'
        )
    items = []
    for index, item in enumerate(media):
        where = f"media[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"{where} must be an object with mediaGenerationId")
        extra = sorted(set(item) - {"mediaGenerationId", "trimStart", "trimEnd"})
        if extra:
            raise InvalidRequest(f"{where} has unknown field(s): {', '.join(extra)}")
        value = item.get("mediaGenerationId")
        if not isinstance(value, str) or not value:
            raise InvalidRequest(f"{where}.mediaGenerationId is required")
        parsed = parse_media_generation_id(value, field=f"{where}.mediaGenerationId")
        if parsed.kind != "video":
            raise InvalidRequest(f"{where}.mediaGenerationId type must be 'video', got 'image'")
        items.append(
            ConcatItem(
                value,
                _trim(item.get("trimStart"), f"{where}.trimStart"),
                _trim(item.get("trimEnd"), f"{where}.trimEnd"),
            )
        )
    return ConcatSpec(tuple(items))


def parse_gif_request(data: Mapping[str, Any]) -> str:
    """Validate POST /videos/gif; the video's mediaGenerationId."""
    _check_names(data, frozenset({"mediaGenerationId"}), "POST /videos/gif")
    value = _video_id(data, form=False)
    parsed = parse_media_generation_id(value)
    if parsed.kind != "video":
        raise InvalidRequest(f"mediaGenerationId type must be 'video', got '{parsed.kind}'")
    return value


@dataclass(frozen=True)
class VideoUpscaleSpec:
    """A valid POST /videos/upscale."""

    media_generation_id: str
    resolution: str
    async_mode: bool
    reply_url: str | None
    reply_ref: str | None


_UPSCALE_FIELDS = frozenset(
    {"mediaGenerationId", "resolution", "async", "replyUrl", "replyRef", *CAPTCHA_FIELDS}
)


def parse_video_upscale_request(data: Mapping[str, Any], *, form: bool = False) -> VideoUpscaleSpec:
    """Validate POST /videos/upscale: resolution ``1080p`` (default) or ``4K``."""
    _check_names(data, _UPSCALE_FIELDS, "POST /videos/upscale")
    validate_captcha_fields(data, form=form)
    media_id = _video_id(data, form=form)
    parsed = parse_media_generation_id(media_id)
    if parsed.kind != "video":
        raise InvalidRequest(f"mediaGenerationId type must be 'video', got '{parsed.kind}'")
    raw = _optional(data, "resolution", form=form)
    resolution = "1080p" if raw is None else read_string(raw, field="resolution", form=form)
    normalized = {"1080p": "1080p", "4k": "4K"}.get(resolution.strip().lower())
    if normalized is None:
        raise InvalidRequest("resolution must be 1080p (default) or 4K")
    raw_url = _optional(data, "replyUrl", form=form)
    raw_ref = _optional(data, "replyRef", form=form)
    return VideoUpscaleSpec(
        media_generation_id=media_id,
        resolution=normalized,
        async_mode=_flag(data, "async", form=form),
        reply_url=None if raw_url is None else read_reply_url(raw_url, form=form),
        reply_ref=None if raw_ref is None else read_reply_ref(raw_ref, form=form),
    )
