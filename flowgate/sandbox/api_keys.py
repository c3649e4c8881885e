"""Which sandbox keys work and which fail like Google's broken keys.

Any non-empty key works, except keys whose name starts with a failure word:
``invalid…`` (400 API_KEY_INVALID), ``leaked…`` (403 leaked), ``suspended…``
(403 CONSUMER_SUSPENDED) and ``disabled…`` (403 SERVICE_DISABLED).
"""

from __future__ import annotations

from starlette.requests import Request

from flowgate.sandbox.google_errors import (
    invalid_key,
    leaked_key,
    missing_key,
    service_disabled,
    suspended_key,
)


def api_key_of(request: Request) -> str | None:
    """The key from ``x-goog-api-key`` or, like Google, from the ``key`` query parameter."""
    return request.headers.get("x-goog-api-key") or request.query_params.get("key") or None


def check_api_key(key: str | None) -> None:
    """Raise the Google error a key of this kind gets; return for a working key."""
    if not key:
        raise missing_key()
    if key.startswith("invalid"):
        raise invalid_key()
    if key.startswith("leaked"):
        raise leaked_key()
    if key.startswith("suspended"):
        raise suspended_key(key)
    if key.startswith("disabled"):
        raise service_disabled(key)
