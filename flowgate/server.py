"""One serving process: the app under uvicorn (``flowgate serve``, or one of its workers)."""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import signal
import socket
from typing import Any

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


_PR_SET_PDEATHSIG = 1


def listen_address(host: str, port: int) -> tuple[Any, ...]:
    """The first address ``host:port`` resolves to, for a listening TCP socket."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other workers may bind as well."""
    family, kind, proto, _, address = listen_address(host, port)
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def _die_with_parent() -> None:
    # Runs in the worker: SIGTERM when the supervising process dies, so no worker
    # outlives it and serves on under a name a new supervisor will reuse.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run_worker(settings_blob: bytes, index: int, supervisor: int) -> int:
    """Serve as worker ``index`` in this freshly forked process; its exit code."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # uvicorn installs its own
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent()
    if os.getppid() != supervisor:  # the supervisor died before the prctl
        return 1
    settings: Settings = pickle.loads(settings_blob)  # from the supervisor, never elsewhere
    worker = settings.for_worker(index)
    try:
        return 0 if serve_app(worker, reuse_port_socket(worker.host, worker.port)) else 3
    except SystemExit as exit_:  # sys.exit(None) is a success, as for any process
        return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
