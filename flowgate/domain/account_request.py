"""Rules of POST /accounts (contract §3 A1, adapted by DESIGN §1.1). Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowgate.domain.catalogue import validate_model_map
from flowgate.domain.errors import InvalidRequest

PROVIDERS = ("gemini", "sandbox")
TIERS = ("free", "paid")
UPSCALE_MODES = ("auto", "local")
_EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,200}@[^@\s\x00-\x1f\x7f]{1,118}$")
_KNOWN_FIELDS = {
    "email",
    "provider",
    "apiKey",
    "baseUrl",
    "modelMap",
    "maxConcurrency",
    "tier",
    "upscale",
}
COOKIES_MESSAGE = (
    "flowgate uses official Google API credentials, not browser cookies. "
    'Send {"email": "you@example.com", "provider": "gemini", "apiKey": "AIza..."} '
    '(a Gemini API key from Google AI Studio), or {"email": "...", "provider": "sandbox"} '
    "to try flowgate without a key."
)


@dataclass(frozen=True)
class AccountSpec:
    """A validated POST /accounts body. ``None`` means "not given" (keep on update)."""

    email: str
    provider: str
    api_key: str | None = None
    base_url: str | None = None
    model_map: dict[str, str] | None = None
    max_concurrency: int | None = None
    tier: str | None = None
    upscale: str | None = None
    unset: frozenset[str] = field(default_factory=frozenset)


def normalize_email(value: Any, *, field_name: str = "email") -> str:
    """Validate and lower-case an account email."""
    if not isinstance(value, str) or not _EMAIL_RE.match(value.strip()):
        raise InvalidRequest(f"{field_name} is required and must look like name@example.com")
    return value.strip().lower()


def _int_field(data: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())  # multipart/form-data sends strings
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}")
    return value


def _choice(data: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise InvalidRequest(f"{name} must be one of: {', '.join(allowed)}")
    return str(value)


def _model_map(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # multipart sends JSON text
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InvalidRequest(
                "modelMap must be a JSON object of model name to upstream id"
            ) from exc
    return validate_model_map(value)


def parse_account_request(data: Mapping[str, Any]) -> AccountSpec:
    """Validate a POST /accounts body; each violation is a 400 saying what to send."""
    if "cookies" in data:
        raise InvalidRequest(COOKIES_MESSAGE)
    unknown = sorted(set(data) - _KNOWN_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(_KNOWN_FIELDS))}"
        )
    email = normalize_email(data.get("email"))
    provider = _choice(data, "provider", PROVIDERS) or "gemini"
    api_key = data.get("apiKey")
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
        raise InvalidRequest("apiKey must be a non-empty string")
    if isinstance(api_key, str) and (
        len(api_key) > 4096 or any(c.isspace() for c in api_key.strip())
    ):
        raise InvalidRequest("apiKey must be a single token without spaces")
    base_url = data.get("baseUrl")
    if base_url is not None:
        if not isinstance(base_url, str) or not re.match(r"^https?://[^\s/]+", base_url):
            raise InvalidRequest("baseUrl must be an http:// or https:// URL")
        base_url = base_url.rstrip("/")
    return AccountSpec(
        email=email,
        provider=provider,
        api_key=api_key.strip() if isinstance(api_key, str) else None,
        base_url=base_url,
        model_map=_model_map(data.get("modelMap")),
        max_concurrency=_int_field(data, "maxConcurrency", 1, 1000),
        tier=_choice(data, "tier", TIERS),
        upscale=_choice(data, "upscale", UPSCALE_MODES),
    )
