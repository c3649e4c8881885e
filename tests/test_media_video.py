"""ffmpeg operations on real clips made with imageio-ffmpeg's binary."""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from flowgate.media.video import (
    VideoError,
    VideoInfo,
    concatenate,
    encode_frames,
    encode_frames_sync,
    first_frame_jpeg,
    parse_probe_output,
    probe,
    to_gif,
    upscale,
)

FPS = 24
FRAME = 1 / FPS


def frames(
    seconds: float,
    size: tuple[int, int] = (320, 180),
    colour: tuple[int, int, int] = (30, 90, 160),
) -> list[Image.Image]:
    """A moving square on a plain background (motion, so GIF frames differ)."""
    width, height = size
    pictures = []
    for number in range(round(seconds * FPS)):
        picture = Image.new("RGB", size, colour)
        left = number * 3 % max(1, width - 20)
        ImageDraw.Draw(picture).rectangle((left, height // 3, left + 20, height // 3 + 20), "white")
        pictures.append(picture)
    return pictures


@pytest.fixture(scope="module")
def landscape_clip() -> bytes:
    """4 s, 320×180, with audio."""
    return encode_frames_sync(frames(4), FPS, with_audio=True)


@pytest.fixture(scope="module")
def silent_clip() -> bytes:
    """4 s, 320×180, no audio, another colour."""
    return encode_frames_sync(frames(4, colour=(160, 40, 40)), FPS)


@pytest.fixture(scope="module")
def portrait_clip() -> bytes:
    """2 s, 180×320."""
    return encode_frames_sync(frames(2, size=(180, 320)), FPS)


def close_to(value: float, expected: float, tolerance: float = FRAME) -> bool:
    return abs(value - expected) <= tolerance + 1e-6


# --- encode / probe ------------------------------------------------------------------------------


async def test_probe_reads_duration_size_fps_and_audio(
    landscape_clip: bytes, silent_clip: bytes
) -> None:
    assert await probe(landscape_clip) == VideoInfo(
        duration_seconds=4.0, width=320, height=180, fps=24.0, has_audio=True
    )
    assert (await probe(silent_clip)).has_audio is False


async def test_encode_frames_is_deterministic_and_takes_encoded_images() -> None:
    pictures = frames(1)
    encoded = []
    for picture in pictures:
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    from_images = await encode_frames(pictures, FPS)
    from_png = await encode_frames(encoded, FPS)
    assert from_images == from_png
    assert from_images == await encode_frames(frames(1), FPS)
    assert (await probe(from_png)).duration_seconds == 1.0


async def test_encode_frames_pads_odd_sizes_and_rejects_mixed_sizes() -> None:
    odd = await encode_frames([Image.new("RGB", (101, 51), "red")] * 12, 12)
    info = await probe(odd)
    assert (info.width, info.height, info.fps) == (102, 52, 12.0)

    mixed = [Image.new("RGB", (64, 64)), Image.new("RGB", (32, 32))]
    with pytest.raises(ValueError, match="frame 1 is 32x32, frame 0 is 64x64"):
        await encode_frames(mixed, FPS)
    with pytest.raises(ValueError, match="at least one frame"):
        await encode_frames([], FPS)
    with pytest.raises(ValueError, match="frame 0 is not a decodable image"):
        await encode_frames([b"not an image"], FPS)


def test_parse_probe_output_handles_rotation_and_k_fps() -> None:
    text = (
        "  Duration: 00:01:02.50, start: 0.000000, bitrate: 900 kb/s\n"
        "  Stream #0:0[0x1](und): Video: h264 (High), yuv420p(tv, bt709), 1920x1080 [SAR 1:1 "
        "DAR 16:9], 800 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)\n"
        "      Side data:\n        displaymatrix: rotation of -90.00 degrees\n"
    )
    assert parse_probe_output(text) == VideoInfo(
        duration_seconds=62.5, width=1080, height=1920, fps=29.97, has_audio=False
    )
    with pytest.raises(VideoError, match="ffmpeg said: no video here"):
        parse_probe_output("no video here")


# --- thumbnail -------------------------------------------------------------------------------


async def test_first_frame_jpeg_decodes_and_respects_max_side(landscape_clip: bytes) -> None:
    full = await first_frame_jpeg(landscape_clip)
    small = await first_frame_jpeg(landscape_clip, max_side=100)
    with Image.open(io.BytesIO(full)) as image:
        assert (image.format, image.size) == ("JPEG", (320, 180))
        red, green, blue = image.convert("RGB").getpixel((5, 170))  # type: ignore[misc]
        assert blue > red and blue > green  # the clip's blue background
    with Image.open(io.BytesIO(small)) as image:
        assert image.size == (100, 56)


# --- concatenate -----------------------------------------------------------------------------


async def test_concatenate_sums_the_trimmed_durations(
    landscape_clip: bytes, silent_clip: bytes
) -> None:
    joined = await concatenate([(landscape_clip, 1.0, 0.0), (silent_clip, 0.0, 0.5)])
    info = await probe(joined)
    assert close_to(info.duration_seconds, 6.5)
    assert (info.width, info.height, info.fps, info.has_audio) == (320, 180, 24.0, True)


async def test_concatenate_three_silent_clips_with_trims_on_both_ends(silent_clip: bytes) -> None:
    joined = await concatenate(
        [(silent_clip, 0.5, 0.5), (silent_clip, 0.0, 0.0), (silent_clip, 1.25, 1.25)]
    )
    info = await probe(joined)
    assert close_to(info.duration_seconds, 3.0 + 4.0 + 1.5)
    assert info.has_audio is False


async def test_concatenate_fits_other_sizes_into_the_first(
    landscape_clip: bytes, portrait_clip: bytes
) -> None:
    joined = await concatenate([(landscape_clip, 0, 0), (portrait_clip, 0, 0)])
    info = await probe(joined)
    assert (info.width, info.height) == (320, 180)
    assert close_to(info.duration_seconds, 6.0)


async def test_concatenate_rejects_trims_that_leave_too_little(
    landscape_clip: bytes, silent_clip: bytes
) -> None:
    with pytest.raises(ValueError, match=r"input 2: trimming 2 s .* and 1.95 s .* leaves 0.05 s"):
        await concatenate([(landscape_clip, 0, 0), (silent_clip, 2.0, 1.95)])
    with pytest.raises(VideoError, match="input 1: trim_start must be a number ≥ 0"):
        await concatenate([(landscape_clip, -1.0, 0), (silent_clip, 0, 0)])
    with pytest.raises(VideoError, match="input 2: reading the video failed"):
        await concatenate([(landscape_clip, 0, 0), (b"garbage", 0, 0)])


# --- GIF -------------------------------------------------------------------------------------


async def test_to_gif_is_animated_and_fits_the_width(landscape_clip: bytes) -> None:
    gif = await to_gif(landscape_clip, max_width=160, fps=10)
    with Image.open(io.BytesIO(gif)) as image:
        assert image.format == "GIF"
        assert getattr(image, "is_animated", False)  # only animated formats have it
        assert getattr(image, "n_frames", 1) == 40
        assert image.size == (160, 90)
        assert image.info.get("loop") == 0


async def test_to_gif_never_enlarges(portrait_clip: bytes) -> None:
    gif = await to_gif(portrait_clip)
    with Image.open(io.BytesIO(gif)) as image:
        assert image.size == (180, 320)


# --- upscale ---------------------------------------------------------------------------------


async def test_upscale_sets_the_short_side_and_keeps_audio(
    landscape_clip: bytes, portrait_clip: bytes
) -> None:
    wide = await probe(await upscale(landscape_clip, height=1080))
    assert (wide.width, wide.height, wide.has_audio) == (1920, 1080, True)
    assert close_to(wide.duration_seconds, 4.0)
    tall = await probe(await upscale(portrait_clip, height=720))
    assert (tall.width, tall.height) == (720, 1280)


async def test_upscale_rejects_odd_or_silly_heights(landscape_clip: bytes) -> None:
    for height in (1081, 8, 10_000):
        with pytest.raises(ValueError, match="even number of lines"):
            await upscale(landscape_clip, height=height)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"garbage", b"\x00" * 4096, b"GIF89a" + b"\x00" * 100])
async def test_garbage_is_a_video_error_for_every_operation(data: bytes) -> None:
    with pytest.raises(VideoError, match="ffmpeg said"):
        await probe(data)
    with pytest.raises(VideoError, match="ffmpeg said"):
        await first_frame_jpeg(data)
    with pytest.raises(VideoError, match="ffmpeg said"):
        await to_gif(data)
    with pytest.raises(VideoError, match="ffmpeg said"):
        await upscale(data, height=1080)


async def test_empty_input_is_a_video_error() -> None:
    with pytest.raises(VideoError, match="empty"):
        await probe(b"")


async def test_timeouts_are_video_errors(landscape_clip: bytes) -> None:
    with pytest.raises(VideoError, match="took longer than"):
        await upscale(landscape_clip, height=2160, timeout_seconds=0.01)


async def test_temporary_files_are_removed(
    landscape_clip: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A private temp root, so files of other processes cannot confuse the check.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    await to_gif(landscape_clip)
    await concatenate([(landscape_clip, 0, 0), (landscape_clip, 0, 0)])
    encode_frames_sync(frames(0.5), FPS)
    with pytest.raises(VideoError):
        await probe(b"garbage")
    with pytest.raises(VideoError):
        await upscale(landscape_clip, height=2160, timeout_seconds=0.01)
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []
