"""POST /images/upscale through a real server and the sandbox upstream (contract §5 C2).

Each test gives its accounts their own sandbox API key, so the sandbox's call log
(``GET /sandbox/gemini/_sandbox/calls``, shared by the whole server) can be read per
test: the key says which account made a call, the model and method what it was.
"""

from __future__ import annotations

import base64
import io
import threading
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image

from flowgate.domain.upscale_request import upscaled_size, upstream_aspect_ratio
from flowgate.media.images import lanczos_jpeg
from tests.gateway import Gateway

UPSCALE = "/v1/google-flow/images/upscale"
PRO = "gemini-3-pro-image-preview"


def new_user(gw: Gateway, *accounts: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """A user with sandbox accounts; each gets a unique email and API key (for the call log)."""
    token = gw.new_user()
    made = []
    with gw.client(token) as client:
        for extra in accounts or ({},):
            tag = uuid.uuid4().hex[:8]
            body = {
                "email": f"up-{tag}@example.com",
                "provider": "sandbox",
                "apiKey": f"upscale-{tag}",
                **extra,
            }
            resp = client.post("/v1/google-flow/accounts", json=body)
            assert resp.status_code == 201, resp.text
            made.append(body)
    return token, made


def generate(
    client: httpx.Client, email: str, *, model: str = "nano-banana-2", ratio: str = "16:9"
) -> tuple[str, str]:
    """One image made on ``email``; returns (jobId, mediaGenerationId)."""
    resp = client.post(
        "/v1/google-flow/images",
        json={
            "prompt": "a lighthouse",
            "model": model,
            "count": 1,
            "aspectRatio": ratio,
            "email": email,
            "seed": 5,
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return body["jobId"], body["media"][0]["image"]["generatedImage"]["mediaGenerationId"]


def calls(gw: Gateway, key: str) -> list[dict[str, Any]]:
    """The sandbox calls made with ``key`` that generate images."""
    every = httpx.get(f"{gw.base_url}/sandbox/gemini/_sandbox/calls").json()["calls"]
    return [c for c in every if c["key"] == key and c["method"] == "generateContent"]


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_size(body: dict[str, Any]) -> tuple[int, int]:
    """Decode ``encodedImage``: it must be a JPEG; return its size."""
    data = base64.b64decode(body["encodedImage"], validate=True)
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    image.load()
    return image.size


# ---------------------------------------------------------------- upstream path and cache


def test_upscale_on_origin_account_then_cached(gateway: Gateway) -> None:
    token, (account,) = new_user(gateway)
    key = account["apiKey"]
    with gateway.client(token) as client:
        job_id, mgid = generate(client, account["email"])
        before = len(calls(gateway, key))

        resp = client.post(UPSCALE, json={"mediaGenerationId": mgid, "captchaRetry": 3})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"encodedImage", "upscaler", "mediaGenerationId"}
        assert body["upscaler"] == "nano-banana-pro"
        assert jpeg_size(body) == (2048, 1152)  # default 2k, 16:9 kept
        made = calls(gateway, key)[before:]
        assert [(c["model"], c["status"]) for c in made] == [(PRO, 200)]
        upscaled_id = body["mediaGenerationId"]
        assert upscaled_id != mgid and f"-email:{account['email'].encode().hex()}-" in upscaled_id

        # The same image and resolution again: the stored result, no upstream call.
        again = client.post(UPSCALE, json={"mediaGenerationId": mgid, "resolution": "2K"})
        assert again.status_code == 200, again.text
        assert again.json() == body
        # Upscaling the 2k result to 2k is the same request about the original.
        of_result = client.post(UPSCALE, json={"mediaGenerationId": upscaled_id})
        assert of_result.json() == body
        assert len(calls(gateway, key)) == before + 1

        four = client.post(UPSCALE, json={"mediaGenerationId": upscaled_id, "resolution": "4k"})
        assert four.status_code == 200, four.text
        assert four.json()["upscaler"] == "nano-banana-pro"
        assert jpeg_size(four.json()) == (4096, 2304)
        assert len(calls(gateway, key)) == before + 2

        # Both results are listed on the original image's job, with working links.
        job = client.get(f"/v1/google-flow/jobs/{job_id}").json()
        assert job["status"] == "completed"
        listed = {u["resolution"]: u for u in job["response"]["upscales"]}
        assert set(listed) == {"2k", "4k"}
        assert listed["2k"]["mediaGenerationId"] == upscaled_id
        assert listed["4k"]["mediaGenerationId"] == four.json()["mediaGenerationId"]
        assert (listed["4k"]["width"], listed["4k"]["height"]) == (4096, 2304)
        assert listed["2k"]["upscaler"] == "nano-banana-pro"
        download = httpx.get(listed["2k"]["fifeUrl"])
        assert download.status_code == 200
        assert download.content == base64.b64decode(body["encodedImage"])

        # Each upstream upscale is a job event of the account (as on POST /images).
        stats = client.get("/v1/google-flow/jobs", params={"options": "history"}).json()
        summary = stats["images"]["summary"][account["email"]]
        assert summary["completed"] == 3  # the generation and two upscales
        assert summary["executing"] == 0
        assert len(stats["images"]["history"]) == 3
        # The upscale jobs are records of their own (operation upscale; no jobId in answers).
        upscale_jobs = [key for key in stats["images"]["history"] if key != job_id]
        assert len(upscale_jobs) == 2
        for upscale_job in upscale_jobs:
            record = client.get(f"/v1/google-flow/jobs/{upscale_job}").json()
            assert record["status"] == "completed" and record["type"] == "image"
            assert record["request"]["model"] == "nano-banana-pro"
            result = record["response"]["upscale"]
            assert result["sourceMediaGenerationId"] == mgid
            assert (
                result["mediaGenerationId"]
                == listed[record["request"]["resolution"]]["mediaGenerationId"]
            )
            assert httpx.get(result["fifeUrl"]).status_code == 200


def test_upscale_portrait_and_multipart(gateway: Gateway) -> None:
    token, (account,) = new_user(gateway)
    with gateway.client(token) as client:
        _, mgid = generate(client, account["email"], model="nano-banana-pro", ratio="3:4")
        resp = client.post(
            UPSCALE, files={"mediaGenerationId": (None, mgid), "resolution": (None, "4k")}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["upscaler"] == "nano-banana-pro"
        assert jpeg_size(resp.json()) == (3072, 4096)


def test_identical_requests_at_once_make_one_upstream_call(gateway: Gateway) -> None:
    token, (account,) = new_user(gateway)
    key = account["apiKey"]
    with gateway.client(token) as client:
        _, mgid = generate(client, account["email"])
    before = len(calls(gateway, key))
    answers: list[httpx.Response] = []

    def post() -> None:
        with gateway.client(token) as client:
            answers.append(client.post(UPSCALE, json={"mediaGenerationId": mgid}))

    threads = [threading.Thread(target=post) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len({a.json()["mediaGenerationId"] for a in answers}) == 1
    assert len(calls(gateway, key)) == before + 1


# ---------------------------------------------------------------- request rules


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"mediaGenerationId": "nope"}, "mediaGenerationId must be"),
        ({"mediaGenerationId": "user:1-email:-video:abc"}, "type must be 'image'"),
        ({"mediaGenerationId": 12}, "mediaGenerationId must be a string"),
        ({"mediaGenerationId": "user:1-email:-image:abc", "resolution": "8k"}, "2k or 4k"),
        ({"mediaGenerationId": "user:1-email:-image:abc", "resolution": 2}, "resolution"),
        (
            {
                "mediaGenerationId": "user:1-email:-image:abc",
                "captchaRetry": 3,
                "captchaToken": "t",
            },
            "mutually exclusive",
        ),
        ({"mediaGenerationId": "user:1-email:-image:abc", "captchaRetry": 0}, "captchaRetry"),
        ({"mediaGenerationId": "user:1-email:-image:abc", "email": "a@b.c"}, "picks the account"),
        ({"mediaGenerationId": "user:1-email:-image:abc", "scale": 2}, "Unknown parameter"),
    ],
)
def test_upscale_request_rules(gateway: Gateway, body: dict[str, object], word: str) -> None:
    with gateway.client() as client:
        resp = client.post(UPSCALE, json=body)
    assert resp.status_code == 400, resp.text
    assert word in resp.json()["error"], resp.json()


def test_missing_id_unknown_and_foreign_images(gateway: Gateway) -> None:
    owner, (account,) = new_user(gateway)
    other, _ = new_user(gateway)
    with gateway.client(owner) as client:
        for body in ({}, {"mediaGenerationId": ""}, {"mediaGenerationId": None}):
            resp = client.post(UPSCALE, json=body)
            assert resp.status_code == 400
            assert resp.json() == {"error": "mediaGenerationId is required"}
        form = client.post(UPSCALE, data={"resolution": "2k"})
        assert form.json() == {"error": "mediaGenerationId is required"}
        _, mgid = generate(client, account["email"])
        unknown = mgid.rsplit(":", 1)[0] + ":" + uuid.uuid4().hex
        resp = client.post(UPSCALE, json={"mediaGenerationId": unknown})
        assert resp.status_code == 404
        assert "not found" in resp.json()["error"]
    with gateway.client(other) as client:
        resp = client.post(UPSCALE, json={"mediaGenerationId": mgid})
        assert resp.status_code == 404
        assert "not found" in resp.json()["error"]
        # The owner's internal id under the other user's own user id is still not theirs.
        own = client.post(
            "/v1/google-flow/assets", content=png(), headers={"Content-Type": "image/png"}
        ).json()["mediaGenerationId"]["mediaGenerationId"]
        forged = own.split("-email:")[0] + "-email:" + mgid.split("-email:")[1]
        resp = client.post(UPSCALE, json={"mediaGenerationId": forged})
        assert resp.status_code == 404


def test_only_nano_banana_outputs_can_be_upscaled(gateway: Gateway) -> None:
    token, (account,) = new_user(gateway)
    key = account["apiKey"]
    with gateway.client(token) as client:
        _, imagen = generate(client, account["email"], model="imagen-4")
        asset = client.post(
            "/v1/google-flow/assets", content=png(), headers={"Content-Type": "image/png"}
        ).json()["mediaGenerationId"]["mediaGenerationId"]
        before = len(calls(gateway, key))
        for mgid, what in ((imagen, "imagen-4"), (asset, "uploaded asset")):
            resp = client.post(UPSCALE, json={"mediaGenerationId": mgid})
            assert resp.status_code == 400, resp.text
            error = resp.json()["error"]
            assert "Only images made by nano-banana-2 and nano-banana-pro" in error
            assert what in error
        assert len(calls(gateway, key)) == before


# ---------------------------------------------------------------- tier and local upscaling


def test_4k_needs_a_paid_account(gateway: Gateway) -> None:
    token, (free,) = new_user(gateway, {"tier": "free"})
    with gateway.client(token) as client:
        _, mgid = generate(client, free["email"])
        refused = client.post(UPSCALE, json={"mediaGenerationId": mgid, "resolution": "4k"})
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert "4k upscales need a paid account" in error and free["email"] in error
        allowed = client.post(UPSCALE, json={"mediaGenerationId": mgid, "resolution": "2k"})
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["upscaler"] == "nano-banana-pro"


def test_account_set_to_local_upscales_with_lanczos(gateway: Gateway) -> None:
    token, (local,) = new_user(gateway, {"upscale": "local"})
    key = local["apiKey"]
    with gateway.client(token) as client:
        job_id, mgid = generate(client, local["email"], ratio="9:16")
        before = len(calls(gateway, key))
        for resolution, size in (("2k", (1152, 2048)), ("4k", (2304, 4096))):
            resp = client.post(UPSCALE, json={"mediaGenerationId": mgid, "resolution": resolution})
            assert resp.status_code == 200, resp.text
            assert resp.json()["upscaler"] == "lanczos"
            assert jpeg_size(resp.json()) == size
        assert len(calls(gateway, key)) == before
        upscales = client.get(f"/v1/google-flow/jobs/{job_id}").json()["response"]["upscales"]
        assert [(u["resolution"], u["upscaler"]) for u in upscales] == [
            ("2k", "lanczos"),
            ("4k", "lanczos"),
        ]
        # A local upscale is no upstream attempt: no job event beyond the generation.
        summary = client.get("/v1/google-flow/jobs").json()["images"]["summary"]
        assert summary[local["email"]]["completed"] == 1


def test_quarantined_origin_goes_to_another_account_or_local(gateway: Gateway) -> None:
    token, (first, second) = new_user(gateway, {}, {})
    with gateway.client(token) as client:
        _, mgid = generate(client, first["email"])
        # A daily-quota 429 on nano-banana-pro quarantines that model on the first account.
        limited = client.post(
            "/v1/google-flow/images",
            json={
                "prompt": "[sandbox:429-daily] x",
                "model": "nano-banana-pro",
                "count": 1,
                "email": first["email"],
            },
        )
        assert limited.status_code == 429
        quarantine = client.get("/v1/google-flow/jobs").json()["quarantine"]
        assert [q["model"] for q in quarantine[first["email"]]] == ["nano-banana-pro"]
        first_before = len(calls(gateway, first["apiKey"]))
        second_before = len(calls(gateway, second["apiKey"]))

        # The origin is not eligible: the balancer's other account re-renders it.
        moved = client.post(UPSCALE, json={"mediaGenerationId": mgid})
        assert moved.status_code == 200, moved.text
        assert moved.json()["upscaler"] == "nano-banana-pro"
        assert f"-email:{second['email'].encode().hex()}-" in moved.json()["mediaGenerationId"]
        assert len(calls(gateway, first["apiKey"])) == first_before
        assert [c["model"] for c in calls(gateway, second["apiKey"])[second_before:]] == [PRO]

        # The second account sets local upscaling: nobody is eligible upstream now.
        set_local = client.post(
            "/v1/google-flow/accounts",
            json={
                "email": second["email"],
                "provider": "sandbox",
                "apiKey": second["apiKey"],
                "upscale": "local",
            },
        )
        assert set_local.status_code == 200, set_local.text
        local = client.post(UPSCALE, json={"mediaGenerationId": mgid, "resolution": "4k"})
        assert local.status_code == 200, local.text
        assert local.json()["upscaler"] == "lanczos"
        assert jpeg_size(local.json()) == (4096, 2304)
        assert len(calls(gateway, first["apiKey"])) == first_before
        assert len(calls(gateway, second["apiKey"])) == second_before + 1


def test_account_without_nano_banana_pro_upscales_locally(gateway: Gateway) -> None:
    # modelMap points nano-banana-pro at a model the key cannot use (not in its model list,
    # as with a retired model id): the balancer skips the account for nano-banana-pro.
    token, (account,) = new_user(gateway, {"modelMap": {"nano-banana-pro": "gemini-2-retired"}})
    key = account["apiKey"]
    with gateway.client(token) as client:
        _, mgid = generate(client, account["email"], ratio="1:1")
        before = len(calls(gateway, key))
        resp = client.post(UPSCALE, json={"mediaGenerationId": mgid})
        assert resp.status_code == 200, resp.text
        assert resp.json()["upscaler"] == "lanczos"
        assert jpeg_size(resp.json()) == (2048, 2048)
        assert len(calls(gateway, key)) == before


# ---------------------------------------------------------------- upstream errors


def test_upstream_error_passes_through_and_counts(gateway: Gateway) -> None:
    # nano-banana-pro mapped to Gemini 2.5 Flash Image, which renders 1K only: the sandbox
    # refuses imageSize 2K like Google, and the error reaches the client as it came.
    token, (account,) = new_user(
        gateway, {"modelMap": {"nano-banana-pro": "gemini-2.5-flash-image"}}
    )
    key = account["apiKey"]
    with gateway.client(token) as client:
        _, mgid = generate(client, account["email"])
        before = len(calls(gateway, key))
        resp = client.post(UPSCALE, json={"mediaGenerationId": mgid})
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT"
        assert "image_size" in error["message"]
        assert "jobId" not in resp.json()
        made = calls(gateway, key)[before:]
        assert [(c["model"], c["status"]) for c in made] == [("gemini-2.5-flash-image", 400)]
        stats = client.get("/v1/google-flow/jobs", params={"options": "history"}).json()
        summary = stats["images"]["summary"][account["email"]]
        assert (summary["completed"], summary["failed"], summary["executing"]) == (1, 1, 0)
        failed = [h for h in stats["images"]["history"].values() if h["httpStatus"] == 400]
        assert len(failed) == 1
        # Nothing was stored: the next request calls upstream again.
        again = client.post(UPSCALE, json={"mediaGenerationId": mgid})
        assert again.status_code == 400
        assert len(calls(gateway, key)) == before + 2


# ---------------------------------------------------------------- geometry (pure functions)


def test_upscaled_size_and_upstream_ratio() -> None:
    assert upscaled_size(1024, 576, 2048) == (2048, 1152)
    assert upscaled_size(576, 1024, 4096) == (2304, 4096)
    assert upscaled_size(1024, 682, 2048) == (2048, 1364)
    assert upscaled_size(1024, 1024, 4096) == (4096, 4096)
    assert upstream_aspect_ratio(1376, 768) == "16:9"  # Google's own 16:9 at 1K
    assert upstream_aspect_ratio(1024, 682) == "3:2"
    assert upstream_aspect_ratio(768, 1024) == "3:4"
    assert upstream_aspect_ratio(1000, 333) is None  # 3:1 matches nothing: follow the image


def test_lanczos_jpeg_crops_instead_of_stretching() -> None:
    # Three vertical bands; fitting to a square keeps the middle band only.
    source = Image.new("RGB", (300, 100), (255, 0, 0))
    source.paste((0, 255, 0), (100, 0, 200, 100))
    source.paste((0, 0, 255), (200, 0, 300, 100))
    buf = io.BytesIO()
    source.save(buf, "PNG")
    out = Image.open(io.BytesIO(lanczos_jpeg(buf.getvalue(), 400, 400)))
    assert out.format == "JPEG" and out.size == (400, 400)
    for x in (10, 200, 390):
        red, green, blue = out.getpixel((x, 200))  # type: ignore[misc]
        assert green > 200 and red < 60 and blue < 60
    same_ratio = Image.open(io.BytesIO(lanczos_jpeg(buf.getvalue(), 1200, 400)))
    assert same_ratio.size == (1200, 400)
    assert same_ratio.getpixel((50, 200))[0] > 200  # type: ignore[index]
    with pytest.raises(ValueError):
        lanczos_jpeg(b"not an image", 10, 10)
