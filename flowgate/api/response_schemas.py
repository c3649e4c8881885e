"""JSON schemas of success bodies (200/201) for /openapi.json, built once at import.

The handlers return plain dicts (no response model: nothing validates or filters them at
run time); these schemas describe what flowgate answers, so clients and the fuzzer
(tests/test_fuzz_schema.py, ``response_schema_conformance``) know it. Response objects
allow keys they do not list (clients must tolerate new keys) unless the contract fixes
the key set. flowgate.api.body_schemas is the request-side counterpart.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from flowgate.api.body_schemas import media_id_schema, nullable


def response_object(
    properties: Mapping[str, Mapping[str, Any]],
    required: Iterable[str] = (),
    description: str | None = None,
) -> dict[str, Any]:
    """An object with ``properties`` (``required`` among them) and possibly more keys."""
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(required),
        "properties": {name: dict(value) for name, value in properties.items()},
    }
    if description:
        schema["description"] = description
    return schema


def map_of(values: Mapping[str, Any], description: str) -> dict[str, Any]:
    """An object whose keys are free (emails, job ids) and whose values are ``values``."""
    return {"type": "object", "description": description, "additionalProperties": dict(values)}


def json_response(
    status: int, schema: Mapping[str, Any], description: str
) -> dict[int | str, dict[str, Any]]:
    """A ``responses=`` entry: ``status`` with a JSON body of ``schema`` (a private copy)."""
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": copy.deepcopy(dict(schema))}},
        }
    }


def with_description(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description}


# ---------------------------------------------------------------------------- scalars

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
TIMESTAMP: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601, UTC, milliseconds: 2026-01-29T12:34:56.789Z",
}
IMAGE_ID = with_description(media_id_schema("image"), "An image mediaGenerationId")
VIDEO_ID = with_description(media_id_schema("video"), "A video mediaGenerationId")
SIGNED_URL: dict[str, Any] = {
    "type": "string",
    "description": "A signed, expiring download link (GET /media/{id})",
}
BASE64: dict[str, Any] = {"type": "string", "contentEncoding": "base64"}


def job_id_schema(kind: str | None = None) -> dict[str, Any]:
    """A job id (``j{digits}{i|v}-u{uid}-email:{masked}-bot:google-flow``), of ``kind``."""
    letter = {"image": "i", "video": "v", None: "[iv]"}[kind]
    return {
        "type": "string",
        "pattern": (
            rf"^j[0-9]{{13,19}}{letter}-u[0-9]{{1,18}}-email:[^\s\x00-\x1f\x7f]+-bot:google-flow$"
        ),
        "description": "A job id (GET /jobs/{jobId})",
    }


# ---------------------------------------------------------------------------- errors

# Google's error object, as passed through (contract §1 GoogleError).
GOOGLE_ERROR = response_object(
    {
        "code": INTEGER,
        "message": STRING,
        "status": STRING,
        "details": {"type": "array", "items": {"type": "object"}},
    },
    required=["code", "message"],
    description="An upstream error passed through",
)
ERROR_VALUE: dict[str, Any] = {
    "anyOf": [STRING, GOOGLE_ERROR],
    "description": "A sentence from flowgate, or the upstream's error object",
}

# ---------------------------------------------------------------------------- images

# POST /assets: the id is nested one level (contract §4).
MEDIA_GENERATION_ID_OBJECT = response_object(
    {"mediaGenerationId": IMAGE_ID}, required=["mediaGenerationId"]
)

_IMAGE_ASPECT_RATIOS = [
    "IMAGE_ASPECT_RATIO_LANDSCAPE",
    "IMAGE_ASPECT_RATIO_LANDSCAPE_FOUR_THREE",
    "IMAGE_ASPECT_RATIO_SQUARE",
    "IMAGE_ASPECT_RATIO_PORTRAIT_THREE_FOUR",
    "IMAGE_ASPECT_RATIO_PORTRAIT",
]
_GENERATED_IMAGE = response_object(
    {
        "seed": INTEGER,
        "mediaGenerationId": IMAGE_ID,
        "mediaVisibility": {"type": "string", "enum": ["PRIVATE"]},
        "prompt": STRING,
        "modelNameType": {
            "type": "string",
            "description": "IMAGEN_3_5 | R2I | GEM_PIX | GEM_PIX_2 | NARWHAL",
        },
        "workflowId": STRING,
        "fifeUrl": SIGNED_URL,
        "aspectRatio": {"type": "string", "enum": _IMAGE_ASPECT_RATIOS},
        "requestData": response_object(
            {
                "promptInputs": {
                    "type": "array",
                    "items": response_object({"textInput": STRING}, required=["textInput"]),
                },
                "imageGenerationRequestData": response_object(
                    {
                        "imageGenerationImageInputs": {
                            "type": "array",
                            "items": response_object(
                                {"mediaGenerationId": IMAGE_ID, "imageInputType": STRING},
                                required=["mediaGenerationId", "imageInputType"],
                            ),
                        }
                    },
                    required=["imageGenerationImageInputs"],
                ),
            },
            required=["promptInputs", "imageGenerationRequestData"],
        ),
    },
    required=[
        "seed",
        "mediaGenerationId",
        "mediaVisibility",
        "prompt",
        "modelNameType",
        "workflowId",
        "fifeUrl",
        "aspectRatio",
        "requestData",
    ],
)
# One item of ``media`` (POST /images, image job records).
MEDIA_ENTRY = response_object(
    {
        "name": {"type": "string", "description": "The internal media id"},
        "workflowId": STRING,
        "image": response_object({"generatedImage": _GENERATED_IMAGE}, required=["generatedImage"]),
    },
    required=["name", "workflowId", "image"],
    description="One generated image",
)
MEDIA_LIST: dict[str, Any] = {"type": "array", "minItems": 1, "maxItems": 4, "items": MEDIA_ENTRY}

# ---------------------------------------------------------------------------- videos

SUCCESSFUL = "MEDIA_GENERATION_STATUS_SUCCESSFUL"
FAILED = "MEDIA_GENERATION_STATUS_FAILED"
PENDING = "MEDIA_GENERATION_STATUS_PENDING"
_VIDEO = response_object(
    {
        "seed": INTEGER,
        "mediaGenerationId": VIDEO_ID,
        "prompt": STRING,
        "fifeUrl": with_description(SIGNED_URL, "The MP4: a signed, expiring link"),
        "mediaVisibility": {"type": "string", "enum": ["PRIVATE"]},
        "servingBaseUri": with_description(SIGNED_URL, "Its first frame (JPEG)"),
        "model": {"type": "string", "description": "veo_3_1_t2v, veo_3_1_i2v, … upsampler"},
        "isLooped": BOOLEAN,
        "aspectRatio": {
            "type": "string",
            "enum": ["VIDEO_ASPECT_RATIO_LANDSCAPE", "VIDEO_ASPECT_RATIO_PORTRAIT"],
        },
    },
    required=[
        "seed",
        "mediaGenerationId",
        "prompt",
        "fifeUrl",
        "mediaVisibility",
        "servingBaseUri",
        "model",
        "isLooped",
        "aspectRatio",
    ],
)
_OPERATION_ERROR = response_object(
    {"code": INTEGER, "message": STRING}, required=["code", "message"]
)
SUCCESSFUL_OPERATION = response_object(
    {
        "operation": response_object(
            {
                "name": STRING,
                "metadata": response_object(
                    {"@type": STRING, "name": STRING, "video": _VIDEO},
                    required=["@type", "name", "video"],
                ),
            },
            required=["name", "metadata"],
        ),
        "sceneId": STRING,
        "mediaGenerationId": VIDEO_ID,
        "status": {"type": "string", "enum": [SUCCESSFUL]},
        "rawBytes": nullable(
            {**BASE64, "description": "A repeated upscale: the stored video (null in records)"}
        ),
    },
    required=["operation", "sceneId", "mediaGenerationId", "status"],
    description="A clip that was made",
)
_FAILED_OPERATION = response_object(
    {
        "operation": response_object(
            {"name": STRING, "error": _OPERATION_ERROR}, required=["name", "error"]
        ),
        "sceneId": STRING,
        "status": {"type": "string", "enum": [FAILED]},
    },
    required=["operation", "sceneId", "status"],
    description="A clip that failed (the others of the call were made)",
)
_PENDING_OPERATION = response_object(
    {
        "operation": response_object({"name": STRING}, required=["name"]),
        "sceneId": STRING,
        "status": {"type": "string", "enum": [PENDING]},
    },
    required=["operation", "sceneId", "status"],
    description="A clip still being made",
)
# ``operations`` of a finished call (sync 200 bodies): made or failed clips.
FINISHED_OPERATIONS: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"anyOf": [SUCCESSFUL_OPERATION, _FAILED_OPERATION]},
}
# ``operations`` of a record at any stage.
OPERATIONS: dict[str, Any] = {
    "type": "array",
    "items": {"anyOf": [SUCCESSFUL_OPERATION, _FAILED_OPERATION, _PENDING_OPERATION]},
}
PENDING_OPERATIONS: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": _PENDING_OPERATION,
}

# ---------------------------------------------------------------------------- job records

JOB_KINDS = ["image", "video"]
JOB_STATUSES = ["created", "started", "completed", "failed"]
_JOB_RESPONSE = response_object(
    {
        "media": with_description(MEDIA_LIST, "Image jobs: the images made"),
        "operations": with_description(OPERATIONS, "Video jobs: one entry per clip"),
        "upscales": {
            "type": "array",
            "description": "Upscales made later from this job's images",
            "items": {"type": "object"},
        },
        "error": ERROR_VALUE,
    },
    description=(
        "The endpoint's 200 body without jobId (media for images, operations for videos); "
        "a failed job's error body"
    ),
)


def job_record(
    kind: str | None = None,
    *,
    status: Iterable[str] = JOB_STATUSES,
    response: Mapping[str, Any] = _JOB_RESPONSE,
    response_required: bool = False,
) -> dict[str, Any]:
    """The contract's job record (§7.1), of ``kind`` and ``status``."""
    return response_object(
        {
            "jobid": job_id_schema(kind),
            "type": {"type": "string", "enum": [kind] if kind else JOB_KINDS},
            "status": {"type": "string", "enum": list(status)},
            "created": TIMESTAMP,
            "updated": TIMESTAMP,
            "request": {
                "type": "object",
                "description": "The request's parameters (email masked, references expanded)",
            },
            "response": response,
            "error": {"type": "string", "description": "A failed job: API error: <status>"},
            "code": {"type": "integer", "description": "A failed job: its HTTP status"},
        },
        required=["jobid", "type", "status", "created", "updated", "request"]
        + (["response"] if response_required else []),
        description="A job record (GET /jobs/{jobId}, webhook bodies)",
    )


JOB_RECORD = job_record()
