"""Listening sockets for several workers on one port (standard library only)."""

from __future__ import annotations

import socket
from typing import Any


def listen_address(host: str, port: int) -> tuple[Any, ...]:
    """The first address ``host:port`` resolves to, for a listening TCP socket."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (an earlier flowgate's workers included)."""
    # Without SO_REUSEPORT this bind fails while anything holds the port, which
    # SO_REUSEPORT alone would silently share.
    family, kind, proto, _, address = listen_address(host, port)
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other workers may bind as well."""
    family, kind, proto, _, address = listen_address(host, port)
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock
