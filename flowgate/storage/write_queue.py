"""Group commit for the job path: writes from many requests share one transaction.

Every image request writes its job, media rows, statistics event and webhook outbox
rows. Done as one SQLAlchemy async transaction per step, that cost ~3 ms of CPU per
request and, on SQLite's single writer, queued thousands of held requests behind each
other. Here a write is a small synchronous function of a Core ``Connection``; the
queue runs everything waiting in one transaction and wakes each caller after the
commit, so a caller still sees its own write committed before it answers a client.

SQLite: the batch runs on the event loop's own thread, on a plain ``sqlite3``
connection that never waits for SQLite's lock, while holding the same asyncio lock as
the session writers (so nothing in this process holds SQLite's lock meanwhile). In a
thread, a batch of 512 rows took ~10x its CPU time in wall time while the loop was
busy: every ``sqlite3`` step gives up the GIL and waits to get it back. When the
database is locked by another process (a CLI command) or a write fails, the batch goes
to a dedicated thread instead, whose connection waits for the lock (``busy_timeout``)
and runs the writes one by one. WAL checkpoints (an fsync) run in that thread too, at
most once per :data:`CHECKPOINT_SECONDS`, never on the loop.
PostgreSQL: the batch runs on a pooled asyncpg connection via ``run_sync``; a batch of
one statement runs in autocommit (one round trip, not three), and so does a small batch
of the INSERTs and one UPDATE that end a job, sent as one statement
(:class:`_OneStatement`: one round trip, not five), straight to asyncpg
(:func:`_send_one_statement`). The connection is kept
between batches; one the server has closed (a restart, an idle timeout, a proxy) is
replaced before a batch is sent on it. A batch whose connection breaks before its
COMMIT (or whose COMMIT the driver refused unsent) is sent again, once, on a new
connection; one that breaks once its COMMIT is sent (or a lone statement in
autocommit) is not: the server may have applied it, so its callers get the error
(a job's ending is then looked up: :meth:`JobService._finish`).

A write that is a plain :class:`Statement` (or :class:`Steps` of them) is grouped with
the batch's other rows for the same statement and sent as one ``executemany``: 500
completing jobs are three statements, not 1,500 (on PostgreSQL each statement is a
round trip). Groups run first, INSERTs in table order (parents first), then every
other write in order. Writes in one batch come from callers that did not wait for each
other, so no order between them is owed: a caller whose second write depends on its
first must await the first before submitting the second (every caller does today).

If any write of a batch fails, the batch is rolled back and each write is run again
in its own transaction, statement by statement, so one bad write fails only its own
caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Engine, Executable, Insert, Update, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.expression import TableClause

from flowgate.storage.database_errors import (
    is_connection_lost,
    is_database_locked,
    was_refused_unsent,
)

log = logging.getLogger("flowgate.writes")

T = TypeVar("T")
Write = Callable[[Connection], Any]
"""Synchronous Core work on a connection inside the batch's transaction."""

MAX_BATCH = 512
IDLE_RECHECK_SECONDS = 1.0
CHECKPOINT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Statement:
    """One Core statement and its parameters: a write the queue may send together with
    the batch's other rows of the same statement and keys, as one ``executemany``.

    ``order`` places its group among the batch's groups (lower first, ties in arrival
    order): an INSERT's table position, parents first; UPDATEs after every INSERT.

    Build ``statement`` once and reuse it (as ``storage/writes.py`` does): the queue
    keeps its compiled form per statement object and key set (PostgreSQL:
    :class:`_OneStatement`; SQLite: :func:`_send_to_cursor`).
    """

    statement: Executable
    params: Mapping[str, Any]
    order: int = 0

    def __call__(self, connection: Connection) -> None:
        connection.execute(self.statement, self.params)


@dataclass(frozen=True, slots=True)
class Steps:
    """Several writes of one caller, run in order (when the batch is not grouped)."""

    steps: tuple[Write, ...]

    def __call__(self, connection: Connection) -> None:
        for step in self.steps:
            step(connection)


class _Pending:
    __slots__ = ("future", "write")

    def __init__(self, write: Write, future: asyncio.Future[Any]) -> None:
        self.write = write
        self.future = future


MAX_STEPS_IN_ONE_STATEMENT = 16
MAX_COMPILED_FORMS = 256
_NUMBERED_PARAMETER = re.compile(r"\$(\d+)")
_PLACEHOLDERS = {"numeric_dollar": "$", "qmark": "?"}  # asyncpg, sqlite3
StepForms = Callable[["Statement"], "_CompiledStep | None"]
"""The compiled form of a :class:`Statement` (None: send it through SQLAlchemy)."""


@dataclass(frozen=True, slots=True)
class _CompiledStep:
    """A statement compiled once for one set of parameter keys: its SQL with
    positional parameters, and how to turn a row of parameters into their values."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    defaults: Mapping[str, Any]
    table: str
    is_update: bool

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        """The parameter values in SQL order, converted as SQLAlchemy would send them."""
        row = {**self.defaults, **params} if self.defaults else params
        return [
            row[name] if process is None else process(row[name])
            for name, process in zip(self.names, self.processors, strict=True)
        ]


def _compile_step(
    dialect: Dialect, statement: Executable, keys: tuple[str, ...]
) -> _CompiledStep | None:
    """``statement`` compiled for ``keys``; None when it cannot be sent this way (not a
    plain INSERT or UPDATE, or a column default that must be computed per row)."""
    marker = _PLACEHOLDERS.get(dialect.paramstyle)
    if (
        marker is None
        or not isinstance(statement, (Insert, Update))
        or not isinstance(statement.table, TableClause)
    ):
        return None
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    names = tuple(compiled.positiontup or ())
    prefetch = [*compiled.insert_prefetch, *compiled.update_prefetch]
    if (
        any(column.default is None or not column.default.is_scalar for column in prefetch)
        # Every marker a parameter (no literal holds one): PostgreSQL's may be renumbered.
        or compiled.string.count(marker) != len(names)
        or not set(names) <= {*keys, *(column.key for column in prefetch)}
    ):
        return None
    return _CompiledStep(
        sql=compiled.string,
        names=names,
        processors=tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        ),
        defaults={column.key: column.default.arg for column in prefetch},  # type: ignore[union-attr]
        table=statement.table.name,
        is_update=isinstance(statement, Update),
    )


def _run_grouped(
    connection: Connection, writes: list[Write], forms: StepForms | None = None
) -> list[tuple[bool, Any]]:
    groups: dict[tuple[int, tuple[str, ...]], tuple[Statement, list[Mapping[str, Any]]]] = {}
    others: list[tuple[int, Write]] = []
    for index, write in enumerate(writes):
        for step in write.steps if isinstance(write, Steps) else (write,):
            if isinstance(step, Statement):
                key = (id(step.statement), tuple(step.params))
                group = groups.get(key)
                if group is None:
                    groups[key] = (step, [step.params])
                else:
                    group[1].append(step.params)
            else:
                others.append((index, step))
    results: list[Any] = [None] * len(writes)
    # Statement listeners (tests, tracing) see every statement: SQLAlchemy sends them.
    watched = bool(connection.dispatch.before_cursor_execute)
    for first, rows in sorted(groups.values(), key=lambda group: group[0].order):
        form = forms(first) if forms is not None and not watched else None
        if form is not None:
            _send_to_cursor(connection, form, rows)
        else:
            connection.execute(first.statement, rows if len(rows) > 1 else rows[0])
    for index, step in others:
        result = step(connection)
        if step is writes[index]:  # a plain write's own result; Steps give None, as alone
            results[index] = result
    return [(True, result) for result in results]


def _send_to_cursor(
    connection: Connection, form: _CompiledStep, rows: list[Mapping[str, Any]]
) -> None:
    """SQLite: a statement's rows straight to the ``sqlite3`` cursor, in the
    connection's transaction. SQLAlchemy's work per execution (an execution context,
    parameter processing, a result) cost about as much as SQLite's own on this path;
    errors are raised as SQLAlchemy raises them."""
    dialect = connection.dialect
    dbapi_connection: Any = connection.connection.dbapi_connection
    values = [form.values(row) for row in rows]
    cursor = None
    try:
        cursor = dbapi_connection.cursor()
        if len(values) == 1:
            cursor.execute(form.sql, values[0])
        else:
            cursor.executemany(form.sql, values)
    except dialect.loaded_dbapi.Error as error:
        lost = dialect.is_disconnect(error, dbapi_connection, cursor)
        if lost:
            connection.invalidate(error)
        raise DBAPIError.instance(
            form.sql,
            values,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
        ) from error
    finally:
        if cursor is not None:
            cursor.close()


class _ConnectionLost(Exception):
    """The connection broke during a batch; ``before_commit``: the COMMIT was never sent,
    so nothing of the batch was stored and it may be sent again."""

    def __init__(self, error: BaseException, *, before_commit: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.before_commit = before_commit


def _apply(
    connection: Connection, writes: list[Write], forms: StepForms | None = None
) -> list[tuple[bool, Any]]:
    """Run ``writes`` in one transaction, grouped; on any error, each in its own instead."""
    try:
        with connection.begin():
            return _run_grouped(connection, writes, forms)
    except Exception as batch_error:
        if is_connection_lost(batch_error):
            # A statement failed (no COMMIT was sent), or the COMMIT was refused unsent:
            # nothing is stored. A COMMIT that failed once sent may have been applied.
            at_commit = isinstance(batch_error, DBAPIError) and batch_error.statement is None
            sent = at_commit and not was_refused_unsent(batch_error)
            raise _ConnectionLost(batch_error, before_commit=not sent) from batch_error
        # Alone, each write would wait out the same lock again: all fail together.
        if len(writes) == 1 or is_database_locked(batch_error):
            return [(False, batch_error)] * len(writes)
    return _apply_each(connection, writes)


def _apply_each(connection: Connection, writes: list[Write]) -> list[tuple[bool, Any]]:
    """Each write in its own transaction: a failing one fails only its caller."""
    outcomes: list[tuple[bool, Any]] = []
    for write in writes:
        try:
            with connection.begin():
                outcomes.append((True, write(connection)))
        except Exception as error:
            outcomes.append((False, error))
    return outcomes


def _lone_statement(writes: list[Write]) -> Statement | None:
    """The batch's only statement, when it holds exactly one."""
    steps = _flat_steps(writes)
    if len(writes) != 1 or len(steps) != 1:
        return None
    return steps[0] if isinstance(steps[0], Statement) else None


@contextlib.contextmanager
def _autocommit(connection: Connection) -> Iterator[None]:
    """PostgreSQL: what runs inside sends no BEGIN and COMMIT (one statement is atomic
    by itself); SQLAlchemy's transaction around it is bookkeeping only."""
    # The DB-API attribute, not the isolation_level execution option: that option adds a
    # reset callback to the connection record each time, and this connection is kept.
    dbapi_connection: Any = connection.connection.dbapi_connection
    dbapi_connection.autocommit = True
    try:
        with connection.begin():
            yield
    finally:
        dbapi_connection.autocommit = False


def _apply_alone(connection: Connection, statement: Statement) -> list[tuple[bool, Any]]:
    """Run a batch's only statement in autocommit (PostgreSQL).

    One statement is atomic by itself, so it needs no BEGIN and COMMIT around it: one
    round trip to the server instead of three. That is most batches when requests come
    one at a time.
    """
    try:
        with _autocommit(connection):
            statement(connection)
    except Exception as error:
        return [(False, error)]
    return [(True, None)]


@dataclass(frozen=True, slots=True)
class _OneStatement:
    """A batch of INSERTs and at most one UPDATE as one PostgreSQL statement: the
    INSERTs as data-modifying ``WITH`` parts, the last part as the main statement.

    Sent in autocommit it is atomic by itself: one round trip instead of BEGIN, one per
    statement, and COMMIT (a job's ending: five). All parts see the same snapshot, so an
    UPDATE would miss rows INSERTed beside it: a batch updating a table it also inserts
    into is not sent this way, nor one with two UPDATEs (two changes of one row in one
    statement: only one would hold).
    """

    sql: str
    values: tuple[Any, ...]


@functools.lru_cache(maxsize=1024)
def _renumbered(sql: str, offset: int) -> str:
    """``sql`` with its parameters ``$1``… moved up by ``offset``.

    Cached: a batch's parts are a few compiled statements at a few offsets, and the
    substitution cost about half of building the batch's one statement."""
    return _NUMBERED_PARAMETER.sub(lambda match: f"${int(match.group(1)) + offset}", sql)


def _flat_steps(writes: list[Write]) -> list[Write]:
    return [
        step for write in writes for step in (write.steps if isinstance(write, Steps) else (write,))
    ]


def _apply_one_statement(
    connection: Connection, one: _OneStatement, writes: list[Write]
) -> list[tuple[bool, Any]]:
    """Send ``one`` in autocommit; if it fails (so nothing of it was applied), each write
    again in its own transaction, so only the writes at fault fail."""
    try:
        with _autocommit(connection):
            connection.exec_driver_sql(one.sql, one.values)
    except Exception as error:
        # Lost: maybe applied, the callers look (as after _apply_alone). One write: its
        # own error. Otherwise nothing was applied: each write alone.
        if is_connection_lost(error) or len(writes) == 1:
            return [(False, error)] * len(writes)
        return _apply_each(connection, writes)
    return [(True, None)] * len(writes)


async def _send_one_statement(
    connection: AsyncConnection, one: _OneStatement, writes: list[Write]
) -> list[tuple[bool, Any]]:
    """Send ``one`` straight to asyncpg, in autocommit (asyncpg's own outside a transaction).

    SQLAlchemy's work around one statement (a greenlet, an execution context, a cursor,
    a result) cost about as much CPU as asyncpg's: sent directly, a request at c = 1 cost
    15-17 % less CPU (BENCHMARKS.md, session 19). What SQLAlchemy did for errors is done
    here: a refused statement (nothing applied, the connection sound) goes again through
    SQLAlchemy, so callers get its errors (``IntegrityError`` …) and only the writes at
    fault fail; a broken connection is invalidated and reported as lost (the statement
    may have been applied: callers look, as after any lost connection). With a statement
    listener registered (tests, tracing), the batch goes through SQLAlchemy, which
    reports every statement to it.
    """
    sync = connection.sync_connection
    if sync is None or sync.dispatch.before_cursor_execute:
        return await connection.run_sync(_apply_one_statement, one, writes)
    driver: Any = sync.connection.driver_connection
    try:
        await driver.execute(one.sql, *one.values)
    except Exception as error:
        if not driver.is_closed():
            return await connection.run_sync(_apply_one_statement, one, writes)
        await connection.invalidate()
        lost = DBAPIError(one.sql, None, error, connection_invalidated=True)
        lost.__cause__ = error
        return [(False, lost)] * len(writes)
    return [(True, None)] * len(writes)


def _sqlite_sync_engine(
    async_engine: AsyncEngine, pragmas: Callable[..., None], *, wait: bool
) -> Engine:
    url = async_engine.url.set(drivername="sqlite")
    engine = create_sync_engine(
        url,
        poolclass=StaticPool,
        connect_args={"check_same_thread": False},  # the wait for a lock: ``pragmas``
    )
    event.listen(engine, "connect", pragmas)
    if not wait:
        event.listen(engine, "connect", _no_wait)
    return engine


def _no_wait(dbapi_connection: Any, _record: Any = None) -> None:
    # The loop's connection: a locked database is an error at once (the batch then goes
    # to the thread), and no commit runs a checkpoint (the thread runs them).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class QueueClosed(RuntimeError):
    """A write was sent after shutdown began."""


class WriteQueue:
    """Runs writes in shared transactions; ``run`` returns after the commit.

    A write that was queued commits even if its caller is cancelled meanwhile (as a
    request whose client went away): callers that must undo work on cancellation use
    :meth:`submit` and look at the outcome themselves.
    """

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
        self._closed = False
        self._thread: ThreadPoolExecutor | None = None
        self._sqlite: Engine | None = None
        self._sqlite_connection: Connection | None = None
        self._sqlite_here: Engine | None = None
        self._here_connection: Connection | None = None
        self._checkpoint: asyncio.Future[None] | None = None
        self._checkpointed = time.monotonic()
        self._connection: AsyncConnection | None = None
        self._connection_used = 0.0
        self._compiled: dict[tuple[Executable, tuple[str, ...]], _CompiledStep | None] = {}
        self._dialect = engine.dialect  # the one that runs the statements
        if engine.dialect.name == "sqlite":
            self._sqlite = _sqlite_sync_engine(engine, pragmas, wait=True)
            self._sqlite_here = _sqlite_sync_engine(engine, pragmas, wait=False)
            self._dialect = self._sqlite_here.dialect
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="flowgate-writes")

    def submit(self, write: Callable[[Connection], T]) -> asyncio.Future[T]:
        """Queue ``write``; the future holds its result once committed, or its error."""
        if self._closed:
            raise QueueClosed("flowgate is shutting down; the write was not made")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(write, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return future

    async def run(self, write: Callable[[Connection], T]) -> T:
        """Run ``write`` in the next batch; its result once committed, or its error."""
        return await self.submit(write)

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
            except asyncio.CancelledError:
                # Torn down (loop closing): nobody waits forever on a write never made.
                stranded, self._pending = batch + self._pending, []
                _fail_all(stranded, QueueClosed("flowgate stopped before the write was made"))
                raise
            except Exception as error:  # the connection itself failed: tell this batch
                _fail_all(batch, error)
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
            outcomes = self._apply_here(writes)
            if outcomes is not None:
                self._checkpoint_soon()
                return outcomes
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._execute_sqlite, writes)
        # One connection kept for the queue: a pool checkout (with its pre-ping) per
        # batch cost more than the batch's statements. After a quiet second it goes
        # back through the pool, whose pre-ping replaces a connection the server or a
        # proxy dropped meanwhile (a lone write would otherwise fail on it).
        for attempt in (1, 2):
            connection = await self._kept_connection()
            # Compiled once the dialect has met the server (its version decides some SQL).
            one = self._one_statement(writes)
            lone = _lone_statement(writes) if one is None else None
            try:
                if one is not None:
                    return await _send_one_statement(connection, one, writes)
                if lone is not None:
                    return await connection.run_sync(_apply_alone, lone)
                return await connection.run_sync(_apply, writes)
            except _ConnectionLost as lost:
                if not lost.before_commit or attempt == 2:
                    return [(False, lost.error)] * len(writes)
                log.warning("database connection broke before a commit; batch sent again: %s", lost)
            finally:
                if connection.invalidated:  # the server went away: start afresh next time
                    await self._drop_connection()
        raise AssertionError("unreachable")

    def _one_statement(self, writes: list[Write]) -> _OneStatement | None:
        """The batch as one statement (PostgreSQL), when every write is a
        :class:`Statement` and :class:`_OneStatement`'s rules allow it."""
        steps = _flat_steps(writes)
        if not 1 <= len(steps) <= MAX_STEPS_IN_ONE_STATEMENT:
            return None
        compiled: list[tuple[_CompiledStep, Statement]] = []
        updated: str | None = None
        for step in steps:
            if not isinstance(step, Statement):
                return None
            form = self._compiled_step(step)
            if form is None or (form.is_update and updated is not None):
                return None
            if form.is_update:
                updated = form.table
            compiled.append((form, step))
        if updated is not None and any(
            form.table == updated for form, _ in compiled if not form.is_update
        ):
            return None
        # INSERTs first (parents before children, as grouped), the UPDATE last: the main
        # statement. Foreign keys are checked at the end of the statement.
        compiled.sort(key=lambda pair: (pair[0].is_update, pair[1].order))
        parts: list[str] = []
        values: list[Any] = []
        for form, step in compiled:
            parts.append(_renumbered(form.sql, len(values)))
            values.extend(form.values(step.params))
        *ctes, main = parts
        with_clause = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(ctes))
        return _OneStatement(f"WITH {with_clause} {main}" if ctes else main, tuple(values))

    def _compiled_step(self, step: Statement) -> _CompiledStep | None:
        key = (step.statement, tuple(step.params))
        if key in self._compiled:
            return self._compiled[key]
        if len(self._compiled) >= MAX_COMPILED_FORMS:
            return None  # SQLAlchemy's own statement cache serves the rest
        form = self._compiled[key] = _compile_step(self._dialect, step.statement, key[1])
        return form

    async def _kept_connection(self) -> AsyncConnection:
        """The queue's PostgreSQL connection, replaced when it may be gone."""
        now = time.monotonic()
        if self._connection is not None and (
            now - self._connection_used > IDLE_RECHECK_SECONDS
            or _closed_by_server(self._connection)
        ):
            await self._drop_connection()
        if self._connection is None:
            self._connection = await self._engine.connect()
        self._connection_used = now
        return self._connection

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    def _apply_here(self, writes: list[Write]) -> list[tuple[bool, Any]] | None:
        """SQLite: the batch in one transaction on this thread, without waiting; None
        when it could not be made so (locked elsewhere, or a write failed)."""
        assert self._sqlite_here is not None
        if self._here_connection is None:
            self._here_connection = self._sqlite_here.connect()
        connection = self._here_connection
        try:
            with connection.begin():
                return _run_grouped(connection, writes, self._compiled_step)
        except Exception:
            # Rolled back: the thread runs the batch again, waiting for the lock, and
            # fails only the writes that fail alone.
            if connection.invalidated:
                self._here_connection = None
                _close_quietly(connection)
            return None

    def _checkpoint_soon(self) -> None:
        """Start a WAL checkpoint in the thread, unless one ran in the last second."""
        now = time.monotonic()
        if now - self._checkpointed < CHECKPOINT_SECONDS:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._checkpointed = now
        loop = asyncio.get_running_loop()
        self._checkpoint = loop.run_in_executor(self._thread, self._checkpoint_wal)
        self._checkpoint.add_done_callback(_log_failed_checkpoint)

    def _checkpoint_wal(self) -> None:
        assert self._sqlite is not None
        if self._sqlite_connection is None:
            self._sqlite_connection = self._sqlite.connect()
        # PASSIVE: copies what it can without waiting for readers or writers.
        dbapi_connection: Any = self._sqlite_connection.connection.dbapi_connection
        dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").close()

    def _execute_sqlite(self, writes: list[Write]) -> list[tuple[bool, Any]]:
        assert self._sqlite is not None
        if self._sqlite_connection is None:
            self._sqlite_connection = self._sqlite.connect()
        try:
            return _apply(self._sqlite_connection, writes, self._compiled_step)
        finally:
            if self._sqlite_connection.invalidated:
                self._close_sqlite_connection()

    def _close_sqlite_connection(self) -> None:
        connection, self._sqlite_connection = self._sqlite_connection, None
        _close_quietly(connection)

    async def close(self) -> None:
        """Finish what is queued, refuse new writes, release the connection and thread."""
        self._closed = True
        if self._drainer is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._drainer
        await self._drop_connection()
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint
        connection, self._here_connection = self._here_connection, None
        _close_quietly(connection)
        if self._sqlite_here is not None:
            self._sqlite_here.dispose()
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self._close_sqlite)
            self._thread.shutdown(wait=True)
            self._thread = None

    def _close_sqlite(self) -> None:
        self._close_sqlite_connection()
        if self._sqlite is not None:
            self._sqlite.dispose()


def _closed_by_server(connection: AsyncConnection) -> bool:
    """Whether the driver already saw the server close ``connection`` (no round trip).

    asyncpg notices a session the server ended (a restart, an idle timeout, a proxy) as
    soon as the loop reads the socket's end; a batch sent on it would fail unsent.
    """
    sync = connection.sync_connection
    if sync is None or sync.closed or sync.invalidated:
        return True
    is_closed = getattr(sync.connection.driver_connection, "is_closed", None)
    return bool(is_closed()) if callable(is_closed) else False


def _close_quietly(connection: Connection | None) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.close()


def _log_failed_checkpoint(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("WAL checkpoint failed: %s", done.exception())


def _fail_all(items: list[_Pending], error: BaseException) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)
