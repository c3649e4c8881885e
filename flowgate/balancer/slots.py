"""Per-account concurrency slots with a fair (FIFO) wait queue, per instance."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from flowgate.start_gate import leave_start_phase


@dataclass
class _AccountSlots:
    limit: int
    in_use: int = 0


@dataclass
class SlotBoard:
    """How many requests each account runs on this instance, and who waits for one.

    Waiters are served strictly in arrival order: the first waiter gets the first
    slot that frees on any account it can use.
    """

    accounts: dict[int, _AccountSlots] = field(default_factory=dict)
    waiters: deque[tuple[frozenset[int], asyncio.Future[int]]] = field(default_factory=deque)

    def executing(self, account_id: int) -> int:
        """Requests running on the account now (this instance)."""
        slots = self.accounts.get(account_id)
        return slots.in_use if slots else 0

    def has_room(self, account_id: int, limit: int) -> bool:
        """True when the account can take one more request."""
        slots = self.accounts.setdefault(account_id, _AccountSlots(limit))
        slots.limit = limit
        return slots.in_use < slots.limit

    def take(self, account_id: int, limit: int) -> None:
        """Occupy one slot (the caller checked ``has_room``)."""
        slots = self.accounts.setdefault(account_id, _AccountSlots(limit))
        slots.limit = limit
        slots.in_use += 1

    def release(self, account_id: int) -> None:
        """Free a slot and hand it to the oldest waiter that can use this account."""
        slots = self.accounts.get(account_id)
        if slots is None:
            return
        slots.in_use = max(0, slots.in_use - 1)
        for index, (eligible, future) in enumerate(self.waiters):
            if future.done():
                continue
            if account_id in eligible and slots.in_use < slots.limit:
                del self.waiters[index]
                slots.in_use += 1
                future.set_result(account_id)
                return
        self._drop_done()

    def _drop_done(self) -> None:
        while self.waiters and self.waiters[0][1].done():
            self.waiters.popleft()

    async def wait_for_any(self, eligible: frozenset[int], wait_seconds: float) -> int | None:
        """Queue until a slot on one of ``eligible`` frees (slot taken), or ``None`` on timeout."""
        leave_start_phase()  # queued behind the account: let other requests start meanwhile
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiters.append((eligible, future))
        handed_over = False
        try:
            account_id = await asyncio.wait_for(asyncio.shield(future), wait_seconds)
            handed_over = True
            return account_id
        except TimeoutError:
            return None
        finally:
            if not handed_over:
                if future.done() and not future.cancelled():
                    # A slot arrived just as we gave up (timeout or cancel): pass it on.
                    self.release(future.result())
                else:
                    future.cancel()
