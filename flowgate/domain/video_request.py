"""Request rules of ``POST /v1/google-flow/videos`` (contract §6 D1), as pure code.

The hosted service's POST videos page is truncated in the seeds, so its
parameter list is reassembled from the 201 model and the job record (contract
§6); where the seeds are silent flowgate chooses, and says so here:

* ``model`` defaults to ``veo-3.1-fast`` (the videos/extend default);
* ``aspectRatio`` is ``landscape`` or ``portrait`` (``16:9`` / ``9:16`` are
  accepted as aliases), default ``landscape``; ``square`` is refused because
  Veo 3.1 cannot render it;
* ``count`` is 1-4, default **1** (each clip costs credits; extend also
  defaults to 1);
* the mode follows from the image fields: none → text-to-video, ``startImage``
  → image-to-video, ``startImage`` + ``endImage`` → first-and-last frame,
  ``referenceImage_1..3`` → reference-to-video. ``endImage`` alone and mixing
  reference images with frames are refused (Veo takes one or the other).

JSON vs multipart and ``null`` handling are as in :mod:`flowgate.domain.image_request`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowgate.domain.captcha import CAPTCHA_FIELDS, validate_captcha_fields
from flowgate.domain.catalogue import (
    DEFAULT_VIDEO_ASPECT_RATIO,
    DEFAULT_VIDEO_MODEL,
    VIDEO_MODELS,
    VideoMode,
    normalize_video_aspect_ratio,
    resolve_video_model,
)
from flowgate.domain.errors import InvalidRequest
from flowgate.domain.ids import ParsedMediaId, mask_email, media_generation_id
from flowgate.domain.image_request import (
    SEED_MAX,
    SEED_MIN,
    is_absent,
    read_email,
    read_image_media_id,
    read_optional_integer,
    read_prompt,
    read_reply_ref,
    read_reply_url,
    read_string,
)

VIDEO_COUNT_MIN = 1
VIDEO_COUNT_MAX = 4
DEFAULT_VIDEO_COUNT = 1
VIDEO_DURATIONS = (4, 6, 8)
DEFAULT_VIDEO_DURATION = 8
REFERENCE_IMAGE_SLOTS = 3

REFERENCE_IMAGE_FIELDS: tuple[str, ...] = tuple(
    f"referenceImage_{n}" for n in range(1, REFERENCE_IMAGE_SLOTS + 1)
)
VIDEO_REQUEST_FIELDS: frozenset[str] = frozenset(
    (
        "prompt",
        "model",
        "aspectRatio",
        "count",
        "duration",
        "seed",
        "startImage",
        "endImage",
        *REFERENCE_IMAGE_FIELDS,
        "async",
        "email",
        "replyUrl",
        "replyRef",
        *CAPTCHA_FIELDS,
    )
)
"""Every parameter name ``POST /videos`` accepts."""

_ACCEPTED_SUMMARY = (
    "prompt, model, aspectRatio, count, duration, seed, startImage, endImage, "
    "referenceImage_1…referenceImage_3, async, email, replyUrl, replyRef, "
    "captchaToken, captchaRetry, captchaOrder"
)
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def _normalized_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_SUGGESTIONS: dict[str, str] = {
    **{_normalized_name(field): field for field in VIDEO_REQUEST_FIELDS},
    "image": "startImage",
    "firstframe": "startImage",
    "startframe": "startImage",
    "lastframe": "endImage",
    "endframe": "endImage",
    "ratio": "aspectRatio",
    "callbackurl": "replyUrl",
    "webhook": "replyUrl",
    **{f"reference{n}": f"referenceImage_{n}" for n in range(1, REFERENCE_IMAGE_SLOTS + 1)},
    **{f"ref{n}": f"referenceImage_{n}" for n in range(1, REFERENCE_IMAGE_SLOTS + 1)},
}


@dataclass(frozen=True)
class VideoRequestSpec:
    """A valid ``POST /videos`` request with every default applied."""

    prompt: str
    model: str
    aspect_ratio: str
    count: int
    duration: int
    seed: int | None
    mode: VideoMode
    start_image: ParsedMediaId | None
    end_image: ParsedMediaId | None
    reference_images: tuple[tuple[str, ParsedMediaId], ...]
    async_mode: bool
    email: str | None
    reply_url: str | None
    reply_ref: str | None


def read_boolean(value: Any, *, field: str, form: bool) -> bool:
    """A boolean: JSON ``true``/``false``; multipart ``true false 1 0 yes no on off``."""
    if isinstance(value, bool):
        return value
    if form and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise InvalidRequest(f"{field} must be a boolean (true or false); got {value!r}")


def _check_parameter_names(data: Mapping[str, Any]) -> None:
    unknown = [str(name) for name in data if name not in VIDEO_REQUEST_FIELDS]
    if not unknown:
        return
    described = []
    for name in unknown:
        if re.fullmatch(r"referenceImage_[0-9]+", name):
            described.append(f"{name} (reference images are referenceImage_1 to referenceImage_3)")
            continue
        suggestion = _SUGGESTIONS.get(_normalized_name(name))
        described.append(f"{name} (did you mean {suggestion}?)" if suggestion else name)
    raise InvalidRequest(
        f"Unknown parameter(s): {', '.join(described)}. POST /videos accepts: {_ACCEPTED_SUMMARY}"
    )


def _optional_image(data: Mapping[str, Any], field: str, form: bool) -> ParsedMediaId | None:
    value = data.get(field)
    if is_absent(value, form=form):
        return None
    return read_image_media_id(value, field=field, form=form)


def parse_video_request(
    data: Mapping[str, Any], *, form: bool = False, custom_models: frozenset[str] = frozenset()
) -> VideoRequestSpec:
    """Validate a ``POST /videos`` body and apply flowgate's defaults (module docstring).

    Raises :class:`InvalidRequest` naming the field and the rule at the first violation.
    """
    if not isinstance(data, Mapping):
        raise InvalidRequest("The request body must be a JSON object (or a multipart form)")
    _check_parameter_names(data)
    validate_captcha_fields(data, form=form)
    raw_prompt = data.get("prompt")
    prompt = read_prompt(None if is_absent(raw_prompt, form=form) else raw_prompt, form=form)

    raw_model = data.get("model")
    if is_absent(raw_model, form=form):
        model_name = VIDEO_MODELS[DEFAULT_VIDEO_MODEL].name
    else:
        text = read_string(raw_model, field="model", form=form).strip().lower()
        # A model an account maps in its modelMap (a newer Veo) is accepted as is.
        model_name = text if text in custom_models else resolve_video_model(text).name
    raw_ratio = data.get("aspectRatio")
    aspect_ratio = (
        DEFAULT_VIDEO_ASPECT_RATIO
        if is_absent(raw_ratio, form=form)
        else normalize_video_aspect_ratio(read_string(raw_ratio, field="aspectRatio", form=form))
    )
    count = read_optional_integer(
        data,
        "count",
        form=form,
        minimum=VIDEO_COUNT_MIN,
        maximum=VIDEO_COUNT_MAX,
        default=DEFAULT_VIDEO_COUNT,
    )
    duration = read_optional_integer(
        data, "duration", form=form, minimum=4, maximum=8, default=DEFAULT_VIDEO_DURATION
    )
    if duration not in VIDEO_DURATIONS:
        raise InvalidRequest("duration must be 4, 6 or 8 (seconds; default 8)")
    seed = read_optional_integer(
        data, "seed", form=form, minimum=SEED_MIN, maximum=SEED_MAX, default=None
    )

    start_image = _optional_image(data, "startImage", form)
    end_image = _optional_image(data, "endImage", form)
    reference_images = tuple(
        (name, read_image_media_id(data[name], field=name, form=form))
        for name in REFERENCE_IMAGE_FIELDS
        if not is_absent(data.get(name), form=form)
    )
    if end_image is not None and start_image is None:
        raise InvalidRequest(
            "endImage needs startImage: send startImage (first frame) together with endImage "
            "(last frame), or send the image as startImage alone"
        )
    if reference_images and (start_image is not None or end_image is not None):
        raise InvalidRequest(
            "referenceImage_* cannot be combined with startImage/endImage: Veo takes either "
            "frames or reference images; send one kind"
        )
    if reference_images and duration != 8:
        raise InvalidRequest(
            "duration must be 8 with referenceImage_* (Veo renders reference "
            "videos at 8 seconds only)"
        )
    mode: VideoMode
    if reference_images:
        mode = "r2v"
    elif end_image is not None:
        mode = "i2v_fl"
    elif start_image is not None:
        mode = "i2v"
    else:
        mode = "t2v"

    raw_async = data.get("async")
    async_mode = (
        False
        if is_absent(raw_async, form=form)
        else read_boolean(raw_async, field="async", form=form)
    )
    raw_email = data.get("email")
    email = None if is_absent(raw_email, form=form) else read_email(raw_email, form=form)
    raw_url = data.get("replyUrl")
    reply_url = None if is_absent(raw_url, form=form) else read_reply_url(raw_url, form=form)
    raw_ref = data.get("replyRef")
    reply_ref = None if is_absent(raw_ref, form=form) else read_reply_ref(raw_ref, form=form)

    return VideoRequestSpec(
        prompt=prompt,
        model=model_name,
        aspect_ratio=aspect_ratio,
        count=count,
        duration=duration,
        seed=seed,
        mode=mode,
        start_image=start_image,
        end_image=end_image,
        reference_images=reference_images,
        async_mode=async_mode,
        email=email,
        reply_url=reply_url,
        reply_ref=reply_ref,
    )


def _id_string(parsed: ParsedMediaId) -> str:
    return media_generation_id(parsed.user_id, parsed.email, parsed.kind, parsed.media_id)


def video_request_echo(spec: VideoRequestSpec) -> dict[str, Any]:
    """The job record's ``request`` object for ``spec`` (contract §6 D1 201 model).

    ``async`` appears only when true (as in the contract's examples); email
    masked; image fields as id strings; absent optional fields omitted.
    """
    echo: dict[str, Any] = {}
    if spec.async_mode:
        echo["async"] = True
    echo |= {
        "prompt": spec.prompt,
        "model": spec.model,
        "aspectRatio": spec.aspect_ratio,
        "count": spec.count,
        "duration": spec.duration,
    }
    if spec.seed is not None:
        echo["seed"] = spec.seed
    if spec.email is not None:
        echo["email"] = mask_email(spec.email)
    if spec.start_image is not None:
        echo["startImage"] = _id_string(spec.start_image)
    if spec.end_image is not None:
        echo["endImage"] = _id_string(spec.end_image)
    for name, parsed in spec.reference_images:
        echo[name] = _id_string(parsed)
    if spec.reply_url is not None:
        echo["replyUrl"] = spec.reply_url
    if spec.reply_ref is not None:
        echo["replyRef"] = spec.reply_ref
    return echo
