"""Request id and access log; start slots for generation requests. Plain ASGI (cheap on
the hot path)."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowgate.api.errors import unexpected_error
from flowgate.observability import request_id_var
from flowgate.start_gate import StartGate

log = logging.getLogger("flowgate.access")


class RequestIdMiddleware:
    """Gives each request an id (``X-Request-ID`` in and out) and logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")[:64]
                break
        request_id = incoming or secrets.token_hex(8)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if status["started"]:
                # Half an answer is out: only closing the connection can tell the client.
                # The id stays set for the 500 handler in Starlette's ServerErrorMiddleware,
                # which logs the error; uvicorn then closes the connection.
                self._log(scope, status["code"], started)
                raise
            # Answered here rather than by raising on: the 500 is complete, so the
            # connection stays open for the client's next request (uvicorn closes a
            # connection whose app raised, and a client reusing it got a reset).
            await unexpected_error()(scope, receive, send)
        self._log(scope, status["code"], started)
        request_id_var.reset(token)

    @staticmethod
    def _log(scope: Scope, code: int, started: float) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                code,
                extra={
                    "status": code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )


class StartGateMiddleware:
    """Runs each ``POST`` to one of ``paths`` in a slot of ``gate`` (flowgate/start_gate.py).

    Placed inside :class:`RequestIdMiddleware`, so the access log's duration includes the
    wait for a slot.
    """

    def __init__(self, app: ASGIApp, gate: StartGate, paths: frozenset[str]) -> None:
        self.app = app
        self.gate = gate
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        async with self.gate.slot():
            await self.app(scope, receive, send)
