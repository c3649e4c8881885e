"""Jinja2 templates of the dashboard (autoescaped) and the filters they use."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import Response

from flowgate import __version__

PACKAGE_DIR = Path(__file__).parent
TEMPLATE_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"


def when(moment: datetime | None) -> str:
    """``2026-05-19 14:03:07 UTC`` (empty for None)."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_z(moment: datetime | None) -> str:
    """ISO 8601 with ``Z`` (for ``data-`` attributes read by the page script)."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def duration(seconds: float | None) -> str:
    """``850 ms``, ``12.3 s`` or ``4:05`` (minutes)."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{int(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def countdown(seconds: float) -> str:
    """``m:ss`` left (``h:mm:ss`` past an hour), never negative."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    if hours:
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{rest // 60}:{rest % 60:02d}"


def file_size(size: int | None) -> str:
    """``1.2 MB`` style sizes."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


_environment = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(("html",), default_for_string=True, default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters.update(
    when=when, iso_z=iso_z, duration=duration, countdown=countdown, file_size=file_size
)
_environment.globals["version"] = __version__
templates = Jinja2Templates(env=_environment)


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render ``name`` with ``context`` (plus ``request``)."""
    values: dict[str, Any] = {"session": None, "active": "", "flash": None}
    values.update(context or {})
    return templates.TemplateResponse(
        request, name, values, status_code=status_code, headers=headers
    )
