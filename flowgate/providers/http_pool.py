"""The one pooled HTTP client flowgate uses for every upstream call.

The app creates it at start-up and hands it to every provider, so thousands of
concurrent generations share keep-alive connections instead of opening their own.
"""

from __future__ import annotations

import httpx

import flowgate

# Connecting should be quick even when generating is slow; a dead host must fail fast.
CONNECT_TIMEOUT_SECONDS = 10.0
KEEPALIVE_EXPIRY_SECONDS = 30.0


def new_upstream_client(
    *, timeout_seconds: float = 120.0, max_connections: int = 1000
) -> httpx.AsyncClient:
    """A keep-alive ``httpx.AsyncClient`` (HTTP/1.1, follows redirects) for upstream calls.

    ``timeout_seconds`` bounds reading a whole answer (image generation takes tens of
    seconds); ``max_connections`` bounds concurrent upstream requests, the rest wait
    for a free connection. Close it with ``await client.aclose()`` at shutdown.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            timeout_seconds, connect=min(CONNECT_TIMEOUT_SECONDS, timeout_seconds)
        ),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
        ),
        follow_redirects=True,
        headers={"user-agent": f"flowgate/{flowgate.__version__}"},
    )
