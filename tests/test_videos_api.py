"""Videos through a real server, the sandbox's Veo and real ffmpeg."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid

import httpx
from PIL import Image

from flowgate.media.video import probe
from tests.gateway import Gateway, free_port
from tests.receiver import Receiver
from tests.test_images_api import png, upload
from tests.test_operations import start_standalone_sandbox

VIDEOS = "/v1/google-flow/videos"


def duration_of(data: bytes) -> float:
    return asyncio.run(probe(data)).duration_seconds


def user_with_sandbox(gw: Gateway, **extra: object) -> tuple[str, str]:
    token = gw.new_user()
    email = f"veo-{uuid.uuid4().hex[:6]}@example.com"
    with gw.client(token) as client:
        body = {"email": email, "provider": "sandbox", **extra}
        assert client.post("/v1/google-flow/accounts", json=body).status_code == 201
    return token, email


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/google-flow/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def make_video(client: httpx.Client, prompt: str = "clip", **extra: object) -> dict:
    resp = client.post(VIDEOS, json={"prompt": prompt, "duration": 4, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_sync_text_to_video_shape_and_files(gateway: Gateway) -> None:
    token, email = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        body = make_video(client, "a red kite", count=2, seed=5)
        assert body["jobId"].endswith("-bot:google-flow") and "v-u" in body["jobId"]
        assert len(body["operations"]) == 2
        seeds = []
        for op in body["operations"]:
            assert op["status"] == "MEDIA_GENERATION_STATUS_SUCCESSFUL"
            meta = op["operation"]["metadata"]
            assert meta["@type"] == "type.googleapis.com/google.internal.labs.aisandbox.v1.Media"
            video = meta["video"]
            assert video["model"] == "veo_3_1_t2v"
            assert video["aspectRatio"] == "VIDEO_ASPECT_RATIO_LANDSCAPE"
            assert video["mediaVisibility"] == "PRIVATE" and video["isLooped"] is False
            assert video["prompt"] == "a red kite"
            assert video["mediaGenerationId"] == op["mediaGenerationId"]
            assert f"-email:{email.encode().hex()}-video:" in video["mediaGenerationId"]
            seeds.append(video["seed"])
            mp4 = httpx.get(video["fifeUrl"])
            assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
            assert abs(duration_of(mp4.content) - 4) < 0.2
            thumb = Image.open(io.BytesIO(httpx.get(video["servingBaseUri"]).content))
            assert thumb.format == "JPEG" and thumb.width > thumb.height
        assert sorted(seeds) == [5, 6]
        job = client.get(f"/v1/google-flow/jobs/{body['jobId']}").json()
        assert job["status"] == "completed" and job["type"] == "video"
        assert job["request"]["duration"] == 4


def test_modes_set_the_output_model(gateway: Gateway) -> None:
    token, _ = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        a = upload(client, png(64, 36)).json()["mediaGenerationId"]["mediaGenerationId"]
        b = upload(client, png(64, 36, (0, 0, 255))).json()["mediaGenerationId"][
            "mediaGenerationId"
        ]
        cases = [
            ({"startImage": a}, "veo_3_1_i2v"),
            ({"startImage": a, "endImage": b}, "veo_3_1_i2v_fl"),
            ({"referenceImage_1": a, "duration": 8}, "veo_3_1_r2v"),
        ]
        for fields, model in cases:
            body = make_video(client, "mode", **{"duration": 4, **fields})
            assert body["operations"][0]["operation"]["metadata"]["video"]["model"] == model
        mixed = client.post(VIDEOS, json={"prompt": "x", "startImage": a, "referenceImage_1": b})
        assert mixed.status_code == 400
        portrait = make_video(client, "tall", aspectRatio="portrait")
        video = portrait["operations"][0]["operation"]["metadata"]["video"]
        assert video["aspectRatio"] == "VIDEO_ASPECT_RATIO_PORTRAIT"
        for body, word in (
            ({"prompt": "x", "model": "sora-2"}, "model"),
            ({"prompt": "x", "duration": 5}, "duration"),
            ({"prompt": "x", "aspectRatio": "square"}, "aspectRatio"),
            ({"duration": 4}, "prompt"),
        ):
            resp = client.post(VIDEOS, json=body)
            assert resp.status_code == 400 and word in resp.json()["error"], resp.text


def test_async_video_posts_every_webhook(gateway: Gateway) -> None:
    token, _ = user_with_sandbox(gateway)
    receiver = Receiver()
    receiver.start()
    try:
        with gateway.client(token) as client:
            resp = client.post(
                VIDEOS,
                json={
                    "prompt": "async",
                    "duration": 4,
                    "async": True,
                    "replyUrl": receiver.url,
                    "replyRef": "r-1",
                },
            )
            assert resp.status_code == 201, resp.text
            record = resp.json()
            assert record["status"] == "created" and record["type"] == "video"
            assert record["request"]["async"] is True
            assert [op["status"] for op in record["response"]["operations"]] == [
                "MEDIA_GENERATION_STATUS_PENDING"
            ]
            job = wait_job(client, record["jobid"])
            assert job["status"] == "completed"
        got = receiver.wait_for(3)
        assert [r.json["status"] for r in got] == ["created", "started", "completed"]
        assert got[2].json["request"]["replyRef"] == "r-1"
    finally:
        receiver.stop()


def test_upstream_failures(gateway: Gateway) -> None:
    token, email = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        down = client.post(
            VIDEOS, json={"prompt": "[sandbox:503] x", "duration": 4, "email": email}
        )
        assert down.status_code == 503
        assert (
            client.get(f"/v1/google-flow/jobs/{down.json()['jobId']}").json()["status"] == "failed"
        )
        failed = client.post(VIDEOS, json={"prompt": "[sandbox:video-fail] x", "duration": 4})
        assert failed.status_code >= 400
        job = client.get(f"/v1/google-flow/jobs/{failed.json()['jobId']}").json()
        assert job["status"] == "failed"
        assert job["response"]["operations"][0]["status"] == "MEDIA_GENERATION_STATUS_FAILED"


def test_deleting_the_account_of_a_running_video_fails_it_with_409(gateway: Gateway) -> None:
    """The user's own doing, not flowgate's: the job ends 409 with what to do, not 500."""
    token, email = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        started = client.post(
            VIDEOS,
            json={"prompt": "[sandbox:video-seconds=30] orphan", "duration": 4, "async": True},
        )
        assert started.status_code == 201, started.text
        job_id = started.json()["jobid"]
        deadline = time.monotonic() + 30
        # "started" once the upstream has accepted it (flowgate polls its operations).
        while client.get(f"/v1/google-flow/jobs/{job_id}").json()["status"] != "started":
            assert time.monotonic() < deadline, "the upstream never accepted the job"
            time.sleep(0.1)
        assert client.delete(f"/v1/google-flow/accounts/{email}").status_code == 200
        job = wait_job(client, job_id)
    assert job["status"] == "failed"
    assert (job["code"], job["error"]) == (409, "API error: 409"), job
    assert "deleted while it ran; send the job again" in job["response"]["error"]


def test_sync_polling_timeout_is_408_and_the_job_goes_on(gateway_factory) -> None:
    gw = gateway_factory("sqlite", FLOWGATE_VIDEO_SYNC_TIMEOUT_SECONDS="0.5")
    gw.start()
    with gw.client() as client:
        resp = client.post(VIDEOS, json={"prompt": "[sandbox:video-seconds=2] slow", "duration": 4})
        assert resp.status_code == 408
        assert resp.json()["error"] == "Polling timeout"
        assert wait_job(client, resp.json()["jobId"])["status"] == "completed"


def test_kill_9_resumes_polling_after_restart(gateway_factory) -> None:
    port = free_port()
    sandbox = start_standalone_sandbox(port)
    gw = gateway_factory("sqlite")
    gw.start()
    try:
        token, _ = user_with_sandbox(
            gw, apiKey="sandbox-standalone", baseUrl=f"http://127.0.0.1:{port}"
        )
        with gw.client(token) as client:
            resp = client.post(
                VIDEOS,
                json={"prompt": "[sandbox:video-seconds=3] survive", "duration": 4, "async": True},
            )
            assert resp.status_code == 201
            job_id = resp.json()["jobid"]
        gw.stop(kill=True)
        gw.start()
        with gw.client(token) as client:
            job = wait_job(client, job_id)
            assert job["status"] == "completed", job
            url = job["response"]["operations"][0]["operation"]["metadata"]["video"]["fifeUrl"]
            assert httpx.get(url).status_code == 200
            # Now lose the upstream's memory too: the next job cannot be resumed.
            resp = client.post(
                VIDEOS,
                json={"prompt": "[sandbox:video-seconds=30] lost", "duration": 4, "async": True},
            )
            job_id = resp.json()["jobid"]
        gw.stop(kill=True)
        sandbox.kill()
        sandbox.wait()
        sandbox = start_standalone_sandbox(port)
        gw.start()
        with gw.client(token) as client:
            job = wait_job(client, job_id)
            assert job["status"] == "failed"
            error = job["response"]["operations"][0]["operation"]["error"]
            assert "no longer knows" in error["message"]
    finally:
        sandbox.kill()


def test_extend_concatenate_gif(gateway: Gateway) -> None:
    token, _ = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        first = make_video(client, "one")["operations"][0]["mediaGenerationId"]
        extended = client.post(
            "/v1/google-flow/videos/extend", json={"mediaGenerationId": first, "prompt": "and then"}
        )
        assert extended.status_code == 200, extended.text
        second_op = extended.json()["operations"][0]
        second = second_op["mediaGenerationId"]
        assert second != first
        # Veo's extension returns the source followed by the new segment.
        second_seconds = duration_of(
            httpx.get(second_op["operation"]["metadata"]["video"]["fifeUrl"]).content
        )
        assert second_seconds > 4.5
        joined = client.post(
            "/v1/google-flow/videos/concatenate",
            json={
                "media": [
                    {"mediaGenerationId": first, "trimEnd": 1.0},
                    {"mediaGenerationId": second, "trimStart": 1.0, "trimEnd": 0.5},
                ]
            },
        )
        assert joined.status_code == 200, joined.text
        body = joined.json()
        assert body["status"] == "MEDIA_GENERATION_STATUS_SUCCESSFUL" and body["inputsCount"] == 2
        expected = (4 - 1.0) + (second_seconds - 1.5)
        assert abs(duration_of(base64.b64decode(body["encodedVideo"])) - expected) < 0.2
        gif = client.post("/v1/google-flow/videos/gif", json={"mediaGenerationId": first})
        assert gif.status_code == 200
        image = Image.open(io.BytesIO(base64.b64decode(gif.json()["encodedGif"])))
        assert image.format == "GIF" and getattr(image, "n_frames", 1) > 1
        picture = upload(client, png()).json()["mediaGenerationId"]["mediaGenerationId"]
        wrong = client.post("/v1/google-flow/videos/gif", json={"mediaGenerationId": picture})
        assert wrong.status_code == 400
        assert wrong.json() == {"error": "mediaGenerationId type must be 'video', got 'image'"}
        assert client.post("/v1/google-flow/videos/gif", json={}).json() == {
            "error": "mediaGenerationId is required"
        }
        tall = make_video(client, "tall", aspectRatio="portrait")["operations"][0][
            "mediaGenerationId"
        ]
        mixed = client.post(
            "/v1/google-flow/videos/concatenate",
            json={"media": [{"mediaGenerationId": first}, {"mediaGenerationId": tall}]},
        )
        assert mixed.status_code == 400 and "aspect ratio" in mixed.json()["error"]
        one = client.post(
            "/v1/google-flow/videos/concatenate", json={"media": [{"mediaGenerationId": first}]}
        )
        assert one.status_code == 400
        trim = client.post(
            "/v1/google-flow/videos/concatenate",
            json={
                "media": [
                    {"mediaGenerationId": first, "trimStart": 9},
                    {"mediaGenerationId": second},
                ]
            },
        )
        assert trim.status_code == 400 and "trimStart" in trim.json()["error"]


def test_extend_refuses_expired_sources(gateway_factory) -> None:
    gw = gateway_factory("sqlite", FLOWGATE_VIDEO_UPSTREAM_RETENTION_HOURS="0.0001")
    gw.start()
    with gw.client() as client:
        source = make_video(client)["operations"][0]["mediaGenerationId"]
        time.sleep(0.5)
        resp = client.post(
            "/v1/google-flow/videos/extend", json={"mediaGenerationId": source, "prompt": "more"}
        )
        assert resp.status_code == 400
        assert "expired" in resp.json()["error"]


def test_video_upscale_and_cached_repeat(gateway: Gateway) -> None:
    token, _ = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        source = make_video(client, "small")["operations"][0]["mediaGenerationId"]
        resp = client.post("/v1/google-flow/videos/upscale", json={"mediaGenerationId": source})
        assert resp.status_code == 200, resp.text
        op = resp.json()["operations"][0]
        assert op["operation"]["metadata"]["video"]["model"] == "veo_3_1_upsampler_1080p"
        assert resp.json()["upscaler"] == "ffmpeg-lanczos"
        data = httpx.get(op["operation"]["metadata"]["video"]["fifeUrl"]).content
        info = asyncio.run(probe(data))
        assert info.height == 1080
        again = client.post(
            "/v1/google-flow/videos/upscale",
            json={"mediaGenerationId": source, "resolution": "1080p"},
        )
        assert again.status_code == 200
        raw = base64.b64decode(again.json()["operations"][0]["rawBytes"])
        assert raw == data
        bad = client.post(
            "/v1/google-flow/videos/upscale", json={"mediaGenerationId": source, "resolution": "8k"}
        )
        assert bad.status_code == 400


def test_model_map_admits_a_newer_video_model(gateway: Gateway) -> None:
    token, _ = user_with_sandbox(gateway, modelMap={"veo-next": "veo-3.1-lite-generate-preview"})
    with gateway.client(token) as client:
        body = make_video(client, "new model", model="veo-next")
        assert body["operations"][0]["status"] == "MEDIA_GENERATION_STATUS_SUCCESSFUL"
        job = client.get(f"/v1/google-flow/jobs/{body['jobId']}").json()
        assert job["request"]["model"] == "veo-next"
        calls = httpx.get(f"{gateway.base_url}/sandbox/gemini/_sandbox/calls").json()["calls"]
        assert any(c["model"] == "veo-3.1-lite-generate-preview" for c in calls)
        unknown = client.post(VIDEOS, json={"prompt": "x", "model": "veo-unmapped"})
        assert unknown.status_code == 400
        assert "veo-3.1-fast" in unknown.json()["error"] and "modelMap" in unknown.json()["error"]
