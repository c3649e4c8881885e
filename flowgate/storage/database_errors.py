"""Recognising database errors the client can do something about (send again later)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

log = logging.getLogger("flowgate.storage")
T = TypeVar("T")


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def is_database_locked(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised from, is SQLite's "database is
    locked": another connection held the write lock for longer than the busy timeout."""
    return any(
        isinstance(link, sqlite3.OperationalError) and str(link).startswith("database is locked")
        for link in _chain(error)
    )


def is_connection_lost(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised from, is a database server connection
    that broke while in use (the server restarted or ended the session, a proxy dropped
    it). SQLite has no server: a closed SQLite connection in use is a bug, not this."""
    return any(
        isinstance(link, DBAPIError)
        and link.connection_invalidated
        and not isinstance(link.orig, sqlite3.Error)
        for link in _chain(error)
    )


def was_refused_unsent(error: BaseException | None) -> bool:
    """Whether the driver refused the command that raised ``error`` before sending any of
    it: asyncpg on a connection already closed, or whose protocol the server's goodbye
    had already broken ("cannot switch to state …; another operation is in progress")."""
    try:
        from asyncpg.exceptions import InterfaceError, InternalClientError
    except ImportError:  # no PostgreSQL driver: nothing of it to recognise
        return False
    return any(
        isinstance(link, InternalClientError)
        or (isinstance(link, InterfaceError) and "connection is closed" in str(link))
        for link in _chain(error)
    )


async def read_again_if_connection_lost(read: Callable[[], Awaitable[T]]) -> T:
    """``read()``; once more (on a new connection) if its connection broke in use.

    For the reads every generation request waits on: a read changes nothing, so a
    server that ended its sessions (a restart) costs those requests nothing.
    """
    try:
        return await read()
    except Exception as error:
        if not is_connection_lost(error):
            raise
        log.warning("database connection broke during a read; read again: %s", error)
    return await read()
