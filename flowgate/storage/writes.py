"""Writes for the :class:`~flowgate.storage.write_queue.WriteQueue`: plain Core statements.

Each is a :class:`~flowgate.storage.write_queue.Statement`, so the queue can send the
rows of many requests as one ``executemany``.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Insert, bindparam, insert

from flowgate.storage.models import Base, Job, row_values, table_of
from flowgate.storage.write_queue import Statement, Steps, Write

# Groups of INSERTs run parents first (foreign keys); UPDATEs after every INSERT.
_TABLE_ORDER = {table.name: index for index, table in enumerate(Base.metadata.sorted_tables)}
_AFTER_INSERTS = len(_TABLE_ORDER)


def insert_row(row: Base) -> Statement:
    """INSERT the column values of an ORM object (no unit of work, no SELECT after)."""
    return insert_values(type(row), row_values(row))


@functools.cache
def _insert_of(model: type[Base]) -> Insert:
    # One statement object per table: its cache key is computed once, not per row.
    return insert(table_of(model))


def insert_values(model: type[Base], values: dict[str, Any]) -> Statement:
    """INSERT one row of ``model`` from column values (column defaults fill the rest)."""
    return Statement(_insert_of(model), values, _TABLE_ORDER[table_of(model).name])


_JOBS = table_of(Job)
# Built once: the SET clause follows the parameters' keys, and the compiled form of
# each key set is cached, so no statement is built or compiled per request.
_UPDATE_JOB = _JOBS.update().where(_JOBS.c.id == bindparam("b_job_id"))


def update_job(job_id: str, **values: Any) -> Statement:
    """UPDATE the given columns of one job."""
    return Statement(_UPDATE_JOB, {"b_job_id": job_id, **values}, _AFTER_INSERTS)


def together(*writes: Write | None) -> Steps:
    """One write running ``writes`` in order (``None`` entries skipped)."""
    steps: list[Write] = []
    for write in writes:
        if isinstance(write, Steps):
            steps.extend(write.steps)
        elif write is not None:
            steps.append(write)
    return Steps(tuple(steps))
