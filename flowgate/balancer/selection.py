"""Choosing an account: a pure function over candidates (contract §8, DESIGN §3)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from flowgate.domain.errors import SkipReason

UNHEALTHY = "UNHEALTHY"
MODEL_UNSUPPORTED = "MODEL_UNSUPPORTED"
BUSY = "BUSY"


def score(executing: int, failed: int, rate_limited: int) -> int:
    """``executing + 10 × failed + 20 × rateLimited`` (lower is better)."""
    return executing + 10 * failed + 20 * rate_limited


@dataclass(frozen=True)
class Candidate:
    """One account of the caller as the balancer sees it for one request."""

    account_id: int
    email: str
    healthy: bool
    supports_model: bool
    has_room: bool
    executing: int = 0
    failed: int = 0
    rate_limited: int = 0
    quarantine_reason: str | None = None
    quarantine_model: str | None = None
    quarantine_until: datetime | None = None

    @property
    def score(self) -> int:
        """The account's current score."""
        return score(self.executing, self.failed, self.rate_limited)


@dataclass(frozen=True)
class Selection:
    """The outcome: the chosen account, or every account with why it was skipped.

    ``waitable`` lists eligible accounts that are only full, so the request may queue.
    """

    chosen: Candidate | None
    skipped: tuple[SkipReason, ...]
    waitable: tuple[Candidate, ...]


def select_account(candidates: list[Candidate], model: str, rng: random.Random) -> Selection:
    """Filter (health, model support, quarantine, room) then take the lowest score; random tie."""
    skipped: list[SkipReason] = []
    eligible: list[Candidate] = []
    full: list[Candidate] = []
    for cand in candidates:
        if not cand.healthy:
            skipped.append(SkipReason(cand.email, UNHEALTHY, "*"))
        elif not cand.supports_model:
            skipped.append(SkipReason(cand.email, MODEL_UNSUPPORTED, model))
        elif cand.quarantine_reason is not None:
            skipped.append(
                SkipReason(cand.email, cand.quarantine_reason, cand.quarantine_model or model)
            )
        elif not cand.has_room:
            full.append(cand)
            skipped.append(SkipReason(cand.email, BUSY, model))
        else:
            eligible.append(cand)
    if not eligible:
        return Selection(None, tuple(skipped), tuple(full))
    best = min(c.score for c in eligible)
    chosen = rng.choice([c for c in eligible if c.score == best])
    return Selection(chosen, tuple(skipped), tuple(full))
