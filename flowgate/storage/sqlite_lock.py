"""Recognising SQLite's one-writer lock held too long by another program."""

from __future__ import annotations

import sqlite3


def is_database_locked(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised from, is SQLite's "database is
    locked": another connection held the write lock for longer than the busy timeout."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sqlite3.OperationalError) and str(error).startswith(
            "database is locked"
        ):
            return True
        error = error.__cause__ or error.__context__
    return False
