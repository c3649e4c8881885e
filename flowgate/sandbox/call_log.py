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
    at: str  # ISO 8601 UTC with milliseconds


class CallLog:
    """The last ``capacity`` calls, oldest first."""

    def __init__(self, capacity: int) -> None:
        self._calls: deque[SandboxCall] = deque(maxlen=capacity)

    def record(self, *, key: str | None, model: str | None, method: str, status: int) -> None:
        """Append one call, dropping the oldest when full."""
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._calls.append(SandboxCall(key=key, model=model, method=method, status=status, at=at))

    def as_json(self) -> list[dict[str, Any]]:
        """All kept calls as JSON objects."""
        return [asdict(call) for call in self._calls]

    def clear(self) -> None:
        """Forget every call."""
        self._calls.clear()
