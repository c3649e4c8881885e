"""``POST /v1beta/models/{model}:generateContent`` for the Nano Banana models.

Parsing and validation run on the event loop (cheap); decoding references and
drawing run in a worker thread through :func:`render_generate_content`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import Any

from flowgate.sandbox.catalogue import LONG_SIDE_PX, SandboxModel
from flowgate.sandbox.drawing import (
    PictureOrder,
    draw_draft,
    draw_picture,
    open_reference,
    reference_digest,
)
from flowgate.sandbox.google_errors import (
    BAD_IMAGE_MESSAGE,
    field_error,
    invalid_argument,
)
from flowgate.sandbox.json_fields import (
    expect_int,
    expect_list,
    expect_object,
    expect_string,
    reject_unknown,
    twin,
)
from flowgate.sandbox.picture_size import fit_ratio, parse_ratio

REQUEST_TYPE = "GenerateContentRequest"
REFERENCE_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}
)
MODALITIES = frozenset({"TEXT", "IMAGE"})

# Output tokens Google bills per image, by imageSize (3.x models) — shown in usageMetadata.
_IMAGE_TOKENS = {"512": 747, "1K": 1120, "2K": 1120, "4K": 2000}
_GEMINI_25_IMAGE_TOKENS = 1290
_PROMPT_TOKENS_PER_IMAGE = 258

BLOCKED_IMAGE_MESSAGE = (
    "Unable to show the generated image. The image was filtered out because it violated "
    "Google's Generative AI Prohibited Use policy. You will not be charged for blocked images. "
    "Try rephrasing the prompt. If you think this was an error, send feedback."
)


@dataclass(frozen=True)
class InlineBlob:
    """A decoded ``inlineData`` part."""

    mime: str
    data: bytes


@dataclass(frozen=True)
class ContentRequest:
    """A validated ``:generateContent`` body."""

    prompt: str
    references: tuple[InlineBlob, ...]
    seed: int | None
    aspect_ratio: str | None
    image_size: str | None
    wants_image: bool


def parse_generate_content(model: SandboxModel, body: Any) -> ContentRequest:
    """Validate ``body`` as Google does for ``model``; raise ``GoogleApiError`` (400) if not."""
    body = expect_object(body, "request")
    contents_value = twin(body, "contents")
    if not contents_value:
        raise field_error(REQUEST_TYPE, "contents", "contents is not specified")
    contents = expect_list(contents_value, "contents")

    texts: list[str] = []
    references: list[InlineBlob] = []
    for content_index, content_value in enumerate(contents):
        content = expect_object(content_value, f"contents[{content_index}]")
        role = twin(content, "role")
        parts = expect_list(twin(content, "parts") or [], f"contents[{content_index}].parts")
        if not parts:
            raise field_error(
                REQUEST_TYPE,
                f"contents[{content_index}].parts",
                "contents.parts must not be empty.",
            )
        if role not in (None, "", "user"):
            continue  # earlier model turns of a conversation are history, not input
        for part_index, part_value in enumerate(parts):
            at = f"contents[{content_index}].parts[{part_index}]"
            part = expect_object(part_value, at)
            text = twin(part, "text")
            inline = twin(part, "inlineData")
            if text is not None:
                texts.append(expect_string(text, f"{at}.text"))
            elif inline is not None:
                references.append(_inline_blob(inline, f"{at}.inline_data"))
            elif twin(part, "fileData") is not None:
                raise invalid_argument(
                    "The sandbox has no Files API: send reference images as inlineData."
                )
            else:
                raise field_error(REQUEST_TYPE, at, "part must have one of its fields set.")

    if len(references) > model.max_references:
        raise invalid_argument(
            f"Too many input images: {len(references)}. "
            f"{model.model_id} accepts at most {model.max_references}."
        )

    seed, aspect_ratio, image_size, wants_image = _generation_config(model, body)
    return ContentRequest(
        prompt="\n".join(texts),
        references=tuple(references),
        seed=seed,
        aspect_ratio=aspect_ratio,
        image_size=image_size,
        wants_image=wants_image,
    )


def _inline_blob(value: Any, at: str) -> InlineBlob:
    inline = expect_object(value, at)
    mime = twin(inline, "mimeType")
    data = twin(inline, "data")
    if not mime:
        raise field_error(REQUEST_TYPE, f"{at}.mime_type", "mime_type is not specified")
    if data is None or data == "":
        raise field_error(REQUEST_TYPE, f"{at}.data", "data is not specified")
    mime = expect_string(mime, f"{at}.mime_type")
    if mime not in REFERENCE_MIME_TYPES:
        raise invalid_argument(f"Unsupported MIME type: {mime}")
    encoded = expect_string(data, f"{at}.data")
    return InlineBlob(mime=mime, data=_decode_base64(encoded, f"{at}.data"))


def _decode_base64(encoded: str, at: str) -> bytes:
    """Standard or URL-safe base64, padded or not (proto JSON accepts all four)."""
    padded = encoded + "=" * (-len(encoded) % 4)
    for altchars in (None, b"-_"):
        try:
            raw = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        if raw:
            return raw
    raise invalid_argument(
        f"Invalid value at '{at}' (TYPE_BYTES), Base64 decoding failed for \"{encoded[:40]}\""
    )


def _generation_config(
    model: SandboxModel, body: dict[str, Any]
) -> tuple[int | None, str | None, str | None, bool]:
    config_value = twin(body, "generationConfig")
    if config_value is None:
        return None, None, None, True
    config = expect_object(config_value, "generation_config")

    wants_image = True
    modalities_value = twin(config, "responseModalities")
    if modalities_value is not None:
        modalities = expect_list(modalities_value, "generation_config.response_modalities")
        for index, modality in enumerate(modalities):
            if modality not in MODALITIES:
                raise invalid_argument(
                    f"Invalid value at 'generation_config.response_modalities[{index}]' "
                    "(type.googleapis.com/google.ai.generativelanguage.v1beta."
                    f'GenerationConfig.Modality), "{modality}"'
                )
        wants_image = "IMAGE" in modalities

    seed_value = twin(config, "seed")
    seed = None if seed_value is None else expect_int(seed_value, "generation_config.seed")

    image_config_value = twin(config, "imageConfig")
    aspect_ratio = image_size = None
    if image_config_value is not None:
        at = "generation_config.image_config"
        image_config = expect_object(image_config_value, at)
        # The Gemini API's ImageConfig has only these two fields (Vertex has more).
        reject_unknown(image_config, ("aspectRatio", "imageSize"), at)
        ratio_value = twin(image_config, "aspectRatio")
        size_value = twin(image_config, "imageSize")
        if ratio_value is not None:
            aspect_ratio = expect_string(ratio_value, f"{at}.aspect_ratio")
            if aspect_ratio not in model.aspect_ratios:
                raise field_error(
                    REQUEST_TYPE,
                    f"{at}.aspect_ratio",
                    f"aspect_ratio must be one of {_one_of(model.aspect_ratios)}.",
                )
        if size_value is not None:
            image_size = expect_string(size_value, f"{at}.image_size")
            if image_size not in model.image_sizes:
                raise field_error(
                    REQUEST_TYPE,
                    f"{at}.image_size",
                    f"image_size must be one of {_one_of(model.image_sizes)}.",
                )
    return seed, aspect_ratio, image_size, wants_image


def _one_of(values: tuple[str, ...]) -> str:
    quoted = [f"'{value}'" for value in values]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + ", or " + quoted[-1]


def render_generate_content(
    model: SandboxModel,
    request: ContentRequest,
    display_prompt: str,
    fixed_png: bytes | None,
) -> dict[str, Any]:
    """Decode references, draw, and build the 200 body (blocking: run in a thread).

    ``fixed_png`` is the benchmark picture; when given nothing is drawn.
    """
    decoded = []
    for blob in request.references:
        try:
            decoded.append(open_reference(blob.data))
        except ValueError:
            raise invalid_argument(BAD_IMAGE_MESSAGE) from None

    size_label = request.image_size or "1K"
    long_side = LONG_SIDE_PX[size_label]
    if request.aspect_ratio is not None:
        ratio_label = request.aspect_ratio
        width, height = fit_ratio(long_side, *parse_ratio(request.aspect_ratio))
    elif decoded:
        first = decoded[0]
        ratio_label = f"auto {first.width}:{first.height}"
        width, height = fit_ratio(long_side, first.width, first.height)
    else:
        ratio_label = "1:1"
        width, height = long_side, long_side

    order = PictureOrder(
        model_id=model.model_id,
        prompt=display_prompt,
        seed=request.seed,
        width=width,
        height=height,
        size_label=size_label,
        ratio_label=ratio_label,
        reference_digests=tuple(reference_digest(blob.data) for blob in request.references),
    )
    parts: list[dict[str, Any]] = []
    if model.thinks:
        parts.append(
            {
                "text": "**Planning the composition**\n\nSandbox thinking: laying out "
                "the shapes, the colours and the caption before drawing.",
                "thought": True,
            }
        )
        if request.wants_image:
            draft = fixed_png if fixed_png is not None else draw_draft(order)
            parts.append({"inlineData": _inline(draft), "thought": True})
    if not request.wants_image:
        parts.append({"text": f"(sandbox) You asked for text only about: {display_prompt}"})
        return _response(model, request, parts, size_label, image=False)

    picture = fixed_png if fixed_png is not None else draw_picture(order, decoded)
    if not model.thinks:
        # Gemini 2.5 Flash Image usually says a sentence along with the picture.
        parts.append({"text": "Here is the sandbox picture you asked for."})
    image_part: dict[str, Any] = {"inlineData": _inline(picture)}
    if model.thinks:
        image_part["thoughtSignature"] = base64.b64encode(order.fingerprint()).decode()
    parts.append(image_part)
    return _response(model, request, parts, size_label, image=True)


def blocked_prompt_response(model: SandboxModel, request: ContentRequest) -> dict[str, Any]:
    """HTTP 200 with ``promptFeedback.blockReason`` and no candidates."""
    return {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": _usage(request, output_tokens=0),
        "modelVersion": model.model_id,
        "responseId": _response_id(),
    }


def blocked_image_response(model: SandboxModel, request: ContentRequest) -> dict[str, Any]:
    """HTTP 200 with a candidate that finished with IMAGE_SAFETY and only text."""
    return {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"text": "I can't create that image. Try a different prompt."}],
                },
                "finishReason": "IMAGE_SAFETY",
                "finishMessage": BLOCKED_IMAGE_MESSAGE,
                "index": 0,
            }
        ],
        "usageMetadata": _usage(request, output_tokens=16),
        "modelVersion": model.model_id,
        "responseId": _response_id(),
    }


def _inline(png: bytes) -> dict[str, str]:
    return {"mimeType": "image/png", "data": base64.b64encode(png).decode()}


def _response(
    model: SandboxModel,
    request: ContentRequest,
    parts: list[dict[str, Any]],
    size_label: str,
    *,
    image: bool,
) -> dict[str, Any]:
    if not image:
        output_tokens = 24
    elif model.thinks:
        output_tokens = _IMAGE_TOKENS[size_label]
    else:
        output_tokens = _GEMINI_25_IMAGE_TOKENS
    usage = _usage(request, output_tokens=output_tokens)
    if model.thinks:
        usage["thoughtsTokenCount"] = 180
        usage["totalTokenCount"] += 180
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": usage,
        "modelVersion": model.model_id,
        "responseId": _response_id(),
    }


def _usage(request: ContentRequest, *, output_tokens: int) -> dict[str, Any]:
    text_tokens = max(1, len(request.prompt) // 4)
    image_tokens = _PROMPT_TOKENS_PER_IMAGE * len(request.references)
    prompt_details = [{"modality": "TEXT", "tokenCount": text_tokens}]
    if image_tokens:
        prompt_details.append({"modality": "IMAGE", "tokenCount": image_tokens})
    usage: dict[str, Any] = {
        "promptTokenCount": text_tokens + image_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": text_tokens + image_tokens + output_tokens,
        "promptTokensDetails": prompt_details,
    }
    if output_tokens:
        usage["candidatesTokensDetails"] = [
            {"modality": "IMAGE" if output_tokens > 100 else "TEXT", "tokenCount": output_tokens}
        ]
    return usage


def _response_id() -> str:
    # Google's response ids are ~22 url-safe characters; they are not part of the picture.
    return secrets.token_urlsafe(16)[:22]
