"""One serving process: the app under uvicorn (``flowgate serve``, or one of its workers)."""

from __future__ import annotations

import logging
import pickle
import socket

import uvicorn

from flowgate.app import create_app
from flowgate.config import Settings
from flowgate.listening import reuse_port_socket
from flowgate.observability import LoggedErrorFilter
from flowgate.process import KEEP_ALIVE_SECONDS, tune_garbage_collector, tune_memory_allocator


def serve_app(settings: Settings, sock: socket.socket | None = None) -> bool:
    """Serve flowgate in this process until it is stopped (SIGTERM, Ctrl-C).

    ``sock`` is a socket already bound for it (a worker's ``SO_REUSEPORT`` socket); without
    one, uvicorn binds ``settings.host:settings.port``. False when the server failed to
    start (uvicorn's log says why).
    """
    tune_memory_allocator()
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
    application.state.stop_at_once = lambda: server.force_exit
    try:
        server.run(sockets=[sock] if sock is not None else None)
    except KeyboardInterrupt:
        pass
    return server.started


def run_worker(settings_blob: bytes, index: int) -> int:
    """Serve as worker ``index`` (a process :func:`flowgate.supervisor.start_worker`
    forked) on its own ``SO_REUSEPORT`` socket until stopped; its exit code."""
    settings: Settings = pickle.loads(settings_blob)  # from the supervisor, never elsewhere
    worker = settings.for_worker(index)
    try:
        return 0 if serve_app(worker, reuse_port_socket(worker.host, worker.port)) else 3
    except SystemExit as exit_:  # sys.exit(None) is a success, as for any process
        return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
