"""Per-key quotas of the sandbox: Google's 429 bodies, windows, concurrency, admin endpoints.

Window arithmetic runs in-process with a fake clock (``SandboxConfig.now``);
the admin endpoints are also exercised over real HTTP on the standalone server.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flowgate.sandbox import SandboxConfig, create_sandbox_app
from flowgate.sandbox.quotas import KeyQuota
from tests.fixtures_sandbox import sandbox_url  # noqa: F401

NANO_25 = "gemini-2.5-flash-image"
NANO_PRO = "gemini-3-pro-image-preview"
IMAGEN = "imagen-4.0-fast-generate-001"
VEO = "veo-3.1-fast-generate-preview"
# 10:00:23 UTC on a day: 37 s left in the minute window, 50377 s to midnight.
MIDNIGHT = 1_800_000_000 - 1_800_000_000 % 86_400
START = MIDNIGHT + 10 * 3600 + 23
MESSAGE_HEAD = (
    "You exceeded your current quota, please check your plan and billing details. "
    "For more information on this error, head to: https://ai.google.dev/gemini-api/docs/"
    "rate-limits. To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. "
)
METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


async def in_process(config: SandboxConfig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_sandbox_app(config)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
    ) as http:
        yield http


@pytest.fixture
async def sandbox(clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process sandbox on the fake clock, fixed pictures (speed), videos done in 30 s."""
    config = SandboxConfig(now=clock, fixed_image=True, video_seconds=30.0)
    async for http in in_process(config):
        yield http


def content(prompt: str = "a cat") -> dict[str, Any]:
    return {"contents": [{"parts": [{"text": prompt}]}]}


async def generate(
    http: httpx.AsyncClient, key: str, model: str = NANO_25, prompt: str = "a cat"
) -> httpx.Response:
    if model.startswith("imagen"):
        body: dict[str, Any] = {"instances": [{"prompt": prompt}], "parameters": {"sampleCount": 1}}
        path = f"/v1beta/models/{model}:predict"
    elif model.startswith("veo"):
        body = {"instances": [{"prompt": prompt}], "parameters": {"durationSeconds": 4}}
        path = f"/v1beta/models/{model}:predictLongRunning"
    else:
        body, path = content(prompt), f"/v1beta/models/{model}:generateContent"
    return await http.post(path, json=body, headers={"x-goog-api-key": key})


def quota_body(
    model: str, quota_id: str, limit: int, retry: str, *, metric: str = METRIC
) -> dict[str, Any]:
    """The exact 429 body Google sends for a per-model quota."""
    seconds = float(retry.removesuffix("s"))
    return {
        "error": {
            "code": 429,
            "message": f"{MESSAGE_HEAD}\n* Quota exceeded for metric: {metric}, limit: {limit}, "
            f"model: {model}\nPlease retry in {seconds:.1f}s.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": metric,
                            "quotaId": quota_id,
                            "quotaDimensions": {"location": "global", "model": model},
                            "quotaValue": str(limit),
                        }
                    ],
                },
                HELP,
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry},
            ],
        }
    }


async def put_quota(http: httpx.AsyncClient, key: str, **rule: Any) -> httpx.Response:
    return await http.put(f"/_sandbox/quotas/{key}", json=rule)


# --- windows (fake clock) -----------------------------------------------------------------


async def test_per_minute_limit_answers_google_429_until_the_window_ends(
    sandbox: httpx.AsyncClient, clock: FakeClock
) -> None:
    assert (await put_quota(sandbox, "key-a", perMinute=2)).status_code == 200
    assert [(await generate(sandbox, "key-a")).status_code for _ in range(2)] == [200, 200]

    rejected = await generate(sandbox, "key-a")
    assert rejected.status_code == 429
    assert rejected.json() == quota_body(
        NANO_25, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", 2, "37s"
    )

    clock.advance(36.5)
    late = await generate(sandbox, "key-a")
    assert late.json()["error"]["details"][2]["retryDelay"] == "0.5s"
    clock.advance(0.5)  # 10:01:00: a new window
    assert (await generate(sandbox, "key-a")).status_code == 200


async def test_per_day_limit_lasts_until_utc_midnight(
    sandbox: httpx.AsyncClient, clock: FakeClock
) -> None:
    await put_quota(sandbox, "key-d", perDay=1)
    assert (await generate(sandbox, "key-d")).status_code == 200
    clock.advance(3600)  # another hour, same day
    rejected = await generate(sandbox, "key-d")
    assert rejected.json() == quota_body(
        NANO_25, "GenerateRequestsPerDayPerProjectPerModel-FreeTier", 1, f"{50377 - 3600}s"
    )
    clock.now = MIDNIGHT + 86_400 - 0.25
    assert (await generate(sandbox, "key-d")).status_code == 429
    clock.now = MIDNIGHT + 86_400
    assert (await generate(sandbox, "key-d")).status_code == 200


async def test_rejected_requests_count_against_no_window(
    sandbox: httpx.AsyncClient, clock: FakeClock
) -> None:
    await put_quota(sandbox, "key-r", perMinute=2, perDay=3)
    statuses = [(await generate(sandbox, "key-r")).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]  # the minute is spent; the day has 1 left
    clock.advance(60)
    assert (await generate(sandbox, "key-r")).status_code == 200
    spent = await generate(sandbox, "key-r")
    assert spent.json()["error"]["details"][0]["violations"][0]["quotaId"] == (
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    )


async def test_invalid_requests_do_not_count(sandbox: httpx.AsyncClient) -> None:
    await put_quota(sandbox, "key-i", perMinute=1)
    bad = await sandbox.post(
        f"/v1beta/models/{NANO_25}:generateContent",
        json={"contents": []},
        headers={"x-goog-api-key": "key-i"},
    )
    assert bad.status_code == 400
    assert (await generate(sandbox, "key-i")).status_code == 200


async def test_each_model_has_its_own_count_and_a_model_rule_wins(
    sandbox: httpx.AsyncClient,
) -> None:
    await put_quota(sandbox, "key-m", perMinute=1)
    await put_quota(sandbox, "key-m", perMinute=3, model=NANO_PRO)
    assert [(await generate(sandbox, "key-m", NANO_25)).status_code for _ in range(2)] == [
        200,
        429,
    ]
    assert [(await generate(sandbox, "key-m", NANO_PRO)).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    imagen = [(await generate(sandbox, "key-m", IMAGEN)).status_code for _ in range(2)]
    assert imagen == [200, 429]
    pro_429 = await generate(sandbox, "key-m", NANO_PRO)
    violation = pro_429.json()["error"]["details"][0]["violations"][0]
    assert violation["quotaValue"] == "3"
    assert violation["quotaDimensions"] == {"location": "global", "model": NANO_PRO}
    # Another key is not limited at all.
    assert (await generate(sandbox, "key-other", NANO_25)).status_code == 200


async def test_concurrent_limit_counts_requests_in_flight(sandbox: httpx.AsyncClient) -> None:
    await put_quota(sandbox, "key-c", concurrent=1)
    slow = asyncio.create_task(generate(sandbox, "key-c", prompt="slow [sandbox:delay=600000]"))
    try:
        while True:  # until the slow request holds the slot
            listing = (await sandbox.get("/_sandbox/quotas")).json()["quotas"]
            if listing[0]["usage"].get(NANO_25, {}).get("concurrent") == 1:
                break
            await asyncio.sleep(0.01)
        rejected = await generate(sandbox, "key-c")
        assert rejected.json() == quota_body(
            NANO_25,
            "ConcurrentGenerateRequestsPerProjectPerModel-FreeTier",
            1,
            "1s",
            metric="generativelanguage.googleapis.com/concurrent_generate_requests",
        )
        assert (await generate(sandbox, "key-c", NANO_PRO)).status_code == 200  # other model
    finally:
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
    # The cancelled request gave its slot back.
    assert (await generate(sandbox, "key-c")).status_code == 200


async def test_a_running_video_holds_its_concurrency_slot_until_done(
    sandbox: httpx.AsyncClient, clock: FakeClock
) -> None:
    await put_quota(sandbox, "key-v", concurrent=1, model=VEO)
    assert (await generate(sandbox, "key-v", VEO)).status_code == 200
    clock.advance(10)
    rejected = await generate(sandbox, "key-v", VEO)
    assert rejected.status_code == 429
    details = rejected.json()["error"]["details"]
    assert details[0]["violations"][0]["quotaId"] == (
        "ConcurrentGenerateRequestsPerProjectPerModel-FreeTier"
    )
    assert details[2]["retryDelay"] == "20s"  # the running operation ends in 20 s
    clock.advance(20)
    assert (await generate(sandbox, "key-v", VEO)).status_code == 200


async def test_directive_faults_count_as_admitted_requests(sandbox: httpx.AsyncClient) -> None:
    await put_quota(sandbox, "key-f", perMinute=1)
    assert (await generate(sandbox, "key-f", prompt="x [sandbox:503]")).status_code == 503
    assert (await generate(sandbox, "key-f")).status_code == 429


async def test_quotas_from_the_config(clock: FakeClock) -> None:
    config = SandboxConfig(
        now=clock,
        fixed_image=True,
        quotas={
            "cfg-a": KeyQuota(per_minute=1),
            "cfg-b": (KeyQuota(per_day=1, model=NANO_25), KeyQuota(per_minute=2)),
        },
    )
    async for http in in_process(config):
        assert [(await generate(http, "cfg-a")).status_code for _ in range(2)] == [200, 429]
        assert [(await generate(http, "cfg-b")).status_code for _ in range(2)] == [200, 429]
        assert [(await generate(http, "cfg-b", NANO_PRO)).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        listing = (await http.get("/_sandbox/quotas")).json()["quotas"]
        assert [(rule["key"], rule["model"]) for rule in listing] == [
            ("cfg-a", None),
            ("cfg-b", None),
            ("cfg-b", NANO_25),
        ]
        assert listing[1]["usage"] == {NANO_PRO: {"minute": 2, "day": 2, "concurrent": 0}}
        assert listing[2]["usage"] == {NANO_25: {"minute": 1, "day": 1, "concurrent": 0}}


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "at least one"),
        ({"per_minute": -1}, "≥ 0"),
        ({"per_day": True}, "integer"),
        ({"concurrent": 1, "model": "gpt-4"}, "not a sandbox model"),
    ],
)
def test_key_quota_rejects_bad_values(arguments: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        KeyQuota(**arguments)


async def test_admin_endpoints_work_under_a_mount_prefix(clock: FakeClock) -> None:
    outer = FastAPI()
    outer.mount("/sandbox/gemini", create_sandbox_app(SandboxConfig(now=clock, fixed_image=True)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=outer), base_url="http://flowgate/sandbox/gemini"
    ) as http:
        assert (await put_quota(http, "sandbox-a", perMinute=1)).status_code == 200
        assert [(await generate(http, "sandbox-a")).status_code for _ in range(2)] == [200, 429]
        assert (await generate(http, "sandbox-b")).status_code == 200


# --- admin endpoints over real HTTP ---------------------------------------------------------


@pytest.fixture(scope="module")
def client(sandbox_url: str) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=sandbox_url, timeout=60.0, trust_env=False) as http:
        yield http


def fresh_key() -> str:
    return f"quota-{uuid.uuid4().hex[:12]}"


def generate_sync(client: httpx.Client, key: str, model: str = NANO_25) -> httpx.Response:
    return client.post(
        f"/v1beta/models/{model}:generateContent",
        json=content(),
        headers={"x-goog-api-key": key},
    )


def test_put_get_and_delete_a_key_quota_over_http(client: httpx.Client) -> None:
    key = fresh_key()
    put = client.put(f"/_sandbox/quotas/{key}", json={"perMinute": 1, "perDay": 5})
    assert put.status_code == 200
    assert put.json() == {
        "key": key,
        "model": None,
        "perMinute": 1,
        "perDay": 5,
        "concurrent": None,
    }
    assert generate_sync(client, key).status_code == 200
    rejected = generate_sync(client, key)
    assert rejected.status_code == 429
    error = rejected.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    violation = error["details"][0]["violations"][0]
    assert violation == {
        "quotaMetric": METRIC,
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": NANO_25},
        "quotaValue": "1",
    }
    retry = error["details"][2]["retryDelay"]
    assert re.fullmatch(r"\d+(\.\d{1,3})?s", retry)
    assert 0 < float(retry[:-1]) <= 60

    rules = [r for r in client.get("/_sandbox/quotas").json()["quotas"] if r["key"] == key]
    assert rules == [
        {
            "key": key,
            "model": None,
            "perMinute": 1,
            "perDay": 5,
            "concurrent": None,
            "usage": {NANO_25: {"minute": 1, "day": 1, "concurrent": 0}},
        }
    ]

    assert client.delete(f"/_sandbox/quotas/{key}").json() == {"removed": 1}
    assert generate_sync(client, key).status_code == 200
    assert [r for r in client.get("/_sandbox/quotas").json()["quotas"] if r["key"] == key] == []


def test_put_for_one_model_and_delete_only_that_rule(client: httpx.Client) -> None:
    key = fresh_key()
    client.put(f"/_sandbox/quotas/{key}", json={"perMinute": 5})
    put = client.put(f"/_sandbox/quotas/{key}", json={"perDay": 0, "model": f"models/{NANO_PRO}"})
    assert put.json()["model"] == NANO_PRO
    assert generate_sync(client, key, NANO_PRO).status_code == 429
    assert generate_sync(client, key, NANO_25).status_code == 200

    removed = client.delete(f"/_sandbox/quotas/{key}", params={"model": NANO_PRO})
    assert removed.json() == {"removed": 1}
    assert generate_sync(client, key, NANO_PRO).status_code == 200
    remaining = [r for r in client.get("/_sandbox/quotas").json()["quotas"] if r["key"] == key]
    assert [(r["model"], r["perMinute"]) for r in remaining] == [(None, 5)]
    client.delete(f"/_sandbox/quotas/{key}")


def test_putting_a_rule_again_restarts_the_counters(client: httpx.Client) -> None:
    key = fresh_key()
    client.put(f"/_sandbox/quotas/{key}", json={"perMinute": 1})
    assert generate_sync(client, key).status_code == 200
    assert generate_sync(client, key).status_code == 429
    client.put(f"/_sandbox/quotas/{key}", json={"perMinute": 1})
    assert generate_sync(client, key).status_code == 200
    client.delete(f"/_sandbox/quotas/{key}")


async def test_delete_all_quotas_clears_rules_and_counters(sandbox: httpx.AsyncClient) -> None:
    # In-process: clearing every rule must not disturb tests sharing the session's server.
    await put_quota(sandbox, "k1", perMinute=1)
    await put_quota(sandbox, "k2", concurrent=0)
    assert (await generate(sandbox, "k2")).status_code == 429
    assert (await sandbox.delete("/_sandbox/quotas")).json() == {"quotas": []}
    assert (await sandbox.get("/_sandbox/quotas")).json() == {"quotas": []}
    assert (await generate(sandbox, "k2")).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "Send a JSON object"),
        ({}, "Set at least one of perMinute, perDay and concurrent."),
        ({"perMinute": None}, "Set at least one"),
        ({"perMinute": -1}, "perMinute must be ≥ 0, got -1."),
        ({"perDay": "5"}, "perDay must be an integer ≥ 0 or null (unlimited)."),
        ({"concurrent": True}, "concurrent must be an integer"),
        ({"perMinute": 1, "rpm": 2}, "Unknown quota field 'rpm'"),
        ({"perMinute": 1, "model": "gemini-9"}, "Unknown model 'gemini-9'"),
        ({"perMinute": 1, "model": 7}, "model must be a string"),
    ],
)
def test_bad_quota_bodies_are_400(client: httpx.Client, body: Any, message: str) -> None:
    response = client.put(f"/_sandbox/quotas/{fresh_key()}", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert message in error["message"]


def test_malformed_json_quota_body_is_400(client: httpx.Client) -> None:
    response = client.put(
        f"/_sandbox/quotas/{fresh_key()}",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
