"""``POST /v1beta/models/{veo model}:predictLongRunning``: reading and validating the body.

Accepts what Google's Gemini API accepts (see ``UPSTREAMS.md``): images as
``{"bytesBase64Encoded", "mimeType"}`` (what the google-genai SDK sends) or
``{"inlineData": {"mimeType", "data"}}``, ``numberOfVideos`` or ``sampleCount``,
``durationSeconds`` as a number or a string, camelCase or snake_case names.
Parameters the SDK refuses for the Gemini API (``seed``, ``generateAudio``,
``fps`` …) are refused here too, with the SDK's wording.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from flowgate.sandbox.google_errors import field_error, invalid_argument, unknown_field
from flowgate.sandbox.json_fields import (
    expect_int,
    expect_list,
    expect_object,
    expect_string,
    reject_unknown,
    snake_name,
    twin,
)

REQUEST_TYPE = "PredictLongRunningRequest"
ASPECT_RATIOS = ("16:9", "9:16")
DURATIONS = (4, 6, 8)
RESOLUTIONS = ("720p", "1080p", "4k")
MAX_REFERENCE_IMAGES = 3
IMAGE_MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
PERSON_GENERATION = frozenset({"dont_allow", "allow_adult", "allow_all"})
INSTANCE_FIELDS = ("prompt", "image", "lastFrame", "referenceImages", "video")
PARAMETER_FIELDS = (
    "aspectRatio",
    "resolution",
    "durationSeconds",
    "negativePrompt",
    "enhancePrompt",
    "personGeneration",
    "numberOfVideos",
    "sampleCount",
)
# Parameters of Veo on Vertex AI that the Gemini API does not take.
VERTEX_ONLY_PARAMETERS = (
    "seed",
    "fps",
    "generateAudio",
    "compressionQuality",
    "resizeMode",
    "storageUri",
    "outputGcsUri",
    "pubsubTopic",
)

# ``{base}/v1beta/files/{id}:download?alt=media``, ``files/{id}`` or the bare id.
_FILE_URI = re.compile(r"(?:^|/)(?:files/)?([a-z0-9]{6,40})(?::download)?(?:\?[^/]*)?$")


@dataclass(frozen=True)
class VideoImage:
    """An image sent with a video request (start frame, last frame or reference)."""

    mime: str
    data: bytes


@dataclass(frozen=True)
class VideoRequest:
    """A validated ``:predictLongRunning`` body (the source video is not resolved yet)."""

    prompt: str
    negative_prompt: str | None
    image: VideoImage | None
    last_frame: VideoImage | None
    references: tuple[VideoImage, ...]
    source_uri: str | None  # ``video.uri``: extend that earlier output
    aspect_ratio: str | None  # None: not given (16:9, or the source video's for extension)
    resolution: str
    duration_seconds: int

    def images(self) -> tuple[VideoImage, ...]:
        """Every image of the request, to check that each one decodes."""
        frames = tuple(image for image in (self.image, self.last_frame) if image is not None)
        return frames + self.references


def parse_predict_long_running(body: Any) -> VideoRequest:
    """Validate ``body`` like Google; raise ``GoogleApiError`` (400) if it is not acceptable."""
    body = expect_object(body, "request")
    instances = expect_list(twin(body, "instances") or [], "instances")
    if not instances:
        raise field_error(REQUEST_TYPE, "instances", "instances is not specified")
    if len(instances) > 1:
        raise invalid_argument("Only one instance is supported: send one request per video.")
    instance = expect_object(instances[0], "instances[0]")
    reject_unknown(instance, INSTANCE_FIELDS, "instances[0]")

    prompt = expect_string(twin(instance, "prompt") or "", "instances[0].prompt")
    image = _optional_image(twin(instance, "image"), "instances[0].image")
    last_frame = _optional_image(twin(instance, "lastFrame"), "instances[0].last_frame")
    references = _references(twin(instance, "referenceImages"))
    source_uri = _source_uri(twin(instance, "video"))
    if not prompt.strip() and image is None:
        raise invalid_argument("The prompt is empty. Please provide a prompt.")
    if last_frame is not None and image is None:
        raise invalid_argument("lastFrame requires image: send the first frame as well.")
    if references and (image is not None or last_frame is not None):
        raise invalid_argument(
            "referenceImages cannot be combined with image or lastFrame: use either reference "
            "images or first/last frames."
        )
    if source_uri is not None and (image is not None or last_frame is not None or references):
        raise invalid_argument(
            "video (extension) cannot be combined with image, lastFrame or referenceImages."
        )

    parameters = expect_object(twin(body, "parameters") or {}, "parameters")
    aspect_ratio, resolution, duration = _parameters(parameters)
    _check_combination(resolution, duration, references, source_uri)
    negative = twin(parameters, "negativePrompt")
    return VideoRequest(
        prompt=prompt,
        negative_prompt=None if negative is None else expect_string(negative, "negative_prompt"),
        image=image,
        last_frame=last_frame,
        references=references,
        source_uri=source_uri,
        aspect_ratio=aspect_ratio,
        resolution=resolution,
        duration_seconds=duration,
    )


def file_id_of_uri(uri: str) -> str | None:
    """The sandbox file id a ``video.uri`` points at, or ``None`` if it names no file."""
    match = _FILE_URI.search(uri.strip())
    return match.group(1) if match else None


def _parameters(parameters: dict[str, Any]) -> tuple[str | None, str, int]:
    for camel in VERTEX_ONLY_PARAMETERS:
        if camel in parameters or snake_name(camel) in parameters:
            raise invalid_argument(f"{snake_name(camel)} parameter is not supported in Gemini API.")
    allowed = set(PARAMETER_FIELDS) | {snake_name(name) for name in PARAMETER_FIELDS}
    for name in parameters:
        if name not in allowed:
            raise unknown_field(name, "parameters")

    ratio_value = twin(parameters, "aspectRatio")
    aspect_ratio = None if ratio_value is None else expect_string(ratio_value, "aspect_ratio")
    if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
        raise invalid_argument(
            f"Unsupported aspect ratio: {aspect_ratio}. Supported aspect ratios are 16:9, 9:16."
        )
    resolution = expect_string(twin(parameters, "resolution") or "720p", "resolution")
    if resolution not in RESOLUTIONS:
        raise invalid_argument(
            f"Unsupported resolution: {resolution}. Supported resolutions are 720p, 1080p, 4k."
        )
    duration_value = twin(parameters, "durationSeconds")
    duration = 8 if duration_value is None else expect_int(duration_value, "duration_seconds")
    if duration not in DURATIONS:
        raise invalid_argument(
            f"Unsupported durationSeconds: {duration}. Supported durations are 4, 6 and 8 seconds."
        )
    for name in ("numberOfVideos", "sampleCount"):
        count_value = twin(parameters, name)
        if count_value is not None and expect_int(count_value, snake_name(name)) != 1:
            raise invalid_argument(
                f"{name} must be 1: Veo 3.1 makes one video per request, send one request "
                "per video."
            )
    person = twin(parameters, "personGeneration")
    if person is not None and person not in PERSON_GENERATION:
        raise invalid_argument(
            f"Invalid personGeneration {person!r}: use dont_allow, allow_adult or allow_all."
        )
    enhance = twin(parameters, "enhancePrompt")
    if enhance is not None and not isinstance(enhance, bool):
        raise invalid_argument("Invalid value at 'parameters.enhance_prompt' (TYPE_BOOL).")
    return aspect_ratio, resolution, duration


def _check_combination(
    resolution: str,
    duration: int,
    references: tuple[VideoImage, ...],
    source_uri: str | None,
) -> None:
    if source_uri is not None and resolution != "720p":
        raise invalid_argument(
            f"Video extension supports only 720p output, but resolution is {resolution}."
        )
    if duration == 8:
        return
    if resolution != "720p":
        raise invalid_argument(
            f"durationSeconds must be 8 for {resolution}; 4 and 6 seconds are 720p only."
        )
    if references:
        raise invalid_argument("durationSeconds must be 8 when referenceImages are given.")
    if source_uri is not None:
        raise invalid_argument("durationSeconds must be 8 for video extension.")


def _optional_image(value: Any, at: str) -> VideoImage | None:
    if value is None:
        return None
    image = expect_object(value, at)
    inline = twin(image, "inlineData")
    if inline is not None:
        inline = expect_object(inline, f"{at}.inline_data")
        mime, data, data_at = twin(inline, "mimeType"), twin(inline, "data"), "inline_data.data"
    elif twin(image, "bytesBase64Encoded") is not None:
        mime, data = twin(image, "mimeType"), twin(image, "bytesBase64Encoded")
        data_at = "bytes_base64_encoded"
    elif twin(image, "gcsUri") is not None:
        raise invalid_argument("gcs_uri parameter is not supported in Gemini API.")
    else:
        raise invalid_argument(
            f"{at}: send the image as bytesBase64Encoded with mimeType, or as inlineData "
            "{mimeType, data}."
        )
    if not mime:
        raise field_error(REQUEST_TYPE, f"{at}.mime_type", "mime_type is not specified")
    mime = expect_string(mime, f"{at}.mime_type")
    if mime not in IMAGE_MIME_TYPES:
        raise invalid_argument(
            f"Unsupported MIME type {mime} for {at}: use image/png, image/jpeg or image/webp."
        )
    encoded = expect_string(data, f"{at}.{data_at}")
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument(
            f"Invalid value at '{at}.{data_at}' (TYPE_BYTES), Base64 decoding failed for "
            f'"{encoded[:20]}"'
        ) from None
    if not decoded:
        raise field_error(REQUEST_TYPE, f"{at}.{data_at}", "data is not specified")
    return VideoImage(mime=mime, data=decoded)


def _references(value: Any) -> tuple[VideoImage, ...]:
    if value is None:
        return ()
    items = expect_list(value, "instances[0].reference_images")
    if len(items) > MAX_REFERENCE_IMAGES:
        raise invalid_argument(
            f"Too many reference images: {len(items)}. At most {MAX_REFERENCE_IMAGES} are "
            "supported."
        )
    references: list[VideoImage] = []
    for index, item_value in enumerate(items):
        at = f"instances[0].reference_images[{index}]"
        item = expect_object(item_value, at)
        reject_unknown(item, ("image", "referenceType"), at)
        kind = twin(item, "referenceType")
        if kind is not None and expect_string(kind, f"{at}.reference_type").lower() != "asset":
            raise invalid_argument(f"{kind} enum value is not supported in Gemini API.")
        image = _optional_image(twin(item, "image"), f"{at}.image")
        if image is None:
            raise field_error(REQUEST_TYPE, f"{at}.image", "image is not specified")
        references.append(image)
    return tuple(references)


def _source_uri(value: Any) -> str | None:
    if value is None:
        return None
    video = expect_object(value, "instances[0].video")
    uri = twin(video, "uri")
    if uri is None:
        raise invalid_argument(
            "Only videos generated by Veo can be extended: send video.uri of an earlier "
            "output (inline video bytes are not accepted)."
        )
    uri = expect_string(uri, "instances[0].video.uri")
    if not uri.strip():
        raise field_error(REQUEST_TYPE, "instances[0].video.uri", "uri is not specified")
    return uri
