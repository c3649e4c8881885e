"""The group-commit write queue on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, select, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from flowgate.domain.ids import JobKind, new_job_id
from flowgate.services.credits import CreditService
from flowgate.services.jobs import JobService, UpstreamAttempt
from flowgate.services.users import Caller
from flowgate.storage import write_queue as write_queue_module
from flowgate.storage.database_errors import (
    is_connection_lost,
    is_database_locked,
    read_again_if_connection_lost,
    was_refused_unsent,
)
from flowgate.storage.db import create_engine, session_factory, write_queue
from flowgate.storage.migrate import migrate
from flowgate.storage.models import Job, JobEvent, Media, User
from flowgate.storage.write_queue import (
    IDLE_RECHECK_SECONDS,
    QueueClosed,
    Steps,
    Write,
    WriteQueue,
)
from flowgate.storage.writes import insert_row, insert_values, together, update_job
from tests.gateway import create_pg_database, drop_pg_database, psql


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = await prepared_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def prepared_engine(url: str) -> AsyncEngine:
    """An engine on a migrated database holding user 1, ``owner``."""
    engine = create_engine(url)
    await migrate(engine)
    async with session_factory(engine).begin() as session:
        session.add(User(name="owner", webhook_secret="s"))
    return engine


def new_job(job_id: str) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=job_id,
        user_id=1,
        kind="image",
        operation="generate",
        status="started",
        request={"prompt": "p"},
        owner="test",
        created_at=now,
        updated_at=now,
    )


async def job_rows(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Job.id, Job.status))).all()
    return {row.id: row.status for row in rows}


def count_commits(queue: WriteQueue, engine: AsyncEngine) -> list[int]:
    """Commits made by the queue's own connections (SQLite: its two sync engines)."""
    commits: list[int] = []
    targets = [queue._sqlite, queue._sqlite_here] if queue._sqlite else [engine.sync_engine]
    for target in targets:
        event.listen(target, "commit", lambda _connection: commits.append(1))
    return commits


async def test_concurrent_writes_share_commits_and_all_land(database: AsyncEngine) -> None:
    queue = write_queue(database, session_factory(database))
    commits = count_commits(queue, database)
    try:
        await asyncio.gather(*(queue.run(insert_row(new_job(f"job-{n}"))) for n in range(200)))
        await asyncio.gather(
            *(queue.run(update_job(f"job-{n}", status="completed")) for n in range(200))
        )
    finally:
        await queue.close()
    rows = await job_rows(database)
    assert len(rows) == 200
    assert set(rows.values()) == {"completed"}
    # 400 writes went in far fewer transactions than one each.
    assert 2 <= len(commits) <= 40


async def test_a_failing_write_fails_only_its_caller(database: AsyncEngine) -> None:
    queue = write_queue(database, session_factory(database))
    try:
        await queue.run(insert_row(new_job("taken")))
        results = await asyncio.gather(
            queue.run(insert_row(new_job("first"))),
            queue.run(insert_row(new_job("taken"))),  # duplicate primary key
            queue.run(insert_row(new_job("second"))),
            return_exceptions=True,
        )
    finally:
        await queue.close()
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], IntegrityError)
    assert set(await job_rows(database)) == {"taken", "first", "second"}


async def test_writes_of_one_unit_commit_together_or_not_at_all(database: AsyncEngine) -> None:
    queue = write_queue(database, session_factory(database))
    try:
        await queue.run(insert_row(new_job("kept")))
        with pytest.raises(IntegrityError):
            await queue.run(
                together(
                    update_job("kept", status="completed"),
                    insert_values(Job, {"id": "kept", "user_id": 1}),  # fails: duplicate
                )
            )
    finally:
        await queue.close()
    assert await job_rows(database) == {"kept": "started"}


async def test_results_come_back_and_session_writers_take_turns(database: AsyncEngine) -> None:
    sessions = session_factory(database)
    queue = write_queue(database, sessions)

    def count_jobs(connection: Connection) -> int:
        return int(connection.scalar(select(func.count()).select_from(Job)) or 0)

    async def session_writer(n: int) -> None:
        async with sessions.begin() as session:
            session.add(new_job(f"session-{n}"))

    try:
        await asyncio.gather(
            *(queue.run(insert_row(new_job(f"queued-{n}"))) for n in range(50)),
            *(session_writer(n) for n in range(20)),
        )
        total = await queue.run(count_jobs)
    finally:
        await queue.close()
    assert total == 70


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = create_pg_database()
    engine = create_engine(url)
    await migrate(engine)
    async with session_factory(engine).begin() as session:
        session.add(User(name="owner", webhook_secret="s"))
    try:
        yield engine
    finally:
        await engine.dispose()
        drop_pg_database(url)


async def kill_other_backends(engine: AsyncEngine) -> int:
    """End every other session on the database (as a restart would), waiting until each
    is gone, then give the loop a moment to read the closed sockets."""
    async with engine.connect() as admin:
        killed = await admin.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    await asyncio.sleep(0.05)
    return int(killed or 0)


async def test_queue_reconnects_after_its_connection_is_killed(postgres: AsyncEngine) -> None:
    queue = write_queue(postgres, session_factory(postgres))
    try:
        await queue.run(insert_row(new_job("before")))
        assert await kill_other_backends(postgres) >= 1  # the queue's connection among them
        # A quiet second later (a restart, a proxy's idle timeout): a lone write must
        # not meet the dead connection.
        await asyncio.sleep(IDLE_RECHECK_SECONDS + 0.2)
        await queue.run(insert_row(new_job("after-idle")))
        # Killed while busy (no quiet second): the queue sees the closed connection
        # before sending and takes a new one, for a lone statement as for a transaction.
        assert await kill_other_backends(postgres) >= 1
        await queue.run(insert_row(new_job("busy")))
        assert await kill_other_backends(postgres) >= 1
        await queue.run(together(insert_row(new_job("busy-2")), update_job("busy", status="x")))
    finally:
        await queue.close()
    rows = await job_rows(postgres)
    assert rows == {"before": "started", "after-idle": "started", "busy": "x", "busy-2": "started"}


async def test_a_batch_whose_connection_breaks_before_its_commit_is_sent_again(
    postgres: AsyncEngine,
) -> None:
    queue = write_queue(postgres, session_factory(postgres))
    calls: list[int] = []

    def end_own_session_once(connection: Connection) -> None:
        # The server ends the session in the middle of the batch, before its COMMIT.
        calls.append(1)
        if len(calls) == 1:
            connection.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    await postgres.dispose()  # the fixture's pooled connections were made before the watch
    commands = transaction_commands(postgres)
    try:
        await asyncio.gather(
            queue.run(insert_row(new_job("one"))),
            queue.run(end_own_session_once),
            queue.run(together(insert_row(new_job("two")), update_job("one", status="done"))),
        )
    finally:
        await queue.close()
    # The whole batch ran again, as one transaction on a new connection.
    assert len(calls) == 2
    assert commands == ["BEGIN", "BEGIN", "COMMIT"]
    assert await job_rows(postgres) == {"one": "done", "two": "started"}


def test_a_closed_sqlite_connection_in_use_is_a_bug_not_a_lost_connection(
    tmp_path: Path,
) -> None:
    # SQLAlchemy calls it a disconnect; with no server to blame, it must stay a 500
    # logged with its traceback, not a 503 telling the client to send it again.
    engine = create_sync_engine(f"sqlite:///{tmp_path / 'closed.sqlite'}")
    with engine.connect() as connection:
        connection.connection.dbapi_connection.close()  # type: ignore[union-attr]
        with pytest.raises(DBAPIError) as raised:
            connection.execute(text("SELECT 1"))
    engine.dispose()
    assert raised.value.connection_invalidated
    assert not is_connection_lost(raised.value)


async def test_a_command_refused_on_a_closed_connection_was_never_sent(
    postgres: AsyncEngine,
) -> None:
    # What tells a COMMIT asyncpg refused (nothing reached the server: safe to send the
    # batch again) from one that broke once sent (the server may have applied it).
    import asyncpg

    url = postgres.url.set(drivername="postgresql")
    closed = await asyncpg.connect(url.render_as_string(hide_password=False))
    await closed.close()
    with pytest.raises(asyncpg.InterfaceError) as refused:
        await closed.execute("COMMIT")
    ended = await asyncpg.connect(url.render_as_string(hide_password=False))
    with pytest.raises(asyncpg.PostgresError) as broke:
        await ended.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    await ended.close()
    assert was_refused_unsent(refused.value)
    assert not was_refused_unsent(broke.value)


def end_own_session_at_commit(engine: AsyncEngine) -> Callable[[Connection], None]:
    """A ``commit`` event hook: the server ends the session just before the COMMIT."""

    def hook(connection: Connection) -> None:
        pid = connection.connection.driver_connection.get_server_pid()  # type: ignore[union-attr]
        psql(f"SELECT pg_terminate_backend({pid}, 5000)", database=engine.url.database or "")

    return hook


async def test_a_batch_whose_commit_breaks_is_not_sent_again(postgres: AsyncEngine) -> None:
    # The server may have applied a COMMIT whose answer was lost: sent again, the batch
    # could apply twice (a refund given back twice). Its callers get the error instead.
    queue = write_queue(postgres, session_factory(postgres))
    calls: list[int] = []

    def count(_connection: Connection) -> None:
        calls.append(1)

    event.listen(postgres.sync_engine, "commit", end_own_session_at_commit(postgres), once=True)
    try:
        outcomes = await asyncio.gather(
            queue.run(together(insert_row(new_job("one")), count)),
            queue.run(insert_row(new_job("two"))),
            return_exceptions=True,
        )
        assert all(is_connection_lost(outcome) for outcome in outcomes), outcomes
        await queue.run(insert_row(new_job("later")))  # the queue itself recovers
    finally:
        await queue.close()
    assert len(calls) == 1
    assert await job_rows(postgres) == {"later": "started"}


def transaction_commands(engine: AsyncEngine) -> list[str]:
    """BEGIN, COMMIT and ROLLBACK as the engine's new asyncpg connections send them."""
    commands: list[str] = []

    def log(logged: Any) -> None:
        word = logged.query.split()[0].rstrip(";").upper()
        if word in {"BEGIN", "COMMIT", "ROLLBACK"}:
            commands.append(word)

    def watch(_dbapi: object, record: Any) -> None:
        record.driver_connection.add_query_logger(log)

    event.listen(engine.sync_engine, "connect", watch)
    return commands


async def test_a_lone_statement_goes_without_begin_and_commit(
    postgres: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow machine must not hand the connection back between writes: the pool's
    # pre-ping on the next checkout sends a BEGIN and ROLLBACK of its own.
    monkeypatch.setattr(write_queue_module, "IDLE_RECHECK_SECONDS", 3600.0)
    await postgres.dispose()  # the fixture's pooled connections were made before the watch
    commands = transaction_commands(postgres)
    queue = write_queue(postgres, session_factory(postgres))
    seen: dict[str, list[str]] = {}

    async def run(label: str, write: Write) -> None:
        try:
            await queue.run(write)
        finally:
            await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon, not at once
            seen[label] = list(commands)
            commands.clear()

    try:
        await run("insert", insert_row(new_job("alone")))
        with pytest.raises(IntegrityError):  # a lone statement that fails changes nothing
            await run("duplicate", insert_row(new_job("alone")))
        # Right after the failure: autocommit is off again, two statements share BEGIN.
        await run("pair", together(insert_row(new_job("pair")), update_job("alone", status="x")))
        await run("one step", together(update_job("alone", status="completed"), None))
    finally:
        await queue.close()
    assert seen == {"insert": [], "duplicate": [], "pair": ["BEGIN", "COMMIT"], "one step": []}
    assert await job_rows(postgres) == {"alone": "completed", "pair": "started"}


def job_ending(job_id: str) -> Steps:
    """What a sync image job's end writes: its image, its upstream attempt, its record."""
    moment = datetime(2026, 12, 1, 7, 30, 15, 123456, tzinfo=UTC)
    return together(
        insert_values(
            Media,
            {
                "id": f"media-{job_id}",
                "user_id": 1,
                "kind": "image",
                "source": "generated",
                "mime": "image/png",
                "size": 3,
                "sha256": "ab" * 32,
                "job_id": job_id,
                "extra": {"seed": 7, "prompt": "un chat été ✓ $1 ' \"", "n": None},
                "created_at": moment,
            },
        ),
        insert_values(
            JobEvent,
            {
                "user_id": 1,
                "account_email": "a@example.com",
                "kind": "image",
                "model": None,
                "job_id": job_id,
                "http_status": 200,
                "response_ms": 12,
                "finished_at": moment,
            },
        ),
        update_job(
            job_id,
            status="completed",
            response={"media": [{"id": f"media-{job_id}"}]},
            error=None,
            code=200,
            internal={"reserved": 0},
            updated_at=moment,
            finished_at=moment,
        ),
    )


async def stored_ending(engine: AsyncEngine, job_id: str) -> list[dict[str, Any]]:
    """The rows a job's ending wrote, as the database gives them back without SQLAlchemy's
    types (SQLite: the stored text), row ids left out, the job's id as ``J``."""
    rows: list[dict[str, Any]] = []
    async with engine.connect() as connection:
        for table, key in (("jobs", "id"), ("media", "job_id"), ("job_events", "job_id")):
            sql = text(f"SELECT * FROM {table} WHERE {key} = :id")
            found = (await connection.execute(sql, {"id": job_id})).mappings().all()
            assert len(found) == 1, table
            row = {name: value for name, value in found[0].items() if name not in ("id", "job_id")}
            printed = json.dumps({"table": table, **row}, default=str).replace(job_id, "J")
            rows.append(json.loads(printed))
    return rows


async def test_a_job_ending_sent_to_the_sqlite_cursor_stores_what_sqlalchemy_stores(
    tmp_path: Path,
) -> None:
    """The queue sends its statements straight to ``sqlite3``: the same bytes land as
    when SQLAlchemy sends them (JSON text, timestamps, column defaults, NULLs)."""
    engine = await prepared_engine(f"sqlite+aiosqlite:///{tmp_path / 'queue.sqlite'}")
    queue = write_queue(engine, session_factory(engine))
    try:
        queued, plain = new_job("queued"), new_job("plain")
        plain.created_at = plain.updated_at = queued.created_at
        await queue.run(together(insert_row(queued), insert_row(plain)))
        await queue.run(job_ending("queued"))
        forms = list(queue._compiled.values())
        async with engine.begin() as connection:  # SQLAlchemy's own way
            await connection.run_sync(job_ending("plain"))
        assert await stored_ending(engine, "queued") == await stored_ending(engine, "plain")
    finally:
        await queue.close()
        await engine.dispose()
    assert len(forms) == 4 and None not in forms  # the job INSERT and the ending's three


async def test_a_job_ending_goes_to_postgresql_as_one_statement(
    postgres: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two INSERTs and the job's UPDATE: one statement in autocommit, one round trip,
    storing exactly what the same writes store sent one by one in a transaction."""
    monkeypatch.setattr(write_queue_module, "IDLE_RECHECK_SECONDS", 3600.0)
    await postgres.dispose()
    commands = transaction_commands(postgres)
    queue = write_queue(postgres, session_factory(postgres))
    try:
        queued, plain = new_job("queued"), new_job("plain")
        plain.created_at = plain.updated_at = queued.created_at
        await queue.run(together(insert_row(queued), insert_row(plain)))
        sent, listener = count_statements("")
        try:
            await queue.run(job_ending("queued"))
        finally:
            event.remove(Engine, "before_cursor_execute", listener)
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon, not at once
    finally:
        await queue.close()
    assert len(sent) == 1 and sent[0].startswith("WITH w0 AS (INSERT INTO job_events")
    assert "w1 AS (INSERT INTO media" in sent[0] and ") UPDATE jobs SET" in sent[0]
    assert commands == []
    async with postgres.begin() as connection:  # SQLAlchemy's own way, statement by statement
        await connection.run_sync(job_ending("plain"))
    assert await stored_ending(postgres, "queued") == await stored_ending(postgres, "plain")


async def test_statements_past_the_compiled_forms_kept_go_through_sqlalchemy(
    database: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_queue_module, "MAX_COMPILED_FORMS", 1)
    queue = write_queue(database, session_factory(database))
    try:
        await queue.run(insert_row(new_job("kept")))
        await queue.run(job_ending("kept"))
    finally:
        await queue.close()
    assert len(queue._compiled) == 1  # the job INSERT's form only
    assert await job_rows(database) == {"kept": "completed"}


async def test_a_batch_updating_a_table_it_inserts_into_is_not_one_statement(
    postgres: AsyncEngine,
) -> None:
    """In one statement the UPDATE would not see the row the INSERT beside it adds."""
    queue = write_queue(postgres, session_factory(postgres))
    try:
        await queue.run(
            together(insert_row(new_job("born")), update_job("born", status="completed"))
        )
    finally:
        await queue.close()
    assert await job_rows(postgres) == {"born": "completed"}


@pytest.mark.parametrize("watched", [True, False], ids=["through SQLAlchemy", "to asyncpg"])
async def test_a_one_statement_batch_that_fails_fails_only_the_write_at_fault(
    postgres: AsyncEngine, watched: bool
) -> None:
    """Refused as one statement: each write again on its own, only the one at fault
    fails, with SQLAlchemy's error. A statement listener sends the batch through
    SQLAlchemy; without one it goes to asyncpg first, then again through SQLAlchemy."""
    queue = write_queue(postgres, session_factory(postgres))
    try:
        await queue.run(together(insert_row(new_job("first")), insert_row(new_job("second"))))
        await queue.run(job_ending("first"))
        sent, listener = count_statements("") if watched else ([], None)
        try:
            results = await asyncio.gather(
                queue.submit(job_ending("first").steps[0]),  # its image again: a duplicate
                queue.submit(job_ending("second")),
                return_exceptions=True,
            )
        finally:
            if listener is not None:
                event.remove(Engine, "before_cursor_execute", listener)
    finally:
        await queue.close()
    assert isinstance(results[0], IntegrityError) and results[1] is None
    if watched:
        assert sent[0].startswith("WITH w0 AS (INSERT INTO job_events")  # as one, then each
    assert await job_rows(postgres) == {"first": "completed", "second": "completed"}


def batches_run_through_sqlalchemy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions the queue hands to SQLAlchemy's ``run_sync`` from now on
    (a spy: SQLAlchemy's own method still runs them)."""
    ran: list[str] = []
    run_sync = AsyncConnection.run_sync

    async def spy(self: AsyncConnection, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        ran.append(getattr(fn, "__name__", repr(fn)))
        return await run_sync(self, fn, *args, **kw)

    monkeypatch.setattr(AsyncConnection, "run_sync", spy)
    return ran


async def test_a_job_ending_goes_straight_to_asyncpg_and_stores_what_sqlalchemy_stores(
    postgres: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no statement listener, the one statement goes to asyncpg without SQLAlchemy
    (no BEGIN and COMMIT either), and stores what SQLAlchemy stores."""
    monkeypatch.setattr(write_queue_module, "IDLE_RECHECK_SECONDS", 3600.0)
    await postgres.dispose()
    commands = transaction_commands(postgres)
    ran = batches_run_through_sqlalchemy(monkeypatch)
    queue = write_queue(postgres, session_factory(postgres))
    try:
        queued, plain = new_job("queued"), new_job("plain")
        plain.created_at = plain.updated_at = queued.created_at
        await queue.run(together(insert_row(queued), insert_row(plain)))
        await queue.run(job_ending("queued"))
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon, not at once
    finally:
        await queue.close()
    assert ran == []
    assert commands == []
    async with postgres.begin() as connection:  # SQLAlchemy's own way, statement by statement
        await connection.run_sync(job_ending("plain"))
    assert await stored_ending(postgres, "queued") == await stored_ending(postgres, "plain")


async def test_a_batch_whose_session_ends_inside_asyncpg_is_reported_lost(
    postgres: AsyncEngine,
) -> None:
    """The server ends the session while running the one statement (nothing applied):
    its caller gets a lost connection, and the queue's next batch goes on a new one."""
    async with postgres.begin() as connection:
        await connection.execute(
            text(
                "CREATE FUNCTION end_own_session() RETURNS trigger AS $$ BEGIN "
                "PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$ "
                "LANGUAGE plpgsql"
            )
        )
        await connection.execute(
            text(
                "CREATE TRIGGER end_session BEFORE INSERT ON jobs FOR EACH ROW "
                "WHEN (NEW.id = 'doomed') EXECUTE FUNCTION end_own_session()"
            )
        )
    queue = write_queue(postgres, session_factory(postgres))
    try:
        await queue.run(insert_row(new_job("before")))
        outcome = await asyncio.gather(
            queue.submit(insert_row(new_job("doomed"))), return_exceptions=True
        )
        await queue.run(insert_row(new_job("after")))
    finally:
        await queue.close()
    assert is_connection_lost(outcome[0]), repr(outcome[0])
    assert set(await job_rows(postgres)) == {"before", "after"}


async def test_writes_after_close_are_refused(database: AsyncEngine) -> None:
    queue = write_queue(database, session_factory(database))
    await queue.run(insert_row(new_job("kept")))
    await queue.close()
    with pytest.raises(QueueClosed):
        await queue.run(insert_row(new_job("late")))
    assert set(await job_rows(database)) == {"kept"}


async def test_cancelled_reservation_is_given_back(database: AsyncEngine) -> None:
    """A client that goes away while its credits are being reserved is not charged."""
    sessions = session_factory(database)
    queue = write_queue(database, sessions)
    credits = CreditService(sessions, queue, {})
    async with sessions.begin() as session:
        user = User(name="payer", webhook_secret="s", credits=10)
        session.add(user)
    try:
        # A first reservation, so the next one goes straight to the queue (the service
        # remembers for a second that this user has a balance).
        assert await credits.reserve(user.id, 1) == 1
        reserving = asyncio.create_task(credits.reserve(user.id, 3))
        await asyncio.sleep(0)  # queued, not yet committed
        reserving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reserving
        # Writes commit in order: once this one has, the deduction has too, so a
        # balance of 9 from here on can only mean it was given back.
        await queue.run(lambda connection: None)
        for _ in range(100):
            if await credits.balance(user.id) == 9:
                break
            await asyncio.sleep(0.02)
        assert await credits.balance(user.id) == 9
        assert await credits.reserve(user.id, 4) == 4  # and reserving still works
        assert await credits.balance(user.id) == 5
    finally:
        await queue.close()


async def test_a_burst_of_an_unlimited_user_reads_the_balance_once(database: AsyncEngine) -> None:
    """Reservations arriving together share one balance read and write nothing."""
    sessions = session_factory(database)
    queue = write_queue(database, sessions)
    credits = CreditService(sessions, queue, {})
    async with sessions.begin() as session:
        unlimited = User(name="free", webhook_secret="s", credits=None)
        limited = User(name="payer", webhook_secret="s", credits=300)
        session.add_all([unlimited, limited])
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "users" in statement:
            statements.append(statement.split()[0].upper())

    # Every engine, the write queue's own SQLite engine included.
    event.listen(Engine, "before_cursor_execute", count)
    try:
        taken = await asyncio.gather(*(credits.reserve(unlimited.id, 2) for _ in range(200)))
        assert taken == [0] * 200
        assert statements == ["SELECT"]
        statements.clear()
        taken = await asyncio.gather(*(credits.reserve(limited.id, 1) for _ in range(200)))
        assert taken == [1] * 200  # a balance is still charged per request
        assert statements.count("SELECT") == 1 and statements.count("UPDATE") == 200
        assert await credits.balance(limited.id) == 100
    finally:
        event.remove(Engine, "before_cursor_execute", count)
        await queue.close()


def count_statements(prefix: str) -> tuple[list[str], Callable[..., None]]:
    """Statements starting with ``prefix`` sent on any engine (the queue's own included)."""
    seen: list[str] = []

    def listener(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith(prefix):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", listener)
    return seen, listener


async def test_rows_of_one_batch_go_as_one_statement_per_kind(database: AsyncEngine) -> None:
    """50 jobs created and then completed together: 1 INSERT and 1 UPDATE, not 50 each."""
    queue = write_queue(database, session_factory(database))
    inserts, on_insert = count_statements("INSERT INTO JOBS")
    updates, on_update = count_statements("UPDATE JOBS")
    try:
        # Submitted without waiting: all 50 are pending when the queue drains.
        await asyncio.gather(*[queue.submit(insert_row(new_job(f"g{n}"))) for n in range(50)])
        await asyncio.gather(
            *[
                queue.submit(update_job(f"g{n}", status="completed", updated_at=datetime.now(UTC)))
                for n in range(50)
            ]
        )
    finally:
        event.remove(Engine, "before_cursor_execute", on_insert)
        event.remove(Engine, "before_cursor_execute", on_update)
        await queue.close()
    assert len(inserts) == 1 and len(updates) == 1
    rows = await job_rows(database)
    assert len(rows) == 50 and set(rows.values()) == {"completed"}


async def test_grouped_inserts_put_parent_rows_first(database: AsyncEngine) -> None:
    """A write adding a user and its job, behind a write adding a job of another user:
    the batch's users go in before its jobs, so it commits as one (foreign keys hold)."""
    queue = write_queue(database, session_factory(database))
    commits = count_commits(queue, database)
    try:
        owner = queue.submit(insert_row(new_job("of-owner")))
        newcomer_job = new_job("of-newcomer")
        newcomer_job.user_id = 500
        both = queue.submit(
            together(
                insert_values(User, {"id": 500, "name": "newcomer", "webhook_secret": "s"}),
                insert_row(newcomer_job),
            )
        )
        await asyncio.gather(owner, both)
    finally:
        await queue.close()
    assert set(await job_rows(database)) == {"of-owner", "of-newcomer"}
    assert len(commits) == 1  # no failed batch retried write by write


async def test_a_job_id_already_taken_is_drawn_again(database: AsyncEngine) -> None:
    """Two jobs of one account in the same millisecond can draw the same random digits
    (seen once in ~14,000 requests of bench.overhead): the second must not fail."""
    sessions = session_factory(database)
    queue = write_queue(database, sessions)
    draws = iter(["j1764000000000123456i-u1-email:none-bot:google-flow"] * 2)

    def job_ids(kind: JobKind, user_id: int, email: str | None, now: datetime) -> str:
        return next(draws, None) or new_job_id(kind, user_id, email, now)

    jobs = JobService(
        sessions,
        queue,
        retention=timedelta(days=1),
        refresh_urls=lambda response: response,
        on_enqueue=lambda: None,
        job_ids=job_ids,
    )
    owner = Caller(user_id=1, name="owner", webhook_secret="s")
    try:
        made = await asyncio.gather(
            *(
                jobs.create(
                    owner,
                    kind="image",
                    request={"n": n},
                    account_email=None,
                    model=None,
                    reply_url=None,
                    start=True,
                )
                for n in range(2)
            )
        )
        # An integrity error that is not a taken id is still raised, not retried.
        with pytest.raises(IntegrityError):
            await jobs.create(
                Caller(user_id=99, name="nobody", webhook_secret="s"),
                kind="image",
                request={},
                account_email=None,
                model=None,
                reply_url=None,
            )
    finally:
        await queue.close()
    first, second = made
    assert first.id == "j1764000000000123456i-u1-email:none-bot:google-flow"
    assert second.id != first.id and second.id.endswith("i-u1-email:none-bot:google-flow")
    rows = await job_rows(database)
    assert set(rows) == {first.id, second.id}
    async with database.connect() as connection:
        requests = (await connection.execute(select(Job.id, Job.request))).all()
    assert sorted(row.request["n"] for row in requests) == [0, 1]


@pytest.fixture
async def sqlite_file(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, Path]]:
    path = tmp_path / "queue.sqlite"
    engine = await prepared_engine(f"sqlite+aiosqlite:///{path}")
    try:
        yield engine, path
    finally:
        await engine.dispose()


def thread_of(job_id: str, threads: list[int]) -> Write:
    """A job insert that notes the thread it ran on."""
    insert = insert_row(new_job(job_id))

    def write(connection: Connection) -> None:
        threads.append(threading.get_ident())
        insert(connection)

    return write


async def test_sqlite_writes_run_on_the_loop_and_wait_in_the_thread_when_locked(
    sqlite_file: tuple[AsyncEngine, Path],
) -> None:
    """The loop's thread runs a batch unless another process holds SQLite's lock; then
    the batch waits for it in the queue's thread instead of failing or blocking the loop."""
    engine, path = sqlite_file
    queue = write_queue(engine, session_factory(engine))
    loop_thread = threading.get_ident()
    threads: list[int] = []
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await queue.run(thread_of("free", threads))
        assert threads == [loop_thread]
        other.execute("BEGIN IMMEDIATE")  # another process writing
        waiting = queue.submit(thread_of("behind-a-lock", threads))
        ticks = 0
        while ticks < 30:  # the loop keeps running meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert not waiting.done()
        other.execute("COMMIT")
        await asyncio.wait_for(waiting, 10)
    finally:
        other.close()
        await queue.close()
    assert ticks == 30
    assert threads[1] == loop_thread  # tried here first, without waiting
    assert len(threads) == 3 and threads[2] != loop_thread
    assert set(await job_rows(engine)) == {"free", "behind-a-lock"}


async def test_sqlite_wal_is_checkpointed_while_the_loop_writes(
    sqlite_file: tuple[AsyncEngine, Path],
) -> None:
    """The loop's connection never checkpoints (an fsync); the queue's thread does, so the
    WAL is reused instead of growing with every write."""
    engine, path = sqlite_file
    queue = write_queue(engine, session_factory(engine))
    pages_before = database_bytes(path)
    try:
        for round_ in range(30):
            batch = []
            for n in range(20):
                job = new_job(f"job-{round_}-{n}")
                job.request = {"prompt": "x" * 8000}
                batch.append(queue.run(insert_row(job)))
            await asyncio.gather(*batch)
            await asyncio.sleep(0.1)
    finally:
        await queue.close()
    added = database_bytes(path) - pages_before
    wal = path.with_name(path.name + "-wal")
    # Without checkpoints the WAL holds at least every page the writes added (5.0 MB
    # added, 6.4 MB of WAL, measured); checkpointed once a second, 2.5 MB.
    assert added > 4_000_000
    assert not wal.exists() or wal.stat().st_size < added * 0.6, (wal.stat().st_size, added)


def database_bytes(path: Path) -> int:
    """The database's size in pages, WAL content included, in bytes."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        (pages,) = connection.execute("PRAGMA page_count").fetchone()
        (size,) = connection.execute("PRAGMA page_size").fetchone()
    return int(pages) * int(size)


async def test_writes_meeting_a_lock_held_elsewhere_fail_together(tmp_path: Path) -> None:
    """Another program holds SQLite's write lock past the busy timeout: the batch's writes
    fail together after one wait, instead of each waiting out the same lock again."""
    path = tmp_path / "locked.sqlite"
    engine = await prepared_engine(f"sqlite+aiosqlite:///{path}")
    queue = write_queue(engine, session_factory(engine), sqlite_busy_seconds=0.3)
    assert queue._sqlite is not None
    attempts: list[int] = []  # transactions begun by the thread that waits for the lock
    event.listen(queue._sqlite, "begin", lambda _connection: attempts.append(1))
    other_program = sqlite3.connect(path, isolation_level=None)
    try:
        other_program.execute("BEGIN IMMEDIATE")
        outcomes = await asyncio.gather(
            *(queue.run(insert_row(new_job(f"locked-{n}"))) for n in range(5)),
            return_exceptions=True,
        )
        other_program.execute("ROLLBACK")
        await queue.run(insert_row(new_job("after")))  # the lock is gone: writes land
    finally:
        other_program.close()
        await queue.close()
    try:
        assert all(is_database_locked(outcome) for outcome in outcomes), outcomes
        # The locked batch, once (not once more per write); "after" ran on the loop's
        # own connection, which never waits for the lock.
        assert len(attempts) == 1
        assert set(await job_rows(engine)) == {"after"}
    finally:
        await engine.dispose()


def job_service(sessions: async_sessionmaker[AsyncSession], queue: WriteQueue) -> JobService:
    return JobService(
        sessions,
        queue,
        retention=timedelta(days=1),
        refresh_urls=lambda response: response,
        on_enqueue=lambda: None,
    )


async def test_a_job_ending_whose_commit_breaks_is_looked_up_then_sent_again(
    postgres: AsyncEngine,
) -> None:
    """The connection breaks once the ending's COMMIT is sent: the queue cannot know
    whether the server stored it. The job service looks: not stored, so it sends the
    ending again; the job completes instead of failing with its result lost."""
    sessions = session_factory(postgres)
    queue = write_queue(postgres, sessions)
    jobs = job_service(sessions, queue)
    owner = Caller(user_id=1, name="owner", webhook_secret="s")
    try:
        job = await jobs.create(
            owner, kind="image", request={}, account_email=None, model=None, reply_url=None
        )
        # Two statements (the event and the ending): a transaction with a COMMIT.
        event.listen(postgres.sync_engine, "commit", end_own_session_at_commit(postgres), once=True)
        await jobs.complete(
            job,
            {"media": ["kept"]},
            with_writes=[jobs.event_write(UpstreamAttempt.of_job(job, "a@example.com", 200, 5))],
        )
        # Had the first COMMIT been applied, the lookup would have said so.
        assert await jobs._stored_ending(job) is True
    finally:
        await queue.close()
    assert await job_rows(postgres) == {job.id: "completed"}


async def test_a_read_whose_connection_breaks_is_read_again(postgres: AsyncEngine) -> None:
    sessions = session_factory(postgres)
    calls: list[int] = []

    async def read() -> str | None:
        calls.append(1)
        async with sessions() as session:
            if len(calls) == 1:  # the server ends the session during the first read
                await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            return await session.scalar(select(User.name))

    async def wrong() -> None:
        calls.append(1)
        async with sessions() as session:
            await session.execute(text("SELECT no_such_column FROM users"))

    assert await read_again_if_connection_lost(read) == "owner"
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(DBAPIError):  # not a lost connection: raised, not read again
        await read_again_if_connection_lost(wrong)
    assert len(calls) == 1


async def test_a_new_job_whose_commit_breaks_is_looked_up_then_sent_again(
    postgres: AsyncEngine,
) -> None:
    sessions = session_factory(postgres)
    queue = write_queue(postgres, sessions)
    jobs = job_service(sessions, queue)
    owner = Caller(user_id=1, name="owner", webhook_secret="s")
    # A reply URL adds the webhook row: two statements, a transaction with a COMMIT.
    event.listen(postgres.sync_engine, "commit", end_own_session_at_commit(postgres), once=True)
    try:
        job = await jobs.create(
            owner,
            kind="image",
            request={},
            account_email=None,
            model=None,
            reply_url="http://127.0.0.1:9/hook",
            start=True,
        )
        assert await jobs._new_job_stored(job) is True
    finally:
        await queue.close()
    assert await job_rows(postgres) == {job.id: "started"}
