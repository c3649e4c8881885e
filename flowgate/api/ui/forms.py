"""Reading the dashboard's HTML forms into the fields the services take."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData, UploadFile

from flowgate.domain.errors import InvalidRequest

ACCOUNT_FIELDS = ("email", "provider", "apiKey", "maxConcurrency", "tier")
GENERATE_FIELDS = ("prompt", "model", "aspectRatio", "count", "seed", "email")
MAX_REFERENCES = 10

GENERATE_CHOICES: Mapping[str, list[tuple[str, str]]] = {
    "model": [
        ("", "default (imagen-4; nano-banana-2 with references)"),
        ("imagen-4", "imagen-4"),
        ("nano-banana-2", "nano-banana-2"),
        ("nano-banana-pro", "nano-banana-pro"),
    ],
    "aspectRatio": [
        ("", "default (16:9; auto with references)"),
        ("16:9", "16:9"),
        ("4:3", "4:3"),
        ("1:1", "1:1"),
        ("3:4", "3:4"),
        ("9:16", "9:16"),
        ("auto", "auto (from the first reference)"),
    ],
    "count": [("1", "1"), ("2", "2"), ("3", "3"), ("4", "4")],
}


def text(form: FormData, name: str) -> str | None:
    """A text field, or None when absent or a file."""
    value = form.get(name)
    return value if isinstance(value, str) else None


def safe_next(target: str) -> str:
    """Where to go after signing in: only a dashboard path (no open redirect)."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/accounts"


def query(values: Mapping[str, str]) -> str:
    """The non-empty values as a query string (for links that keep the filters)."""
    return urlencode({k: v for k, v in values.items() if v})


def page_limit(value: str, default: int) -> int:
    """The ``limit`` query parameter (the services check its range)."""
    if not value:
        return default
    if not value.isdigit():
        raise InvalidRequest(f"limit must be a whole number (got {value!r})")
    return int(value)


def account_fields(form: FormData) -> dict[str, Any]:
    """The Add account form as a POST /accounts body (empty fields left out)."""
    return {name: value.strip() for name in ACCOUNT_FIELDS if (value := text(form, name))}


def generation_fields(form: FormData) -> dict[str, Any]:
    """The Generate form as POST /images form fields; picked references become reference_N."""
    fields: dict[str, Any] = {
        name: value for name in GENERATE_FIELDS if (value := text(form, name))
    }
    for name in ("reference", "character"):
        picked = [v for v in form.getlist(name) if isinstance(v, str) and v]
        for value in picked:
            if name == "reference":
                add_reference(fields, value)
            else:
                slot = 1 + sum(1 for key in fields if key.startswith("character_"))
                fields[f"character_{slot}"] = value
    return fields


def add_reference(fields: dict[str, Any], media_generation_id: str) -> None:
    """Put an image id into the next free ``reference_N``."""
    slot = 1 + sum(1 for key in fields if key.startswith("reference_"))
    if slot > MAX_REFERENCES:
        raise InvalidRequest(f"At most {MAX_REFERENCES} reference images (picked and uploaded)")
    fields[f"reference_{slot}"] = media_generation_id


def uploads(form: FormData) -> list[UploadFile]:
    """The files attached as references (an empty file input sends a nameless part)."""
    return [f for f in form.getlist("upload") if isinstance(f, UploadFile) and f.filename]


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The file's bytes, at most ``limit``."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise InvalidRequest(f"{upload.filename}: file is over {limit} bytes")
    return data


def form_values(form: FormData) -> dict[str, Any]:
    """What the user entered, to fill the form again."""
    values: dict[str, Any] = {name: text(form, name) or "" for name in GENERATE_FIELDS}
    values["references"] = [v for v in form.getlist("reference") if isinstance(v, str)]
    values["characters"] = [v for v in form.getlist("character") if isinstance(v, str)]
    return values


def upscaled_media_id(result: Mapping[str, Any]) -> str | None:
    """The internal id of an upscale's stored result (from its ``mediaGenerationId``)."""
    value = result.get("mediaGenerationId")
    if isinstance(value, str) and value:
        return value.rsplit(":", 1)[-1]
    return None
