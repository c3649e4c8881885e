"""The models' constructor: column values go into the row's dict, unknown names are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from flowgate.storage.db import create_engine, session_factory
from flowgate.storage.migrate import migrate
from flowgate.storage.models import Job, User


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def test_an_unknown_column_name_is_refused_with_its_name() -> None:
    with pytest.raises(TypeError, match="'colour' is an invalid keyword argument for Job"):
        Job(id="j", colour="red")


async def test_a_row_built_from_values_is_stored_then_updated_through_a_session(
    database: AsyncEngine,
) -> None:
    sessions = session_factory(database)
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        user = User(name="owner", webhook_secret="s")
        session.add(user)
        await session.flush()
        job = Job(
            id="job-1",
            user_id=user.id,
            kind="image",
            status="started",
            request={"prompt": "p"},
            created_at=now,
            updated_at=now,
        )
        assert job.status == "started"  # readable before any flush
        session.add(job)
    async with sessions.begin() as session:
        stored = await session.get(Job, "job-1")
        assert stored is not None
        # Unset columns took their defaults; set ones were written as given.
        assert (stored.operation, stored.status, stored.request) == (
            "generate",
            "started",
            {"prompt": "p"},
        )
        stored.status = "completed"
    async with sessions() as session:
        status = await session.scalar(select(Job.status).where(Job.id == "job-1"))
    assert status == "completed"
