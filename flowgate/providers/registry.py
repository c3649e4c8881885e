"""Builds the provider object for an account."""

from __future__ import annotations

from flowgate.providers.base import Provider
from flowgate.providers.gemini import GeminiProvider
from flowgate.providers.http_pool import HttpPool

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
SANDBOX_DEFAULT_KEY = "sandbox-key"


def build_provider(
    provider: str,
    *,
    http: HttpPool,
    api_key: str,
    base_url: str | None,
    sandbox_base_url: str,
) -> Provider:
    """The provider for an account of kind ``provider`` ("gemini" or "sandbox").

    The sandbox speaks the Gemini API, so both use the real Gemini provider code.
    """
    if provider == "sandbox":
        return GeminiProvider(
            http, base_url=base_url or sandbox_base_url, api_key=api_key or SANDBOX_DEFAULT_KEY
        )
    if provider == "gemini":
        return GeminiProvider(http, base_url=base_url or GEMINI_BASE_URL, api_key=api_key)
    raise ValueError(f"unknown provider {provider!r}")
