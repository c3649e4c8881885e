"""flowgate.client (Client, AsyncClient) against a real server and the sandbox upstream.

Each test makes its own user and sandbox account with its own sandbox API key, so the
sandbox's call log (``GET /sandbox/gemini/_sandbox/calls``, shared by the server) can be
read per test.
"""

from __future__ import annotations

import io
import sys
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from PIL import Image

from flowgate.batch.retry import RetryPolicy
from flowgate.client import (
    AccountCreate,
    AsyncClient,
    Client,
    FlowgateAPIError,
    FlowgateConnectionError,
    ImageRequest,
)
from flowgate.client.files import sniff_content_type
from tests.gateway import Gateway, free_port


def new_user(gw: Gateway) -> str:
    """A fresh user's token (``flowgate users create``; its stderr shown if it fails)."""
    created = gw.cli("users", "create", f"user-{uuid.uuid4().hex[:8]}", check=False)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def sandbox_user(gw: Gateway, **account: Any) -> tuple[str, str, str]:
    """A new user with one sandbox account; returns (token, email, sandbox key)."""
    token = new_user(gw)
    tag = uuid.uuid4().hex[:8]
    email, key = f"cl-{tag}@example.com", f"client-{tag}"
    with Client(gw.base_url, token) as client:
        saved = client.add_account(email, provider="sandbox", api_key=key, **account)
        assert saved.created
    return token, email, key


def sandbox_calls(gw: Gateway, key: str) -> list[dict[str, Any]]:
    every = httpx.get(f"{gw.base_url}/sandbox/gemini/_sandbox/calls").json()["calls"]
    return [c for c in every if c["key"] == key and c["method"] in ("generateContent", "predict")]


def png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(buf, "PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- accounts


def test_accounts_round_trip(gateway: Gateway) -> None:
    token = new_user(gateway)
    email = f"acct-{uuid.uuid4().hex[:8]}@example.com"
    with Client(gateway.base_url, token) as client:
        assert client.list_accounts() == {}
        saved = client.add_account(
            AccountCreate(email=email, provider="sandbox", max_concurrency=2, tier="free")
        )
        assert saved.created and saved.account.email == email
        assert saved.account.max_concurrency == 2 and saved.account.tier == "free"
        again = client.add_account(email, provider="sandbox", max_concurrency=3)
        assert not again.created and again.account.max_concurrency == 3

        listed = client.list_accounts()
        assert list(listed) == [email]
        assert listed[email].healthy and listed[email].provider == "sandbox"
        account = client.get_account(email)
        assert account.healthy and account.models and "gemini-3-pro-image-preview" in account.models

        assert client.delete_account(email).message == f"Google Flow account {email} deleted"
        with pytest.raises(FlowgateAPIError) as missing:
            client.get_account(email)
    assert missing.value.status == 404
    assert missing.value.error == f"Google Flow account {email} not found"
    assert missing.value.retry_after is None


def test_bad_token_and_unreachable_server(gateway: Gateway) -> None:
    with Client(gateway.base_url, "fg_wrong") as client, pytest.raises(FlowgateAPIError) as bad:
        client.list_accounts()
    assert (bad.value.status, bad.value.error, bad.value.body) == (
        401,
        "Unauthorized",
        {"error": "Unauthorized"},
    )
    assert str(bad.value) == "HTTP 401: Unauthorized"

    with (
        Client(f"http://127.0.0.1:{free_port()}", "x") as client,
        pytest.raises(FlowgateConnectionError),
    ):
        client.list_accounts()


def test_base_url_may_include_the_api_prefix(gateway: Gateway) -> None:
    token, email, _ = sandbox_user(gateway)
    with Client(f"{gateway.base_url}/v1/google-flow/", token) as client:
        assert email in client.list_accounts()


# ---------------------------------------------------------------- images and jobs


async def test_async_upload_generate_download_and_job(gateway: Gateway) -> None:
    token, email, key = sandbox_user(gateway)
    async with AsyncClient(gateway.base_url, token) as client:
        asset = await client.upload_asset(png(), email=email)
        assert asset.id.startswith("user:") and asset.email == email
        assert (asset.width, asset.height) == (96, 64)

        request = ImageRequest(
            prompt="the cat from @reference_3 on a sofa",
            model="nano-banana-2",
            count=2,
            seed=7,
            references={3: asset.id},  # numbers are kept, so the inline marker still matches
        )
        assert request.to_body()["reference_3"] == asset.id
        result = await client.generate_images(request)
        assert len(result.images) == 2
        assert [i.seed for i in result.images] == [7, 8]
        for image in result.images:
            download = await client.download(image.fife_url)
            assert download.content_type == "image/png"
            assert sniff_content_type(download.data) == "image/png"

        job = await client.get_job(result.job_id)
        assert job.status == "completed" and job.finished and job.type == "image"
        assert [i.media_generation_id for i in job.images] == [
            i.media_generation_id for i in result.images
        ]
        assert job.request["reference_3"]["referenceId"] == asset.id
        assert (await client.wait_for_job(result.job_id, interval=0.1)).jobid == result.job_id

        stats = await client.job_stats("history")
        assert result.job_id in stats.images["history"]
        assert stats.images["summary"][email]["completed"] == 1
    assert len(sandbox_calls(gateway, key)) == 2  # one generateContent per image


def test_sync_generate_with_a_plain_mapping_and_errors(gateway: Gateway) -> None:
    token, _email, _key = sandbox_user(gateway)
    with Client(gateway.base_url, token) as client:
        result = client.generate_images({"prompt": "a fox", "count": 1})
        assert len(result.images) == 1 and result.images[0].model_name_type == "IMAGEN_3_5"

        with pytest.raises(FlowgateAPIError) as invalid:
            client.generate_images(ImageRequest(prompt="x", count=9))
        assert invalid.value.status == 400
        assert isinstance(invalid.value.error, str) and "count" in invalid.value.error
        assert invalid.value.reason is None and invalid.value.job_id is None

        with pytest.raises(FlowgateAPIError) as unsafe:
            client.generate_images(ImageRequest(prompt="[sandbox:unsafe] x", count=1))
        assert unsafe.value.status == 400
        assert unsafe.value.reason == "PUBLIC_ERROR_UNSAFE_GENERATION"
        assert unsafe.value.job_id is not None
        failed = client.get_job(unsafe.value.job_id)
        assert failed.status == "failed" and failed.code == 400

        with pytest.raises(FlowgateAPIError) as gone:
            client.get_job("j1234567890123i-u1-email:nobody-bot:google-flow")
        assert gone.value.status in (403, 404)


def test_quota_429_then_no_eligible_account(gateway: Gateway) -> None:
    """The Google 429 passed through, then flowgate's own ``no_eligible_account``."""
    token, email, _ = sandbox_user(gateway)
    request = ImageRequest(prompt="[sandbox:429-daily] x", model="nano-banana-pro", count=1)
    with Client(gateway.base_url, token) as client:
        with pytest.raises(FlowgateAPIError) as google:
            client.generate_images(request)
        error = google.value
        assert error.status == 429 and isinstance(error.error, dict)
        assert error.error["status"] == "RESOURCE_EXHAUSTED"
        assert error.retry_after == 58.0  # the sandbox's RetryInfo for a daily quota
        assert error.retryable

        with pytest.raises(FlowgateAPIError) as busy:
            client.generate_images(ImageRequest(prompt="y", model="nano-banana-pro", count=1))
    refused = busy.value
    assert refused.status == 429 and refused.error == "no_eligible_account"
    assert refused.reason == "no_eligible_account"
    assert refused.headers["retry-after"].isdigit()
    assert refused.retry_after is not None and refused.retry_after > 0
    assert [(s.email, s.reason, s.model) for s in refused.skip_reasons] == [
        (email, "PUBLIC_ERROR_PER_MODEL_DAILY_QUOTA_REACHED", "nano-banana-pro")
    ]
    assert "daily quota" in refused.message


def test_upscale_image(gateway: Gateway) -> None:
    token, _email, _key = sandbox_user(gateway)
    with Client(gateway.base_url, token) as client:
        source = client.generate_images(
            ImageRequest(prompt="a lighthouse", model="nano-banana-2", count=1, aspect_ratio="1:1")
        ).images[0]
        result = client.upscale_image(source.media_generation_id, "2k")
        data = result.image_bytes()
        assert sniff_content_type(data) == "image/jpeg"
        assert Image.open(io.BytesIO(data)).size == (2048, 2048)
        assert result.upscaler and result.media_generation_id != source.media_generation_id

        with pytest.raises(FlowgateAPIError) as bad:
            client.upscale_image("not-an-id")
        assert bad.value.status == 400 and "mediaGenerationId" in str(bad.value.error)


def test_characters_and_webhook_secret(gateway: Gateway) -> None:
    token, _email, _ = sandbox_user(gateway)
    with Client(gateway.base_url, token) as client:
        image = client.upload_asset(png((1, 200, 3)))
        character = client.create_character("Ada", [image.id])
        assert character.character_id.startswith("character:")
        assert character.images == [image.id]
        assert [c.character_id for c in client.list_characters()] == [character.character_id]
        assert client.get_character(character.character_id).name == "Ada"
        result = client.generate_images(
            ImageRequest(prompt="Ada at the beach", characters=[character.character_id], count=1)
        )
        assert result.images[0].model_name_type == "NARWHAL"  # characters select nano-banana-2
        assert "deleted" in client.delete_character(character.character_id).message
        assert client.list_characters() == []

        secret = client.webhook_secret()
        assert secret.secret and secret.algorithm == "HMAC-SHA256" and secret.signature_header


def test_upload_refuses_bytes_that_are_no_image(gateway: Gateway) -> None:
    token, _, _ = sandbox_user(gateway)
    with Client(gateway.base_url, token) as client:
        with pytest.raises(Exception, match="not a PNG, JPEG or WebP"):
            client.upload_asset(b"GIF89a not really")
        # Forcing a type sends it anyway; the server's answer is the error.
        with pytest.raises(FlowgateAPIError) as refused:
            client.upload_asset(b"GIF89a not really", content_type="image/png")
    assert refused.value.status == 400


# ---------------------------------------------------------------- errors and retry policy (pure)


def test_retry_after_sources() -> None:
    now = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
    header = FlowgateAPIError(429, {"error": "busy"}, headers={"Retry-After": "7"}, now=now)
    assert header.retry_after == 7.0
    later = now + timedelta(seconds=90)
    http_date = FlowgateAPIError(
        503, "", headers={"retry-after": format_datetime(later, usegmt=True)}, now=now
    )
    assert http_date.retry_after == 90.0
    iso = FlowgateAPIError(
        429, {"error": "no_eligible_account", "retryAfter": "2026-05-19T12:01:00.000Z"}, now=now
    )
    assert iso.retry_after == 60.0
    google = {
        "error": {
            "code": 429,
            "message": "quota",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26.5s"},
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "R"},
            ],
        }
    }
    passed = FlowgateAPIError(429, google, now=now)
    assert passed.retry_after == 26.5 and passed.reason == "R"
    assert passed.message == "quota (R)"
    assert FlowgateAPIError(400, "<html>proxy</html>").message == "<html>proxy</html>"


def test_retry_policy_decisions() -> None:
    policy = RetryPolicy(max_retries=3, base_delay=1.0, max_delay=8.0, max_wait=100.0, jitter=0)
    throttled = FlowgateAPIError(429, {"error": "busy"}, headers={"Retry-After": "5"})
    assert policy.decide(throttled, 1).delay == 5.0  # the server's hint
    assert policy.decide(throttled, 3).delay == 5.0
    overloaded = FlowgateAPIError(503, {"error": {"code": 503, "message": "x"}})
    assert [policy.decide(overloaded, n).delay for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert policy.decide(overloaded, 4).delay is None  # max_retries reached
    for status in (400, 401, 402, 403, 404, 500):
        assert policy.decide(FlowgateAPIError(status, {"error": "x"}), 1).delay is None
    midnight = FlowgateAPIError(
        429, {"error": "no_eligible_account"}, headers={"Retry-After": "3600"}
    )
    decision = policy.decide(midnight, 1)
    assert decision.delay is None and "3600" in decision.why
    assert policy.decide(FlowgateConnectionError("refused"), 2).delay == 2.0
    assert policy.decide(ValueError("bug"), 1).delay is None


def test_client_imports_no_server_code() -> None:
    import subprocess

    code = (
        "import sys, flowgate.client, flowgate.batch; "
        "bad = [m for m in sys.modules if m.startswith(('flowgate.api', 'flowgate.services', "
        "'flowgate.storage', 'flowgate.runtime', 'flowgate.providers', 'flowgate.balancer'))]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_client_videos(gateway) -> None:
    from flowgate.client import Client, VideoRequest

    with Client(gateway.base_url, token=gateway.token) as client:
        result = client.generate_videos(VideoRequest(prompt="client clip", duration=4, count=1))
        (video,) = result.videos
        assert video.model == "veo_3_1_t2v"
        assert client.download(video.fife_url).content_type == "video/mp4"
        job = client.start_videos(VideoRequest(prompt="async clip", duration=4))
        assert job.status == "created"
        done = client.wait_for_job(job.jobid, timeout=60)
        assert done.status == "completed"
        gif = client.video_gif(video.media_generation_id)
        assert gif.encoded_gif
        joined = client.concatenate_videos(
            [
                {"mediaGenerationId": video.media_generation_id},
                {"mediaGenerationId": video.media_generation_id, "trimStart": 1},
            ]
        )
        assert joined.inputs_count == 2
        upscaled = client.upscale_video(video.media_generation_id)
        assert upscaled.videos[0].model == "veo_3_1_upsampler_1080p"
