"""The OpenAI Images API on flowgate's image workflow (same accounts, jobs, media, credits)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pybase64
from starlette.datastructures import UploadFile

from flowgate.domain.catalogue import image_model_names
from flowgate.domain.errors import InvalidRequest
from flowgate.domain.openai_request import OpenAIImageSpec, parse_openai_request
from flowgate.services.images import ImageService
from flowgate.services.media import MediaService
from flowgate.services.users import Caller

MAX_EDIT_IMAGES = 10


class OpenAIImageService:
    """``/v1/images/generations``, ``/v1/images/edits`` and ``/v1/models``."""

    def __init__(self, images: ImageService, media: MediaService, *, max_upload_bytes: int) -> None:
        self._images = images
        self._media = media
        self._max_upload_bytes = max_upload_bytes

    async def generations(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        """Text to image."""
        spec = parse_openai_request(body)
        return await self._run(caller, spec, {})

    async def edits(
        self, caller: Caller, fields: Mapping[str, Any], files: list[tuple[str, UploadFile]]
    ) -> dict[str, Any]:
        """Images as references (``image`` or ``image[]``), then generate."""
        spec = parse_openai_request(fields)
        if any(name == "mask" for name, _ in files):
            raise InvalidRequest(
                "mask is not supported: flowgate's models edit from the prompt and the images; "
                "describe the change in prompt instead"
            )
        images = [f for name, f in files if name in ("image", "image[]")]
        if not images:
            raise InvalidRequest(
                "image is required: send one or more image files (image or image[])"
            )
        if len(images) > MAX_EDIT_IMAGES:
            raise InvalidRequest(f"at most {MAX_EDIT_IMAGES} images")
        references: dict[str, str] = {}
        for index, upload in enumerate(images, start=1):
            data = await upload.read(self._max_upload_bytes + 1)
            answer = await self._images.upload(caller, data, upload.content_type, None)
            references[f"reference_{index}"] = answer["mediaGenerationId"]["mediaGenerationId"]
        return await self._run(caller, spec, references)

    async def _run(
        self, caller: Caller, spec: OpenAIImageSpec, references: dict[str, str]
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "prompt": spec.prompt,
            "count": spec.count,
            "aspectRatio": spec.aspect_ratio,
            **references,
        }
        if spec.model is not None:
            fields["model"] = spec.model
        result = await self._images.generate(caller, fields, form=False)
        data = []
        for item in result["media"]:
            generated = item["image"]["generatedImage"]
            if spec.response_format == "b64_json":
                row = await self._media.owned(caller.user_id, item["name"])
                raw = await self._media.store.read(row.sha256)
                data.append(
                    {"b64_json": pybase64.b64encode(raw).decode(), "revised_prompt": spec.prompt}
                )
            else:
                data.append({"url": generated["fifeUrl"], "revised_prompt": spec.prompt})
        return {"created": int(time.time()), "data": data}

    @staticmethod
    def models() -> dict[str, Any]:
        """GET /v1/models: the image models."""
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "flowgate"}
                for name in image_model_names()
            ],
        }
