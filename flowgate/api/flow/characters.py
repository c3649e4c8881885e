"""/v1/google-flow/characters: named bundles of reference images."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from flowgate.api.body import read_text_fields
from flowgate.api.body_schemas import blank_allowed, media_id_schema, nullable
from flowgate.api.deps import CallerDep, RuntimeDep
from flowgate.api.response_schemas import (
    IMAGE_ID,
    TIMESTAMP,
    json_response,
    response_object,
)

router = APIRouter(tags=["characters"])

# What CharacterService.create accepts: a name and 1-2 image ids, as ``images`` (a list, or
# one id) or as reference_1 / reference_2 (read only when images is not sent).
_NAME = {"type": "string", "pattern": r"\S", "maxLength": 200, "description": "Non-blank"}
_IMAGE_ID = media_id_schema("image")
# At least one of them not null, not empty (null and an empty field mean "not sent").
_ONE_OF_THE_IMAGE_FIELDS = [
    {
        "required": [name],
        "properties": {name: {"type": ["string", "array"], "minLength": 1, "minItems": 1}},
    }
    for name in ("images", "reference_1", "reference_2")
]
_DESCRIPTION = "A character: a name and 1-2 of your images (images, or reference_1/2)."


def _character_body(
    images: Mapping[str, Any], optional: Callable[[Mapping[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """The body in one format: ``images`` as that format carries it, ``optional`` for the
    fields that may be left out (:func:`nullable` in JSON, :func:`blank_allowed` in a form)."""
    return {
        "type": "object",
        "description": _DESCRIPTION,
        "required": ["name"],
        "anyOf": _ONE_OF_THE_IMAGE_FIELDS,
        "additionalProperties": False,
        "properties": {
            "name": _NAME,
            "images": images,
            "reference_1": optional(_IMAGE_ID),
            "reference_2": optional(_IMAGE_ID),
        },
    }


_IMAGE_LIST = {"type": "array", "minItems": 1, "maxItems": 2, "items": _IMAGE_ID}
_CHARACTER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _character_body(nullable({"anyOf": [_IMAGE_LIST, _IMAGE_ID]}), nullable)
            },
            # A form holds one value per name: images is then a single id.
            "multipart/form-data": {"schema": _character_body(_IMAGE_ID, blank_allowed)},
        },
    }
}

_CHARACTER = response_object(
    {
        "characterId": {
            "type": "string",
            "pattern": r"^character:[0-9]+-[0-9a-f]{32}$",
            "description": "Use it as character_N on POST /images",
        },
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "images": {"type": "array", "minItems": 1, "maxItems": 2, "items": IMAGE_ID},
        "created": TIMESTAMP,
    },
    required=["characterId", "name", "images", "created"],
    description="A character",
)
_DELETED = response_object(
    {"message": {"type": "string", "pattern": r"^Character [\s\S]+ deleted$"}},
    required=["message"],
)


@router.post(
    "/characters",
    openapi_extra=_CHARACTER_BODY,
    # Documentation only: the handler's JSONResponse carries the status.
    status_code=201,
    responses=json_response(201, _CHARACTER, "Created"),
    summary="Create a character from 1-2 images",
)
async def create_character(
    request: Request, runtime: RuntimeDep, caller: CallerDep
) -> JSONResponse:
    """``{"name", "images": [mediaGenerationId, …]}`` → 201 with ``characterId``."""
    fields = await read_text_fields(
        request,
        runtime.settings.max_json_bytes,
        instead="upload images with POST /assets and pass their mediaGenerationId in images",
    )
    return JSONResponse(await runtime.characters.create(caller, fields), status_code=201)


@router.get(
    "/characters",
    responses=json_response(
        200,
        response_object(
            {"characters": {"type": "array", "items": _CHARACTER}}, required=["characters"]
        ),
        "Your characters",
    ),
    summary="List characters",
)
async def list_characters(runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """``{"characters": [...]}``."""
    return await runtime.characters.list_all(caller)


@router.get(
    "/characters/{character_id}",
    responses=json_response(200, _CHARACTER, "The character"),
    summary="One character",
)
async def get_character(
    character_id: str, runtime: RuntimeDep, caller: CallerDep
) -> dict[str, Any]:
    """404 when unknown or another user's."""
    return await runtime.characters.get(caller, character_id)


@router.delete(
    "/characters/{character_id}",
    responses=json_response(200, _DELETED, "Deleted"),
    summary="Delete a character",
)
async def delete_character(
    character_id: str, runtime: RuntimeDep, caller: CallerDep
) -> dict[str, str]:
    """``{"message": "Character X deleted"}``."""
    return await runtime.characters.delete(caller, character_id)
