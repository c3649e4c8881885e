"""When to retry a failed call, and how long to wait first. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass

from flowgate.client.errors import FlowgateAPIError, FlowgateConnectionError

RETRY_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
"""Answers that a later, identical request may not get (quota, overload, proxy hiccups)."""
FATAL_STATUSES: frozenset[int] = frozenset({401, 402})
"""Answers that every following request would get too: stop the whole batch."""


@dataclass(frozen=True)
class RetryDecision:
    """``delay`` seconds to wait, or ``None`` for "do not retry" with the reason in ``why``."""

    delay: float | None
    why: str


@dataclass(frozen=True)
class RetryPolicy:
    """Retries 429, 502, 503, 504 and connection failures; nothing else.

    The wait is the server's hint (``Retry-After`` header, body ``retryAfter``,
    Google ``RetryInfo``) or exponential backoff (``base_delay`` × 2^(attempt-1),
    at most ``max_delay``), whichever is longer, plus up to 20 % jitter so
    parallel requests do not come back in lockstep. A hint longer than
    ``max_wait`` (a daily quota that resets at midnight) ends the retries: the
    item fails now and a later run resumes it.
    """

    max_retries: int = 8
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_wait: float = 600.0
    jitter: float = 0.2

    def decide(
        self, error: Exception, attempt: int, rng: random.Random | None = None
    ) -> RetryDecision:
        """What to do after ``attempt`` (1-based) failed with ``error``."""
        if isinstance(error, FlowgateAPIError):
            if error.status not in RETRY_STATUSES:
                return RetryDecision(None, f"HTTP {error.status} is not retried")
            hint = error.retry_after
        elif isinstance(error, FlowgateConnectionError):
            hint = None
        else:
            return RetryDecision(None, f"{type(error).__name__} is not retried")
        if attempt > self.max_retries:
            return RetryDecision(None, f"gave up after {attempt} attempts")
        if hint is not None and hint > self.max_wait:
            return RetryDecision(
                None,
                f"the server asks to wait {hint:.0f} s, more than max wait {self.max_wait:g} s",
            )
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        delay = max(hint or 0.0, backoff)
        delay *= 1.0 + (rng or random).uniform(0.0, self.jitter)
        return RetryDecision(delay, "retry")
