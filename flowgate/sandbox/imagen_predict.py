"""``POST /v1beta/models/{model}:predict`` for the Imagen 4 models."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from flowgate.sandbox.catalogue import LONG_SIDE_PX, SandboxModel
from flowgate.sandbox.drawing import PictureOrder, draw_picture
from flowgate.sandbox.google_errors import invalid_argument
from flowgate.sandbox.json_fields import (
    expect_int,
    expect_list,
    expect_object,
    expect_string,
    twin,
)
from flowgate.sandbox.picture_size import fit_ratio, parse_ratio

OUTPUT_MIME_TYPES: dict[str, str] = {"image/png": "PNG", "image/jpeg": "JPEG"}
PERSON_GENERATION = frozenset({"dont_allow", "allow_adult", "allow_all"})
# Imagen parameters that exist only on Vertex AI; the Gemini API refuses them.
VERTEX_ONLY_PARAMETERS: dict[str, str] = {
    "seed": "seed",
    "negativePrompt": "negative_prompt",
    "addWatermark": "add_watermark",
}
DEFAULT_SAMPLE_COUNT = 4  # Google's default when sampleCount is absent

RAI_FILTERED_REASON = (
    "Unable to show generated images. All images were filtered out because they violated "
    "Google's Responsible AI practices. You will not be charged for blocked images. "
    "Try rephrasing the prompt. If you think this was an error, send feedback. "
    "Support codes: 39322892"
)


@dataclass(frozen=True)
class PredictRequest:
    """A validated ``:predict`` body."""

    prompt: str
    sample_count: int
    aspect_ratio: str
    image_size: str
    mime_type: str


def parse_predict(model: SandboxModel, body: Any) -> PredictRequest:
    """Validate ``body`` for an Imagen ``model``; raise ``GoogleApiError`` (400) if not."""
    body = expect_object(body, "request")
    instances = expect_list(twin(body, "instances") or [], "instances")
    if not instances:
        raise invalid_argument("* PredictRequest.instances: instances is not specified\n")
    instance = expect_object(instances[0], "instances[0]")
    prompt = expect_string(twin(instance, "prompt") or "", "instances[0].prompt")
    if not prompt.strip():
        raise invalid_argument("The prompt is empty. Please provide a prompt.")

    parameters = expect_object(twin(body, "parameters") or {}, "parameters")
    for camel, snake in VERTEX_ONLY_PARAMETERS.items():
        if camel in parameters or snake in parameters:
            raise invalid_argument(f"{snake} parameter is not supported in Gemini API.")

    count_value = twin(parameters, "sampleCount")
    sample_count = (
        DEFAULT_SAMPLE_COUNT
        if count_value is None
        else expect_int(count_value, "parameters.sample_count")
    )
    if not 1 <= sample_count <= 4:
        raise invalid_argument(
            f"sampleCount must be between 1 and 4 (inclusive), but got {sample_count}."
        )

    aspect_ratio = expect_string(
        twin(parameters, "aspectRatio") or "1:1", "parameters.aspect_ratio"
    )
    if aspect_ratio not in model.aspect_ratios:
        raise invalid_argument(
            f"Unsupported aspect ratio: {aspect_ratio}. "
            f"Supported aspect ratios are {', '.join(model.aspect_ratios)}."
        )

    image_size = expect_string(
        twin(parameters, "sampleImageSize") or "1K", "parameters.sample_image_size"
    )
    if image_size not in model.image_sizes:
        raise invalid_argument(
            f"Unsupported sampleImageSize {image_size} for {model.model_id}. "
            f"Supported values: {', '.join(model.image_sizes)}."
        )

    person = twin(parameters, "personGeneration")
    if person is not None and person not in PERSON_GENERATION:
        raise invalid_argument(
            f"Invalid personGeneration {person!r}: use dont_allow, allow_adult or allow_all."
        )

    options = expect_object(twin(parameters, "outputOptions") or {}, "parameters.output_options")
    mime_type = expect_string(twin(options, "mimeType") or "image/png", "output_options.mime_type")
    if mime_type not in OUTPUT_MIME_TYPES:
        raise invalid_argument(
            f"Unsupported output mime type: {mime_type}. Use image/png or image/jpeg."
        )
    return PredictRequest(
        prompt=prompt,
        sample_count=sample_count,
        aspect_ratio=aspect_ratio,
        image_size=image_size,
        mime_type=mime_type,
    )


def render_predict(
    model: SandboxModel,
    request: PredictRequest,
    display_prompt: str,
    fixed_pictures: dict[str, bytes] | None,
    *,
    filter_first: bool = False,
) -> dict[str, Any]:
    """Draw ``sample_count`` pictures (blocking: run in a thread).

    ``filter_first`` replaces the first sample with a ``raiFilteredReason`` entry
    (the ``[sandbox:unsafe-image]`` directive: a partly filtered answer).
    """
    width, height = fit_ratio(LONG_SIDE_PX[request.image_size], *parse_ratio(request.aspect_ratio))
    image_format = OUTPUT_MIME_TYPES[request.mime_type]
    predictions: list[dict[str, Any]] = []
    for sample in range(request.sample_count):
        if filter_first and sample == 0:
            predictions.append({"raiFilteredReason": RAI_FILTERED_REASON})
            continue
        if fixed_pictures is not None:
            data = fixed_pictures[image_format]
        else:
            # Imagen has no seed on the Gemini API; each sample is told apart by its number.
            order = PictureOrder(
                model_id=model.model_id,
                prompt=display_prompt,
                seed=None,
                width=width,
                height=height,
                size_label=request.image_size,
                ratio_label=request.aspect_ratio,
                caption=f"sample {sample + 1}/{request.sample_count}",
            )
            data = draw_picture(order, image_format=image_format)
        predictions.append(
            {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": request.mime_type}
        )
    return {"predictions": predictions}


def filtered_predict_response(request: PredictRequest) -> dict[str, Any]:
    """Every sample filtered by the safety filter (``[sandbox:unsafe]``)."""
    return {
        "predictions": [
            {"raiFilteredReason": RAI_FILTERED_REASON} for _ in range(request.sample_count)
        ]
    }
