"""/v1/google-flow/characters: named bundles of reference images."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from flowgate.api.body import read_fields
from flowgate.api.deps import CallerDep, RuntimeDep

router = APIRouter(tags=["characters"])


@router.post("/characters", summary="Create a character from 1-2 images")
async def create_character(
    request: Request, runtime: RuntimeDep, caller: CallerDep
) -> JSONResponse:
    """``{"name", "images": [mediaGenerationId, …]}`` → 201 with ``characterId``."""
    fields, _files = await read_fields(request, runtime.settings.max_json_bytes)
    return JSONResponse(await runtime.characters.create(caller, fields), status_code=201)


@router.get("/characters", summary="List characters")
async def list_characters(runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """``{"characters": [...]}``."""
    return await runtime.characters.list_all(caller)


@router.get("/characters/{character_id}", summary="One character")
async def get_character(
    character_id: str, runtime: RuntimeDep, caller: CallerDep
) -> dict[str, Any]:
    """404 when unknown or another user's."""
    return await runtime.characters.get(caller, character_id)


@router.delete("/characters/{character_id}", summary="Delete a character")
async def delete_character(
    character_id: str, runtime: RuntimeDep, caller: CallerDep
) -> dict[str, str]:
    """``{"message": "Character X deleted"}``."""
    return await runtime.characters.delete(caller, character_id)
