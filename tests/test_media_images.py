"""Upload inspection and JPEG helpers, on real images made with Pillow."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from typing import Any

import pytest
from PIL import Image

from flowgate.domain.errors import InvalidRequest
from flowgate.media.images import (
    MAX_UPLOAD_BYTES,
    ImageInfo,
    inspect_image,
    thumbnail_jpeg,
    to_jpeg,
)


def encode(
    fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **params: object
) -> bytes:
    color: object = (200, 30, 30) if mode == "RGB" else (200, 30, 30, 0) if mode == "RGBA" else 0
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt, **params)  # type: ignore[arg-type]
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def forged_png(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR (with a correct CRC) claims widthxheight."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def rejected(data: bytes, mime: str | None, **limits: int) -> str:
    with pytest.raises(InvalidRequest) as caught:
        inspect_image(data, mime, **limits)
    assert caught.value.status == 400
    return caught.value.message


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    ("fmt", "mime", "params"),
    [
        ("PNG", "image/png", {}),
        ("JPEG", "image/jpeg", {"quality": 90}),
        ("WEBP", "image/webp", {"quality": 80}),
        ("WEBP", "image/webp", {"lossless": True}),
    ],
)
def test_real_images_are_accepted(fmt: str, mime: str, params: dict[str, Any]) -> None:
    info = inspect_image(encode(fmt, (64, 48), **params), mime)
    assert info == ImageInfo(mime=mime, width=64, height=48, format=fmt)  # type: ignore[arg-type]


def test_rgba_and_palette_png_are_accepted() -> None:
    assert inspect_image(encode("PNG", (10, 20), "RGBA"), "image/png").height == 20
    assert inspect_image(encode("PNG", (10, 20), "P"), "image/png").width == 10


def test_webp_with_extended_header_is_accepted() -> None:
    exif = Image.Exif()
    exif[0x010E] = "described"  # any EXIF makes Pillow write a VP8X header
    data = encode("WEBP", (33, 17), "RGBA", exif=exif)
    assert data[12:16] == b"VP8X"
    assert (inspect_image(data, "image/webp").width, inspect_image(data, "image/webp").height) == (
        33,
        17,
    )


def test_mime_parameters_and_case_are_ignored() -> None:
    assert inspect_image(encode("PNG"), "IMAGE/PNG; charset=binary").mime == "image/png"


def test_exif_rotation_swaps_reported_sides() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    info = inspect_image(encode("JPEG", (80, 20), exif=exif), "image/jpeg")
    assert (info.width, info.height) == (20, 80)


def test_exactly_max_bytes_is_accepted() -> None:
    data = encode("PNG")
    assert inspect_image(data, "image/png", max_bytes=len(data)).format == "PNG"


def test_pillow_global_pixel_limit_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    # flowgate's own limit governs; a tiny global must neither warn nor raise.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert inspect_image(encode("PNG", (64, 48)), "image/png").width == 64
        assert inspect_image(encode("WEBP", (64, 48)), "image/webp").width == 64


# --------------------------------------------------------------------------- rejected


def test_empty_body() -> None:
    assert rejected(b"", "image/png") == (
        "Empty body: send the image bytes with Content-Type image/png, image/jpeg or image/webp"
    )


def test_oversize_body_uses_the_contract_wording() -> None:
    data = encode("PNG")
    assert rejected(data, "image/png", max_bytes=len(data) - 1) == (
        f"File size ({len(data)}) is over {len(data) - 1} bytes"
    )


def test_default_size_limit_is_20_mib() -> None:
    assert MAX_UPLOAD_BYTES == 20_971_520
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_UPLOAD_BYTES
    assert rejected(data, "image/png") == f"File size ({len(data)}) is over 20971520 bytes"


@pytest.mark.parametrize("mime", ["image/gif", "application/octet-stream", "text/plain"])
def test_declared_type_must_be_png_jpeg_or_webp(mime: str) -> None:
    message = rejected(encode("PNG"), mime)
    assert f"Content-Type {mime} is not supported" in message
    assert "image/png, image/jpeg or image/webp" in message


def test_image_jpg_gets_the_right_name() -> None:
    assert "the correct name is image/jpeg" in rejected(encode("JPEG"), "image/jpg")


@pytest.mark.parametrize("mime", [None, "", "  "])
def test_missing_content_type(mime: str | None) -> None:
    assert rejected(encode("PNG"), mime).startswith("Content-Type is required")


@pytest.mark.parametrize(
    ("fmt", "declared", "actual_mime"),
    [
        ("PNG", "image/jpeg", "image/png"),
        ("JPEG", "image/png", "image/jpeg"),
        ("WEBP", "image/png", "image/webp"),
        ("PNG", "image/webp", "image/png"),
    ],
)
def test_declared_type_must_match_the_bytes(fmt: str, declared: str, actual_mime: str) -> None:
    message = rejected(encode(fmt), declared)
    assert (
        f"The bytes are a {fmt} image ({actual_mime}), but Content-Type says {declared}" in message
    )
    assert f"send Content-Type {actual_mime}" in message


@pytest.mark.parametrize(
    ("data", "described"),
    [
        (encode("GIF", mode="P"), "a GIF image"),
        (encode("BMP"), "a BMP image"),
        (encode("TIFF"), "a TIFF image"),
        (b"<!DOCTYPE html><html></html>", "text (HTML, XML or JSON)"),
        (b"%PDF-1.7 ...", "a PDF document"),
        (b"\x00\x01\x02\x03garbage", "not a PNG, JPEG or WebP image"),
    ],
)
def test_other_bytes_are_named(data: bytes, described: str) -> None:
    message = rejected(data, "image/png")
    assert f"The bytes are {described}, but Content-Type says image/png" in message


def test_truncated_png() -> None:
    data = encode("PNG", (256, 256), "RGB")
    message = rejected(data[: len(data) // 2], "image/png")
    assert "could not be decoded" in message and "truncated" in message


def test_png_with_bad_crc() -> None:
    data = bytearray(encode("PNG", (32, 32)))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # flip a byte of compressed data; its CRC no longer matches
    assert "could not be decoded" in rejected(bytes(data), "image/png")


def test_truncated_jpeg() -> None:
    # Noise does not compress, so the cut lands in the middle of the scan data.
    noise = Image.frombytes("RGB", (128, 128), bytes(range(256)) * 192)
    buffer = io.BytesIO()
    noise.save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    assert "could not be decoded" in rejected(data[: len(data) * 2 // 3], "image/jpeg")


def test_truncated_webp() -> None:
    noise = Image.frombytes("RGB", (128, 128), bytes(range(256)) * 192)
    buffer = io.BytesIO()
    noise.save(buffer, "WEBP", quality=95)
    data = buffer.getvalue()
    message = rejected(data[: len(data) // 2], "image/webp")
    assert "WEBP image" in message


def test_png_without_ihdr() -> None:
    assert "damaged header" in rejected(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png")


def test_forged_png_header_is_rejected_fast_and_quietly() -> None:
    bomb = forged_png(100_000, 100_000)
    assert len(bomb) < 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail the test
        started = time.perf_counter()
        message = rejected(bomb, "image/png")
        elapsed = time.perf_counter() - started
    assert elapsed < 0.5
    assert "100000x100000 = 10000000000 pixels" in message
    assert "decompression bomb" in message


def test_forged_webp_header_is_rejected_before_libwebp_sees_it() -> None:
    real = encode("WEBP", (16, 16))
    payload = b"\x00\x00\x00\x00" + (16382).to_bytes(3, "little") + (16382).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(payload)) + payload + real[12:]
    forged = b"RIFF" + struct.pack("<I", len(body)) + body
    started = time.perf_counter()
    message = rejected(forged, "image/webp")
    assert time.perf_counter() - started < 0.5
    assert "16383x16383" in message and "decompression bomb" in message


def test_forged_jpeg_header_is_rejected() -> None:
    data = bytearray(encode("JPEG", (16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    assert "60000x60000" in rejected(bytes(data), "image/jpeg")


def test_max_pixels_is_configurable() -> None:
    data = encode("PNG", (64, 48))
    assert inspect_image(data, "image/png", max_pixels=64 * 48).width == 64
    message = rejected(data, "image/png", max_pixels=64 * 48 - 1)
    assert "64x48 = 3072 pixels, over the limit of 3071 pixels" in message


# --------------------------------------------------------------------------- conversions


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_to_jpeg_flattens_transparency_onto_white() -> None:
    jpeg = to_jpeg(encode("PNG", (20, 10), "RGBA"))
    assert jpeg.startswith(b"\xff\xd8\xff")
    image = decode(jpeg)
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (20, 10))
    assert all(channel > 245 for channel in image.getpixel((10, 5)))  # type: ignore[union-attr]


def test_to_jpeg_from_webp_and_16_bit_png() -> None:
    assert decode(to_jpeg(encode("WEBP", (12, 8)))).size == (12, 8)
    sixteen = Image.new("I;16", (8, 8), 65535)
    buffer = io.BytesIO()
    sixteen.save(buffer, "PNG")
    white = decode(to_jpeg(buffer.getvalue())).getpixel((4, 4))
    assert all(channel > 245 for channel in white)  # type: ignore[union-attr]


def test_to_jpeg_applies_exif_rotation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    assert decode(to_jpeg(encode("JPEG", (40, 10), exif=exif))).size == (10, 40)


def test_to_jpeg_rejects_non_images_and_bad_quality() -> None:
    with pytest.raises(ValueError, match="GIF"):
        to_jpeg(encode("GIF", mode="P"))
    with pytest.raises(ValueError):
        to_jpeg(encode("PNG"), quality=0)
    with pytest.raises(ValueError, match="decompression bomb"):
        to_jpeg(forged_png(100_000, 100_000))


def test_thumbnail_jpeg_keeps_ratio_and_never_enlarges() -> None:
    assert decode(thumbnail_jpeg(encode("JPEG", (4000, 3000)), 256)).size == (256, 192)
    assert decode(thumbnail_jpeg(encode("PNG", (300, 600), "RGBA"), 100)).size == (50, 100)
    assert decode(thumbnail_jpeg(encode("WEBP", (40, 30)), 512)).size == (40, 30)


def test_thumbnail_jpeg_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        thumbnail_jpeg(encode("PNG"), 0)
    with pytest.raises(ValueError):
        thumbnail_jpeg(b"not an image", 64)
