"""Deciding quarantine from an upstream error (DESIGN §3 'Quarantine'). Pure.

The decision is separate from the store: this module says *whether* and *how
long*; ``flowgate.storage.quarantine`` keeps the entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flowgate.domain.errors import GoogleErrorInfo

PER_MODEL_DAILY = "PUBLIC_ERROR_PER_MODEL_DAILY_QUOTA_REACHED"
THROTTLED = "PUBLIC_ERROR_USER_REQUESTS_THROTTLED"
ACCOUNT_QUOTA = "PUBLIC_ERROR_USER_QUOTA_REACHED"
ALL_MODELS = "*"


@dataclass(frozen=True)
class QuarantinePolicy:
    """The TTLs (all settings)."""

    throttle_default_seconds: float = 60.0
    account_quota_seconds: float = 1800.0
    midnight_margin_seconds: float = 10.0
    max_seconds: float = 86_400.0 * 2


@dataclass(frozen=True)
class QuarantineDecision:
    """Quarantine ``model`` (or ``"*"``) on the account until ``until`` for ``reason``."""

    model: str
    reason: str
    until: datetime


def next_utc_midnight(now: datetime) -> datetime:
    """The next 00:00 UTC after ``now``."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)


def _is_per_day(quota_id: str) -> bool:
    return "PerDay" in quota_id


def _is_per_model(quota_id: str) -> bool:
    return "PerModel" in quota_id


def decide_quarantine(
    info: GoogleErrorInfo, http_status: int, model: str, now: datetime, policy: QuarantinePolicy
) -> QuarantineDecision | None:
    """What a failed upstream call means for the account, or ``None`` for nothing.

    - 429 naming a per-day, per-model quota: that model until the next UTC midnight.
    - 429 naming a quota that is not per model (project-wide): every model (``"*"``),
      until midnight for a per-day quota, else for RetryInfo's delay or the account TTL.
    - any other 429 (per-minute, tokens, or no QuotaFailure): that model for RetryInfo's
      delay, else the throttle default.
    """
    if http_status != 429:
        return None
    margin = timedelta(seconds=policy.midnight_margin_seconds)
    quota_ids = info.quota_ids
    if any(_is_per_day(q) and _is_per_model(q) for q in quota_ids):
        return QuarantineDecision(model, PER_MODEL_DAILY, next_utc_midnight(now) + margin)
    if quota_ids and not any(_is_per_model(q) for q in quota_ids):
        if any(_is_per_day(q) for q in quota_ids):
            until = next_utc_midnight(now) + margin
        else:
            seconds = info.retry_delay_seconds or policy.account_quota_seconds
            until = now + timedelta(seconds=min(seconds, policy.max_seconds))
        return QuarantineDecision(ALL_MODELS, ACCOUNT_QUOTA, until)
    delay = info.retry_delay_seconds
    seconds = delay if delay is not None and delay > 0 else policy.throttle_default_seconds
    until = now + timedelta(seconds=min(seconds, policy.max_seconds))
    return QuarantineDecision(model, THROTTLED, until)
