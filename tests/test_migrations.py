"""Migrations at start: a new database gets the schema; one already at the newest
revision is left alone without loading Alembic; data migrations do what they say."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from flowgate.storage.db import create_engine
from flowgate.storage.migrate import MIGRATIONS_DIR, SCHEMA_HEAD, migrate

# Runs migrate() in a new process; prints the revision and whether Alembic was imported.
PROBE = """
import asyncio, sys
from sqlalchemy import text
from flowgate.storage.db import create_engine
from flowgate.storage.migrate import migrate

async def main(url):
    engine = create_engine(url)
    await migrate(engine)
    async with engine.connect() as conn:
        revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    await engine.dispose()
    print(revision, "alembic" in sys.modules)

asyncio.run(main(sys.argv[1]))
"""


def test_schema_head_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD


def _migrate_in_new_process(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_new_database_is_migrated_and_a_current_one_left_alone(database_url: str) -> None:
    assert _migrate_in_new_process(database_url) == f"{SCHEMA_HEAD} True"
    assert _migrate_in_new_process(database_url) == f"{SCHEMA_HEAD} False"


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def test_webhook_deliveries_given_up_before_0008_are_sent_again(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0007")
            await conn.execute(
                text(
                    "INSERT INTO webhook_deliveries (job_id, user_id, url, event, seq, payload,"
                    " state, attempts, next_attempt_at, created_at) VALUES ('j', 1, 'http://x/h',"
                    " 'completed', 1, '{}', :state, 12, :at, :at)"
                ),
                [
                    {"state": "dead", "at": datetime(2026, 1, 1, tzinfo=UTC)},
                    {"state": "delivered", "at": datetime(2026, 1, 1, tzinfo=UTC)},
                ],
            )
        await migrate(engine)
        async with engine.connect() as conn:
            states = (await conn.execute(text("SELECT state FROM webhook_deliveries"))).scalars()
            assert sorted(states) == ["delivered", "pending"]
    finally:
        await engine.dispose()
