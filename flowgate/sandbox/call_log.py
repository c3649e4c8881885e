"""In-memory log of the calls the sandbox answered (``GET /_sandbox/calls``).

Tests read it to prove that an upstream call did — or did not — happen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class SandboxCall:
    """One answered API call: who called which model with which method, and the status."""

    key: str | None
    model: str | None
    method: str
    status: int
    at: str  # when it was answered: ISO 8601 UTC with milliseconds
    received: str  # when its handler started (an answer may come a set delay later)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CallLog:
    """The last ``capacity`` calls, oldest first."""

    def __init__(self, capacity: int) -> None:
        self._calls: deque[SandboxCall] = deque(maxlen=capacity)

    def record(
        self,
        *,
        key: str | None,
        model: str | None,
        method: str,
        status: int,
        received: datetime | None = None,
    ) -> None:
        """Append one call, dropping the oldest when full; ``received`` defaults to now."""
        now = datetime.now(UTC)
        self._calls.append(
            SandboxCall(
                key=key,
                model=model,
                method=method,
                status=status,
                at=_iso(now),
                received=_iso(received or now),
            )
        )

    def as_json(self) -> list[dict[str, Any]]:
        """All kept calls as JSON objects."""
        return [asdict(call) for call in self._calls]

    def clear(self) -> None:
        """Forget every call."""
        self._calls.clear()
