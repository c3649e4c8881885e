"""Writes for the :class:`~flowgate.storage.write_queue.WriteQueue`: plain Core statements."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Insert, bindparam, insert

from flowgate.storage.models import Base, Job, row_values, table_of
from flowgate.storage.write_queue import Write


def insert_row(row: Base) -> Write:
    """INSERT the column values of an ORM object (no unit of work, no SELECT after)."""
    return insert_values(type(row), row_values(row))


@functools.cache
def _insert_of(model: type[Base]) -> Insert:
    # One statement object per table: its cache key is computed once, not per row.
    return insert(table_of(model))


def insert_values(model: type[Base], values: dict[str, Any]) -> Write:
    """INSERT one row of ``model`` from column values (column defaults fill the rest)."""
    statement = _insert_of(model)

    def write(connection: Connection) -> None:
        connection.execute(statement, values)

    return write


_JOBS = table_of(Job)
# Built once: the SET clause follows the parameters' keys, and the compiled form of
# each key set is cached, so no statement is built or compiled per request.
_UPDATE_JOB = _JOBS.update().where(_JOBS.c.id == bindparam("b_job_id"))


def update_job(job_id: str, **values: Any) -> Write:
    """UPDATE the given columns of one job."""
    params = {"b_job_id": job_id, **values}

    def write(connection: Connection) -> None:
        connection.execute(_UPDATE_JOB, params)

    return write


def together(*writes: Write | None) -> Write:
    """One write running ``writes`` in order (``None`` entries skipped)."""
    steps = [write for write in writes if write is not None]

    def write(connection: Connection) -> None:
        for step in steps:
            step(connection)

    return write
