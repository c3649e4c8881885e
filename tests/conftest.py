"""Shared fixtures: real flowgate servers on loopback ports, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gateway import (
    BACKENDS,
    Gateway,
    create_pg_database,
    dispose_gateway,
    drop_pg_database,
    make_gateway,
)


@pytest.fixture(scope="session", params=BACKENDS)
def gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """One running server per backend, shared by the tests of the session.

    Tests create their own users (``gateway.new_user()``) so they do not see each other's data.
    """
    gw = make_gateway(request.param)
    gw.start()
    yield gw
    dispose_gateway(gw)


@pytest.fixture
def gateway_factory() -> Iterator[Callable[..., Gateway]]:
    """Make extra servers (restarts, kill -9, settings) that are cleaned up after the test."""
    made: list[Gateway] = []

    def factory(backend: str = "sqlite", **extra_env: str) -> Gateway:
        gw = make_gateway(backend, **extra_env)
        made.append(gw)
        return gw

    yield factory
    for gw in made:
        dispose_gateway(gw)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database: a SQLite file, or a PostgreSQL database dropped after."""
    if request.param == "postgres":
        url = create_pg_database()
        yield url
        drop_pg_database(url)
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'flowgate.sqlite'}"
