"""The model catalogue: which models flowgate offers, their limits, aliases and enums.

Pure data and lookups, no I/O. The *request* names (``imagen-4``,
``nano-banana-2``, ``veo-3.1-fast`` …) are the contract's; the *upstream* ids
are the Gemini API's defaults, which an account's ``modelMap`` may override
(Google renames and retires models often, see DESIGN §4).

Two kinds of limits live here and must not be confused:

* the **contract** limits (``max_references``, the aspect ratios) — what a
  request may ask for, checked when the request is parsed;
* the **default upstream's** abilities (``supports_references``,
  ``supports_seed``) — what the Gemini API call behind the model can honour.
  The balancer / provider layer uses these (or a provider's own report) to
  pick an account that can serve a request, or to answer 400 when none can.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from flowgate.domain.errors import InvalidRequest

CallKind = Literal["predict", "generate_content", "predict_long_running"]
"""How the Gemini API is called: ``:predict``, ``:generateContent``, ``:predictLongRunning``."""


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageModel:
    """One image model offered by ``POST /images``.

    ``max_references`` is the contract's per-model image-reference budget
    (``reference_*`` plus every image of every ``character_*``).
    ``supports_references`` / ``supports_seed`` describe the *default Gemini
    API upstream call*, not the contract: Imagen's ``:predict`` takes neither
    reference images nor a seed there (Vertex AI's does).
    """

    name: str
    display_name: str
    default_upstream_id: str
    call_kind: CallKind
    max_references: int
    supports_auto_aspect_ratio: bool
    supports_references: bool
    supports_seed: bool
    upscalable: bool
    model_name_type: str
    model_name_type_with_references: str


IMAGEN_4 = "imagen-4"
NANO_BANANA_2 = "nano-banana-2"
NANO_BANANA_PRO = "nano-banana-pro"

# modelNameType (seed 000 lists IMAGEN_3_5, R2I, GEM_PIX, GEM_PIX_2, NARWHAL).
# These are the Flow web app's internal model names: IMAGEN_3_5 is what Flow
# calls Imagen 4 (seed 000's imagen-4 example answers IMAGEN_3_5), R2I is
# Imagen's "reference to image" variant used when references are sent,
# GEM_PIX is Gemini 2.5 Flash Image (the old nano-banana, no longer offered:
# the alias now maps to nano-banana-2), GEM_PIX_2 is Nano Banana Pro and
# NARWHAL is Nano Banana 2 (the two values seed 000 added together with
# nano-banana-2).
_IMAGE_MODEL_LIST: tuple[ImageModel, ...] = (
    ImageModel(
        name=IMAGEN_4,
        display_name="Imagen 4",
        default_upstream_id="imagen-4.0-generate-001",
        call_kind="predict",
        max_references=3,
        supports_auto_aspect_ratio=False,
        supports_references=False,
        supports_seed=False,
        upscalable=False,
        model_name_type="IMAGEN_3_5",
        model_name_type_with_references="R2I",
    ),
    ImageModel(
        name=NANO_BANANA_2,
        display_name="Nano Banana 2 (Gemini 3.1 Flash Image)",
        default_upstream_id="gemini-3.1-flash-image-preview",
        call_kind="generate_content",
        max_references=10,
        supports_auto_aspect_ratio=True,
        supports_references=True,
        supports_seed=True,
        upscalable=True,
        model_name_type="NARWHAL",
        model_name_type_with_references="NARWHAL",
    ),
    ImageModel(
        name=NANO_BANANA_PRO,
        display_name="Nano Banana Pro (Gemini 3 Pro Image)",
        default_upstream_id="gemini-3-pro-image-preview",
        call_kind="generate_content",
        max_references=10,
        supports_auto_aspect_ratio=True,
        supports_references=True,
        supports_seed=True,
        upscalable=True,
        model_name_type="GEM_PIX_2",
        model_name_type_with_references="GEM_PIX_2",
    ),
)

IMAGE_MODELS: Mapping[str, ImageModel] = MappingProxyType({m.name: m for m in _IMAGE_MODEL_LIST})
"""Canonical image model name → model, in the contract's order."""

IMAGE_MODEL_ALIASES: Mapping[str, str] = MappingProxyType({"nano-banana": NANO_BANANA_2})
"""Legacy request names → canonical names (seed 000: ``nano-banana`` → ``nano-banana-2``)."""

DEFAULT_IMAGE_MODEL_TEXT_ONLY = IMAGEN_4
DEFAULT_IMAGE_MODEL_WITH_REFERENCES = NANO_BANANA_2


# --------------------------------------------------------------------------- videos


@dataclass(frozen=True)
class VideoModel:
    """One video model offered by ``POST /videos`` (Veo 3.1 on the Gemini API)."""

    name: str
    display_name: str
    default_upstream_id: str
    call_kind: CallKind
    max_reference_images: int
    clip_seconds: int
    frames_per_second: int


VEO_FAST = "veo-3.1-fast"
VEO_QUALITY = "veo-3.1-quality"
VEO_LITE = "veo-3.1-lite"

_VIDEO_MODEL_LIST: tuple[VideoModel, ...] = (
    VideoModel(
        name=VEO_FAST,
        display_name="Veo 3.1 - Fast",
        default_upstream_id="veo-3.1-fast-generate-preview",
        call_kind="predict_long_running",
        max_reference_images=3,
        clip_seconds=8,
        frames_per_second=24,
    ),
    VideoModel(
        name=VEO_QUALITY,
        display_name="Veo 3.1 - Quality",
        default_upstream_id="veo-3.1-generate-preview",
        call_kind="predict_long_running",
        max_reference_images=3,
        clip_seconds=8,
        frames_per_second=24,
    ),
    VideoModel(
        name=VEO_LITE,
        display_name="Veo 3.1 - Lite",
        default_upstream_id="veo-3.1-lite-generate-preview",
        call_kind="predict_long_running",
        max_reference_images=3,
        clip_seconds=8,
        frames_per_second=24,
    ),
)

VIDEO_MODELS: Mapping[str, VideoModel] = MappingProxyType({m.name: m for m in _VIDEO_MODEL_LIST})
"""Canonical video model name → model."""

# The contract's POST videos default is unspecified; videos/extend defaults to
# veo-3.1-fast, so flowgate uses the same for every video endpoint.
DEFAULT_VIDEO_MODEL = VEO_FAST

VideoMode = Literal["t2v", "i2v", "i2v_fl", "r2v"]
"""Text-to-video, start frame, start+end frame, reference images."""

VIDEO_OUTPUT_MODEL_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "t2v": "veo_3_1_t2v",
        "i2v": "veo_3_1_i2v",
        "i2v_fl": "veo_3_1_i2v_fl",
        "r2v": "veo_3_1_r2v",
    }
)
"""Video mode → the contract's ``video.model`` value in responses."""


# Names a client may plausibly send that flowgate does not offer, with advice.
_NOT_OFFERED_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "veo-3.1-fast-relaxed": (
            "veo-3.1-fast-relaxed is a lower-priority queue of Google's consumer web app "
            "that official APIs do not have; use veo-3.1-lite (cheapest) or veo-3.1-fast"
        ),
    }
)


# --------------------------------------------------------------------------- lookups


def _model_name_hint(name: str) -> str:
    """A sentence pointing from an upstream id or wrong family to the request name, or ''."""
    for model in _IMAGE_MODEL_LIST:
        if name == model.default_upstream_id:
            return f" ('{name}' is the upstream id of {model.name}; send model '{model.name}')"
    for video in _VIDEO_MODEL_LIST:
        if name == video.default_upstream_id:
            return f" ('{name}' is the upstream id of {video.name}; send model '{video.name}')"
    return ""


def image_model_names() -> list[str]:
    """Every name ``model`` accepts on ``POST /images``: canonical names, then aliases."""
    return [*IMAGE_MODELS, *IMAGE_MODEL_ALIASES]


def video_model_names() -> list[str]:
    """Every name ``model`` accepts on the video endpoints."""
    return list(VIDEO_MODELS)


def resolve_image_model(name: str) -> ImageModel:
    """The image model for a request name (aliases resolved, case and spaces ignored).

    Raises :class:`InvalidRequest` naming the supported values when unknown.
    """
    if not isinstance(name, str):
        raise InvalidRequest(f"model must be a string, one of: {', '.join(image_model_names())}")
    key = name.strip().lower()
    key = IMAGE_MODEL_ALIASES.get(key, key)
    model = IMAGE_MODELS.get(key)
    if model is not None:
        return model
    if key in VIDEO_MODELS:
        raise InvalidRequest(
            f"model '{name}' is a video model: send it to POST /videos; "
            f"POST /images takes one of: {', '.join(image_model_names())}"
        )
    raise InvalidRequest(
        f"model '{name}' is not supported{_model_name_hint(key)}; "
        f"send one of: {', '.join(image_model_names())}"
    )


def resolve_video_model(name: str) -> VideoModel:
    """The video model for a request name (case and spaces ignored).

    Raises :class:`InvalidRequest` naming the supported values when unknown.
    """
    if not isinstance(name, str):
        raise InvalidRequest(f"model must be a string, one of: {', '.join(VIDEO_MODELS)}")
    key = name.strip().lower()
    model = VIDEO_MODELS.get(key)
    if model is not None:
        return model
    if key in IMAGE_MODELS or key in IMAGE_MODEL_ALIASES:
        raise InvalidRequest(
            f"model '{name}' is an image model: send it to POST /images; "
            f"video endpoints take one of: {', '.join(VIDEO_MODELS)}"
        )
    hint = _NOT_OFFERED_HINTS.get(key)
    if hint:
        raise InvalidRequest(f"model '{name}' is not offered by flowgate: {hint}")
    raise InvalidRequest(
        f"model '{name}' is not supported{_model_name_hint(key)}; "
        f"send one of: {', '.join(VIDEO_MODELS)} (or a model an account maps in modelMap)"
    )


def default_image_model(has_references: bool) -> ImageModel:
    """Auto-selection when ``model`` is omitted: any reference → nano-banana-2, else imagen-4."""
    if has_references:
        return IMAGE_MODELS[DEFAULT_IMAGE_MODEL_WITH_REFERENCES]
    return IMAGE_MODELS[DEFAULT_IMAGE_MODEL_TEXT_ONLY]


def model_name_type(model: str, has_references: bool) -> str:
    """The response's ``generatedImage.modelNameType`` for a canonical image model."""
    entry = IMAGE_MODELS[model]
    return entry.model_name_type_with_references if has_references else entry.model_name_type


def _canonical_model_name(flowgate_model: str) -> str:
    key = flowgate_model.strip().lower()
    key = IMAGE_MODEL_ALIASES.get(key, key)
    if key in IMAGE_MODELS or key in VIDEO_MODELS:
        return key
    names = [*image_model_names(), *VIDEO_MODELS]
    raise InvalidRequest(
        f"model '{flowgate_model}' is not supported; send one of: {', '.join(names)}"
    )


def default_upstream_model_id(flowgate_model: str) -> str:
    """The Gemini API model id flowgate uses for a model when no ``modelMap`` overrides it."""
    key = _canonical_model_name(flowgate_model)
    image = IMAGE_MODELS.get(key)
    if image is not None:
        return image.default_upstream_id
    return VIDEO_MODELS[key].default_upstream_id


def upstream_model_id(flowgate_model: str, model_map: Mapping[str, str] | None) -> str:
    """The upstream model id for ``flowgate_model`` on an account with ``model_map``.

    An account's ``modelMap`` entry (keyed by canonical name, or by the alias
    as given) overrides the catalogue's default id. A name the catalogue does not
    know (a newer upstream model) resolves only through ``model_map``.
    """
    if model_map and flowgate_model not in IMAGE_MODELS and flowgate_model not in VIDEO_MODELS:
        custom = model_map.get(flowgate_model)
        if isinstance(custom, str) and custom.strip():
            return custom.strip()
    key = _canonical_model_name(flowgate_model)
    if model_map:
        for candidate in (key, flowgate_model):
            override = model_map.get(candidate)
            if isinstance(override, str) and override.strip():
                return override.strip()
    return default_upstream_model_id(key)


_MAX_UPSTREAM_ID_LENGTH = 200
_CUSTOM_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _custom_or_canonical(name: str, field: str) -> str:
    """A catalogue name (canonicalized), or a new model name an account maps upstream."""
    key = name.strip().lower()
    if key in IMAGE_MODELS or key in VIDEO_MODELS or key in IMAGE_MODEL_ALIASES:
        return _canonical_model_name(key)
    if not _CUSTOM_MODEL_NAME.match(key):
        raise InvalidRequest(
            f"{field} key {name!r} must be a model name (lowercase letters, digits, . _ -)"
        )
    return key


def validate_model_map(model_map: Any, *, field: str = "modelMap") -> dict[str, str]:
    """Check an account's ``modelMap`` and return it keyed by canonical model names.

    Keys must be flowgate model names (aliases are canonicalized), values
    non-empty upstream ids without whitespace. Raises :class:`InvalidRequest`.
    """
    if model_map is None:
        return {}
    if not isinstance(model_map, Mapping):
        raise InvalidRequest(
            f"{field} must be an object mapping flowgate model names to upstream model ids, "
            'e.g. {"imagen-4": "imagen-4.0-fast-generate-001"}'
        )
    result: dict[str, str] = {}
    for raw_key, raw_value in model_map.items():
        if not isinstance(raw_key, str):
            raise InvalidRequest(f"{field} keys must be model names")
        key = _custom_or_canonical(raw_key, field)
        if (
            not isinstance(raw_value, str)
            or not raw_value.strip()
            or any(ch.isspace() for ch in raw_value.strip())
            or len(raw_value) > _MAX_UPSTREAM_ID_LENGTH
        ):
            known = key in IMAGE_MODELS or key in VIDEO_MODELS
            example = default_upstream_model_id(key) if known else "veo-3.1-generate-preview"
            raise InvalidRequest(
                f"{field}['{raw_key}'] must be a non-empty upstream model id without spaces "
                f"(at most {_MAX_UPSTREAM_ID_LENGTH} characters), e.g. '{example}'"
            )
        result[key] = raw_value.strip()
    return result


# --------------------------------------------------------------------------- image aspect ratios

IMAGE_ASPECT_RATIOS: tuple[str, ...] = ("16:9", "4:3", "1:1", "3:4", "9:16")
"""The fixed image ratios every image model accepts, in the contract's order."""

AUTO_ASPECT_RATIO = "auto"

IMAGE_ASPECT_RATIO_ALIASES: Mapping[str, str] = MappingProxyType(
    {"landscape": "16:9", "portrait": "9:16"}
)
"""Legacy request values (seed 002) → current ratios."""

IMAGE_ASPECT_RATIO_ENUMS: Mapping[str, str] = MappingProxyType(
    {
        "16:9": "IMAGE_ASPECT_RATIO_LANDSCAPE",
        "4:3": "IMAGE_ASPECT_RATIO_LANDSCAPE_FOUR_THREE",
        "1:1": "IMAGE_ASPECT_RATIO_SQUARE",
        "3:4": "IMAGE_ASPECT_RATIO_PORTRAIT_THREE_FOUR",
        "9:16": "IMAGE_ASPECT_RATIO_PORTRAIT",
    }
)
"""Ratio → the response's ``generatedImage.aspectRatio`` enum."""

DEFAULT_IMAGE_ASPECT_RATIO = "16:9"


def image_aspect_ratio_values() -> list[str]:
    """Every value ``aspectRatio`` accepts on ``POST /images`` (ratios, auto, aliases)."""
    return [*IMAGE_ASPECT_RATIOS, AUTO_ASPECT_RATIO, *IMAGE_ASPECT_RATIO_ALIASES]


def normalize_image_aspect_ratio(value: str, *, field: str = "aspectRatio") -> str:
    """``landscape`` → ``16:9`` etc.; returns a ratio of :data:`IMAGE_ASPECT_RATIOS` or ``auto``.

    Only checks the value; whether ``auto`` is allowed for a request is the
    request parser's rule. Raises :class:`InvalidRequest` when unknown.
    """
    if isinstance(value, str):
        key = value.strip().lower()
        key = IMAGE_ASPECT_RATIO_ALIASES.get(key, key)
        if key in IMAGE_ASPECT_RATIOS or key == AUTO_ASPECT_RATIO:
            return key
    raise InvalidRequest(
        f"{field} {value!r} is not supported; send one of: {', '.join(image_aspect_ratio_values())}"
    )


def image_aspect_ratio_enum(ratio: str) -> str:
    """The response enum for a ratio (``16:9`` → ``IMAGE_ASPECT_RATIO_LANDSCAPE``); aliases ok.

    ``auto`` has no enum: resolve it with :func:`image_aspect_ratio` first (KeyError otherwise).
    """
    key = IMAGE_ASPECT_RATIO_ALIASES.get(ratio, ratio)
    return IMAGE_ASPECT_RATIO_ENUMS[key]


def _ratio_value(ratio: str) -> float:
    width, _, height = ratio.partition(":")
    return int(width) / int(height)


def image_aspect_ratio(width: int, height: int) -> str:
    """The supported image ratio nearest to ``width``x``height`` (what ``auto`` resolves to).

    Distance is measured on the log of the ratio so that 2:1 and 1:2 are
    equally far from 1:1. Ties go to the ratio listed first.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    target = math.log(width / height)
    return min(IMAGE_ASPECT_RATIOS, key=lambda r: abs(math.log(_ratio_value(r)) - target))


def default_image_aspect_ratio(model: ImageModel, has_references: bool) -> str:
    """The contract's default: ``auto`` for nano-banana image-to-image, else ``16:9``."""
    if has_references and model.supports_auto_aspect_ratio:
        return AUTO_ASPECT_RATIO
    return DEFAULT_IMAGE_ASPECT_RATIO


# --------------------------------------------------------------------------- video aspect ratios

VIDEO_ASPECT_RATIOS: tuple[str, ...] = ("landscape", "portrait")
"""The contract's video ``aspectRatio`` values (Veo 3.1 renders 16:9 and 9:16 only)."""

VIDEO_ASPECT_RATIO_ALIASES: Mapping[str, str] = MappingProxyType(
    {"16:9": "landscape", "9:16": "portrait"}
)

VIDEO_ASPECT_RATIO_ENUMS: Mapping[str, str] = MappingProxyType(
    {"landscape": "VIDEO_ASPECT_RATIO_LANDSCAPE", "portrait": "VIDEO_ASPECT_RATIO_PORTRAIT"}
)
"""Video ratio → the response's ``video.aspectRatio`` enum."""

VIDEO_UPSTREAM_ASPECT_RATIOS: Mapping[str, str] = MappingProxyType(
    {"landscape": "16:9", "portrait": "9:16"}
)
"""Video ratio → Veo's ``parameters.aspectRatio``."""

DEFAULT_VIDEO_ASPECT_RATIO = "landscape"


def normalize_video_aspect_ratio(value: str, *, field: str = "aspectRatio") -> str:
    """``16:9`` → ``landscape``, ``9:16`` → ``portrait``; anything else: :class:`InvalidRequest`."""
    if isinstance(value, str):
        key = value.strip().lower()
        key = VIDEO_ASPECT_RATIO_ALIASES.get(key, key)
        if key in VIDEO_ASPECT_RATIOS:
            return key
        if key in ("square", "1:1"):
            raise InvalidRequest(
                f"{field} '{value}' is not available: Veo 3.1 renders landscape (16:9) "
                "or portrait (9:16) only; send landscape or portrait"
            )
    raise InvalidRequest(
        f"{field} {value!r} is not supported; send one of: landscape, portrait, 16:9, 9:16"
    )
