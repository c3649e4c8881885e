"""Workers' listening sockets bind where one uvicorn process would (flowgate/listening.py)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from flowgate.listening import port_is_free, reuse_port_socket
from tests.gateway import free_port


def test_a_host_name_binds_ipv4_even_when_ipv6_is_listed_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hosts file with ``::1 localhost`` first: uvicorn alone binds 127.0.0.1, so must workers."""
    real = socket.getaddrinfo

    def ipv6_first(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        found = real(host, port, *args, **kwargs)
        if host == "localhost":
            ipv6 = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", int(port), 0, 0))
            return [ipv6, *found]
        return found

    monkeypatch.setattr(socket, "getaddrinfo", ipv6_first)
    port = free_port()
    assert port_is_free("localhost", port)
    with reuse_port_socket("localhost", port) as first, reuse_port_socket("localhost", port):
        assert first.family == socket.AF_INET
        assert first.getsockname() == ("127.0.0.1", port)
        first.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # a client of 127.0.0.1 reaches the workers
        assert not port_is_free("localhost", port)


def test_an_ipv6_address_binds_ipv6() -> None:
    port = free_port()
    with reuse_port_socket("::1", port) as sock:
        assert sock.family == socket.AF_INET6
        assert sock.getsockname()[:2] == ("::1", port)
