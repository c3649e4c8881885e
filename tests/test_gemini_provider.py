"""The real GeminiProvider against the sandbox over HTTP (and a few real odd servers)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from flowgate.domain.errors import (
    UNSAFE_REASON,
    ContentBlocked,
    UpstreamError,
    UpstreamUnreachable,
)
from flowgate.providers.base import (
    ContentImageRequest,
    InlineImage,
    PredictImageRequest,
)
from flowgate.providers.gemini import (
    REDACTED,
    GeminiProvider,
    parse_google_error,
    parse_retry_delay,
)
from flowgate.providers.http_pool import HttpPool, new_upstream_client
from flowgate.sandbox import SandboxConfig, create_sandbox_app
from flowgate.sandbox.drawing import draw_fixed_picture
from tests import fixtures_sandbox
from tests.fixtures_sandbox import sandbox_url, served  # noqa: F401

KEY = "provider-test-key"
NANO_25 = "gemini-2.5-flash-image"
NANO_2 = "gemini-3.1-flash-image-preview"
NANO_PRO = "gemini-3-pro-image-preview"
IMAGEN = "imagen-4.0-generate-001"


@pytest.fixture
async def http() -> AsyncIterator[HttpPool]:
    client = new_upstream_client(timeout_seconds=30.0)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def provider(http: HttpPool, sandbox_url: str) -> GeminiProvider:  # noqa: F811
    return GeminiProvider(http, base_url=sandbox_url, api_key=KEY)


def keyed(http: HttpPool, sandbox_url: str, key: str) -> GeminiProvider:  # noqa: F811
    return GeminiProvider(http, base_url=sandbox_url, api_key=key)


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(buffer, "PNG")
    return buffer.getvalue()


async def upstream_error(
    provider: GeminiProvider, prompt: str, model: str = NANO_2
) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await provider.generate_content_image(
            ContentImageRequest(upstream_model=model, prompt=prompt)
        )
    assert not isinstance(caught.value, ContentBlocked)
    return caught.value


# --- success paths ----------------------------------------------------------------------


async def test_health_check_lists_every_model(provider: GeminiProvider) -> None:
    report = await provider.health_check()
    assert len(report.models) == 10
    assert NANO_PRO in report.models
    assert "veo-3.1-lite-generate-preview" in report.models
    assert not any(model.startswith("models/") for model in report.models)


async def test_health_check_follows_next_page_token() -> None:
    app = create_sandbox_app(SandboxConfig(max_page_size=3))
    async with served(app) as url, new_upstream_client() as http:
        provider = GeminiProvider(http, base_url=f"{url}/v1beta/", api_key=KEY)
        report = await provider.health_check()
        async with http.get(f"{url}/_sandbox/calls") as answer:
            calls = (await answer.json())["calls"]
    assert len(report.models) == len(set(report.models)) == 10
    assert [call["method"] for call in calls] == ["list"] * 4


async def test_generate_content_image_gemini_25(provider: GeminiProvider) -> None:
    image = await provider.generate_content_image(
        ContentImageRequest(upstream_model=NANO_25, prompt="a boat", seed=3, aspect_ratio="16:9")
    )
    assert image.mime == "image/png"
    assert size_of(image.data) == (1024, 576)
    assert image.text == "Here is the sandbox picture you asked for."


async def test_generate_content_image_skips_thought_parts(provider: GeminiProvider) -> None:
    image = await provider.generate_content_image(
        ContentImageRequest(
            upstream_model=NANO_PRO, prompt="a boat", seed=3, aspect_ratio="4:3", image_size="2K"
        )
    )
    # The thought draft is 256 px; the real picture is the 2K one after it.
    assert size_of(image.data) == (2048, 1536)
    assert image.text is None


async def test_generate_content_image_is_deterministic_per_seed(provider: GeminiProvider) -> None:
    def request(seed: int) -> ContentImageRequest:
        return ContentImageRequest(upstream_model=NANO_2, prompt="a kite", seed=seed)

    first = await provider.generate_content_image(request(1))
    again = await provider.generate_content_image(request(1))
    other = await provider.generate_content_image(request(2))
    assert first.data == again.data
    assert first.data != other.data


async def test_references_are_sent_inline(provider: GeminiProvider) -> None:
    image = await provider.generate_content_image(
        ContentImageRequest(
            upstream_model=NANO_PRO,
            prompt="edit this",
            seed=1,
            references=(InlineImage(mime="image/png", data=png(100, 300)),),
        )
    )
    # No aspect ratio: the sandbox follows the reference (1:3) → 342×1024.
    assert size_of(image.data) == (342, 1024)


async def test_predict_images(provider: GeminiProvider) -> None:
    images = await provider.predict_images(
        PredictImageRequest(upstream_model=IMAGEN, prompt="a lamp", count=3, aspect_ratio="9:16")
    )
    assert len(images) == 3
    assert {image.mime for image in images} == {"image/png"}
    assert {size_of(image.data) for image in images} == {(576, 1024)}
    assert len({image.data for image in images}) == 3


async def test_predict_images_drops_filtered_samples(provider: GeminiProvider) -> None:
    images = await provider.predict_images(
        PredictImageRequest(upstream_model=IMAGEN, prompt="x [sandbox:unsafe-image]", count=2)
    )
    assert len(images) == 1


# --- safety blocks ----------------------------------------------------------------------


async def test_blocked_prompt_is_content_blocked(provider: GeminiProvider) -> None:
    with pytest.raises(ContentBlocked) as caught:
        await provider.generate_content_image(
            ContentImageRequest(upstream_model=NANO_PRO, prompt="x [sandbox:unsafe]")
        )
    assert caught.value.detail == "prompt blocked (blockReason PROHIBITED_CONTENT)"
    assert caught.value.status == 400
    assert caught.value.info.reason == UNSAFE_REASON


async def test_blocked_image_is_content_blocked(provider: GeminiProvider) -> None:
    with pytest.raises(ContentBlocked) as caught:
        await provider.generate_content_image(
            ContentImageRequest(upstream_model=NANO_25, prompt="x [sandbox:unsafe-image]")
        )
    assert caught.value.detail.startswith("image blocked (finishReason IMAGE_SAFETY): Unable")


async def test_all_predictions_filtered_is_content_blocked(provider: GeminiProvider) -> None:
    with pytest.raises(ContentBlocked) as caught:
        await provider.predict_images(
            PredictImageRequest(upstream_model=IMAGEN, prompt="x [sandbox:unsafe]", count=2)
        )
    assert caught.value.detail.startswith("all images were filtered: Unable to show")


# --- upstream errors --------------------------------------------------------------------


async def test_daily_quota_error(provider: GeminiProvider) -> None:
    error = await upstream_error(provider, "x [sandbox:429-daily]")
    assert error.status == 429
    assert error.is_rate_limit
    assert not error.is_key_error
    assert error.info.status == "RESOURCE_EXHAUSTED"
    assert error.info.quota_ids == ("GenerateRequestsPerDayPerProjectPerModel-FreeTier",)
    assert error.info.retry_delay_seconds == 58.0
    assert error.info.message.startswith("You exceeded your current quota")
    # raw is Google's error object as received, ready to pass through.
    assert error.body()["error"] is error.info.raw
    assert error.info.raw["details"][0]["violations"][0]["quotaDimensions"]["model"] == NANO_2
    assert [d["@type"].rsplit(".", 1)[-1] for d in error.info.raw["details"]] == [
        "QuotaFailure",
        "Help",
        "RetryInfo",
    ]


async def test_minute_quota_error_with_fractional_delay(provider: GeminiProvider) -> None:
    error = await upstream_error(provider, "x [sandbox:429-minute]")
    assert error.info.quota_ids == ("GenerateRequestsPerMinutePerProjectPerModel-FreeTier",)
    assert error.info.retry_delay_seconds == 26.0
    short = await upstream_error(provider, "x [sandbox:429-minute=0.5]")
    assert short.info.retry_delay_seconds == 0.5


async def test_bare_429_and_project_quota(provider: GeminiProvider) -> None:
    bare = await upstream_error(provider, "x [sandbox:429]")
    assert bare.status == 429
    assert bare.info.quota_ids == ()
    assert bare.info.retry_delay_seconds is None
    with pytest.raises(UpstreamError) as caught:
        await provider.predict_images(
            PredictImageRequest(upstream_model=IMAGEN, prompt="x [sandbox:429-project]")
        )
    assert caught.value.info.quota_ids == ("GenerateRequestsPerDayPerProject-FreeTier",)
    assert caught.value.info.retry_delay_seconds == 3600.0


async def test_server_errors(provider: GeminiProvider) -> None:
    overloaded = await upstream_error(provider, "x [sandbox:503]")
    assert (overloaded.status, overloaded.info.status) == (503, "UNAVAILABLE")
    assert overloaded.message == "The model is overloaded. Please try again later."
    internal = await upstream_error(provider, "x [sandbox:500]")
    assert (internal.status, internal.info.status) == (500, "INTERNAL")


async def test_invalid_argument_is_upstream_error(provider: GeminiProvider) -> None:
    with pytest.raises(UpstreamError) as caught:
        await provider.generate_content_image(
            ContentImageRequest(upstream_model=NANO_PRO, prompt="x", aspect_ratio="7:3")
        )
    assert caught.value.status == 400
    assert caught.value.info.status == "INVALID_ARGUMENT"
    assert "aspect_ratio must be one of" in caught.value.message
    assert not caught.value.is_key_error


async def test_unknown_model_is_404(provider: GeminiProvider) -> None:
    error = await upstream_error(provider, "x", model="gemini-0-nothing")
    assert (error.status, error.info.status) == (404, "NOT_FOUND")


# --- key errors -------------------------------------------------------------------------


async def test_invalid_key(http: HttpPool, sandbox_url: str) -> None:  # noqa: F811
    with pytest.raises(UpstreamError) as caught:
        await keyed(http, sandbox_url, "invalid-abc").health_check()
    error = caught.value
    assert (error.status, error.info.status, error.info.reason) == (
        400,
        "INVALID_ARGUMENT",
        "API_KEY_INVALID",
    )
    assert error.is_key_error


async def test_leaked_key(http: HttpPool, sandbox_url: str) -> None:  # noqa: F811
    with pytest.raises(UpstreamError) as caught:
        await keyed(http, sandbox_url, "leaked-abc").health_check()
    assert caught.value.status == 403
    assert caught.value.info.reason is None
    assert (
        caught.value.message == "Your API key was reported as leaked. Please use another API key."
    )
    assert caught.value.is_key_error


async def test_suspended_key_is_redacted(http: HttpPool, sandbox_url: str) -> None:  # noqa: F811
    key = "suspended-secret-4242"
    provider = keyed(http, sandbox_url, key)
    with pytest.raises(UpstreamError) as caught:
        await provider.generate_content_image(
            ContentImageRequest(upstream_model=NANO_PRO, prompt="x")
        )
    error = caught.value
    assert (error.status, error.info.reason) == (403, "CONSUMER_SUSPENDED")
    # Google quotes the key in this message; the provider must not keep it anywhere.
    assert error.message == f"Permission denied: Consumer 'api_key:{REDACTED}' has been suspended."
    assert key not in str(error)
    assert key not in json.dumps(error.body())
    assert key not in repr(provider)


async def test_disabled_service_key(http: HttpPool, sandbox_url: str) -> None:  # noqa: F811
    with pytest.raises(UpstreamError) as caught:
        await keyed(http, sandbox_url, "disabled-abc").health_check()
    assert caught.value.info.reason == "SERVICE_DISABLED"
    assert caught.value.is_key_error


# --- transport failures and odd servers -------------------------------------------------


async def test_closed_port_is_unreachable(http: HttpPool) -> None:
    key = "unreachable-secret-key"
    provider = GeminiProvider(
        http, base_url=f"http://127.0.0.1:{fixtures_sandbox.free_loopback_port()}", api_key=key
    )
    with pytest.raises(UpstreamUnreachable) as caught:
        await provider.health_check()
    assert caught.value.status == 503
    assert caught.value.message.startswith("could not reach upstream 127.0.0.1 for models.list")
    assert key not in str(caught.value)
    assert key not in json.dumps(caught.value.body())


async def test_timeout_is_unreachable(sandbox_url: str) -> None:  # noqa: F811
    async with new_upstream_client(timeout_seconds=0.3) as http:
        provider = GeminiProvider(http, base_url=sandbox_url, api_key=KEY)
        with pytest.raises(UpstreamUnreachable) as caught:
            await provider.generate_content_image(
                ContentImageRequest(upstream_model=NANO_25, prompt="x [sandbox:delay=3000]")
            )
    assert "timed out" in caught.value.message


def odd_upstream(seen: list[dict[str, Any]]) -> Starlette:
    """A real ASGI server answering like a broken proxy would."""

    async def html_502(request: Request) -> Response:
        return PlainTextResponse("<html><body>502   Bad\n Gateway</body></html>", status_code=502)

    async def not_json_200(request: Request) -> Response:
        return PlainTextResponse("hello", status_code=200)

    async def empty_200(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    async def list_200(request: Request) -> Response:
        return Response(b"[]", media_type="application/json")

    async def echo(request: Request) -> Response:
        seen.append(
            {
                "url": str(request.url),
                "headers": dict(request.headers),
                "body": await request.json(),
            }
        )
        picture = base64.b64encode(png(8, 8)).decode()
        return JSONResponse(
            {"candidates": [{"content": {"parts": [{"inlineData": {"data": picture}}]}}]}
        )

    async def bad_image_data(request: Request) -> Response:
        data = request.path_params["data"]  # the model name stands for the image data
        part = {"inlineData": {"mimeType": "image/png", "data": data}}
        return JSONResponse({"candidates": [{"content": {"parts": [part]}}]})

    return Starlette(
        routes=[
            Route("/v1beta/models/echo:generateContent", echo, methods=["POST"]),
            Route("/v1beta/models/html:generateContent", html_502, methods=["POST"]),
            Route("/v1beta/models/text:generateContent", not_json_200, methods=["POST"]),
            Route("/v1beta/models/empty:generateContent", empty_200, methods=["POST"]),
            Route("/v1beta/models/empty:predict", empty_200, methods=["POST"]),
            Route("/v1beta/models/list:generateContent", list_200, methods=["POST"]),
            # Last: it matches every other model name.
            Route("/v1beta/models/{data}:generateContent", bad_image_data, methods=["POST"]),
        ]
    )


async def test_odd_upstream_answers() -> None:
    async with served(odd_upstream([])) as url, new_upstream_client() as http:
        provider = GeminiProvider(http, base_url=url, api_key=KEY)

        with pytest.raises(UpstreamError) as html:
            await provider.generate_content_image(ContentImageRequest("html", "x"))
        assert html.value.status == 502
        assert html.value.info.status == "UNAVAILABLE"
        assert html.value.message == (
            "upstream answered HTTP 502: <html><body>502 Bad Gateway</body></html>"
        )
        assert html.value.body() == {
            "error": {"code": 502, "message": html.value.message, "status": "UNAVAILABLE"}
        }

        with pytest.raises(UpstreamUnreachable) as not_json:
            await provider.generate_content_image(ContentImageRequest("text", "x"))
        assert not_json.value.message.endswith(
            "answered text:generateContent with HTTP 200 but no JSON"
        )

        with pytest.raises(UpstreamUnreachable) as not_an_answer:
            await provider.generate_content_image(ContentImageRequest("list", "x"))
        assert not_an_answer.value.message.endswith("with an unexpected body")

        with pytest.raises(ContentBlocked) as empty:
            await provider.generate_content_image(ContentImageRequest("empty", "x"))
        assert empty.value.detail == "upstream returned no image"

        with pytest.raises(ContentBlocked) as empty_predict:
            await provider.predict_images(PredictImageRequest("empty", "x"))
        assert empty_predict.value.detail == "upstream returned no image"

        for data in ("iVBORw0KGgo$", "iVBORw0KGgoé", "iVBORw0KGg"):  # bad digit, non-ASCII, cut
            with pytest.raises(UpstreamUnreachable) as not_base64:
                await provider.generate_content_image(ContentImageRequest(data, "x"))
            assert "image data that is not base64" in not_base64.value.message, data


async def test_request_body_and_key_header() -> None:
    seen: list[dict[str, Any]] = []
    key = "header-only-key"
    async with served(odd_upstream(seen)) as url, new_upstream_client() as http:
        provider = GeminiProvider(http, base_url=f"{url}/", api_key=key)
        image = await provider.generate_content_image(
            ContentImageRequest(
                "echo",
                "draw",
                seed=9,
                image_size="4K",
                references=(InlineImage("image/jpeg", b"jpeg-bytes"),),
            )
        )
        await provider.generate_content_image(ContentImageRequest("echo", "plain"))
    assert image.mime == "image/png"  # no mimeType in the answer: PNG assumed
    assert size_of(image.data) == (8, 8)
    first, second = seen
    assert first["url"] == f"{url}/v1beta/models/echo:generateContent"
    assert key not in first["url"]
    assert first["headers"]["x-goog-api-key"] == key
    assert first["body"] == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "draw"},
                    {
                        "inlineData": {
                            "mimeType": "image/jpeg",
                            "data": base64.b64encode(b"jpeg-bytes").decode(),
                        }
                    },
                ],
            }
        ],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "seed": 9,
            "imageConfig": {"imageSize": "4K"},
        },
    }
    # Nothing optional is sent when not given (no seed, no imageConfig).
    assert second["body"]["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"]}


# --- parsing helpers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("26s", 26.0),
        ("58.8s", 58.8),
        ("0.5s", 0.5),
        ("3", 3.0),
        ("250ms", 0.25),
        ({"seconds": 3, "nanos": 500_000_000}, 3.5),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_delay(value: object, seconds: float | None) -> None:
    assert parse_retry_delay(value) == seconds


def test_parse_google_error_from_a_list_wrapper() -> None:
    body = json.dumps(
        [{"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}]
    ).encode()
    info = parse_google_error(429, body)
    assert (info.code, info.message, info.status) == (429, "slow down", "RESOURCE_EXHAUSTED")
    assert info.raw == {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}


async def test_pool_keeps_no_cookies_between_calls() -> None:
    """One account's upstream cookies must never ride along with another's calls."""

    async def set_cookie(request: Request) -> Response:
        answer = PlainTextResponse("ok")
        answer.set_cookie("session", "account-a")
        return answer

    async def echo(request: Request) -> Response:
        return JSONResponse({"cookie": request.headers.get("cookie")})

    app = Starlette(routes=[Route("/set", set_cookie), Route("/echo", echo)])
    async with served(app) as url, new_upstream_client() as http:
        # A host name, not an IP: cookie jars ignore cookies of bare IP addresses.
        base = url.replace("127.0.0.1", "localhost")
        async with http.get(f"{base}/set") as first:
            assert first.status == 200
            assert "session=account-a" in first.headers["set-cookie"]
        async with http.get(f"{base}/echo") as second:
            assert (await second.json())["cookie"] is None


async def test_upstream_closing_idle_connections_is_no_crash() -> None:
    """An upstream that drops idle keep-alive connections (as Google's front ends do):
    the next calls reuse nothing stale and succeed, or fail as "unreachable" (503)."""
    seen: list[dict[str, Any]] = []
    async with (
        served(odd_upstream(seen), timeout_keep_alive=0.2) as url,
        new_upstream_client() as http,
    ):
        provider = GeminiProvider(http, base_url=url, api_key=KEY)
        outcomes: list[str] = []
        for _ in range(4):
            await asyncio.gather(
                *(
                    provider.generate_content_image(ContentImageRequest("echo", "x"))
                    for _ in range(4)
                )
            )
            await asyncio.sleep(0.4)  # the server has closed every idle connection by now
            try:
                await provider.generate_content_image(ContentImageRequest("echo", "x"))
                outcomes.append("ok")
            except UpstreamUnreachable as exc:
                assert exc.status == 503
                outcomes.append("unreachable")
    assert outcomes.count("ok") >= 3, outcomes
    assert len(seen) >= 19


async def test_pool_uses_a_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY/HTTPS_PROXY are honoured (read when the pool is made)."""

    async def proxy(request: Request) -> Response:
        return JSONResponse({"via": "proxy", "host": request.headers.get("host")})

    app = Starlette(routes=[Route("/{path:path}", proxy)])
    async with served(app) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with new_upstream_client() as http:
            async with http.get("http://upstream.invalid/v1beta/models") as answer:
                assert await answer.json() == {"via": "proxy", "host": "upstream.invalid"}
        monkeypatch.delenv("HTTP_PROXY")
        async with new_upstream_client() as http:
            with pytest.raises(aiohttp.ClientError):  # no proxy: the name does not resolve
                async with http.get("http://upstream.invalid/v1beta/models"):
                    pass


class CuttingProxy:
    """A TCP proxy in front of the sandbox that cuts its first connection as told.

    ``while-sending``: resets the connection after 64 kB of the request, as an upstream
    does when it closes a kept-alive connection the client is writing to.
    ``after-answer``: hands the whole request to the sandbox, waits for the start of its
    answer (the call was made) and then resets the client's connection.
    Later connections are piped through unchanged.
    """

    def __init__(self, upstream_port: int, cut: str) -> None:
        self.upstream_port = upstream_port
        self.cut = cut
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        if first and self.cut == "while-sending":
            await reader.readexactly(65536)
            writer.transport.abort()  # unread data in the buffer: the kernel sends a reset
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        if first and self.cut == "after-answer":
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            up_writer.write(head + await reader.readexactly(length))
            await up_reader.readuntil(b"\r\n\r\n")
            writer.transport.abort()
            up_writer.close()
            return

        async def pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    target.write(data)
                    await target.drain()
            target.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.asynccontextmanager
async def cutting_proxy(sandbox: str, cut: str) -> AsyncIterator[tuple[str, CuttingProxy]]:
    proxy = CuttingProxy(int(sandbox.rsplit(":", 1)[1]), cut)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", proxy
    finally:
        server.close()


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: ``side``² × 3 bytes, sent as ~4/3 of that."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def sandbox_calls(sandbox: str, key: str) -> list[dict[str, Any]]:
    calls = httpx.get(f"{sandbox}/_sandbox/calls", trust_env=False).json()["calls"]
    return [c for c in calls if c["key"] == key and c["method"] == "generateContent"]


async def test_request_cut_off_while_being_sent_is_sent_again(
    http: HttpPool,
    sandbox_url: str,  # noqa: F811
) -> None:
    """The upstream never had the whole request, so sending it again cannot apply it twice."""
    key = "cut-while-sending"
    # ~9 MB on the wire: far more than loopback buffers take before the reset arrives.
    reference = InlineImage(mime="image/png", data=noise_png(1600))
    async with cutting_proxy(sandbox_url, "while-sending") as (url, proxy):
        provider = GeminiProvider(http, base_url=url, api_key=key)
        image = await provider.generate_content_image(
            ContentImageRequest(NANO_PRO, "edit this", seed=1, references=(reference,))
        )
    assert size_of(image.data) == (1024, 1024)
    assert proxy.connections == 2
    assert len(sandbox_calls(sandbox_url, key)) == 1


async def test_request_cut_off_after_it_was_made_is_not_repeated(
    http: HttpPool,
    sandbox_url: str,  # noqa: F811
) -> None:
    """The upstream had the whole request and started answering: sending it again could
    generate (and bill) twice, so the call fails as unreachable instead."""
    key = "cut-after-answer"
    async with cutting_proxy(sandbox_url, "after-answer") as (url, proxy):
        provider = GeminiProvider(http, base_url=url, api_key=key)
        with pytest.raises(UpstreamUnreachable) as caught:
            await provider.generate_content_image(ContentImageRequest(NANO_2, "a lamp", seed=1))
    assert caught.value.status == 503
    assert proxy.connections == 1
    assert len(sandbox_calls(sandbox_url, key)) == 1


async def test_fixed_image_mode_pads_the_picture_to_a_real_size() -> None:
    # bench.overhead --image-kb: the bytes of a real image, the same small picture.
    app = create_sandbox_app(SandboxConfig(fixed_image=True, fixed_image_bytes=300_000))
    async with served(app) as url, new_upstream_client() as http:
        provider = GeminiProvider(http, base_url=url, api_key=KEY)
        image = await provider.generate_content_image(ContentImageRequest(NANO_25, "x"))
    assert len(image.data) >= 300_000
    assert size_of(image.data) == (256, 256)
    jpeg = draw_fixed_picture("JPEG", padded_to=300_000)  # Imagen's JPEG: comment segments
    assert len(jpeg) >= 300_000
    assert Image.open(io.BytesIO(jpeg)).size == (256, 256)
    assert len(draw_fixed_picture("PNG")) < 30_000  # unpadded by default
