"""Reading request bodies: JSON objects or multipart/form-data, with size limits."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from flowgate.domain.errors import InvalidRequest


async def read_limited(request: Request, limit: int, what: str = "Body") -> bytes:
    """The raw body, refusing more than ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise InvalidRequest(f"File size ({declared}) is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidRequest(f"File size ({size}+) is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_fields(request: Request, limit: int) -> tuple[dict[str, Any], dict[str, UploadFile]]:
    """Parse a JSON object or a multipart/url-encoded form into (fields, files)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=20, max_fields=200)
        fields: dict[str, Any] = {}
        files: dict[str, UploadFile] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files[key] = value
            else:
                fields[key] = value
        check_text(fields)
        return fields, files
    raw = await read_limited(request, limit)
    if not raw.strip():
        raise InvalidRequest("Body is empty: send a JSON object (Content-Type: application/json)")
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise InvalidRequest(
            f"Content-Type {content_type} is not supported here: send application/json "
            "or multipart/form-data"
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"Body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidRequest("Body is nested too deeply: send a flat JSON object") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Body must be a JSON object")
    check_text(data)
    return data, {}


MAX_DEPTH = 32


def check_text(value: Any) -> None:
    """Refuse what no database column can keep: NUL characters and lone surrogates.

    Also bounds the nesting depth, so later code never recurses without end.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidRequest(f"Body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise InvalidRequest("Text may not contain NUL characters (\\u0000): remove them")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            "Text contains an unpaired surrogate (e.g. \\ud800): send valid Unicode"
        ) from None


async def read_text_fields(request: Request, limit: int, *, instead: str) -> dict[str, Any]:
    """As :func:`read_fields`, for a route that takes no files: a form's file part is a
    400 that names it and says what to send ``instead`` (not a part silently dropped)."""
    fields, files = await read_fields(request, limit)
    if files:
        raise InvalidRequest(
            f"file field(s) {', '.join(sorted(files))} not accepted here: {instead}"
        )
    return fields
