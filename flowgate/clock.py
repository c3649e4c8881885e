"""The time the balancer sees. Injectable, so quota windows can be tested and simulated."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
"""Returns now, timezone-aware UTC."""


def system_clock() -> datetime:
    """The machine's time."""
    return datetime.now(UTC)


def offset_clock(offset_seconds: float) -> Clock:
    """The machine's time shifted by ``offset_seconds`` (``FLOWGATE_CLOCK_OFFSET_SECONDS``)."""
    if not offset_seconds:
        return system_clock
    delta = timedelta(seconds=offset_seconds)

    def now() -> datetime:
        return datetime.now(UTC) + delta

    return now
