"""Database engine and sessions (SQLAlchemy 2, async)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from flowgate.domain.errors import DatabaseUnavailable
from flowgate.storage.write_queue import WriteQueue

log = logging.getLogger("flowgate.db")


def is_sqlite(url: str) -> bool:
    """True for the embedded SQLite backend."""
    return url.startswith("sqlite")


DEFAULT_SQLITE_BUSY_SECONDS = 30.0


def sqlite_pragmas(busy_seconds: float = DEFAULT_SQLITE_BUSY_SECONDS) -> Callable[..., None]:
    """The connection settings every SQLite connection of flowgate uses (a ``connect``
    listener); a write waits ``busy_seconds`` for another program's lock."""

    def apply(dbapi_connection: Any, _record: Any = None) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the single writer; NORMAL is durable in WAL mode
        # except for the last transactions on power loss, which is the usual trade.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={round(busy_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return apply


def create_engine(
    url: str, *, sqlite_busy_seconds: float = DEFAULT_SQLITE_BUSY_SECONDS
) -> AsyncEngine:
    """Create the engine; SQLite gets WAL mode, a busy timeout and foreign keys."""
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": sqlite_busy_seconds})
        event.listen(engine.sync_engine, "connect", sqlite_pragmas(sqlite_busy_seconds))
        return engine
    engine = create_async_engine(url, pool_size=20, max_overflow=30, pool_pre_ping=True)
    event.listen(engine.sync_engine, "do_connect", _connect_or_unavailable)
    return engine


def _connect_or_unavailable(
    dialect: Any, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    # Every new pooled connection (a dead one replaced by the pre-ping included) is made
    # here: a server that is down, restarting or refusing connections is a 503 with
    # Retry-After for the client, not an unexpected 500; the log has the cause.
    try:
        return dialect.loaded_dbapi.connect(*cargs, **cparams)
    except Exception as error:
        log.warning("cannot connect to the database: %s: %s", type(error).__name__, error)
        raise DatabaseUnavailable() from error


async def connect_once(
    url: str, *, sqlite_busy_seconds: float = DEFAULT_SQLITE_BUSY_SECONDS
) -> None:
    """Open one connection and close it; :class:`DatabaseUnavailable` if the server refuses.

    SQLite: take the file's write lock once and give it back (``database is locked``, see
    :func:`~flowgate.storage.database_errors.is_database_locked`, if another program holds it
    for longer than ``sqlite_busy_seconds``); a file that does not exist yet is created
    on first use, so there is nothing to check.
    """
    if is_sqlite(url):
        path = make_url(url).database
        if path:
            await asyncio.to_thread(_take_write_lock_once, Path(path), sqlite_busy_seconds)
        return
    engine = create_engine(url)
    try:
        async with engine.connect():
            pass
    finally:
        await engine.dispose()


def _take_write_lock_once(path: Path, busy_seconds: float) -> None:
    if not path.exists():
        return
    connection = sqlite3.connect(path, timeout=busy_seconds, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
    finally:
        connection.close()


class SerializedWriteSessions(async_sessionmaker[AsyncSession]):
    """For SQLite: write transactions (``begin()``) take turns in this process.

    SQLite has one writer at a time. Without this, concurrent writers each grab a pooled
    connection and spin in SQLite's busy handler, burning CPU and adding seconds of
    latency under load; queued on an asyncio lock they cost nothing while they wait.
    Reads (``sessions()``) still run side by side (WAL).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, expire_on_commit=False)
        self.write_lock = asyncio.Lock()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:  # type: ignore[override]
        async with self.write_lock, super().begin() as session:
            yield session


def write_queue(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    *,
    sqlite_busy_seconds: float = DEFAULT_SQLITE_BUSY_SECONDS,
) -> WriteQueue:
    """The group-commit queue, taking turns with the session writers on SQLite."""
    lock = sessions.write_lock if isinstance(sessions, SerializedWriteSessions) else None
    return WriteQueue(engine, lock=lock, pragmas=sqlite_pragmas(sqlite_busy_seconds))


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (writes serialized on SQLite)."""
    if engine.dialect.name == "sqlite":
        return SerializedWriteSessions(engine)
    return async_sessionmaker(engine, expire_on_commit=False)
