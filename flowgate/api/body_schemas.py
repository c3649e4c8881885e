"""JSON schemas of request bodies for /openapi.json, for routes that read the raw body.

The handlers parse bodies themselves (flowgate.domain); these schemas describe what the
parsers accept, so clients and the fuzzer (tests/test_fuzz_schema.py) know it. JSON
``null`` and an empty multipart field mean "not sent" to the parsers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

# Field by field: names (no others), types, enums, ranges, lengths. Rules between fields
# are in each body's description. Beyond what the schemas say, the parsers also ignore
# the case of enum values (``4k``, ``Landscape``) and spaces around them, and refuse NUL
# characters in any string (flowgate.api.body).


def media_id_schema(kind: str, *, padded: bool = False) -> dict[str, Any]:
    """A ``mediaGenerationId`` of ``kind`` (``image`` or ``video``), as in contract §10.

    ``padded``: the parser strips spaces around it (the image fields of POST /videos).
    """
    core = rf"user:[0-9]{{1,18}}-email:(?:[0-9a-f]{{2}})*-{kind}:[A-Za-z0-9_-]{{1,64}}"
    pattern = rf"^\s*{core}\s*$" if padded else f"^{core}$"
    description = "An image mediaGenerationId from POST /assets or POST /images"
    if kind == "video":
        description = "A video mediaGenerationId from POST /videos or another video endpoint"
    return {"type": "string", "pattern": pattern, "description": description}


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` or JSON ``null`` (which the parsers read as "not sent")."""
    if "anyOf" in schema:
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    out = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        out["enum"] = [*schema["enum"], None]
    return out


def blank_allowed(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` or an empty multipart field (which the parsers read as "not sent")."""
    blank = {"type": "string", "maxLength": 0}
    if "anyOf" in schema:
        return {**schema, "anyOf": [*schema["anyOf"], blank]}
    return {"anyOf": [dict(schema), blank]}


def object_schema(
    properties: Mapping[str, Mapping[str, Any]],
    required: Iterable[str],
    optional: Callable[[Mapping[str, Any]], dict[str, Any]],
    description: str,
) -> dict[str, Any]:
    """An object of ``properties`` and no others; those not ``required`` pass through
    ``optional`` (:func:`nullable` for JSON, :func:`blank_allowed` for a form)."""
    needed = list(required)
    return {
        "type": "object",
        "description": description,
        "required": needed,
        "additionalProperties": False,
        "properties": {
            name: dict(schema) if name in needed else optional(schema)
            for name, schema in properties.items()
        },
    }


def request_body(
    properties: Mapping[str, Mapping[str, Any]],
    *,
    required: Iterable[str],
    description: str,
    multipart: bool = True,
    form_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """An ``openapi_extra`` with a required JSON (and multipart) body of ``properties``.

    Optional fields also take JSON ``null``, and in a multipart form an empty field;
    ``form_overrides`` replaces a field's schema in the multipart form (text values).
    """
    needed = list(required)
    content: dict[str, Any] = {
        "application/json": {"schema": object_schema(properties, needed, nullable, description)}
    }
    if multipart:
        fields = {**properties, **(form_overrides or {})}
        content["multipart/form-data"] = {
            "schema": object_schema(fields, needed, blank_allowed, description)
        }
    return {"requestBody": {"required": True, "content": content}}
