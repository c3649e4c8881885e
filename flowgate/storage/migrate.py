"""Apply Alembic migrations at start (DESIGN: migrations run on start)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions (a test keeps the two equal). A database
# already there is left alone without loading Alembic: most starts, and every users
# command, skip its ~0.5 s import and ~11 MB.
SCHEMA_HEAD = "0008"
# Any constant: several instances starting at once on one PostgreSQL serialize here.
_ADVISORY_LOCK_ID = 0x666C6F77


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def _revision(conn: AsyncConnection) -> str | None:
    try:
        found = await conn.execute(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:  # no such table yet: a new database
        await conn.rollback()
        return None
    revisions = found.scalars().all()
    await conn.rollback()
    return revisions[0] if len(revisions) == 1 else None


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision."""
    async with engine.connect() as conn:
        if await _revision(conn) == SCHEMA_HEAD:
            return
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
            await conn.commit()
        try:
            await conn.run_sync(_upgrade)
            await conn.commit()
        finally:
            if postgres:
                await conn.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": _ADVISORY_LOCK_ID}
                )
                await conn.commit()
