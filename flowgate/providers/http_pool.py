"""The one pooled HTTP client flowgate uses for every outgoing call (upstreams, webhooks).

The app creates it at start-up and hands it to every provider, so thousands of
concurrent generations share keep-alive connections instead of opening their own.
It is an ``aiohttp.ClientSession``: on the image path it costs about a quarter of
the CPU per call that ``httpx`` did (BENCHMARKS.md), which matters at hundreds of
calls per second on two cores.
"""

from __future__ import annotations

from urllib.request import getproxies

import aiohttp

import flowgate

# Connecting should be quick even when generating is slow; a dead host must fail fast.
CONNECT_TIMEOUT_SECONDS = 10.0
KEEPALIVE_EXPIRY_SECONDS = 30.0

HttpPool = aiohttp.ClientSession
"""The type services and providers receive."""


def new_upstream_client(
    *, timeout_seconds: float = 120.0, max_connections: int = 1000
) -> aiohttp.ClientSession:
    """A keep-alive client session (HTTP/1.1) for outgoing calls; call it in a running loop.

    ``timeout_seconds`` bounds getting a connection (a free pooled one included) and
    each wait for answer bytes, not the whole call: a generation may take tens of
    seconds and a video download longer, as long as bytes keep coming.
    ``max_connections`` bounds concurrent calls, the rest wait for a free connection.
    Cookies are never kept: one upstream account's cookies must not travel with
    another's calls. Proxy settings come from the environment (``HTTPS_PROXY``,
    ``NO_PROXY``). Close it with ``await client.close()`` at shutdown.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=0,
            keepalive_timeout=KEEPALIVE_EXPIRY_SECONDS,
        ),
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=timeout_seconds,
            sock_connect=min(CONNECT_TIMEOUT_SECONDS, timeout_seconds),
            sock_read=timeout_seconds,
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        # aiohttp looks proxies up again on every call when trusting the environment
        # (~0.4 ms each, measured): only pay for it when a proxy is configured.
        trust_env=bool(getproxies()),
        headers={"user-agent": f"flowgate/{flowgate.__version__}"},
    )
