"""Bad input is refused cleanly: a 4xx with an ``{"error": ...}`` body, never a 5xx.

Oversized bodies, wrong content types, broken JSON, truncated and malicious images
(decompression bombs, huge dimensions, compressed-chunk bombs), unicode and 100 kB
prompts, and path traversal in media ids, against a real server.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from tests.gateway import Gateway

FLOW = "/v1/google-flow"


def _png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(buffer, "JPEG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` but whose pixel data is tiny."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _png_zlib_bomb(width: int = 8000, height: int = 6000) -> bytes:
    """A real PNG of 48 MP of zeros: a few dozen kB that inflate to 144 MB."""
    row = b"\x00" + b"\x00" * (width * 3)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def _png_text_bomb() -> bytes:
    """A small PNG with a zTXt chunk that inflates to 200 MB."""
    base = _png()
    compressor = zlib.compressobj(9)
    blob = b"".join(compressor.compress(b"\x00" * 1_000_000) for _ in range(200))
    blob += compressor.flush()
    bomb = _chunk(b"zTXt", b"Comment\x00\x00" + blob)
    # Insert right after IHDR (8-byte signature + 25-byte IHDR chunk).
    return base[:33] + bomb + base[33:]


def _webp_claiming(width: int, height: int) -> bytes:
    """A VP8X WebP header announcing a huge canvas."""
    vp8x = (
        b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    )
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    token = gateway.new_user()
    with gateway.client(token) as c:
        resp = c.post(
            f"{FLOW}/accounts", json={"email": "bad-input@example.com", "provider": "sandbox"}
        )
        assert resp.status_code == 201, resp.text
        yield c


def _clean_4xx(resp: httpx.Response, *statuses: int) -> str:
    """The response is one of ``statuses`` (any 4xx if none) with a JSON ``error`` string."""
    ok = resp.status_code in statuses if statuses else 400 <= resp.status_code < 500
    assert ok, (resp.request.method, resp.request.url.path, resp.status_code, resp.text[:300])
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    return str(body["error"])


def _upload(client: httpx.Client, data: bytes, content_type: str | None) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post(f"{FLOW}/assets", content=data, headers=headers)


# ---------------------------------------------------------------- sizes


def test_oversized_json_body(client: httpx.Client) -> None:
    body = b'{"prompt": "' + b"a" * 2_100_000 + b'"}'
    resp = client.post(f"{FLOW}/images", content=body, headers={"Content-Type": "application/json"})
    assert "over" in _clean_4xx(resp, 400, 413)


def test_oversized_json_body_without_content_length(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(25):
            yield b"a" * 100_000
        yield b'"}'

    resp = client.post(
        f"{FLOW}/images", content=chunks(), headers={"Content-Type": "application/json"}
    )
    _clean_4xx(resp, 400, 413)


def test_oversized_upload(client: httpx.Client) -> None:
    data = _png() + b"\x00" * (21 * 1024 * 1024)
    assert "20971520" in _clean_4xx(_upload(client, data, "image/png"), 400, 413)


def test_oversized_multipart_field(client: httpx.Client) -> None:
    resp = client.post(f"{FLOW}/images", data={"prompt": "x" * 3_000_000})
    _clean_4xx(resp, 400, 413)


def test_hundred_kilobyte_prompt(client: httpx.Client) -> None:
    resp = client.post(f"{FLOW}/images", json={"prompt": "word " * 20_000, "count": 1})
    assert "prompt" in _clean_4xx(resp, 400)


# ---------------------------------------------------------------- content types and JSON


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "image/png", "application/octet-stream"],
)
def test_images_with_wrong_content_type(client: httpx.Client, content_type: str) -> None:
    resp = client.post(
        f"{FLOW}/images", content=b'{"prompt": "x"}', headers={"Content-Type": content_type}
    )
    _clean_4xx(resp, 400, 415)


@pytest.mark.parametrize(
    "body",
    [
        b'{"prompt": "x"',
        b"[1, 2, 3]",
        b'"just a string"',
        b"null",
        b"\xff\xfe\x00\x00garbage",
        b'{"prompt": "x", "count": NaN}',
        b'{"prompt": "x", "count": Infinity}',
        b'{"prompt": "x", "count": 1e400}',
        b'{"prompt": "x", "seed": 1e400}',
        b'{"prompt": "x", "seed": 123456789012345678901234567890}',
        b'{"prompt": "x", "count": -1}',
        b'{"prompt": "x", "count": 1.5}',
        b'{"prompt": {"nested": ["object"]}}',
        b'{"prompt": "x", "reference_1": 17}',
        b'{"prompt": "x", "replyUrl": "javascript:alert(1)"}',
        b'{"prompt": "x", "replyUrl": "file:///etc/passwd"}',
        b'{"prompt": "x", "email": "a\\u0000b@example.com"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
    ids=lambda b: b[:40].decode("latin-1"),
)
def test_images_with_broken_json(client: httpx.Client, body: bytes) -> None:
    resp = client.post(f"{FLOW}/images", content=body, headers={"Content-Type": "application/json"})
    _clean_4xx(resp)


@pytest.mark.parametrize(
    ("path", "instead"),
    [
        ("/images", "POST /assets"),
        ("/images/upscale", "mediaGenerationId of an image"),
        ("/videos", "startImage, endImage or referenceImage_N"),
        ("/videos/extend", "mediaGenerationId of a video"),
        ("/videos/gif", "mediaGenerationId of a video"),
        ("/videos/upscale", "mediaGenerationId of a video"),
        ("/characters", "POST /assets"),
    ],
)
def test_a_file_part_where_no_file_is_taken(client: httpx.Client, path: str, instead: str) -> None:
    """A form's file part is refused, naming it and what to send; never silently dropped."""
    resp = client.post(
        f"{FLOW}{path}",
        data={"prompt": "x", "name": "x", "email": "x@example.com"},
        files={"startImage": ("a.png", _png(), "image/png")},
    )
    message = _clean_4xx(resp, 400)
    assert "file field(s) startImage not accepted here" in message and instead in message


@pytest.mark.parametrize(
    "path", ["/images/upscale", "/videos", "/videos/extend", "/videos/gif", "/characters"]
)
def test_other_posts_with_broken_bodies(client: httpx.Client, path: str) -> None:
    for body, content_type in (
        (b'{"x": ', "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b"<xml/>", "application/xml"),
        (b"", "application/json"),
    ):
        resp = client.post(f"{FLOW}{path}", content=body, headers={"Content-Type": content_type})
        _clean_4xx(resp, 400, 415)


# ---------------------------------------------------------------- unicode


@pytest.mark.parametrize(
    "prompt",
    [
        "一只在雪地里的狐狸 🦊🏔️",
        "مرحبا بالعالم — שלום עולם",
        "Z̷̢̛̛̛a̵̧̛l̴̨g̶o̸ text " * 20,
        "zero\u200bwidth\u200djoiner\ufeff",
        "tab\tnewline\ncarriage\rreturn",
        "nul \u0000 inside",
        "\U0010ffff last code point",
    ],
    ids=["cjk-emoji", "rtl", "zalgo", "zero-width", "controls", "nul", "max-codepoint"],
)
def test_unicode_prompts(client: httpx.Client, prompt: str) -> None:
    resp = client.post(f"{FLOW}/images", json={"prompt": prompt, "count": 1})
    if resp.status_code == 200:
        job = client.get(f"{FLOW}/jobs/{resp.json()['jobId']}").json()
        assert job["status"] == "completed"
        assert job["request"]["prompt"] == prompt
    else:
        _clean_4xx(resp, 400)


def test_lone_surrogate_in_prompt(client: httpx.Client) -> None:
    # Valid JSON (an escaped lone surrogate) that no UTF-8 encoder can write.
    body = b'{"prompt": "broken \\ud800 surrogate", "count": 1}'
    # Connection: close, so a 500 (after which the server drops the connection) does not
    # break the next request.
    headers = {"Content-Type": "application/json", "Connection": "close"}
    resp = client.post(f"{FLOW}/images", content=body, headers=headers)
    # Whatever the answer, no job may be left running.
    executing = client.get(f"{FLOW}/jobs", params={"options": "executing"}).json()
    assert executing["images"]["executing"] == {}, executing
    if resp.status_code != 200:
        _clean_4xx(resp, 400)


# ---------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("name", "data", "content_type", "expected"),
    [
        ("empty", b"", "image/png", "Empty body"),
        ("no content type", _png(), None, "Content-Type"),
        ("gif", b"GIF89a" + b"\x00" * 100, "image/gif", "image/png"),
        ("png declared jpeg", _png(), "image/jpeg", "PNG"),
        ("html as png", b"<html><body>hi</body></html>", "image/png", "text"),
        ("truncated png", _png()[:60], "image/png", "corrupt or truncated"),
        ("truncated jpeg", _jpeg()[:200], "image/jpeg", "corrupt or truncated"),
        ("png header only", _png()[:33], "image/png", ""),
        ("huge png header", _png_claiming(100_000, 100_000), "image/png", "decompression bomb"),
        ("huge webp header", _webp_claiming(16_383, 16_383), "image/webp", "decompression bomb"),
        ("zlib bomb under the pixel cap", _png_zlib_bomb(), "image/png", ""),
        ("ztxt bomb", _png_text_bomb(), "image/png", "could not be decoded"),
        ("zero size png", _png_claiming(0, 0), "image/png", ""),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_uploads(
    client: httpx.Client, name: str, data: bytes, content_type: str | None, expected: str
) -> None:
    resp = _upload(client, data, content_type)
    if name == "zlib bomb under the pixel cap":
        # 48 MP of zeros is a valid picture under the 50 MP cap: taken as exactly that.
        assert resp.status_code == 200, resp.text
        assert (resp.json()["width"], resp.json()["height"]) == (8000, 6000)
        return
    message = _clean_4xx(resp, 400, 413)
    assert expected in message, message


def test_extreme_aspect_upload_then_auto_ratio(client: httpx.Client) -> None:
    resp = _upload(client, _png(10_000, 1), "image/png")
    if resp.status_code != 200:
        _clean_4xx(resp, 400)
        return
    mgid = resp.json()["mediaGenerationId"]["mediaGenerationId"]
    made = client.post(
        f"{FLOW}/images",
        json={"prompt": "thin", "model": "nano-banana-2", "reference_1": mgid, "count": 1},
    )
    assert made.status_code == 200 or 400 <= made.status_code < 500, made.text


def test_openai_edits_with_malicious_images(client: httpx.Client) -> None:
    for data in (_png_claiming(100_000, 100_000), _png()[:60], b"not an image"):
        resp = client.post(
            "/v1/images/edits",
            data={"prompt": "x", "model": "nano-banana-2"},
            files={"image": ("x.png", data, "image/png")},
        )
        assert 400 <= resp.status_code < 500, resp.text


# ---------------------------------------------------------------- path traversal in ids


TRAVERSALS = [
    "../../../../etc/passwd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "....//....//etc/passwd",
    "%00",
    "/etc/passwd",
    "..\\..\\windows\\win.ini",
]


def _mgid(user: str, media: str) -> str:
    return f"user:{user}-email:{b'x@example.com'.hex()}-image:{media}"


@pytest.mark.parametrize("evil", TRAVERSALS)
def test_traversal_in_media_ids(client: httpx.Client, gateway: Gateway, evil: str) -> None:
    mgid = _mgid("1", evil)
    for path, body in (
        ("/images", {"prompt": "x", "reference_1": mgid, "count": 1}),
        ("/images", {"prompt": "x", "reference_1": evil, "count": 1}),
        ("/images/upscale", {"mediaGenerationId": mgid}),
        ("/images/upscale", {"mediaGenerationId": evil}),
        ("/videos", {"prompt": "x", "startImage": mgid, "duration": 4}),
        ("/videos/gif", {"mediaGenerationId": evil}),
        ("/videos/extend", {"mediaGenerationId": evil, "prompt": "x"}),
        ("/characters", {"name": "x", "images": [mgid]}),
    ):
        _clean_4xx(client.post(f"{FLOW}{path}", json=body), 400, 404)
    quoted = evil.replace("/", "%2F")
    for path in (
        f"{FLOW}/characters/{quoted}",
        f"{FLOW}/jobs/{quoted}",
        f"{FLOW}/accounts/{quoted}",
    ):
        resp = client.get(path)
        assert resp.status_code in (400, 403, 404), (path, resp.status_code, resp.text)
        assert "root:" not in resp.text
    token = client.headers["Authorization"].split(" ", 1)[1]
    with httpx.Client(base_url=gateway.base_url, timeout=30) as anonymous:
        for path in (f"/media/{quoted}", f"/media/{quoted}?exp=9999999999&sig=abc"):
            resp = anonymous.get(path)
            assert resp.status_code in (400, 403, 404), (path, resp.status_code)
            assert "root:" not in resp.text
    with httpx.Client(
        base_url=gateway.base_url, cookies={"flowgate_session": token}, timeout=30
    ) as ui:
        resp = ui.get(f"/ui/files/{quoted}")
        assert resp.status_code in (400, 403, 404), resp.status_code
        assert "root:" not in resp.text
