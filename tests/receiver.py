"""A real webhook receiver on a loopback port that records what it gets."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.gateway import free_port


@dataclass
class Received:
    """One POST the receiver accepted (or refused)."""

    headers: dict[str, str]
    raw: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


@dataclass
class Receiver:
    """Answers ``fail_next`` requests with 500, then 200; keeps every request."""

    port: int = field(default_factory=free_port)
    fail_next: int = 0
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                status = 200
                if owner.fail_next > 0:
                    owner.fail_next -= 1
                    status = 500
                owner.received.append(Received(dict(self.headers.items()), raw, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.status == 200]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until ``count`` requests were accepted (200)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.accepted()) >= count:
                return self.accepted()
            time.sleep(0.05)
        raise AssertionError(f"expected {count} webhooks, got {[r.status for r in self.received]}")
