"""Requests of the OpenAI-compatible Images API (/v1/images/…), mapped to flowgate's. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowgate.domain.catalogue import image_aspect_ratio, image_model_names, resolve_image_model
from flowgate.domain.errors import InvalidRequest

RESPONSE_FORMATS = ("url", "b64_json")
_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*x\s*(\d{1,5})\s*$")
# Parameters OpenAI clients send that flowgate accepts and ignores (no equivalent upstream).
IGNORED = frozenset(
    {
        "quality",
        "style",
        "user",
        "background",
        "moderation",
        "output_format",
        "output_compression",
        "partial_images",
        "stream",
        "input_fidelity",
    }
)


@dataclass(frozen=True)
class OpenAIImageSpec:
    """An OpenAI images request in flowgate's terms."""

    prompt: str
    model: str | None
    count: int
    aspect_ratio: str
    response_format: str


def _size_to_ratio(size: Any) -> str:
    if size is None or size == "auto":
        return "1:1"  # OpenAI's default size is square
    if not isinstance(size, str):
        raise InvalidRequest("size must be a string like '1024x1024' or 'auto'")
    match = _SIZE_RE.match(size)
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise InvalidRequest("size must look like '1024x1024', '1792x1024', '1024x1792' or 'auto'")
    return image_aspect_ratio(int(match[1]), int(match[2]))


def _count(value: Any) -> int:
    if value is None:
        return 1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())  # multipart
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        raise InvalidRequest("n must be an integer from 1 to 4")
    return value


def parse_openai_request(data: Mapping[str, Any]) -> OpenAIImageSpec:
    """Validate an OpenAI generations/edits body (JSON or form fields)."""
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("prompt is required: a non-empty string")
    model = data.get("model")
    if model is not None:
        if not isinstance(model, str):
            raise InvalidRequest("model must be a string")
        try:
            model = resolve_image_model(model).name
        except InvalidRequest:
            raise InvalidRequest(
                f"model '{model}' is not served here; use one of: {', '.join(image_model_names())}"
            ) from None
    response_format = data.get("response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest("response_format must be 'url' or 'b64_json'")
    return OpenAIImageSpec(
        prompt=prompt,
        model=model,
        count=_count(data.get("n")),
        aspect_ratio=_size_to_ratio(data.get("size")),
        response_format=str(response_format),
    )
