"""Per-key quotas: requests per minute, per day and in flight, answered with Google's 429s.

A rule belongs to one API key and either one model or every model of the key.
Like Google's ``…PerProjectPerModel`` quotas, each model is counted on its own:
a rule for every model with ``perMinute: 2`` allows two requests a minute to
each model. A rule naming a model wins over the key's every-model rule for
that model.

Windows work like Google's: the per-minute count lives in fixed 60-second
windows (``floor(now / 60)``), the per-day count resets at 00:00 UTC, and the
concurrency count is the key's generation requests still being answered plus
its video operations still running. A request the quota rejects counts
nowhere. The clock is ``SandboxConfig.now``, so tests move time instead of
sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowgate.sandbox.catalogue import MODELS_BY_ID
from flowgate.sandbox.google_errors import (
    CONCURRENT_QUOTA_ID,
    PER_DAY_QUOTA_ID,
    PER_MINUTE_QUOTA_ID,
    GoogleApiError,
    invalid_argument,
    quota_violation,
)

MINUTE_SECONDS = 60
DAY_SECONDS = 86_400
# RetryInfo for a full concurrency quota when no running operation tells when a slot frees.
CONCURRENT_RETRY_SECONDS = 1.0
_RULE_FIELDS = ("perMinute", "perDay", "concurrent", "model")


@dataclass(frozen=True)
class KeyQuota:
    """Limits for one key: ``None`` means unlimited. ``model`` ``None`` = every model."""

    per_minute: int | None = None
    per_day: int | None = None
    concurrent: int | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        for name in ("per_minute", "per_day", "concurrent"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(f"KeyQuota.{name} must be an integer ≥ 0 or None")
        if self.per_minute is None and self.per_day is None and self.concurrent is None:
            raise ValueError("KeyQuota needs at least one of per_minute, per_day, concurrent")
        if self.model is not None and self.model not in MODELS_BY_ID:
            raise ValueError(f"KeyQuota.model {self.model!r} is not a sandbox model")

    def as_json(self, key: str) -> dict[str, Any]:
        """The rule as the admin endpoints show it."""
        return {
            "key": key,
            "model": self.model,
            "perMinute": self.per_minute,
            "perDay": self.per_day,
            "concurrent": self.concurrent,
        }


def parse_quota_body(body: Any) -> KeyQuota:
    """A ``PUT /_sandbox/quotas/{key}`` body → :class:`KeyQuota`; 400 when malformed."""
    if not isinstance(body, dict):
        raise invalid_argument(
            'Send a JSON object such as {"perMinute": 2, "perDay": 100, "concurrent": 1, '
            '"model": "gemini-2.5-flash-image"}.'
        )
    unknown = sorted(set(body) - set(_RULE_FIELDS))
    if unknown:
        raise invalid_argument(
            f"Unknown quota field {unknown[0]!r}: use perMinute, perDay, concurrent and model."
        )
    limits: dict[str, int | None] = {}
    for name in ("perMinute", "perDay", "concurrent"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise invalid_argument(f"{name} must be an integer ≥ 0 or null (unlimited).")
        if value is not None and value < 0:
            raise invalid_argument(f"{name} must be ≥ 0, got {value}.")
        limits[name] = value
    if all(value is None for value in limits.values()):
        raise invalid_argument("Set at least one of perMinute, perDay and concurrent.")
    model = body.get("model")
    if model is not None:
        if not isinstance(model, str):
            raise invalid_argument("model must be a string: an upstream model id.")
        model = model.removeprefix("models/")
        if model not in MODELS_BY_ID:
            raise invalid_argument(
                f"Unknown model {model!r}: use a sandbox model id such as "
                "gemini-2.5-flash-image, or leave model out for every model."
            )
    return KeyQuota(
        per_minute=limits["perMinute"],
        per_day=limits["perDay"],
        concurrent=limits["concurrent"],
        model=model,
    )


@dataclass
class _Usage:
    """What one key has used of one model's quota."""

    minute_window: int = -1
    minute_count: int = 0
    day_window: int = -1
    day_count: int = 0
    in_flight: int = 0
    # Ends of running video operations, each holding a concurrency slot until then.
    held_until: list[float] = field(default_factory=list)

    def roll(self, now: float) -> None:
        """Start new windows when the clock has left the current ones."""
        minute, day = math.floor(now / MINUTE_SECONDS), math.floor(now / DAY_SECONDS)
        if minute != self.minute_window:
            self.minute_window, self.minute_count = minute, 0
        if day != self.day_window:
            self.day_window, self.day_count = day, 0
        self.held_until = [until for until in self.held_until if until > now]

    def concurrent(self) -> int:
        return self.in_flight + len(self.held_until)


class QuotaLease:
    """One admitted request's concurrency slot: release it, or hold it until a time."""

    def __init__(self, usage: _Usage | None) -> None:
        self._usage = usage

    def release(self) -> None:
        """The request is answered: free its slot (again is harmless)."""
        if self._usage is not None:
            self._usage.in_flight -= 1
            self._usage = None

    def hold_until(self, until: float) -> None:
        """Keep the slot until ``until`` (a video operation runs past its HTTP request)."""
        if self._usage is not None:
            self._usage.in_flight -= 1
            self._usage.held_until.append(until)
            self._usage = None


class QuotaBook:
    """Quota rules and counters of one sandbox app (in memory, one event loop: no locks)."""

    def __init__(
        self,
        rules: Mapping[str, KeyQuota | Sequence[KeyQuota]],
        now: Callable[[], float],
    ) -> None:
        self._now = now
        self._rules: dict[tuple[str, str | None], KeyQuota] = {}
        self._usage: dict[tuple[str, str], _Usage] = {}
        for key, quotas in rules.items():
            for quota in [quotas] if isinstance(quotas, KeyQuota) else quotas:
                self._rules[(key, quota.model)] = quota

    # --- admin ----------------------------------------------------------------------

    def set(self, key: str, quota: KeyQuota) -> None:
        """Add or replace the key's rule for ``quota.model``; the key's counters restart."""
        self._rules[(key, quota.model)] = quota
        self._forget_usage(key)

    def remove(self, key: str, model: str | None = None) -> int:
        """Drop the key's rules (all, or only the one naming ``model``); return how many.

        The key's counters restart either way.
        """
        doomed = [
            rule_key
            for rule_key in self._rules
            if rule_key[0] == key and (model is None or rule_key[1] == model)
        ]
        for rule_key in doomed:
            del self._rules[rule_key]
        self._forget_usage(key)
        return len(doomed)

    def clear(self) -> None:
        """Forget every rule and every counter."""
        self._rules.clear()
        self._usage.clear()

    def as_json(self) -> list[dict[str, Any]]:
        """Every rule with what each model has used under it in the current windows."""
        now = self._now()
        shown: list[dict[str, Any]] = []
        for (key, _model), quota in sorted(
            self._rules.items(), key=lambda item: (item[0][0], item[0][1] or "")
        ):
            usage: dict[str, dict[str, int]] = {}
            for (used_key, used_model), used in self._usage.items():
                if used_key != key or self._rule_for(key, used_model) is not quota:
                    continue
                used.roll(now)
                usage[used_model] = {
                    "minute": used.minute_count,
                    "day": used.day_count,
                    "concurrent": used.concurrent(),
                }
            shown.append({**quota.as_json(key), "usage": usage})
        return shown

    # --- admission --------------------------------------------------------------------

    def admit(self, key: str | None, model_id: str) -> QuotaLease:
        """Count one request, or raise Google's 429 if a limit is reached (then count nothing).

        Checked in order per day, per minute, concurrent: a spent day is what a
        caller most needs to know.
        """
        quota = self._rule_for(key, model_id) if key else None
        if key is None or quota is None:
            return QuotaLease(None)
        now = self._now()
        usage = self._usage.setdefault((key, model_id), _Usage())
        usage.roll(now)
        if quota.per_day is not None and usage.day_count >= quota.per_day:
            next_midnight = (usage.day_window + 1) * DAY_SECONDS
            raise self._exhausted(PER_DAY_QUOTA_ID, model_id, quota.per_day, next_midnight - now)
        if quota.per_minute is not None and usage.minute_count >= quota.per_minute:
            window_end = (usage.minute_window + 1) * MINUTE_SECONDS
            raise self._exhausted(PER_MINUTE_QUOTA_ID, model_id, quota.per_minute, window_end - now)
        if quota.concurrent is not None and usage.concurrent() >= quota.concurrent:
            retry = (
                min(usage.held_until) - now
                if usage.held_until and usage.in_flight == 0
                else CONCURRENT_RETRY_SECONDS
            )
            raise self._exhausted(CONCURRENT_QUOTA_ID, model_id, quota.concurrent, retry)
        usage.minute_count += 1
        usage.day_count += 1
        usage.in_flight += 1
        return QuotaLease(usage)

    def _rule_for(self, key: str | None, model_id: str) -> KeyQuota | None:
        if key is None:
            return None
        return self._rules.get((key, model_id)) or self._rules.get((key, None))

    def _forget_usage(self, key: str) -> None:
        for usage_key in [usage_key for usage_key in self._usage if usage_key[0] == key]:
            del self._usage[usage_key]

    @staticmethod
    def _exhausted(quota_id: str, model_id: str, limit: int, seconds: float) -> GoogleApiError:
        # Rounded up to the millisecond: a retry after this delay is in the next window.
        retry = math.ceil(round(max(seconds, 0.0) * 1000, 6)) / 1000
        return quota_violation(model_id, quota_id=quota_id, limit=limit, retry_seconds=retry)
