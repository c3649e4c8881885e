"""HMAC-signed, expiring media URLs (``fifeUrl``, ``servingBaseUri``). Pure functions."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode


def media_signature(secret: str, media_id: str, expires_at: int) -> str:
    """Signature over the media id and its expiry (unix seconds)."""
    message = f"media:{media_id}:{expires_at}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_media_url(base_url: str, secret: str, media_id: str, expires_at: int) -> str:
    """``{base}/media/{id}?exp=…&sig=…``."""
    query = urlencode({"exp": expires_at, "sig": media_signature(secret, media_id, expires_at)})
    return f"{base_url}/media/{media_id}?{query}"


def signature_valid(
    secret: str, media_id: str, expires_at: int, signature: str, now: float
) -> bool:
    """True when the signature matches (constant time) and ``exp`` is in the future."""
    if expires_at < now:
        return False
    expected = media_signature(secret, media_id, expires_at)
    return hmac.compare_digest(expected, signature)
