"""The pure balancing rules: quarantine decisions, selection, the FIFO slot queue."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from flowgate.balancer.selection import (
    BUSY,
    MODEL_UNSUPPORTED,
    UNHEALTHY,
    Candidate,
    score,
    select_account,
)
from flowgate.balancer.slots import SlotBoard
from flowgate.domain.errors import GoogleErrorInfo
from flowgate.domain.quarantine import (
    ACCOUNT_QUOTA,
    PER_MODEL_DAILY,
    THROTTLED,
    QuarantinePolicy,
    decide_quarantine,
    next_utc_midnight,
)

NOW = datetime(2026, 5, 19, 15, 30, 0, tzinfo=UTC)
POLICY = QuarantinePolicy()


def info(*quota_ids: str, delay: float | None = None) -> GoogleErrorInfo:
    return GoogleErrorInfo(
        code=429,
        message="quota",
        status="RESOURCE_EXHAUSTED",
        quota_ids=tuple(quota_ids),
        retry_delay_seconds=delay,
    )


def test_daily_per_model_quota_lasts_until_midnight() -> None:
    d = decide_quarantine(
        info("GenerateRequestsPerDayPerProjectPerModel-FreeTier", delay=26),
        429,
        "nano-banana-pro",
        NOW,
        POLICY,
    )
    assert d is not None
    assert (d.model, d.reason) == ("nano-banana-pro", PER_MODEL_DAILY)
    assert d.until == datetime(2026, 5, 20, 0, 0, 10, tzinfo=UTC)


def test_per_minute_and_unnamed_429_use_retry_delay_or_default() -> None:
    d = decide_quarantine(
        info("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", delay=26.5),
        429,
        "imagen-4",
        NOW,
        POLICY,
    )
    assert d is not None and d.reason == THROTTLED and d.model == "imagen-4"
    assert d.until == NOW + timedelta(seconds=26.5)
    bare = decide_quarantine(info(), 429, "imagen-4", NOW, POLICY)
    assert bare is not None and bare.reason == THROTTLED
    assert bare.until == NOW + timedelta(seconds=60)
    custom = decide_quarantine(
        info(), 429, "imagen-4", NOW, QuarantinePolicy(throttle_default_seconds=5)
    )
    assert custom is not None and custom.until == NOW + timedelta(seconds=5)


def test_project_wide_exhaustion_quarantines_every_model() -> None:
    d = decide_quarantine(
        info("GenerateRequestsPerDayPerProject-FreeTier"), 429, "imagen-4", NOW, POLICY
    )
    assert d is not None and (d.model, d.reason) == ("*", ACCOUNT_QUOTA)
    assert d.until == next_utc_midnight(NOW) + timedelta(seconds=10)
    hourly = decide_quarantine(info("RequestsPerHourPerProject"), 429, "imagen-4", NOW, POLICY)
    assert hourly is not None and hourly.until == NOW + timedelta(seconds=1800)


def test_non_429_is_not_quarantine() -> None:
    assert decide_quarantine(info(), 503, "imagen-4", NOW, POLICY) is None


def cand(i: int, **kw: object) -> Candidate:
    base = {
        "account_id": i,
        "email": f"a{i}@x.com",
        "healthy": True,
        "supports_model": True,
        "has_room": True,
    }
    base.update(kw)
    return Candidate(**base)  # type: ignore[arg-type]


def test_score_formula_and_lowest_wins() -> None:
    assert score(2, 1, 1) == 32
    picked = select_account(
        [cand(1, failed=1), cand(2, executing=3), cand(3, rate_limited=1)],
        "imagen-4",
        random.Random(1),
    )
    assert picked.chosen is not None and picked.chosen.account_id == 2


def test_skip_reasons_name_every_account() -> None:
    sel = select_account(
        [
            cand(1, healthy=False),
            cand(2, supports_model=False),
            cand(3, quarantine_reason=PER_MODEL_DAILY, quarantine_model="imagen-4"),
            cand(4, has_room=False),
        ],
        "imagen-4",
        random.Random(0),
    )
    assert sel.chosen is None
    assert [(s.email, s.reason) for s in sel.skipped] == [
        ("a1@x.com", UNHEALTHY),
        ("a2@x.com", MODEL_UNSUPPORTED),
        ("a3@x.com", PER_MODEL_DAILY),
        ("a4@x.com", BUSY),
    ]
    assert [c.account_id for c in sel.waitable] == [4]


def test_ties_spread_evenly() -> None:
    rng = random.Random(12345)
    picks = Counter(
        select_account([cand(i) for i in range(4)], "m", rng).chosen.account_id  # type: ignore[union-attr]
        for _ in range(8000)
    )
    expected = 2000
    chi_square = sum((n - expected) ** 2 / expected for n in picks.values())
    # 3 degrees of freedom: 16.27 is the 0.1 % critical value.
    assert len(picks) == 4 and chi_square < 16.27, picks


async def test_slot_queue_is_fifo_and_times_out() -> None:
    board = SlotBoard()
    board.take(1, 1)
    order: list[str] = []

    async def waiter(name: str) -> None:
        got = await board.wait_for_any(frozenset({1}), 5)
        assert got == 1
        order.append(name)
        await asyncio.sleep(0.01)
        board.release(1)

    tasks = [asyncio.create_task(waiter(n)) for n in ("first", "second", "third")]
    await asyncio.sleep(0.05)
    board.release(1)
    await asyncio.gather(*tasks)
    assert order == ["first", "second", "third"]
    board.take(1, 1)
    assert await board.wait_for_any(frozenset({1}), 0.05) is None
    board.release(1)
    assert board.executing(1) == 0
    assert board.has_room(1, 1)


@pytest.mark.parametrize("hour", [0, 12, 23])
def test_next_midnight(hour: int) -> None:
    now = datetime(2026, 1, 31, hour, 59, tzinfo=UTC)
    assert next_utc_midnight(now) == datetime(2026, 2, 1, tzinfo=UTC)
