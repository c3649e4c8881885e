"""Account selection with slots: explicit email, else filter and score, else wait or 429.

Statistics and quarantine entries come from the database, so every instance
sharing it sees the same numbers; each instance caches them per user for at
most one second (DESIGN §1.4).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.balancer.selection import Candidate, select_account
from flowgate.balancer.slots import SlotBoard
from flowgate.clock import Clock, system_clock
from flowgate.domain.catalogue import upstream_model_id
from flowgate.domain.errors import (
    AccountNotFound,
    Busy,
    InvalidRequest,
    NoEligibleAccount,
    NotFound,
    SkipReason,
    UpstreamError,
)
from flowgate.domain.quarantine import (
    ACCOUNT_QUOTA,
    ALL_MODELS,
    PER_MODEL_DAILY,
    QuarantinePolicy,
    decide_quarantine,
)
from flowgate.storage import accounts as account_rows
from flowgate.storage import quarantine as quarantine_rows
from flowgate.storage import stats as stat_rows
from flowgate.storage.database_errors import read_again_if_connection_lost
from flowgate.storage.models import Account, QuarantineEntry

log = logging.getLogger("flowgate.balancer")
HEALTH_OK = "OK"
WINDOW = timedelta(minutes=15)
_CACHE_SECONDS = 1.0


@dataclass
class Lease:
    """An account taken for one request; ``release`` frees its slot (idempotent)."""

    account: Account
    board: SlotBoard
    released: bool = field(default=False)

    def release(self) -> None:
        """Give the slot back."""
        if not self.released:
            self.released = True
            self.board.release(self.account.id)


def supports_model(account: Account, model: str) -> bool:
    """True when the account's key can use the upstream model behind ``model``.

    An account whose model list is unknown (never checked) is assumed able.
    """
    try:
        upstream = upstream_model_id(model, account.model_map)
    except InvalidRequest:
        return False  # a model name only other accounts map
    if not account.models:
        return True
    return upstream in account.models


@dataclass(frozen=True, slots=True)
class _AccountView:
    """What a snapshot says about one account for one model and kind, read once."""

    account: Account
    account_id: int
    email: str
    max_concurrency: int
    healthy: bool
    supports_model: bool
    others_executing: int  # other instances' running jobs on it
    failed: int
    rate_limited: int
    entries: tuple[QuarantineEntry, ...]  # for this model or all, live or not


@dataclass
class _Snapshot:
    """What the database said about one user's accounts, at ``taken``."""

    taken: float
    accounts: list[Account]
    counts: dict[tuple[str, str], stat_rows.EventCounts]
    executing_db: dict[tuple[str, str], int]
    executing_local: dict[int, int]
    quarantine: list[QuarantineEntry]
    # Per (model, kind): the accounts as candidates need them. Every request of the
    # snapshot's second reads the same ORM attributes otherwise.
    views: dict[tuple[str, str], tuple[_AccountView, ...]] = field(default_factory=dict)

    def views_for(self, model: str, kind: str) -> tuple[_AccountView, ...]:
        """The accounts' views for ``model`` and ``kind`` (built on first use)."""
        views = self.views.get((model, kind))
        if views is None:
            views = self.views[(model, kind)] = tuple(
                self._view(account, model, kind) for account in self.accounts
            )
        return views

    def _view(self, a: Account, model: str, kind: str) -> _AccountView:
        counts = self.counts.get((a.email, kind), stat_rows.EventCounts())
        return _AccountView(
            account=a,
            account_id=a.id,
            email=a.email,
            max_concurrency=a.max_concurrency,
            healthy=a.health == HEALTH_OK,
            supports_model=supports_model(a, model),
            # What this instance ran when the snapshot was read is in the database's
            # count too; its running count now is added per request.
            others_executing=max(
                0, self.executing_db.get((a.email, kind), 0) - self.executing_local.get(a.id, 0)
            ),
            failed=counts.failed,
            rate_limited=counts.rate_limited,
            entries=tuple(
                e
                for e in self.quarantine
                if e.account_id == a.id and e.model in (model, ALL_MODELS)
            ),
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AccountPicker:
    """Chooses and occupies an account for a request (DESIGN §3 'choose account')."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        board: SlotBoard,
        *,
        queue_timeout_seconds: float,
        policy: QuarantinePolicy | None = None,
        rng: random.Random | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._sessions = sessions
        self.board = board
        self._queue_timeout = queue_timeout_seconds
        self.policy = policy or QuarantinePolicy()
        self._rng = rng or random.Random()
        self.clock = clock
        self._snapshots: dict[int, _Snapshot] = {}
        self._refreshing: dict[int, asyncio.Future[_Snapshot]] = {}
        self._generation: dict[int, int] = {}

    async def _snapshot(self, user_id: int) -> _Snapshot:
        now = time.monotonic()
        cached = self._snapshots.get(user_id)
        if cached is not None and now - cached.taken < _CACHE_SECONDS:
            return cached
        # One refresh per user at a time: the requests that find it expired share it.
        pending = self._refreshing.get(user_id)
        if pending is None:
            pending = asyncio.ensure_future(self._refresh(user_id, now))
            self._refreshing[user_id] = pending

            def _done(future: asyncio.Future[_Snapshot], user: int = user_id) -> None:
                if self._refreshing.get(user) is future:
                    del self._refreshing[user]

            pending.add_done_callback(_done)
        return await asyncio.shield(pending)

    async def _refresh(self, user_id: int, now: float) -> _Snapshot:
        generation = self._generation.get(user_id, 0)
        moment = self.clock()

        async def read() -> tuple[
            list[Account],
            dict[tuple[str, str], stat_rows.EventCounts],
            dict[tuple[str, str], int],
            list[QuarantineEntry],
        ]:
            async with self._sessions() as session:
                return (
                    await account_rows.accounts_of(session, user_id),
                    await stat_rows.event_counts(session, user_id, moment - WINDOW),
                    await stat_rows.executing_counts(session, user_id),
                    await quarantine_rows.active_entries(session, user_id, moment),
                )

        accounts, counts, executing, entries = await read_again_if_connection_lost(read)
        snap = _Snapshot(
            now,
            accounts,
            counts,
            executing,
            {a.id: self.board.executing(a.id) for a in accounts},
            entries,
        )
        if len(self._snapshots) > 10_000:
            self._snapshots.clear()
            self._generation.clear()
        if self._generation.get(user_id, 0) == generation:
            self._snapshots[user_id] = snap
        return snap

    def forget(self, user_id: int) -> None:
        """Drop the cached snapshot (after a change this instance made).

        A refresh already under way may predate the change, so later callers start anew
        and that refresh's result is not kept.
        """
        self._snapshots.pop(user_id, None)
        self._refreshing.pop(user_id, None)
        self._generation[user_id] = self._generation.get(user_id, 0) + 1

    def candidates(self, snap: _Snapshot, *, model: str, kind: str) -> list[Candidate]:
        """Every account of the snapshot as a candidate for ``model``."""
        return [self._candidate(view) for view in snap.views_for(model, kind)]

    def _candidate(self, view: _AccountView) -> Candidate:
        entry = self._live_entry(view.entries) if view.entries else None
        return Candidate(
            account_id=view.account_id,
            email=view.email,
            healthy=view.healthy,
            supports_model=view.supports_model,
            has_room=self.board.has_room(view.account_id, view.max_concurrency),
            executing=view.others_executing + self.board.executing(view.account_id),
            failed=view.failed,
            rate_limited=view.rate_limited,
            quarantine_reason=entry.reason if entry else None,
            quarantine_model=entry.model if entry else None,
            quarantine_until=entry.until if entry else None,
        )

    def _live_entry(self, entries: tuple[QuarantineEntry, ...]) -> QuarantineEntry | None:
        """The entry that ends last among those not yet over."""
        now = self.clock()
        live = [e for e in entries if e.until > now]
        return max(live, key=lambda e: e.until) if live else None

    async def acquire(
        self,
        user_id: int,
        *,
        model: str,
        email: str | None,
        kind: str = "image",
        exclude: frozenset[str] = frozenset(),
    ) -> Lease:
        """Take a slot on the explicit account, or on the best eligible one."""
        if email is not None:
            wanted = email.lower()
            snap = await self._snapshot(user_id)
            account = next((a for a in snap.accounts if a.email == wanted), None)
            if account is None:  # added less than a second ago, or unknown
                async with self._sessions() as session:
                    account = await account_rows.account_by_email(session, user_id, wanted)
            if account is None:
                raise AccountNotFound(email)
            return await self._take_explicit(account)
        snap = await self._snapshot(user_id)
        if not snap.accounts:
            raise NotFound(
                "No Google Flow account configured: add one with POST /v1/google-flow/accounts "
                '({"email": ..., "provider": "gemini", "apiKey": ...})'
            )
        views = {
            view.account_id: view
            for view in snap.views_for(model, kind)
            if view.email not in exclude
        }
        candidates = [self._candidate(view) for view in views.values()]
        selection = select_account(candidates, model, self._rng)
        if selection.chosen is not None:
            chosen = views[selection.chosen.account_id]
            self.board.take(chosen.account_id, chosen.max_concurrency)
            return Lease(chosen.account, self.board)
        if selection.waitable:
            got = await self.board.wait_for_any(
                frozenset(c.account_id for c in selection.waitable), self._queue_timeout
            )
            if got is not None:
                return Lease(views[got].account, self.board)
            raise Busy(
                "All eligible accounts are busy (maxConcurrency reached) and no slot freed in "
                f"{self._queue_timeout:g} s; retry later, raise maxConcurrency or add accounts",
                retry_after_seconds=max(1, int(self._queue_timeout) or 1),
            )
        raise self._no_eligible(model, candidates, list(selection.skipped))

    def _no_eligible(
        self, model: str, candidates: list[Candidate], skipped: list[SkipReason]
    ) -> NoEligibleAccount:
        now = self.clock()
        untils = [c.quarantine_until for c in candidates if c.quarantine_until is not None]
        retry_at = min(untils) if untils else now + timedelta(seconds=60)
        seconds = max(1, int((retry_at - now).total_seconds() + 0.999))
        reasons = {s.reason for s in skipped}
        if reasons == {PER_MODEL_DAILY}:
            message = (
                f"All your Google Flow accounts have hit Google's daily quota for model '{model}'. "
                f"This quota resets at UTC midnight ({_iso(retry_at)}). "
                "Try a different model, or wait."
            )
        elif reasons <= {PER_MODEL_DAILY, ACCOUNT_QUOTA, "PUBLIC_ERROR_USER_REQUESTS_THROTTLED"}:
            message = (
                f"All your accounts are quarantined for model '{model}' after upstream quota "
                f"errors; the first one is back at {_iso(retry_at)}. Wait, try a different "
                "model, or add accounts."
            )
        else:
            message = (
                f"None of your accounts can serve model '{model}' now: "
                + "; ".join(f"{s.email}: {s.reason}" for s in skipped)
                + ". Fix unhealthy keys (GET /accounts/{email}), or add accounts."
            )
        return NoEligibleAccount(
            message,
            retry_after_iso=_iso(retry_at),
            retry_after_seconds=seconds,
            skip_reasons=skipped,
        )

    async def _take_explicit(self, account: Account) -> Lease:
        # An explicit email bypasses quarantine and health, but not the slot limit.
        if self.board.has_room(account.id, account.max_concurrency):
            self.board.take(account.id, account.max_concurrency)
            return Lease(account, self.board)
        got = await self.board.wait_for_any(frozenset({account.id}), self._queue_timeout)
        if got is None:
            raise Busy(
                f"Account {account.email} is at its maxConcurrency ({account.max_concurrency}) "
                f"and no slot freed in {self._queue_timeout:g} s; retry later",
                retry_after_seconds=max(1, int(self._queue_timeout) or 1),
            )
        return Lease(account, self.board)

    async def report_failure(self, account: Account, error: UpstreamError, model: str) -> bool:
        """Store what an upstream error means for the account; True if it was quarantined."""
        if error.is_key_error:
            async with self._sessions.begin() as session:
                await session.execute(
                    update(Account)
                    .where(Account.id == account.id)
                    .values(health=f"{error.status} {error.info.message}"[:1000])
                )
            self.forget(account.user_id)
            log.warning("account unhealthy", extra={"email": account.email, "status": error.status})
            return False
        decision = decide_quarantine(error.info, error.status, model, self.clock(), self.policy)
        if decision is None:
            return False
        async with self._sessions.begin() as session:
            await quarantine_rows.put_entry(
                session,
                user_id=account.user_id,
                account_id=account.id,
                account_email=account.email,
                model=decision.model,
                reason=decision.reason,
                until=decision.until,
            )
        self.forget(account.user_id)
        log.info(
            "account quarantined",
            extra={
                "email": account.email,
                "model": decision.model,
                "reason": decision.reason,
                "until": _iso(decision.until),
            },
        )
        return True
