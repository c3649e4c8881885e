"""A real sandbox server on a loopback port, shared by the whole test session.

Use it with ``from tests.fixtures_sandbox import sandbox_url  # noqa: F401``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

import httpx
import pytest
import uvicorn

STARTUP_TIMEOUT_SECONDS = 30.0
START_ATTEMPTS = 3


def free_loopback_port() -> int:
    """A port nobody listens on right now (another process may still take it: we retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    code = (
        "from flowgate.sandbox.server import run; "
        f"run(host='127.0.0.1', port={port}, log_level='warning')"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=log)


def _wait_until_up(process: subprocess.Popen[bytes], url: str) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/_sandbox/calls", timeout=1.0, trust_env=False).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of a sandbox started in a subprocess."""
    with tempfile.TemporaryFile() as log:
        for _ in range(START_ATTEMPTS):
            url = f"http://127.0.0.1:{free_loopback_port()}"
            process = _start(int(url.rsplit(":", 1)[1]), log)
            if _wait_until_up(process, url):
                break
            _stop(process)
        else:
            log.seek(0)
            output = log.read().decode("utf-8", "replace")[-4000:]
            pytest.fail(f"the sandbox server did not start:\n{output}")
        try:
            yield url
        finally:
            _stop(process)


@contextlib.asynccontextmanager
async def served(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a loopback port in this event loop; its base URL.

    ``config`` goes to ``uvicorn.Config`` (e.g. ``timeout_keep_alive``).
    """
    port = free_loopback_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", **config
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError(f"test server did not start on port {port}")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
