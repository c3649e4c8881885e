"""The OpenAI Images API (driven by the official openai package), the task API, and credits."""

from __future__ import annotations

import base64
import io
import threading
import time
import uuid

import httpx
import openai
import pytest
from PIL import Image

from tests.gateway import Gateway
from tests.receiver import Receiver
from tests.test_images_api import png, upload

PATH = "/v1/google-flow/images"


def new_user(gw: Gateway) -> tuple[str, str]:
    name = f"credit-{uuid.uuid4().hex[:6]}"
    token = gw.new_user(name)
    with gw.client(token) as client:
        email = f"{name}@example.com"
        assert (
            client.post(
                "/v1/google-flow/accounts",
                json={"email": email, "provider": "sandbox", "apiKey": f"sandbox-{name}"},
            ).status_code
            == 201
        )
    return name, token


def calls(gw: Gateway) -> int:
    """Image generation calls the shared sandbox has answered (not the operation polls of
    async videos that earlier tests on this gateway may leave running)."""
    logged = httpx.get(f"{gw.base_url}/sandbox/gemini/_sandbox/calls").json()["calls"]
    return sum(1 for call in logged if call["method"] in ("generateContent", "predict"))


# ---------------------------------------------------------------- OpenAI


def test_openai_generations_edits_and_models(gateway: Gateway) -> None:
    _, token = new_user(gateway)
    client = openai.OpenAI(api_key=token, base_url=f"{gateway.base_url}/v1")
    result = client.images.generate(model="nano-banana-2", prompt="a lemon", n=2, size="1792x1024")
    assert result.data is not None and len(result.data) == 2
    url = result.data[0].url
    assert url
    picture = Image.open(io.BytesIO(httpx.get(url).content))
    assert picture.width > picture.height
    as_b64 = client.images.generate(model="imagen-4", prompt="a lime", response_format="b64_json")
    assert as_b64.data is not None and as_b64.data[0].b64_json
    square = Image.open(io.BytesIO(base64.b64decode(as_b64.data[0].b64_json)))
    assert square.width == square.height
    edited = client.images.edit(
        model="nano-banana-pro",
        image=("cat.png", png(40, 40), "image/png"),
        prompt="make it blue",
        size="1024x1024",
    )
    assert edited.data is not None and len(edited.data) == 1 and edited.data[0].url
    ids = [m.id for m in client.models.list().data]
    assert {"imagen-4", "nano-banana-2", "nano-banana-pro"} <= set(ids)


def test_openai_errors_use_openai_envelope(gateway: Gateway) -> None:
    _, token = new_user(gateway)
    bad = openai.OpenAI(api_key="nope", base_url=f"{gateway.base_url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.images.generate(model="imagen-4", prompt="x")
    client = openai.OpenAI(api_key=token, base_url=f"{gateway.base_url}/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="dall-e-3", prompt="x")
    assert "imagen-4" in caught.value.message
    raw = httpx.post(
        f"{gateway.base_url}/v1/images/generations",
        headers={"Authorization": f"Bearer {token}"},
        json={"prompt": "x", "n": 9},
    )
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "invalid_request_error"
    assert "n must be" in raw.json()["error"]["message"]


# ---------------------------------------------------------------- task API


def wait_task(base: str, key: str, task_id: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = httpx.get(
            f"{base}/api/v1/client/job/TaskInfo",
            params={"task_id": task_id},
            headers={"x-api-key": key},
        ).json()
        if body["data"]["status"] in ("success", "failed"):
            return body["data"]
        time.sleep(0.2)
    raise AssertionError("task did not finish")


def test_task_api_create_info_callback(gateway: Gateway) -> None:
    _, token = new_user(gateway)
    receiver = Receiver()
    receiver.start()
    try:
        with gateway.client(token) as client:
            ref = upload(client, png(30, 20)).json()["mediaGenerationId"]["mediaGenerationId"]
        created = httpx.post(
            f"{gateway.base_url}/api/v1/client/job/CreateTask",
            headers={"x-api-key": token},
            json={
                "model": "google/nano-banana-v2",
                "callback_url": receiver.url,
                "input": {
                    "prompt": "a fox",
                    "aspect_ratio": "16:9",
                    "output_format": "png",
                    "image_urls": [ref],
                },
            },
        )
        assert created.status_code == 200, created.text
        assert created.json()["code"] == 200 and created.json()["message"] == "success"
        task_id = created.json()["data"]["task_id"]
        data = wait_task(gateway.base_url, token, task_id)
        assert data["status"] == "success" and data["model"] == "google/nano-banana-v2"
        assert data["param"]["input"]["prompt"] == "a fox"
        assert data["result"]["code"] == 200 and len(data["result"]["media_urls"]) == 1
        assert httpx.get(data["result"]["media_urls"][0]).status_code == 200
        with gateway.client(token) as client:
            job = client.get(f"/v1/google-flow/jobs/{task_id}").json()
            assert job["status"] == "completed"
        (callback,) = receiver.wait_for(1)
        assert callback.json["task_id"] == task_id and callback.json["status"] == "success"
        assert callback.headers["X-Flowgate-Signature"].startswith("sha256=")
        failed = httpx.post(
            f"{gateway.base_url}/api/v1/client/job/CreateTask",
            headers={"x-api-key": token},
            json={"model": "google/nano-banana", "input": {"prompt": "[sandbox:500] boom"}},
        ).json()
        data = wait_task(gateway.base_url, token, failed["data"]["task_id"])
        assert data["status"] == "failed" and data["result"]["code"] == 501
    finally:
        receiver.stop()


def test_task_api_errors(gateway: Gateway) -> None:
    _, token = new_user(gateway)
    base = f"{gateway.base_url}/api/v1/client"
    missing = httpx.get(f"{base}/account/balance")
    assert missing.status_code == 401 and missing.json()["code"] == 401
    invalid = httpx.post(
        f"{base}/job/CreateTask",
        headers={"x-api-key": token},
        json={"model": "google/nano-banana", "input": {"aspect_ratio": "1:1"}},
    )
    assert invalid.status_code == 422 and "prompt" in invalid.json()["message"]
    ratio = httpx.post(
        f"{base}/job/CreateTask",
        headers={"x-api-key": token},
        json={"model": "google/nano-banana", "input": {"prompt": "x", "aspect_ratio": "21:9"}},
    )
    assert ratio.status_code == 422
    unknown = httpx.get(
        f"{base}/job/TaskInfo", params={"task_id": "nope"}, headers={"x-api-key": token}
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == 404
    balance = httpx.get(f"{base}/account/balance", headers={"x-api-key": token}).json()
    assert balance["data"]["balance"] is None and balance["data"]["unlimited"] is True


# ---------------------------------------------------------------- credits


def test_credits_charge_success_only_and_402_before_upstream(gateway: Gateway) -> None:
    name, token = new_user(gateway)
    gateway.cli("users", "credit", name, "=4")
    with gateway.client(token) as client:
        ok = client.post(PATH, json={"prompt": "x", "model": "nano-banana-pro", "count": 1})
        assert ok.status_code == 200
        failed = client.post(
            PATH,
            json={
                "prompt": "[sandbox:503] x",
                "model": "nano-banana-pro",
                "count": 1,
                "email": f"{name}@example.com",
            },
        )
        assert failed.status_code == 503
        listing = client.get("/v1/google-flow/accounts").json()
        assert listing[f"{name}@example.com"]["credits"] == {"credits": 2, "unlimited": False}
        assert (
            client.post(
                PATH, json={"prompt": "x", "model": "nano-banana-pro", "count": 1}
            ).status_code
            == 200
        )
        before = calls(gateway)
        poor = client.post(PATH, json={"prompt": "x", "model": "nano-banana-pro", "count": 1})
        assert calls(gateway) == before
        assert poor.status_code == 402
        assert "costs 2" in poor.json()["error"] and "balance is 0" in poor.json()["error"]
    task = httpx.post(
        f"{gateway.base_url}/api/v1/client/job/CreateTask",
        headers={"x-api-key": token},
        json={"model": "google/nano-banana-pro", "input": {"prompt": "x"}},
    )
    data = wait_task(gateway.base_url, token, task.json()["data"]["task_id"])
    assert data["status"] == "failed"
    raw = httpx.post(
        f"{gateway.base_url}/v1/images/generations",
        headers={"Authorization": f"Bearer {token}"},
        json={"prompt": "x", "model": "nano-banana-pro"},
    )
    assert raw.status_code == 402 and raw.json()["error"]["type"] == "insufficient_quota"
    assert gateway.cli("users", "credit", name, "+4").stdout.strip() == f"{name}: 4"
    assert gateway.cli("users", "credit", name, "=none").stdout.strip() == f"{name}: unlimited"
    bad = gateway.cli("users", "credit", name, "lots", check=False)
    assert bad.returncode == 1


def test_concurrent_requests_cannot_overdraw(gateway: Gateway) -> None:
    name, token = new_user(gateway)
    with gateway.client(token) as client:
        client.post(
            "/v1/google-flow/accounts",
            json={
                "email": f"{name}@example.com",
                "provider": "sandbox",
                "maxConcurrency": 20,
                "apiKey": f"sandbox-{name}",
            },
        )
    gateway.cli("users", "credit", name, "=5")
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        with gateway.client(token) as client:
            code = client.post(
                PATH, json={"prompt": "race", "model": "imagen-4", "count": 1}
            ).status_code
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 5 + [402] * 7
    balance = httpx.get(
        f"{gateway.base_url}/api/v1/client/account/balance", headers={"x-api-key": token}
    ).json()["data"]["balance"]
    assert balance == 0
