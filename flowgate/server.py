"""One serving process: the app under uvicorn (``flowgate serve``, or one of its workers)."""

from __future__ import annotations

import logging
import socket

import uvicorn

from flowgate.app import create_app
from flowgate.config import Settings
from flowgate.observability import LoggedErrorFilter
from flowgate.process import KEEP_ALIVE_SECONDS, tune_garbage_collector


def serve_app(settings: Settings, sock: socket.socket | None = None) -> bool:
    """Serve flowgate in this process until it is stopped (SIGTERM, Ctrl-C).

    ``sock`` is a socket already bound for it (a worker's ``SO_REUSEPORT`` socket); without
    one, uvicorn binds ``settings.host:settings.port``. False when the server failed to
    start (uvicorn's log says why).
    """
    application = create_app(settings)
    tune_garbage_collector()
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=4096,
    )
    # After uvicorn.Config, which configures uvicorn's loggers.
    logging.getLogger("uvicorn.error").addFilter(LoggedErrorFilter())
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock] if sock is not None else None)
    except KeyboardInterrupt:
        pass
    return server.started
