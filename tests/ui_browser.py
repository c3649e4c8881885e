"""Helpers for the dashboard tests: signing in over HTTP, and Debian's Chromium via Playwright."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx

from tests.gateway import Gateway

CHROMIUM = os.environ.get("FLOWGATE_TEST_CHROMIUM", "/usr/bin/chromium")
# Playwright cannot download its own browser here, so it drives Debian's chromium package.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots go to docs/img/ when this is set (to the folder), else to a temporary folder.
SCREENSHOT_ENV = "FLOWGATE_UI_SCREENSHOTS"
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def chromium_path() -> str:
    """Where Chromium is; fails loudly when it is missing (``.ci/run`` installs it)."""
    found = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        raise RuntimeError(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
        )
    return found


def screenshot_dir(fallback: Path) -> Path:
    """docs/img/ (or the folder named by FLOWGATE_UI_SCREENSHOTS), else ``fallback``."""
    target = os.environ.get(SCREENSHOT_ENV)
    folder = Path(target) if target else fallback
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def csrf_of(html: str) -> str:
    """The first CSRF token on a page."""
    match = _CSRF_RE.search(html)
    assert match, "page has no csrf_token field"
    return match.group(1)


def ui_client(gw: Gateway) -> httpx.Client:
    """A cookie-keeping HTTP client without a bearer token (as a browser is)."""
    return httpx.Client(base_url=gw.base_url, timeout=60)


def sign_in(client: httpx.Client, token: str) -> str:
    """Sign ``client`` in to the dashboard; return the session's CSRF token."""
    form = client.get("/ui/login")
    resp = client.post(
        "/ui/login", data={"csrf_token": csrf_of(form.text), "token": token, "next": ""}
    )
    assert resp.status_code == 303, resp.text
    page = client.get("/ui/accounts")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)
