"""Database engine and sessions (SQLAlchemy 2, async)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from flowgate.storage.write_queue import WriteQueue


def is_sqlite(url: str) -> bool:
    """True for the embedded SQLite backend."""
    return url.startswith("sqlite")


def sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """Connection settings every SQLite connection of flowgate uses."""
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; NORMAL is durable in WAL mode
    # except for the last transactions on power loss, which is the usual trade.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """Create the engine; SQLite gets WAL mode, a busy timeout and foreign keys."""
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=20, max_overflow=30, pool_pre_ping=True)


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


def write_queue(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> WriteQueue:
    """The group-commit queue, taking turns with the session writers on SQLite."""
    lock = sessions.write_lock if isinstance(sessions, SerializedWriteSessions) else None
    return WriteQueue(engine, lock=lock, pragmas=sqlite_pragmas)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (writes serialized on SQLite)."""
    if engine.dialect.name == "sqlite":
        return SerializedWriteSessions(engine)
    return async_sessionmaker(engine, expire_on_commit=False)
