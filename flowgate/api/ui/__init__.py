"""The dashboard at ``/ui``: server-rendered pages over the same services as the JSON API."""

from __future__ import annotations

from starlette.staticfiles import StaticFiles

from flowgate.api.ui.routes import router
from flowgate.api.ui.templating import STATIC_DIR

STATIC_PATH = "/ui/static"


def static_files() -> StaticFiles:
    """The dashboard's CSS and scripts (htmx is vendored: the pages work offline)."""
    return StaticFiles(directory=STATIC_DIR)


__all__ = ["STATIC_PATH", "router", "static_files"]
