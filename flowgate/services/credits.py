"""Per-user credit balances: reserve before any upstream call, keep on success, refund failures.

A balance of ``NULL`` is unlimited. Reservation is one conditional UPDATE
(``credits >= price``), atomic on SQLite and PostgreSQL alike, so concurrent
requests can never overdraw.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping

from sqlalchemy import Connection, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.domain.errors import InvalidRequest, NotFound, SubscriptionRequired
from flowgate.storage.database_errors import read_again_if_connection_lost
from flowgate.storage.models import User
from flowgate.storage.write_queue import Write, WriteQueue

DEFAULT_PRICES: dict[str, int] = {
    # per image
    "imagen-4": 1,
    "nano-banana-2": 1,
    "nano-banana-pro": 2,
    "upscale-2k": 1,
    "upscale-4k": 2,
    # per clip
    "veo-3.1-fast": 10,
    "veo-3.1-quality": 40,
    "veo-3.1-lite": 5,
    "video-upscale-1080p": 0,
    "video-upscale-4K": 50,
    "concatenate": 0,
    "gif": 0,
}


class InsufficientCredits(SubscriptionRequired):
    """402: the price is more than the balance."""

    def __init__(self, price: int, balance: int) -> None:
        super().__init__(
            f"Insufficient credits: this request costs {price} credits and the balance is "
            f"{balance}. Ask your operator to add credits (flowgate users credit NAME +N)."
        )
        self.price = price
        self.balance = balance


class CreditService:
    """Balances and the price table."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writes: WriteQueue,
        prices: Mapping[str, int],
    ) -> None:
        self._sessions = sessions
        self._writes = writes
        self._prices = {**DEFAULT_PRICES, **prices}
        # user id → (remembered until, unlimited?), and the balance reads under way.
        self._known: dict[int, tuple[float, bool]] = {}
        self._probes: dict[int, asyncio.Future[int | None]] = {}
        self._undoing: set[asyncio.Task[None]] = set()

    def price(self, item: str, units: int = 1) -> int:
        """What ``units`` of ``item`` (a model or an operation) cost; unknown items are free."""
        return self._prices.get(item, 0) * units

    async def reserve(self, user_id: int, amount: int) -> int:
        """Take ``amount`` from the balance now; return what was taken (0 when unlimited)."""
        if amount <= 0 or await self._is_unlimited(user_id):
            return 0

        def apply(connection: Connection) -> tuple[bool, int | None]:
            result = connection.execute(
                update(User)
                .where(User.id == user_id, User.credits.is_not(None), User.credits >= amount)
                .values(credits=User.credits - amount)
            )
            if result.rowcount:
                return True, None
            return False, connection.scalar(select(User.credits).where(User.id == user_id))

        outcome = self._writes.submit(apply)
        try:
            taken, balance = await asyncio.shield(outcome)
        except asyncio.CancelledError:
            # The caller is gone but the deduction may still commit: give it back then.
            outcome.add_done_callback(functools.partial(self._undo_reservation, user_id, amount))
            raise
        if taken:
            return amount
        if balance is None:  # made unlimited since the last look
            self._remember(user_id, unlimited=True)
            return 0
        raise InsufficientCredits(amount, int(balance))

    async def _is_unlimited(self, user_id: int) -> bool:
        # Most users are unlimited: remember which for a second (DESIGN: caches ≤ 1 s).
        # Requests of one user arriving together share one read; a burst of 2,000 made
        # 4,000 statements on the write queue before the first answer was remembered.
        known = self._known.get(user_id)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        probe = self._probes.get(user_id)
        if probe is None:
            probe = asyncio.ensure_future(self.balance(user_id))
            self._probes[user_id] = probe
            probe.add_done_callback(lambda _: self._probes.pop(user_id, None))
        unlimited = await asyncio.shield(probe) is None
        self._remember(user_id, unlimited=unlimited)
        return unlimited

    def _remember(self, user_id: int, *, unlimited: bool) -> None:
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[user_id] = (time.monotonic() + 1.0, unlimited)

    def _undo_reservation(
        self, user_id: int, amount: int, outcome: asyncio.Future[tuple[bool, int | None]]
    ) -> None:
        if outcome.cancelled() or outcome.exception() is not None or not outcome.result()[0]:
            return
        task = asyncio.get_running_loop().create_task(self.refund(user_id, amount))
        self._undoing.add(task)
        task.add_done_callback(self._undoing.discard)

    def refund_write(self, user_id: int, amount: int) -> Write:
        """Giving back ``amount``, as a write to commit with the job's end."""
        statement = (
            update(User)
            .where(User.id == user_id, User.credits.is_not(None))
            .values(credits=User.credits + amount)
        )

        def write(connection: Connection) -> None:
            connection.execute(statement)

        return write

    async def refund(self, user_id: int, amount: int) -> None:
        """Give back a reservation (the work failed before a job held it)."""
        if amount > 0:
            await self._writes.run(self.refund_write(user_id, amount))

    async def balance(self, user_id: int) -> int | None:
        """The balance, ``None`` when unlimited."""

        async def read() -> int | None:
            async with self._sessions() as session:
                return await session.scalar(select(User.credits).where(User.id == user_id))

        value = await read_again_if_connection_lost(read)
        return None if value is None else int(value)

    async def change(self, name: str, change: str) -> int | None:
        """``+N`` adds, ``-N`` removes (not below 0), ``=N`` sets, ``=none`` makes it unlimited."""
        text = change.strip().lower()
        async with self._sessions.begin() as session:
            user = await session.scalar(select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"no user named {name!r}")
            if text == "=none":
                user.credits = None
                return None
            sign, digits = text[:1], text[1:]
            if sign not in "+-=" or not digits.isdigit():
                raise InvalidRequest("credit change must be +N, -N, =N or =none")
            amount = int(digits)
            current = user.credits or 0
            if sign == "+":
                user.credits = current + amount
            elif sign == "-":
                user.credits = max(0, current - amount)
            else:
                user.credits = amount
            return int(user.credits)
