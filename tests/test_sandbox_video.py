"""Veo in the sandbox over real HTTP: predictLongRunning → poll → download → a real MP4."""

from __future__ import annotations

import asyncio
import base64
import io
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import pytest
from fastapi import FastAPI
from PIL import Image

from flowgate.media.video import VideoInfo, first_frame_jpeg, probe
from flowgate.sandbox import SandboxConfig, create_sandbox_app
from tests.fixtures_sandbox import sandbox_url  # noqa: F401

VEO = "veo-3.1-fast-generate-preview"
VEO_QUALITY = "veo-3.1-generate-preview"
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
QUICK = " [sandbox:video-seconds=0]"
POLL_DEADLINE_SECONDS = 120.0  # a guard against hanging, not a timing assertion


@pytest.fixture(scope="module")
def client(sandbox_url: str) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=sandbox_url, timeout=60.0, trust_env=False) as http:
        yield http


def fresh_key() -> str:
    return f"veo-{uuid.uuid4().hex[:12]}"


def png(colour: tuple[int, int, int], size: tuple[int, int] = (320, 180)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def b64_image(data: bytes, *, inline: bool = False) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    if inline:
        return {"inlineData": {"mimeType": "image/png", "data": encoded}}
    return {"bytesBase64Encoded": encoded, "mimeType": "image/png"}


def video_body(prompt: str, **parameters: Any) -> dict[str, Any]:
    instance: dict[str, Any] = {"prompt": prompt}
    for name in ("image", "lastFrame", "referenceImages", "video"):
        if name in parameters:
            instance[name] = parameters.pop(name)
    return {"instances": [instance], "parameters": parameters}


def start(
    client: httpx.Client, body: Any, *, key: str = "veo-test-key", model: str = VEO
) -> httpx.Response:
    return client.post(
        f"/v1beta/models/{model}:predictLongRunning", json=body, headers={"x-goog-api-key": key}
    )


def wait_done(client: httpx.Client, name: str, key: str = "veo-test-key") -> dict[str, Any]:
    deadline = time.monotonic() + POLL_DEADLINE_SECONDS
    while True:
        response = client.get(f"/v1beta/{name}", headers={"x-goog-api-key": key})
        assert response.status_code == 200, response.text
        body = response.json()
        if body["done"]:
            return dict(body)
        assert time.monotonic() < deadline, f"operation {name} never finished"
        time.sleep(0.05)


def video_uri(operation: dict[str, Any]) -> str:
    samples = operation["response"]["generateVideoResponse"]["generatedSamples"]
    assert len(samples) == 1
    return str(samples[0]["video"]["uri"])


def download(client: httpx.Client, uri: str, key: str = "veo-test-key") -> bytes:
    response = client.get(uri, headers={"x-goog-api-key": key}, follow_redirects=True)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    return response.content


def generate_video(
    client: httpx.Client, body: Any, *, key: str = "veo-test-key", model: str = VEO
) -> tuple[dict[str, Any], bytes]:
    started = start(client, body, key=key, model=model)
    assert started.status_code == 200, started.text
    operation = wait_done(client, started.json()["name"], key)
    return operation, download(client, video_uri(operation), key)


async def info_of(data: bytes) -> VideoInfo:
    return await probe(data)


def first_and_last_frames(data: bytes) -> tuple[Image.Image, Image.Image]:
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "clip.mp4"
        path.write_bytes(data)
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        size = tuple(meta["size"])
        frames = list(reader)
    first = Image.frombytes("RGB", size, frames[0])
    last = Image.frombytes("RGB", size, frames[-1])
    return first, last


def corner_colour(frame: Image.Image) -> tuple[int, int, int]:
    """Mean colour of the bottom-right corner (never covered by labels or the ball)."""
    width, height = frame.size
    corner = frame.crop((width - 24, height - 16, width - 4, height - 4)).resize((1, 1))
    red, green, blue = corner.getpixel((0, 0))  # type: ignore[misc]
    return int(red), int(green), int(blue)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


# --- the full flow --------------------------------------------------------------------------


async def test_text_to_video_flow_gives_a_real_mp4(
    client: httpx.Client,
    sandbox_url: str,  # noqa: F811
) -> None:
    started = start(client, video_body("a red fox in the snow" + QUICK))
    assert started.status_code == 200
    assert started.headers["x-flowgate-sandbox"] == "1"
    name = started.json()["name"]
    assert started.json() == {"name": name}
    assert name.startswith(f"models/{VEO}/operations/")

    operation = wait_done(client, name)
    file_id = video_uri(operation).split("/files/")[1].split(":")[0]
    assert operation == {
        "name": name,
        "done": True,
        "response": {
            "@type": RESPONSE_TYPE,
            "generateVideoResponse": {
                "generatedSamples": [
                    {"video": {"uri": f"{sandbox_url}/v1beta/files/{file_id}:download?alt=media"}}
                ]
            },
        },
    }
    data = download(client, video_uri(operation))
    assert data[4:8] == b"ftyp"
    info = await info_of(data)
    assert info == VideoInfo(duration_seconds=8.0, width=480, height=270, fps=24.0, has_audio=True)
    thumbnail = await first_frame_jpeg(data)
    with Image.open(io.BytesIO(thumbnail)) as image:
        assert image.size == (480, 270)


async def test_portrait_four_seconds_with_string_duration_and_sample_count(
    client: httpx.Client,
) -> None:
    body = video_body("portrait" + QUICK, aspectRatio="9:16", durationSeconds="4", sampleCount=1)
    _, data = generate_video(client, body)
    info = await info_of(data)
    assert (info.duration_seconds, info.width, info.height) == (4.0, 270, 480)


async def test_same_inputs_give_the_same_bytes_and_the_prompt_matters(
    client: httpx.Client,
) -> None:
    body = video_body("determinism check" + QUICK, durationSeconds=4)
    _, first = generate_video(client, body)
    _, other = generate_video(client, video_body("another prompt" + QUICK, durationSeconds=4))
    _, other_model = generate_video(client, body, model=VEO_QUALITY)
    assert other != first
    assert other_model != first
    # Rendered again by another sandbox (no shared render cache): the same bytes.
    app = create_sandbox_app(SandboxConfig())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://elsewhere"
    ) as http:
        started = await http.post(
            f"/v1beta/models/{VEO}:predictLongRunning",
            json=body,
            headers={"x-goog-api-key": "k"},
        )
        uri = video_uri(await poll_async(http, started.json()["name"]))
        redirect = await http.get(uri, headers={"x-goog-api-key": "k"})
        again = (await http.get(redirect.headers["location"])).content
    assert again == first


def test_start_and_last_frames_come_from_the_given_images(client: httpx.Client) -> None:
    body = video_body(
        "interpolate" + QUICK,
        durationSeconds=4,
        image=b64_image(png((220, 20, 20))),
        lastFrame=b64_image(png((20, 20, 220)), inline=True),
    )
    _, data = generate_video(client, body)
    first, last = first_and_last_frames(data)
    red, green, blue = corner_colour(first)
    assert red > 150 and green < 80 and blue < 80
    red, green, blue = corner_colour(last)
    assert blue > 150 and red < 80 and green < 80


def test_reference_images_change_the_video(client: httpx.Client) -> None:
    plain = video_body("with references" + QUICK)
    with_references = video_body(
        "with references" + QUICK,
        referenceImages=[
            {"image": b64_image(png((0, 200, 0))), "referenceType": "asset"},
            {"image": b64_image(png((200, 200, 0)), inline=True), "referenceType": "ASSET"},
        ],
    )
    _, plain_data = generate_video(client, plain)
    _, reference_data = generate_video(client, with_references)
    assert plain_data != reference_data


async def test_extension_appends_seven_seconds_and_can_be_extended_again(
    client: httpx.Client,
) -> None:
    key = fresh_key()
    source, _ = generate_video(client, video_body("source" + QUICK, aspectRatio="9:16"), key=key)
    extended, data = generate_video(
        client,
        video_body("then it jumps" + QUICK, video={"uri": video_uri(source)}),
        key=key,
    )
    info = await info_of(data)
    assert (info.duration_seconds, info.width, info.height) == (15.0, 270, 480)
    _, twice = generate_video(
        client,
        video_body("and lands" + QUICK, video={"uri": video_uri(extended)}, resolution="720p"),
        key=key,
    )
    assert (await info_of(twice)).duration_seconds == 22.0


def test_extension_needs_a_live_video_of_the_same_key(client: httpx.Client) -> None:
    key = fresh_key()
    source, _ = generate_video(client, video_body("source" + QUICK, durationSeconds=4), key=key)
    uri = video_uri(source)
    foreign = start(client, video_body("x", video={"uri": uri}), key=fresh_key())
    assert foreign.status_code == 400
    assert "does not name a video this project generated" in error_of(foreign)["message"]

    file_id = uri.split("/files/")[1].split(":")[0]
    assert client.delete(f"/_sandbox/files/{file_id}").json() == {"expired": f"files/{file_id}"}
    expired = start(client, video_body("x", video={"uri": uri}), key=key)
    assert expired.status_code == 400
    assert "or it has expired" in error_of(expired)["message"]
    gone = client.get(uri, headers={"x-goog-api-key": key})
    assert gone.status_code == 403
    assert error_of(gone) == {
        "code": 403,
        "message": f"You do not have permission to access the File {file_id} or it may not exist.",
        "status": "PERMISSION_DENIED",
    }
    assert client.delete(f"/_sandbox/files/{file_id}").status_code == 404


# --- downloads -------------------------------------------------------------------------------


def test_download_redirects_to_a_keyless_url(client: httpx.Client) -> None:
    key = fresh_key()
    operation, data = generate_video(client, video_body("redirect" + QUICK), key=key)
    uri = video_uri(operation)
    redirect = client.get(uri, headers={"x-goog-api-key": key})
    assert redirect.status_code == 302
    target = redirect.headers["location"]
    assert "/_sandbox/downloads/" in target
    assert key not in target
    keyless = httpx.get(target, trust_env=False)
    assert keyless.status_code == 200
    assert keyless.content == data

    calls = client.get("/_sandbox/calls").json()["calls"]
    targets = [c for c in calls if c["method"] == "download-target"]
    assert targets[-1] == {**targets[-1], "key": None, "status": 200}
    mine = [c for c in calls if c["key"] == key]
    assert [c["method"] for c in mine][:1] == ["predictLongRunning"]
    assert "operations.get" in [c["method"] for c in mine]
    assert [c["status"] for c in mine if c["method"] == "files.download"] == [302, 302]


def test_download_needs_the_owner_key_and_alt_media(client: httpx.Client) -> None:
    key = fresh_key()
    operation, _ = generate_video(client, video_body("owner" + QUICK, durationSeconds=4), key=key)
    uri = video_uri(operation)
    anonymous = client.get(uri)
    assert anonymous.status_code == 403
    assert error_of(anonymous)["message"].startswith("Method doesn't allow unregistered callers")
    assert client.get(uri, headers={"x-goog-api-key": fresh_key()}).status_code == 403
    no_alt = client.get(uri.split("?")[0], headers={"x-goog-api-key": key})
    assert no_alt.status_code == 400
    assert "alt=media" in error_of(no_alt)["message"]


def test_file_metadata(client: httpx.Client, sandbox_url: str) -> None:  # noqa: F811
    key = fresh_key()
    operation, data = generate_video(client, video_body("meta" + QUICK, durationSeconds=4), key=key)
    file_id = video_uri(operation).split("/files/")[1].split(":")[0]
    meta = client.get(f"/v1beta/files/{file_id}", headers={"x-goog-api-key": key}).json()
    assert meta["name"] == f"files/{file_id}"
    assert meta["mimeType"] == "video/mp4"
    assert meta["sizeBytes"] == str(len(data))
    assert meta["state"] == "ACTIVE"
    assert meta["downloadUri"] == video_uri(operation)
    assert meta["uri"] == f"{sandbox_url}/v1beta/files/{file_id}"
    assert meta["expirationTime"] > meta["createTime"]


# --- failures ---------------------------------------------------------------------------------


def test_error_directives_answer_at_start_time(client: httpx.Client) -> None:
    minute = start(client, video_body("x [sandbox:429-minute=3]"))
    assert minute.status_code == 429
    details = error_of(minute)["details"]
    assert details[0]["violations"][0]["quotaDimensions"] == {"location": "global", "model": VEO}
    assert details[2] == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}
    assert start(client, video_body("x [sandbox:503]")).status_code == 503
    assert error_of(start(client, video_body("x [sandbox:500]")))["status"] == "INTERNAL"
    assert start(client, video_body("x [sandbox:429]")).status_code == 429


def test_video_fail_directive_finishes_with_an_error(client: httpx.Client) -> None:
    started = start(client, video_body("x [sandbox:video-fail]" + QUICK))
    operation = wait_done(client, started.json()["name"])
    assert operation == {
        "name": started.json()["name"],
        "done": True,
        "error": {"code": 13, "message": "Video generation failed. Please try again."},
    }


def test_unsafe_directive_finishes_filtered_without_samples(client: httpx.Client) -> None:
    started = start(client, video_body("x [sandbox:unsafe]" + QUICK))
    operation = wait_done(client, started.json()["name"])
    video_response = operation["response"]["generateVideoResponse"]
    assert video_response["raiMediaFilteredCount"] == 1
    assert len(video_response["raiMediaFilteredReasons"]) == 1
    assert "generatedSamples" not in video_response


def test_unknown_operation_is_404(client: httpx.Client) -> None:
    for path in (f"/v1beta/models/{VEO}/operations/nosuchop123", "/v1beta/operations/nosuchop123"):
        response = client.get(path, headers={"x-goog-api-key": "veo-test-key"})
        assert response.status_code == 404
        assert error_of(response)["status"] == "NOT_FOUND"


def test_operation_is_found_by_id_alone_but_not_under_another_model(client: httpx.Client) -> None:
    started = start(client, video_body("names" + QUICK))
    operation_id = started.json()["name"].rsplit("/", 1)[1]
    headers = {"x-goog-api-key": "veo-test-key"}
    assert client.get(f"/v1beta/operations/{operation_id}", headers=headers).status_code == 200
    wrong = client.get(f"/v1beta/models/{VEO_QUALITY}/operations/{operation_id}", headers=headers)
    assert wrong.status_code == 404
    other_key = client.get(f"/v1beta/{started.json()['name']}", headers={"x-goog-api-key": "k2"})
    assert other_key.status_code == 404


def test_video_directives_are_refused_on_image_models(client: httpx.Client) -> None:
    for directive in ("[sandbox:video-fail]", "[sandbox:video-seconds=1]"):
        response = client.post(
            "/v1beta/models/gemini-2.5-flash-image:generateContent",
            json={"contents": [{"parts": [{"text": f"x {directive}"}]}]},
            headers={"x-goog-api-key": "veo-test-key"},
        )
        assert response.status_code == 400
        assert "apply only to Veo" in error_of(response)["message"]


RED = b64_image(png((255, 0, 0)))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": []}, "instances is not specified"),
        ({"instances": [{"prompt": "a"}, {"prompt": "b"}]}, "Only one instance"),
        (video_body(""), "The prompt is empty"),
        (video_body("x", aspectRatio="1:1"), "Unsupported aspect ratio: 1:1"),
        (video_body("x", durationSeconds=5), "Unsupported durationSeconds: 5"),
        (video_body("x", durationSeconds="eight"), "Invalid value at 'duration_seconds'"),
        (video_body("x", resolution="4K"), "Unsupported resolution: 4K"),
        (video_body("x", resolution="1080p", durationSeconds=6), "must be 8 for 1080p"),
        (video_body("x", resolution="4k", durationSeconds=4), "must be 8 for 4k"),
        (video_body("x", numberOfVideos=2), "numberOfVideos must be 1"),
        (video_body("x", seed=42), "seed parameter is not supported in Gemini API."),
        (video_body("x", generateAudio=True), "generate_audio parameter is not supported"),
        (video_body("x", cfgScale=3), 'Unknown name "cfgScale"'),
        (video_body("x", personGeneration="everyone"), "Invalid personGeneration"),
        (video_body("x", lastFrame=RED), "lastFrame requires image"),
        (
            video_body("x", image=RED, referenceImages=[{"image": RED}]),
            "referenceImages cannot be combined with image",
        ),
        (video_body("x", referenceImages=[{"image": RED}] * 4), "Too many reference images: 4"),
        (
            video_body("x", referenceImages=[{"image": RED}], durationSeconds=6),
            "durationSeconds must be 8 when referenceImages",
        ),
        (
            video_body("x", referenceImages=[{"image": RED, "referenceType": "style"}]),
            "style enum value is not supported",
        ),
        (video_body("x", image={"gcsUri": "gs://b/o.png"}), "gcs_uri parameter"),
        (
            video_body("x", image={"bytesBase64Encoded": "%%%", "mimeType": "image/png"}),
            "Base64 decoding failed",
        ),
        (
            video_body("x", image={"bytesBase64Encoded": "AAAA", "mimeType": "image/gif"}),
            "Unsupported MIME type image/gif",
        ),
        (
            video_body("x", image={"bytesBase64Encoded": "AAAAAAAA", "mimeType": "image/png"}),
            "Unable to process input image",
        ),
        (video_body("x", video={"uri": "https://example.com/v.mp4"}), "does not name a video"),
        (
            video_body("x", video={"uri": "files/abcdef123456"}, resolution="1080p"),
            "Video extension supports only 720p",
        ),
        (
            video_body("x", video={"uri": "files/abcdef123456"}, durationSeconds=4),
            "durationSeconds must be 8 for video extension",
        ),
        (
            video_body("x", video={"encodedVideo": "AAAA", "encoding": "video/mp4"}),
            "Only videos generated by Veo can be extended",
        ),
        (video_body("x", image=RED, video={"uri": "files/abcdef123456"}), "cannot be combined"),
    ],
)
def test_invalid_video_requests_are_google_400(
    client: httpx.Client, body: Any, message: str
) -> None:
    response = start(client, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert message in error["message"]


# --- in process: the clock, a restart, a mount prefix, no redirect ---------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def poll_async(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + POLL_DEADLINE_SECONDS
    while True:
        body = (await http.get(f"/v1beta/{name}", headers={"x-goog-api-key": "k"})).json()
        if body["done"]:
            return dict(body)
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


@pytest.fixture
async def clocked() -> AsyncIterator[tuple[httpx.AsyncClient, FakeClock]]:
    clock = FakeClock()
    app = create_sandbox_app(SandboxConfig(now=clock, video_seconds=45.0, fixed_image=True))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
    ) as http:
        yield http, clock


async def test_operation_is_not_done_until_its_time_has_passed(
    clocked: tuple[httpx.AsyncClient, FakeClock],
) -> None:
    http, clock = clocked
    started = await http.post(
        f"/v1beta/models/{VEO}:predictLongRunning",
        json=video_body("clock"),
        headers={"x-goog-api-key": "k"},
    )
    name = started.json()["name"]
    for moment in (0.0, 44.9):
        clock.now = 1_800_000_000.0 + moment
        polled = (await http.get(f"/v1beta/{name}", headers={"x-goog-api-key": "k"})).json()
        assert polled == {"name": name, "done": False}
    clock.now = 1_800_000_000.0 + 45.0
    done = await poll_async(http, name)
    uri = video_uri(done)
    assert uri.startswith("http://sandbox/v1beta/files/")

    # Generated videos live two days.
    clock.now += 2 * 86_400
    expired = await http.get(uri, headers={"x-goog-api-key": "k"})
    assert expired.status_code == 403


async def test_directive_sets_the_operation_time(
    clocked: tuple[httpx.AsyncClient, FakeClock],
) -> None:
    http, _ = clocked
    started = await http.post(
        f"/v1beta/models/{VEO}:predictLongRunning",
        json=video_body("fast [sandbox:video-seconds=0]"),
        headers={"x-goog-api-key": "k"},
    )
    done = await poll_async(http, started.json()["name"])
    assert done["done"] is True


async def test_a_new_sandbox_does_not_know_old_operations() -> None:
    first = create_sandbox_app(SandboxConfig(fixed_image=True))
    second = create_sandbox_app(SandboxConfig(fixed_image=True))
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://a") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://a") as b,
    ):
        started = await a.post(
            f"/v1beta/models/{VEO}:predictLongRunning",
            json=video_body("forgotten"),
            headers={"x-goog-api-key": "k"},
        )
        name = started.json()["name"]
        assert (await a.get(f"/v1beta/{name}", headers={"x-goog-api-key": "k"})).status_code == 200
        restarted = await b.get(f"/v1beta/{name}", headers={"x-goog-api-key": "k"})
        assert restarted.status_code == 404
        assert restarted.json()["error"]["status"] == "NOT_FOUND"


async def test_mounted_sandbox_builds_urls_with_its_prefix() -> None:
    outer = FastAPI()
    outer.mount("/sandbox/gemini", create_sandbox_app(SandboxConfig(fixed_image=True)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=outer), base_url="http://flowgate/sandbox/gemini"
    ) as http:
        started = await http.post(
            f"/v1beta/models/{VEO}:predictLongRunning",
            json=video_body("mounted" + QUICK, durationSeconds=4),
            headers={"x-goog-api-key": "k"},
        )
        uri = video_uri(await poll_async(http, started.json()["name"]))
        assert uri.startswith("http://flowgate/sandbox/gemini/v1beta/files/")
        redirect = await http.get(uri, headers={"x-goog-api-key": "k"})
        assert redirect.status_code == 302
        assert redirect.headers["location"].startswith(
            "http://flowgate/sandbox/gemini/_sandbox/downloads/"
        )
        data = (await http.get(redirect.headers["location"])).content
        info = await probe(data)
        assert (info.duration_seconds, info.width, info.height) == (4.0, 480, 270)


async def test_without_redirect_the_download_answers_the_bytes() -> None:
    app = create_sandbox_app(SandboxConfig(fixed_image=True, video_download_redirect=False))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
    ) as http:
        started = await http.post(
            f"/v1beta/models/{VEO}:predictLongRunning",
            json=video_body("direct" + QUICK, durationSeconds=6),
            headers={"x-goog-api-key": "k"},
        )
        uri = video_uri(await poll_async(http, started.json()["name"]))
        response = await http.get(uri, headers={"x-goog-api-key": "k"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp4"
        assert (await probe(response.content)).duration_seconds == 6.0
