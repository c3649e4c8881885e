"""Start slots: a burst of generation requests is started a bounded group at a time.

Starting a generation (routing, token, body, checks, credits, account, job row, the
upstream request) is CPU on the one event loop. When 2,000 requests arrive at once and
all start together, the loop moves each of them one step at a time, so the first
upstream call goes out only after nearly every request has been parsed and stored
(0.8-2.3 s into the burst of ``bench/held.py`` on a 2-core machine), and the answers
come back bunched as well. With at most ``slots`` requests starting at once, and the
others waiting in arrival order before any work is done for them, the first calls go
out at once and the calls spread over the burst.

A request leaves its start phase when its service calls :func:`leave_start_phase`
(just before waiting on the upstream, on a local upscale or in an account's queue),
when it has answered, or after ``hold_seconds``, whichever comes first: a slow step
(a large body arriving slowly, a locked database) holds a slot for that long at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar


class StartSlot:
    """One request's place among those starting; :meth:`leave` gives it up (once)."""

    __slots__ = ("_gate", "_timer")

    def __init__(self, gate: StartGate) -> None:
        self._gate: StartGate | None = gate
        self._timer = asyncio.get_running_loop().call_later(gate.hold_seconds, self.leave)

    def leave(self) -> None:
        """Let the next waiting request start; later calls do nothing."""
        gate, self._gate = self._gate, None
        if gate is not None:
            self._timer.cancel()
            gate.semaphore.release()


_current: ContextVar[StartSlot | None] = ContextVar("flowgate_start_slot", default=None)


class StartGate:
    """At most ``slots`` requests of this process in their start phase; the rest queue (FIFO)."""

    def __init__(self, slots: int, *, hold_seconds: float) -> None:
        self.hold_seconds = hold_seconds
        self.semaphore = asyncio.Semaphore(slots)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[StartSlot]:
        """Hold a slot for the block (or until left); :func:`leave_start_phase` sees it."""
        await self.semaphore.acquire()
        held = StartSlot(self)
        token = _current.set(held)
        try:
            yield held
        finally:
            held.leave()
            _current.reset(token)


def leave_start_phase() -> None:
    """The current request starts waiting on something slow: let the next one start.

    A no-op outside a gated request, or when its slot was already given up.
    """
    held = _current.get()
    if held is not None:
        held.leave()
