"""Every rule of ``POST /v1/google-flow/images/upscale`` (contract §5 C2, S4 Feb 2026).

:func:`parse_upscale_request` turns a decoded JSON object or multipart fields
into an :class:`UpscaleRequestSpec`, or raises :class:`InvalidRequest` with a
message that names the field and what to send instead. The rules that need
the stored image or the account (which model made the image, the account's
``tier``) are the pure functions :func:`check_upscalable` and
:func:`check_tier`, called by the service once it has loaded them. The
geometry of the result (:func:`upscaled_size`, :func:`upstream_aspect_ratio`)
lives here too, so the upstream and the local path agree on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flowgate.domain.captcha import CAPTCHA_FIELDS, validate_captcha_fields
from flowgate.domain.catalogue import IMAGE_MODELS, NANO_BANANA_PRO
from flowgate.domain.errors import InvalidRequest
from flowgate.domain.ids import ParsedMediaId, parse_media_generation_id
from flowgate.domain.image_request import is_absent, read_string

Resolution = Literal["2k", "4k"]

UPSCALE_LONG_SIDES: Mapping[str, int] = {"2k": 2048, "4k": 4096}
"""Requested resolution → long side of the answered image in pixels."""

UPSCALE_IMAGE_SIZES: Mapping[str, str] = {"2k": "2K", "4k": "4K"}
"""Requested resolution → the Gemini API's ``imageConfig.imageSize``."""

DEFAULT_RESOLUTION: Resolution = "2k"
PAID_ONLY_RESOLUTIONS = frozenset({"4k"})

UPSCALE_MODEL = NANO_BANANA_PRO
"""The model that re-renders an image at 2K/4K on the Gemini API (quarantine and stats key)."""

UPSCALER_NANO_BANANA_PRO = "nano-banana-pro"
"""``upscaler`` of a result re-rendered upstream by Nano Banana Pro at ``imageSize`` 2K/4K."""

UPSCALER_LANCZOS = "lanczos"
"""``upscaler`` of a result resampled by flowgate itself (Lanczos)."""

UPSCALE_PROMPT = (
    "Upscale this image to a higher resolution. Reproduce it exactly: the same composition, "
    "subjects, colours, lighting, text and framing. Only add fine detail and sharpness; do not "
    "add, remove or change anything."
)
"""The instruction sent with the source image as the only reference."""

UPSCALE_FIELDS: tuple[str, ...] = ("mediaGenerationId", "resolution", *CAPTCHA_FIELDS)
"""Every parameter name ``POST /images/upscale`` accepts."""

# Parameters a client may send by habit from other endpoints, with advice.
_NOT_OFFERED: Mapping[str, str] = {
    "email": "POST /images/upscale picks the account itself: the one that made the image "
    "when it can, else any eligible account",
    "prompt": "an upscale keeps the image as it is; to change it use POST /images with reference_1",
    "model": "upscales are re-rendered by nano-banana-pro (or resampled locally)",
    "aspectRatio": "an upscale keeps the source image's aspect ratio",
    "replyUrl": "POST /images/upscale is synchronous and posts no webhooks",
    "imageSize": "send resolution: 2k or 4k",
    "size": "send resolution: 2k or 4k",
}

# Aspect ratios the Gemini API's imageConfig takes on the Gemini 3 image models.
GEMINI_IMAGE_RATIOS: tuple[str, ...] = (
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
)
# How far (relative) a source's proportions may be from a named ratio to send that ratio.
_RATIO_TOLERANCE = 0.01


@dataclass(frozen=True)
class UpscaleRequestSpec:
    """A valid upscale request: which image, at which resolution (``2k`` or ``4k``)."""

    media: ParsedMediaId
    media_generation_id: str
    resolution: Resolution

    @property
    def long_side(self) -> int:
        """Long side of the answered image in pixels (2048 or 4096)."""
        return UPSCALE_LONG_SIDES[self.resolution]

    @property
    def image_size(self) -> str:
        """The Gemini API's ``imageSize`` for this resolution (``"2K"`` or ``"4K"``)."""
        return UPSCALE_IMAGE_SIZES[self.resolution]


def _check_parameter_names(data: Mapping[str, Any]) -> None:
    unknown = [str(name) for name in data if name not in UPSCALE_FIELDS]
    if not unknown:
        return
    described = [
        f"{name} ({_NOT_OFFERED[name]})" if name in _NOT_OFFERED else name for name in unknown
    ]
    raise InvalidRequest(
        f"Unknown parameter(s): {', '.join(described)}. POST /images/upscale accepts: "
        f"{', '.join(UPSCALE_FIELDS)}"
    )


def _read_media_id(value: Any, *, form: bool) -> tuple[ParsedMediaId, str]:
    if is_absent(value, form=form) or (isinstance(value, str) and not value.strip()):
        raise InvalidRequest("mediaGenerationId is required")
    text = read_string(value, field="mediaGenerationId", form=form).strip()
    try:
        parsed = parse_media_generation_id(text)
    except InvalidRequest:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidRequest(
            "mediaGenerationId must be the id of an image made by POST /images, like "
            f"'user:{{uid}}-email:{{hex}}-image:{{id}}'; got {shown!r}"
        ) from None
    if parsed.kind != "image":
        raise InvalidRequest(
            f"mediaGenerationId type must be 'image', got '{parsed.kind}': "
            "POST /images/upscale upscales images made by POST /images"
        )
    return parsed, text


def _read_resolution(value: Any, *, form: bool) -> Resolution:
    if is_absent(value, form=form):
        return DEFAULT_RESOLUTION
    text = read_string(value, field="resolution", form=form).strip().lower()
    if text == "2k":
        return "2k"
    if text == "4k":
        return "4k"
    raise InvalidRequest(f"resolution must be 2k or 4k (default 2k); got {value!r}")


def parse_upscale_request(data: Mapping[str, Any], *, form: bool = False) -> UpscaleRequestSpec:
    """Validate a ``POST /images/upscale`` body and apply the default resolution (``2k``).

    Rules, in order: unknown parameter names; captcha fields (validated as on
    POST /images, then ignored); ``mediaGenerationId`` required (exactly
    ``mediaGenerationId is required`` when missing), a well-formed image id;
    ``resolution`` ``2k`` or ``4k`` (case-insensitive). ``form=True``: multipart
    fields, where an empty field counts as not sent.
    """
    if not isinstance(data, Mapping):
        raise InvalidRequest("The request body must be a JSON object (or a multipart form)")
    _check_parameter_names(data)
    validate_captcha_fields(data, form=form)
    parsed, text = _read_media_id(data.get("mediaGenerationId"), form=form)
    resolution = _read_resolution(data.get("resolution"), form=form)
    return UpscaleRequestSpec(media=parsed, media_generation_id=text, resolution=resolution)


def _upscalable_names() -> str:
    return " and ".join(m.name for m in IMAGE_MODELS.values() if m.upscalable)


def check_upscalable(model: str | None, source: str) -> None:
    """400 unless the image was generated by an upscalable model (nano-banana-2 / -pro).

    ``source`` is the media row's origin (``upload`` or ``generated``);
    ``model`` the canonical model that generated it.
    """
    names = _upscalable_names()
    if source == "upload":
        raise InvalidRequest(
            f"Only images made by {names} can be upscaled; this mediaGenerationId is an uploaded "
            f"asset (POST /assets). Pass it as reference_1 to POST /images with model "
            f"nano-banana-2 or nano-banana-pro and upscale that result"
        )
    entry = IMAGE_MODELS.get(model or "")
    if entry is None or not entry.upscalable:
        made_by = f"by {model}" if model else "without a model"
        raise InvalidRequest(
            f"Only images made by {names} can be upscaled; this image was made {made_by}. "
            "Generate it with model nano-banana-2 or nano-banana-pro (or pass it as "
            "reference_1 to one of them) and upscale that result"
        )


def check_tier(resolution: str, tier: str | None, email: str | None) -> None:
    """400 when a 4k upscale is asked of an image whose account is marked ``tier: "free"``."""
    if resolution in PAID_ONLY_RESOLUTIONS and tier == "free":
        raise InvalidRequest(
            f"{resolution} upscales need a paid account: the image was made on {email}, which "
            'is marked "tier": "free" (free Google accounts can upscale to 2k only). Send '
            'resolution 2k, or mark the account "tier": "paid" with POST /accounts if its '
            "plan is paid"
        )


def upscaled_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled so that the long side is ``long_side``, ratio kept.

    The short side is rounded to the nearest pixel (at least 1).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if width >= height:
        return long_side, max(1, round(height * long_side / width))
    return max(1, round(width * long_side / height)), long_side


def upstream_aspect_ratio(width: int, height: int) -> str | None:
    """The Gemini ``aspectRatio`` matching ``width``:``height`` within 1 %, else ``None``.

    ``None`` means "send no ratio and let the model follow the reference image";
    the service crops the answer to the source's exact proportions either way.
    """
    if width <= 0 or height <= 0:
        return None
    target = math.log(width / height)
    best = min(GEMINI_IMAGE_RATIOS, key=lambda r: abs(_log_ratio(r) - target))
    return best if abs(_log_ratio(best) - target) <= math.log1p(_RATIO_TOLERANCE) else None


def _log_ratio(ratio: str) -> float:
    width, _, height = ratio.partition(":")
    return math.log(int(width) / int(height))
