"""Start slots: generation requests start a bounded group at a time, in arrival order."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime

import httpx

from flowgate.app import STARTS_GENERATION, create_app
from flowgate.config import Settings
from flowgate.start_gate import StartGate, leave_start_phase
from tests.gateway import Gateway
from tests.test_balancing_api import sandbox_accounts

PATH = "/v1/google-flow/images"


async def test_a_burst_starts_in_arrival_order_and_never_more_than_the_slots() -> None:
    gate = StartGate(2, hold_seconds=30)
    inside = 0
    most = 0
    entered: list[int] = []

    async def request(n: int) -> None:
        nonlocal inside, most
        async with gate.slot():
            entered.append(n)
            inside += 1
            most = max(most, inside)
            for _ in range(3):  # several steps of work, as a real start has
                await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(request(n) for n in range(8)))
    assert entered == list(range(8))
    assert most == 2


async def test_leaving_early_lets_the_next_request_start_and_adds_no_slot() -> None:
    gate = StartGate(1, hold_seconds=30)
    upstream_answer = asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with gate.slot():
            order.append("first starts")
            leave_start_phase()  # now it waits on the upstream
            leave_start_phase()  # a second call gives nothing back twice
            await upstream_answer.wait()
            order.append("first answers")

    async def later(name: str) -> None:
        async with gate.slot():
            order.append(f"{name} starts")
            await asyncio.sleep(0.01)
            order.append(f"{name} done")

    task = asyncio.create_task(first())
    await asyncio.sleep(0)
    await asyncio.wait_for(later("second"), 5)  # does not wait for the first's answer
    upstream_answer.set()
    await task
    # Still one slot: the third and fourth do not overlap.
    await asyncio.gather(later("third"), later("fourth"))
    assert order == [
        "first starts",
        "second starts",
        "second done",
        "first answers",
        "third starts",
        "third done",
        "fourth starts",
        "fourth done",
    ]


async def test_a_slot_held_too_long_is_given_up() -> None:
    gate = StartGate(1, hold_seconds=0.05)
    slow_done = asyncio.Event()
    times: dict[str, float] = {}

    async def slow() -> None:
        async with gate.slot():
            times["slow in"] = time.monotonic()
            await asyncio.sleep(0.5)  # e.g. a body arriving slowly; never leaves on its own
        slow_done.set()

    async def quick() -> None:
        async with gate.slot():
            times["quick in"] = time.monotonic()

    task = asyncio.create_task(slow())
    await asyncio.sleep(0)
    await quick()
    assert not slow_done.is_set()
    assert 0.04 <= times["quick in"] - times["slow in"] < 0.4
    await task
    # The expired slot came back once, not twice.
    await _assert_one_slot(gate)


async def _assert_one_slot(gate: StartGate) -> None:
    holding = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            holding.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await holding.wait()
    waiting = asyncio.create_task(_enter(gate))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    release.set()
    await asyncio.wait_for(waiting, 5)
    await task


async def _enter(gate: StartGate) -> None:
    async with gate.slot():
        pass


def test_every_gated_path_is_a_generation_post_route(tmp_path) -> None:
    app = create_app(Settings(data_dir=tmp_path, sandbox=True))
    paths = app.openapi()["paths"]
    posts = {path for path, operations in paths.items() if "post" in operations}
    assert STARTS_GENERATION <= posts, STARTS_GENERATION - posts


def _received(gw: Gateway) -> list[datetime]:
    """When each generation call reached the sandbox."""
    calls = httpx.get(f"{gw.base_url}/sandbox/gemini/_sandbox/calls").json()["calls"]
    return [
        datetime.fromisoformat(call["received"].replace("Z", "+00:00"))
        for call in calls
        if call["method"] != "list"  # the key check when an account is added
    ]


def _post_in_thread(gw: Gateway, body: dict[str, object], out: list[httpx.Response]) -> None:
    with gw.client() as client:
        out.append(client.post(PATH, json=body, timeout=60))


def test_requests_wait_on_the_upstream_outside_their_start_slot(gateway_factory) -> None:
    # One slot, kept up to 30 s: had a request kept its slot while the upstream worked,
    # the next one would have reached the upstream only after that (1.5 s later).
    gw = gateway_factory("sqlite", FLOWGATE_START_SLOTS="1", FLOWGATE_START_HOLD_SECONDS="30")
    gw.start()
    sandbox_accounts(gw, gw.token, 1, maxConcurrency=10)
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(
            target=_post_in_thread,
            args=(gw, {"prompt": f"[sandbox:delay=1500] held {n}", "count": 1}, answers),
        )
        for n in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer.status_code for answer in answers] == [200, 200, 200], answers[0].text
    moments = _received(gw)
    assert len(moments) == 3
    assert (max(moments) - min(moments)).total_seconds() < 1.0, moments


def test_a_request_queued_for_a_busy_account_lets_others_start(gateway_factory) -> None:
    gw = gateway_factory("sqlite", FLOWGATE_START_SLOTS="1", FLOWGATE_START_HOLD_SECONDS="30")
    gw.start()
    busy, free = sandbox_accounts(gw, gw.token, 2, maxConcurrency=1)
    answers: list[httpx.Response] = []
    holder = threading.Thread(
        target=_post_in_thread,
        args=(gw, {"prompt": "[sandbox:delay=3000] holds", "count": 1, "email": busy}, answers),
    )
    holder.start()
    time.sleep(0.5)  # the holder is at the upstream (the call log shows it only once answered)
    # Queued behind the holder on the busy account, for ~2.5 s.
    queued = threading.Thread(
        target=_post_in_thread, args=(gw, {"prompt": "queued", "count": 1, "email": busy}, answers)
    )
    queued.start()
    time.sleep(0.3)
    with gw.client() as client:
        sent = time.monotonic()
        other = client.post(PATH, json={"prompt": "other", "count": 1, "email": free})
        took = time.monotonic() - sent
    assert other.status_code == 200, other.text
    holder.join()
    queued.join()
    assert [answer.status_code for answer in answers] == [200, 200]
    assert took < 1.0, f"waited {took:.2f} s for the queued request's start slot"
