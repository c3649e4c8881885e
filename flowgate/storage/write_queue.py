"""Group commit for the job path: writes from many requests share one transaction.

Every image request writes its job, media rows, statistics event and webhook outbox
rows. Done as one SQLAlchemy async transaction per step, that cost ~3 ms of CPU per
request and, on SQLite's single writer, queued thousands of held requests behind each
other. Here a write is a small synchronous function of a Core ``Connection``; the
queue runs everything waiting in one transaction and wakes each caller after the
commit, so a caller still sees its own write committed before it answers a client.

SQLite: the batch runs on one dedicated thread with a plain ``sqlite3`` connection
(one thread hop per batch instead of one per statement), while holding the same
asyncio lock as the session writers, so the two never spin on SQLite's busy handler.
PostgreSQL: the batch runs on a pooled asyncpg connection via ``run_sync``.

If any write of a batch fails, the batch is rolled back and each write is run again
in its own transaction, so one bad write fails only its own caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import StaticPool

log = logging.getLogger("flowgate.writes")

T = TypeVar("T")
Write = Callable[[Connection], Any]
"""Synchronous Core work on a connection inside the batch's transaction."""

MAX_BATCH = 512


class _Pending:
    __slots__ = ("future", "write")

    def __init__(self, write: Write, future: asyncio.Future[Any]) -> None:
        self.write = write
        self.future = future


def _apply(connection: Connection, writes: list[Write]) -> list[tuple[bool, Any]]:
    """Run ``writes`` in one transaction; on any error, each in its own instead."""
    try:
        with connection.begin():
            return [(True, write(connection)) for write in writes]
    except Exception as batch_error:
        if len(writes) == 1:
            return [(False, batch_error)]
    outcomes: list[tuple[bool, Any]] = []
    for write in writes:
        try:
            with connection.begin():
                outcomes.append((True, write(connection)))
        except Exception as error:
            outcomes.append((False, error))
    return outcomes


def _sqlite_sync_engine(async_engine: AsyncEngine, pragmas: Callable[..., None]) -> Engine:
    url = async_engine.url.set(drivername="sqlite")
    engine = create_sync_engine(
        url,
        poolclass=StaticPool,
        connect_args={"timeout": 30, "check_same_thread": False},
    )
    event.listen(engine, "connect", pragmas)
    return engine


class WriteQueue:
    """Runs writes in shared transactions; ``run`` returns after the commit."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        lock: asyncio.Lock | None = None,
        pragmas: Callable[..., None] = lambda *_: None,
    ) -> None:
        self._engine = engine
        self._lock = lock
        self._pending: list[_Pending] = []
        self._drainer: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._sqlite: Engine | None = None
        self._sqlite_connection: Connection | None = None
        self._connection: AsyncConnection | None = None
        if engine.dialect.name == "sqlite":
            self._sqlite = _sqlite_sync_engine(engine, pragmas)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="flowgate-writes")

    async def run(self, write: Callable[[Connection], T]) -> T:
        """Run ``write`` in the next batch; its result once committed, or its error."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(write, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            writes = [item.write for item in batch]
            try:
                if self._lock is not None:
                    async with self._lock:
                        outcomes = await self._execute(writes)
                else:
                    outcomes = await self._execute(writes)
            except BaseException as error:  # the connection itself failed: tell everyone
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(
                            error if isinstance(error, Exception) else RuntimeError(str(error))
                        )
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            for item, (ok, value) in zip(batch, outcomes, strict=True):
                if item.future.done():  # its caller was cancelled
                    continue
                if ok:
                    item.future.set_result(value)
                else:
                    item.future.set_exception(value)

    async def _execute(self, writes: list[Write]) -> list[tuple[bool, Any]]:
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._execute_sqlite, writes)
        # One connection kept for the queue: a pool checkout (with its pre-ping) per
        # batch cost more than the batch's statements.
        if self._connection is None:
            self._connection = await self._engine.connect()
        try:
            return await self._connection.run_sync(_apply, writes)
        finally:
            if self._connection.invalidated:  # the server went away: start afresh next time
                await self._drop_connection()

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    def _execute_sqlite(self, writes: list[Write]) -> list[tuple[bool, Any]]:
        assert self._sqlite is not None
        if self._sqlite_connection is None:
            self._sqlite_connection = self._sqlite.connect()
        try:
            return _apply(self._sqlite_connection, writes)
        finally:
            if self._sqlite_connection.invalidated:
                self._close_sqlite_connection()

    def _close_sqlite_connection(self) -> None:
        connection, self._sqlite_connection = self._sqlite_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    async def close(self) -> None:
        """Finish what is queued, then release the connection and thread."""
        if self._drainer is not None:
            with contextlib.suppress(Exception):
                await self._drainer
        await self._drop_connection()
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self._close_sqlite)
            self._thread.shutdown(wait=True)
            self._thread = None

    def _close_sqlite(self) -> None:
        self._close_sqlite_connection()
        if self._sqlite is not None:
            self._sqlite.dispose()
