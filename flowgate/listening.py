"""Listening sockets for several workers on one port (standard library only)."""

from __future__ import annotations

import socket


def listen_family(host: str) -> socket.AddressFamily:
    """The family uvicorn binds ``host`` with, so that workers listen where one process would.

    IPv6 for an address with a colon, else IPv4: a name such as ``localhost`` binds its
    IPv4 address even where ``getaddrinfo`` lists ``::1`` first.
    """
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (an earlier flowgate's workers included)."""
    # Without SO_REUSEPORT this bind fails while anything holds the port, which
    # SO_REUSEPORT alone would silently share.
    with socket.socket(listen_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other workers may bind as well."""
    sock = socket.socket(listen_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
