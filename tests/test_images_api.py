"""Assets, POST /images, characters and jobs through a real server and the sandbox upstream."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import struct
import threading
import time
import uuid
import zlib
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from tests.gateway import Gateway

SANDBOX = "sandbox@flowgate.local"


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def encoded(fmt: str, width: int = 40, height: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, fmt)
    return buf.getvalue()


def bomb_png() -> bytes:
    """A tiny PNG whose header claims 100000 x 100000 pixels."""
    raw = png(1, 1)
    ihdr_data = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr_data
    ihdr = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return raw[:8] + ihdr + raw[33:]


def user_with_sandbox(gw: Gateway, accounts: int = 1) -> tuple[str, list[str]]:
    token = gw.new_user()
    emails = [f"sb{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(accounts)]
    with gw.client(token) as client:
        for email in emails:
            resp = client.post(
                "/v1/google-flow/accounts", json={"email": email, "provider": "sandbox"}
            )
            assert resp.status_code == 201, resp.text
    return token, emails


def upload(
    client: httpx.Client, data: bytes, mime: str = "image/png", email: str | None = None
) -> httpx.Response:
    path = "/v1/google-flow/assets" + (f"/{quote(email)}" if email else "")
    return client.post(path, content=data, headers={"Content-Type": mime})


# ---------------------------------------------------------------- assets


def test_upload_png_jpeg_webp(gateway: Gateway) -> None:
    token, (email,) = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        for fmt, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
            resp = upload(client, encoded(fmt, 40, 30), mime)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert (body["width"], body["height"]) == (40, 30)
            assert body["email"] == email
            mgid = body["mediaGenerationId"]["mediaGenerationId"]
            assert mgid.startswith("user:") and f"-email:{email.encode().hex()}-image:" in mgid
        explicit = upload(client, png(), email=email)
        assert explicit.status_code == 200
        assert explicit.json()["email"] == email
        missing = upload(client, png(), email="nobody@example.com")
        assert missing.status_code == 404
        assert missing.json() == {"error": "Google Flow account nobody@example.com not found"}


def test_upload_rejections(gateway: Gateway) -> None:
    with gateway.client() as client:
        too_big = upload(client, b"\x89PNG" + b"0" * 20_971_520)
        assert too_big.status_code == 400
        assert too_big.json()["error"].startswith("File size (")
        assert too_big.json()["error"].endswith("is over 20971520 bytes")
        cases = [
            (b"", "image/png", "Empty"),
            (png(), "image/gif", "image/png"),
            (encoded("JPEG"), "image/png", "JPEG"),
            (png()[:60], "image/png", ""),
            (b"hello world, not an image", "image/png", ""),
            (bomb_png(), "image/png", "bomb"),
        ]
        for data, mime, word in cases:
            resp = upload(client, data, mime)
            assert resp.status_code == 400, (mime, resp.text)
            assert word.lower() in resp.json()["error"].lower(), resp.json()
        # The server is still fine.
        assert upload(client, png()).status_code == 200


# ---------------------------------------------------------------- images


def test_nano_banana_generation_shape_and_download(gateway: Gateway) -> None:
    token, (email,) = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        ref = upload(client, png(60, 80)).json()["mediaGenerationId"]["mediaGenerationId"]
        resp = client.post(
            "/v1/google-flow/images",
            json={
                "prompt": "a red fox @reference_1",
                "model": "nano-banana",
                "count": 2,
                "seed": 41,
                "aspectRatio": "landscape",
                "reference_1": ref,
                "captchaRetry": 3,
            },
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["jobId"].endswith("-bot:google-flow") and "i-u" in body["jobId"]
        assert len(body["media"]) == 2
        seeds = []
        for item in body["media"]:
            gen = item["image"]["generatedImage"]
            assert item["name"] and item["workflowId"] == gen["workflowId"]
            assert gen["mediaVisibility"] == "PRIVATE"
            assert gen["prompt"] == "a red fox @reference_1"
            assert gen["aspectRatio"] == "IMAGE_ASPECT_RATIO_LANDSCAPE"
            assert gen["modelNameType"] == "NARWHAL"
            assert gen["mediaGenerationId"].endswith(f"-image:{item['name']}")
            inputs = gen["requestData"]["imageGenerationRequestData"]["imageGenerationImageInputs"]
            assert inputs == [
                {"mediaGenerationId": ref, "imageInputType": "IMAGE_INPUT_TYPE_REFERENCE"}
            ]
            assert gen["requestData"]["promptInputs"] == [{"textInput": "a red fox @reference_1"}]
            seeds.append(gen["seed"])
            picture = httpx.get(gen["fifeUrl"])
            assert picture.status_code == 200
            image = Image.open(io.BytesIO(picture.content))
            assert image.width > image.height  # 16:9
            assert "captcha" not in body
        assert sorted(seeds) == [41, 42]
        # Same seed, same prompt: the sandbox draws the same bytes, and flowgate keeps both.
        job = client.get(f"/v1/google-flow/jobs/{body['jobId']}").json()
        assert job["status"] == "completed"
        assert job["type"] == "image"
        assert job["request"]["model"] == "nano-banana-2"
        assert job["request"]["reference_1"]["referenceId"] == ref
        assert job["request"]["reference_1"]["type"] == "image"
        assert job["response"]["media"][0]["name"] == body["media"][0]["name"]
        assert job["request"]["email"] == email[:2] + "***@example.com"
        assert "captchaRetry" not in job["request"]


def test_imagen_default_and_auto_ratio(gateway: Gateway) -> None:
    token, _ = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        resp = client.post("/v1/google-flow/images", json={"prompt": "lighthouse", "count": 3})
        assert resp.status_code == 200, resp.text
        media = resp.json()["media"]
        assert len(media) == 3
        assert {m["image"]["generatedImage"]["modelNameType"] for m in media} == {"IMAGEN_3_5"}
        portrait = upload(client, png(300, 400)).json()["mediaGenerationId"]["mediaGenerationId"]
        auto = client.post(
            "/v1/google-flow/images",
            json={"prompt": "same framing", "reference_1": portrait, "count": 1},
        )
        assert auto.status_code == 200, auto.text
        gen = auto.json()["media"][0]["image"]["generatedImage"]
        assert gen["aspectRatio"] == "IMAGE_ASPECT_RATIO_PORTRAIT_THREE_FOUR"
        image = Image.open(io.BytesIO(httpx.get(gen["fifeUrl"]).content))
        assert image.height > image.width
        # Generated images are references too.
        again = client.post(
            "/v1/google-flow/images",
            json={
                "prompt": "variation",
                "reference_1": gen["mediaGenerationId"],
                "count": 1,
                "model": "nano-banana-pro",
                "aspectRatio": "1:1",
            },
        )
        assert again.status_code == 200, again.text
        assert again.json()["media"][0]["image"]["generatedImage"]["modelNameType"] == "GEM_PIX_2"


def test_multipart_and_urlencoded_images(gateway: Gateway) -> None:
    token, _ = user_with_sandbox(gateway)
    fields = {
        "prompt": "form post",
        "model": "nano-banana-2",
        "count": "1",
        "seed": "7",
        "aspectRatio": "1:1",
    }
    with gateway.client(token) as client:
        # (None, value) parts have no filename: real multipart/form-data text fields.
        multipart = client.post(
            "/v1/google-flow/images", files={k: (None, v) for k, v in fields.items()}
        )
        assert multipart.status_code == 200, multipart.text
        assert multipart.json()["media"][0]["image"]["generatedImage"]["seed"] == 7
        urlencoded = client.post("/v1/google-flow/images", data=fields)
        assert urlencoded.status_code == 200, urlencoded.text
        with_file = client.post(
            "/v1/google-flow/images",
            data=fields,
            files={"reference_1": ("a.png", png(), "image/png")},
        )
        assert with_file.status_code == 400
        assert "POST /assets" in with_file.json()["error"]


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "model": "dall-e-3"}, "model"),
        ({"prompt": "x", "aspectRatio": "2:1"}, "aspectRatio"),
        ({"prompt": "x", "aspectRatio": "auto"}, "auto"),
        ({"prompt": "x", "count": 5}, "count"),
        ({"prompt": "x", "count": "2"}, "count"),
        ({"prompt": "x", "seed": -1}, "seed"),
        ({"prompt": "x", "reference_11": "user:1-email:-image:abc"}, "reference_11"),
        ({"prompt": "x", "reference_1": "nope"}, "reference_1"),
        ({"prompt": "x @reference_2"}, "reference_2"),
        (
            {
                "prompt": "x",
                "model": "imagen-4",
                **{f"reference_{i}": "user:1-email:-image:abc" for i in range(1, 5)},
            },
            "reference",
        ),
        ({"prompt": "x", "captchaRetry": 3, "captchaToken": "t"}, "captcha"),
        ({"prompt": "x", "captchaRetry": 11}, "captchaRetry"),
        ({"prompt": "x", "replyUrl": "ftp://x"}, "replyUrl"),
        ({"prompt": "x", "aspect_ratio": "1:1"}, "aspectRatio"),
    ],
)
def test_image_request_rules(gateway: Gateway, body: dict[str, object], word: str) -> None:
    with gateway.client() as client:
        resp = client.post("/v1/google-flow/images", json=body)
    assert resp.status_code == 400, resp.text
    assert word in resp.json()["error"], resp.json()


def test_unknown_email_and_foreign_reference(gateway: Gateway) -> None:
    owner, _ = user_with_sandbox(gateway)
    other, _ = user_with_sandbox(gateway)
    with gateway.client(owner) as client:
        ref = upload(client, png()).json()["mediaGenerationId"]["mediaGenerationId"]
        resp = client.post(
            "/v1/google-flow/images", json={"prompt": "x", "email": "ghost@example.com"}
        )
        assert resp.status_code == 404
        assert resp.json() == {"error": "Google Flow account ghost@example.com not found"}
    with gateway.client(other) as client:
        resp = client.post("/v1/google-flow/images", json={"prompt": "x", "reference_1": ref})
        assert resp.status_code == 404
        assert "reference_1" in resp.json()["error"]


def test_upstream_errors_pass_through_and_fail_the_job(gateway: Gateway) -> None:
    token, (email,) = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        limited = client.post(
            "/v1/google-flow/images",
            json={
                "prompt": "[sandbox:429-minute] cat",
                "model": "nano-banana-2",
                "count": 1,
                "email": email,
            },
        )
        assert limited.status_code == 429
        error = limited.json()["error"]
        assert error["status"] == "RESOURCE_EXHAUSTED" and error["code"] == 429
        down = client.post(
            "/v1/google-flow/images",
            json={
                "prompt": "[sandbox:503] cat",
                "model": "nano-banana-2",
                "count": 1,
                "email": email,
            },
        )
        assert down.status_code == 503
        assert down.json()["error"]["status"] == "UNAVAILABLE"
        job = client.get(f"/v1/google-flow/jobs/{down.json()['jobId']}").json()
        assert job["status"] == "failed"
        assert job["error"] == "API error: 503"
        assert job["code"] == 503
        assert job["response"]["error"]["status"] == "UNAVAILABLE"
        for directive in ("unsafe", "unsafe-image"):
            blocked = client.post(
                "/v1/google-flow/images",
                json={
                    "prompt": f"[sandbox:{directive}] cat",
                    "model": "nano-banana-2",
                    "count": 1,
                    "email": email,
                },
            )
            assert blocked.status_code == 400
            err = blocked.json()["error"]
            assert err["status"] == "INVALID_ARGUMENT"
            assert err["details"][0]["reason"] == "PUBLIC_ERROR_UNSAFE_GENERATION"


# ---------------------------------------------------------------- characters


def test_characters_lifecycle_and_use(gateway: Gateway) -> None:
    token, _ = user_with_sandbox(gateway)
    other = gateway.new_user()
    with gateway.client(token) as client:
        a = upload(client, png(50, 50)).json()["mediaGenerationId"]["mediaGenerationId"]
        b = upload(client, png(50, 50, (0, 255, 0))).json()["mediaGenerationId"][
            "mediaGenerationId"
        ]
        created = client.post("/v1/google-flow/characters", json={"name": "Mia", "images": [a, b]})
        assert created.status_code == 201, created.text
        cid = created.json()["characterId"]
        assert created.json()["images"] == [a, b]
        assert [
            c["characterId"] for c in client.get("/v1/google-flow/characters").json()["characters"]
        ] == [cid]
        gen = client.post(
            "/v1/google-flow/images",
            json={
                "prompt": "@character_1 waves",
                "character_1": cid,
                "count": 1,
                "aspectRatio": "1:1",
            },
        )
        assert gen.status_code == 200, gen.text
        inputs = gen.json()["media"][0]["image"]["generatedImage"]["requestData"][
            "imageGenerationRequestData"
        ]["imageGenerationImageInputs"]
        assert [i["mediaGenerationId"] for i in inputs] == [a, b]
        # Two character images plus two references exceed imagen-4's budget of 3.
        over = client.post(
            "/v1/google-flow/images",
            json={
                "prompt": "x",
                "model": "imagen-4",
                "character_1": cid,
                "reference_1": a,
                "reference_2": b,
            },
        )
        assert over.status_code == 400
        bad = client.post("/v1/google-flow/characters", json={"name": "Z", "images": [a, a, b]})
        assert bad.status_code == 400
    with gateway.client(other) as client:
        assert client.get(f"/v1/google-flow/characters/{cid}").status_code == 404
        assert client.delete(f"/v1/google-flow/characters/{cid}").status_code == 404
        assert (
            client.post(
                "/v1/google-flow/characters", json={"name": "steal", "images": [a]}
            ).status_code
            == 404
        )
    with gateway.client(token) as client:
        assert client.delete(f"/v1/google-flow/characters/{cid}").json() == {
            "message": f"Character {cid} deleted"
        }
        assert client.get(f"/v1/google-flow/characters/{cid}").status_code == 404


# ---------------------------------------------------------------- jobs and media links


def test_job_lookup_errors(gateway: Gateway) -> None:
    owner, _ = user_with_sandbox(gateway)
    other = gateway.new_user()
    with gateway.client(owner) as client:
        job_id = client.post("/v1/google-flow/images", json={"prompt": "x", "count": 1}).json()[
            "jobId"
        ]
    with gateway.client(other) as client:
        assert client.get("/v1/google-flow/jobs/not-a-job").json() == {
            "error": "Invalid job ID format"
        }
        assert client.get("/v1/google-flow/jobs/not-a-job").status_code == 400
        denied = client.get(f"/v1/google-flow/jobs/{job_id}")
        assert denied.status_code == 403
        assert denied.json() == {"error": "Access denied - job belongs to different user"}
        unknown = client.get(
            "/v1/google-flow/jobs/j1731859345678000000i-u1-email:ab***@x.com-bot:google-flow"
        )
        assert unknown.status_code == 404
        assert unknown.json() == {"error": "Job not found"}


def test_media_links_are_signed(gateway: Gateway) -> None:
    token, _ = user_with_sandbox(gateway)
    with gateway.client(token) as client:
        gen = client.post("/v1/google-flow/images", json={"prompt": "x", "count": 1}).json()
    url = gen["media"][0]["image"]["generatedImage"]["fifeUrl"]
    whole = httpx.get(url)
    assert whole.status_code == 200
    head = httpx.head(url)  # HEAD: the same headers, no body
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(whole.content))
    assert head.headers["content-type"] == whole.headers["content-type"]
    assert head.content == b""
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert httpx.head(tampered).status_code == 403
    assert httpx.get(tampered).status_code == 403
    base, query = url.split("?")
    assert httpx.get(base).status_code == 403
    expired = base + "?exp=1000&sig=" + query.split("sig=")[1]
    assert httpx.get(expired).status_code == 403
    assert httpx.get(
        f"{gateway.base_url}/media/..%2F..%2Fetc%2Fpasswd?exp=9999999999&sig=x"
    ).status_code in (403, 404)
    ranged = httpx.get(url, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert len(ranged.content) == 10


def test_expired_job_is_410(gateway_factory) -> None:
    gw = gateway_factory("sqlite", FLOWGATE_JOB_RETENTION_DAYS="0.00002")  # about 1.7 s
    gw.start()
    with gw.client() as client:
        job_id = client.post("/v1/google-flow/images", json={"prompt": "x", "count": 1}).json()[
            "jobId"
        ]
        assert client.get(f"/v1/google-flow/jobs/{job_id}").status_code == 200
        import time

        time.sleep(2.0)
        gone = client.get(f"/v1/google-flow/jobs/{job_id}")
        assert gone.status_code == 410
        assert gone.json() == {"error": "Job has expired"}


# ---------------------------------------------------------------- the job row and the call


def _keyed_user(gw: Gateway) -> tuple[str, str]:
    """A user whose one sandbox account has its own key, so its calls can be told apart."""
    token, key = gw.new_user(), f"sandbox-{uuid.uuid4().hex[:8]}"
    with gw.client(token) as client:
        body = {"email": f"{key}@example.com", "provider": "sandbox", "apiKey": key}
        resp = client.post("/v1/google-flow/accounts", json=body)
        assert resp.status_code == 201, resp.text
    return token, key


def _generations_with(gw: Gateway, key: str) -> list[dict[str, object]]:
    """The sandbox's generation calls made with ``key`` (adding the account checked it)."""
    calls = httpx.get(f"{gw.base_url}/sandbox/gemini/_sandbox/calls").json()["calls"]
    return [c for c in calls if c["key"] == key and c["method"] in ("predict", "generateContent")]


def _post_in_thread(
    gw: Gateway, token: str, body: dict[str, object], answers: list[httpx.Response]
) -> threading.Thread:
    def post() -> None:
        with gw.client(token) as client:
            answers.append(client.post("/v1/google-flow/images", json=body))

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def test_a_sync_job_calls_the_upstream_while_its_row_is_written(gateway_factory) -> None:
    """Another program holds SQLite's write lock, so the job row cannot be stored yet:
    the upstream call goes out anyway, and the answer waits for the row."""
    gw = gateway_factory("sqlite")
    gw.start()
    token, key = _keyed_user(gw)
    other_program = sqlite3.connect(gw.data_dir / "flowgate.db", isolation_level=None)
    answers: list[httpx.Response] = []
    try:
        other_program.execute("BEGIN IMMEDIATE")
        thread = _post_in_thread(gw, token, {"prompt": "while locked", "count": 1}, answers)
        deadline = time.monotonic() + 15
        while not _generations_with(gw, key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [call["status"] for call in _generations_with(gw, key)] == [200]
        assert not answers  # the row is not stored: no answer yet
    finally:
        other_program.execute("ROLLBACK")
        other_program.close()
    thread.join(timeout=60)
    assert answers and answers[0].status_code == 200, answers
    with gw.client(token) as client:
        job = client.get(f"/v1/google-flow/jobs/{answers[0].json()['jobId']}").json()
    assert job["status"] == "completed"


def test_a_job_row_that_cannot_be_stored_fails_without_waiting_for_the_upstream(
    gateway_factory,
) -> None:
    """The lock outlasts the busy timeout: the request fails with the database's error at
    once, without waiting for the upstream call (8 s here; the server's stop still waits
    for the sandbox's held answer), and leaves no job behind."""
    gw = gateway_factory("sqlite", FLOWGATE_SQLITE_BUSY_SECONDS="1")
    gw.start()
    token, _ = _keyed_user(gw)
    other_program = sqlite3.connect(gw.data_dir / "flowgate.db", isolation_level=None)
    answers: list[httpx.Response] = []
    body = {"prompt": "[sandbox:delay=8000] locked out", "count": 1}
    try:
        other_program.execute("BEGIN IMMEDIATE")
        sent = time.monotonic()
        _post_in_thread(gw, token, body, answers).join(timeout=60)
        waited = time.monotonic() - sent
    finally:
        other_program.execute("ROLLBACK")
        other_program.close()
    assert answers and answers[0].status_code == 503, answers
    assert "locked" in answers[0].text, answers[0].text
    assert waited < 6, waited  # the upstream call was not waited for
    with contextlib.closing(sqlite3.connect(gw.data_dir / "flowgate.db")) as database:
        assert database.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
