"""Video operations with ffmpeg: encode frames, probe, thumbnail, concatenate, GIF, upscale.

ffmpeg comes only from the ``imageio-ffmpeg`` package (its bundled static
binary); there is no ffprobe, so :func:`probe` reads duration, size, frame
rate and streams from the header summary ``ffmpeg -i`` prints.

Every call runs ffmpeg as a subprocess with a timeout, works in its own
temporary directory (removed afterwards, also on failure) and raises
:class:`VideoError` with ffmpeg's last stderr lines when ffmpeg fails.

Inputs are read with the MP4/MOV demuxer only (``-f mov``) and with file
access limited to the input file: probing an untrusted file with format
auto-detection would let, for example, an HLS playlist disguised as ``.mp4``
make ffmpeg fetch URLs or read other local files.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import imageio_ffmpeg
from PIL import Image

DEFAULT_TIMEOUT_SECONDS = 300.0
"""Longest a single ffmpeg run may take before it is killed."""

MIN_TRIMMED_SECONDS = 0.1
"""Shortest piece of a clip :func:`concatenate` keeps after trimming."""

MAX_UPSCALE_LINES = 4320

# Outputs people keep (concatenations, upscales): good quality at a reasonable speed.
KEEP_PRESET = "veryfast"
KEEP_CRF = "18"
AUDIO_RATE = 48_000
STDERR_LINES = 8

# Reading inputs: MP4/MOV only, no other files, no network (see the module docstring).
_INPUT_OPTIONS = ("-f", "mov", "-protocol_whitelist", "file")
_MP4_OUTPUT_OPTIONS = (
    "-movflags", "+faststart",
    "-map_metadata", "-1",
    # No encoder version or timestamps in the file: same input, same bytes.
    "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
)  # fmt: skip

_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_VIDEO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)\b")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
_LOG_PREFIX = re.compile(r"\[[^\]\n]* @ 0x[0-9a-f]+\] ")
_TEMP_PATH = re.compile(r"\S*flowgate-video-[^/\s]+/")


class VideoError(ValueError):
    """ffmpeg could not do what was asked (bad input, a failure, a timeout)."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds in a video file."""

    duration_seconds: float
    width: int  # as displayed (rotation applied)
    height: int
    fps: float
    has_audio: bool


@lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    """Path of imageio-ffmpeg's bundled ffmpeg binary."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


# --- encoding frames ---------------------------------------------------------------------


def encode_frames_sync(
    frames: Iterable[Image.Image] | Iterable[bytes],
    fps: int,
    *,
    with_audio: bool = False,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> bytes:
    """Encode frames into an H.264 MP4 (blocking; run it in a worker thread).

    ``frames`` are Pillow images or encoded image files (PNG, JPEG …), all of
    one size; they are streamed to ffmpeg one by one, so a long clip never sits
    in memory as raw pixels. The encoding is fast rather than small
    (``-preset ultrafast``), yuv420p, ``+faststart``; odd sizes are padded by
    one pixel. ``with_audio`` adds an AAC track with a short quiet beep at the
    start of every second (a real audio stream, and a way to see sync by ear).
    The same frames always give the same bytes.
    """
    if fps < 1:
        raise ValueError("fps must be at least 1")
    source: Iterable[Image.Image | bytes] = frames
    pictures = (_as_rgb(frame, index) for index, frame in enumerate(source))
    first = next(pictures, None)
    if first is None:
        raise ValueError("encode_frames needs at least one frame")
    width, height = first.size
    with tempfile.TemporaryDirectory(prefix="flowgate-video-") as workdir:
        video = Path(workdir) / "video.mp4"
        stderr_path = Path(workdir) / "stderr.txt"
        with stderr_path.open("wb") as stderr:
            # stderr goes to a file, so a chatty ffmpeg can never block on a full pipe.
            process = subprocess.Popen(
                _encode_arguments(width, height, fps, video),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            try:
                count = _feed_frames(process, _chain_first(first, pictures), (width, height))
                process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise VideoError(
                    f"encoding frames: ffmpeg took longer than {timeout_seconds:g} s"
                ) from None
            except BaseException:
                process.kill()
                process.wait()
                raise
        if process.returncode != 0:
            raise VideoError(_failure("encoding frames", stderr_path.read_bytes()))
        if not with_audio:
            return video.read_bytes()
        # A second, cheap pass (the video is copied): only now is the exact length known.
        # An endless source cut with -shortest would end wherever buffering left it.
        output = Path(workdir) / "out.mp4"
        _run_sync(_beeps_arguments(video, count / fps, output), timeout_seconds, "adding audio")
        return output.read_bytes()


def _feed_frames(
    process: subprocess.Popen[bytes], pictures: Iterator[Image.Image], size: tuple[int, int]
) -> int:
    """Write every frame to ffmpeg's stdin; return how many there were."""
    assert process.stdin is not None
    number = -1
    try:
        for number, picture in enumerate(pictures):
            if picture.size != size:
                raise ValueError(
                    f"frame {number} is {picture.width}x{picture.height}, frame 0 is "
                    f"{size[0]}x{size[1]}: all frames must have one size"
                )
            process.stdin.write(picture.tobytes())
        process.stdin.close()
    except BrokenPipeError:
        pass  # ffmpeg stopped reading: it failed, and its exit status and stderr tell why
    return number + 1


async def encode_frames(
    frames: Iterable[Image.Image] | Iterable[bytes],
    fps: int,
    *,
    with_audio: bool = False,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> bytes:
    """:func:`encode_frames_sync` in a worker thread (frames are produced in that thread too)."""
    return await asyncio.to_thread(
        encode_frames_sync, frames, fps, with_audio=with_audio, timeout_seconds=timeout_seconds
    )


def _as_rgb(frame: Image.Image | bytes, index: int) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame if frame.mode == "RGB" else frame.convert("RGB")
    try:
        with Image.open(io.BytesIO(frame)) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"frame {index} is not a decodable image: {exc}") from exc


def _chain_first(first: Image.Image, rest: Iterator[Image.Image]) -> Iterator[Image.Image]:
    yield first
    yield from rest


def _encode_arguments(width: int, height: int, fps: int, output: Path) -> list[str]:
    # No -nostdin here: the frames come on stdin.
    arguments = [
        ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-framerate", str(fps), "-i", "pipe:0",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    ]  # fmt: skip
    if width % 2 or height % 2:
        # yuv420p needs even sides.
        arguments += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    return [*arguments, *_MP4_OUTPUT_OPTIONS, str(output)]


def _beeps_arguments(video: Path, seconds: float, output: Path) -> list[str]:
    beeps = f"aevalsrc=0.08*sin(2*PI*880*t)*lt(mod(t\\,1)\\,0.08):s={AUDIO_RATE}:d={seconds:.6f}"
    return _ffmpeg(
        *_INPUT_OPTIONS, "-i", str(video), "-f", "lavfi", "-i", beeps,
        "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-b:a", "64k",
        *_MP4_OUTPUT_OPTIONS, str(output),
    )  # fmt: skip


# --- probing -----------------------------------------------------------------------------


async def probe(data: bytes, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> VideoInfo:
    """Duration, displayed size, frame rate and whether there is audio, from the file header."""
    async with _Workdir() as workdir:
        source = await workdir.write("in.mp4", data)
        return await _probe_file(source, timeout_seconds)


async def _probe_file(source: Path, timeout_seconds: float) -> VideoInfo:
    # ``ffmpeg -i`` without an output prints the header summary and exits with 1.
    executable = ffmpeg_executable()
    arguments = [executable, "-hide_banner", "-nostdin", *_INPUT_OPTIONS, "-i", str(source)]
    _, stderr = await _run(arguments, timeout_seconds=timeout_seconds, check=False)
    return parse_probe_output(stderr.decode("utf-8", "replace"))


def parse_probe_output(text: str) -> VideoInfo:
    """Read :class:`VideoInfo` from what ``ffmpeg -i FILE`` prints; ``VideoError`` if it can't."""
    duration_match = _DURATION.search(text)
    stream_match = _VIDEO_STREAM.search(text)
    if duration_match is None or stream_match is None:
        raise VideoError(_failure("reading the video", text.encode()))
    hours, minutes, seconds = duration_match.groups()
    duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    stream = stream_match.group(1)
    size_match = _SIZE.search(stream)
    if size_match is None:
        raise VideoError(f"ffmpeg reported no frame size for the video stream: {stream[:200]}")
    width, height = int(size_match.group(1)), int(size_match.group(2))
    rotation = _ROTATION.search(text)
    if rotation is not None and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width
    fps = 0.0
    fps_match = _FPS.search(stream)
    if fps_match is not None:
        fps = float(fps_match.group(1)) * (1000 if fps_match.group(2) else 1)
    has_audio = re.search(r"Stream #\d+:\d+.*?: Audio:", text) is not None
    return VideoInfo(
        duration_seconds=duration, width=width, height=height, fps=fps, has_audio=has_audio
    )


# --- thumbnail ---------------------------------------------------------------------------


async def first_frame_jpeg(
    data: bytes,
    max_side: int | None = None,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> bytes:
    """The first frame as a JPEG (quality 85), shrunk so its long side is ≤ ``max_side``."""
    if max_side is not None and max_side < 1:
        raise ValueError("max_side must be at least 1")
    async with _Workdir() as workdir:
        source = await workdir.write("in.mp4", data)
        arguments = _ffmpeg(
            *_INPUT_OPTIONS, "-i", str(source),
            "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "pipe:1",
        )  # fmt: skip
        frame_png, _ = await _run(
            arguments, timeout_seconds=timeout_seconds, what="reading the first frame"
        )
    if not frame_png:
        raise VideoError("ffmpeg found no video frame in the input")
    return await asyncio.to_thread(_png_to_jpeg, frame_png, max_side)


def _png_to_jpeg(frame_png: bytes, max_side: int | None) -> bytes:
    with Image.open(io.BytesIO(frame_png)) as image:
        picture = image.convert("RGB")
    if max_side is not None and max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


# --- concatenation -----------------------------------------------------------------------


async def concatenate(
    parts: list[tuple[bytes, float, float]],
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> bytes:
    """Join clips in order into one MP4; each part is ``(data, trim_start, trim_end)`` seconds.

    Every clip is re-encoded to the first clip's size (others are scaled to fit
    and padded), the first clip's frame rate, H.264 yuv420p and 48 kHz stereo
    AAC, with ffmpeg's concat filter. The result lasts the sum of the trimmed
    durations (within a frame). When some clips have audio and others not, the
    silent ones get silence, so sound stays in sync. A trim that leaves less
    than :data:`MIN_TRIMMED_SECONDS` of a clip is a ``VideoError`` naming the
    clip (input 1 is the first).
    """
    if not parts:
        raise ValueError("concatenate needs at least one clip")
    async with _Workdir() as workdir:
        sources = [await workdir.write(f"in{n}.mp4", data) for n, (data, _, _) in enumerate(parts)]
        infos: list[VideoInfo] = []
        for number, source in enumerate(sources, start=1):
            try:
                infos.append(await _probe_file(source, timeout_seconds))
            except VideoError as exc:
                raise VideoError(f"input {number}: {exc}") from None
        keeps = [
            _kept_span(number, info, trim_start, trim_end)
            for number, (info, (_, trim_start, trim_end)) in enumerate(
                zip(infos, parts, strict=True), start=1
            )
        ]
        graph = _concat_graph(infos, keeps)
        output = workdir.path / "out.mp4"
        arguments = _ffmpeg()
        for source in sources:
            arguments += [*_INPUT_OPTIONS, "-i", str(source)]
        arguments += ["-filter_complex", graph, "-map", "[v]"]
        if any(info.has_audio for info in infos):
            arguments += ["-map", "[a]", "-c:a", "aac", "-b:a", "128k"]
        arguments += [
            "-c:v", "libx264", "-preset", KEEP_PRESET, "-crf", KEEP_CRF,
            *_MP4_OUTPUT_OPTIONS, str(output),
        ]  # fmt: skip
        await _run(arguments, timeout_seconds=timeout_seconds, what="concatenating")
        return await workdir.read(output)


def _kept_span(
    number: int, info: VideoInfo, trim_start: float, trim_end: float
) -> tuple[float, float]:
    for name, value in (("trim_start", trim_start), ("trim_end", trim_end)):
        if not math.isfinite(value) or value < 0:
            raise VideoError(f"input {number}: {name} must be a number ≥ 0, got {value!r}")
    kept = info.duration_seconds - trim_start - trim_end
    if kept < MIN_TRIMMED_SECONDS:
        raise VideoError(
            f"input {number}: trimming {trim_start:g} s from the start and {trim_end:g} s from "
            f"the end of a {info.duration_seconds:g} s clip leaves {max(kept, 0):.2f} s; "
            f"at least {MIN_TRIMMED_SECONDS:g} s must remain"
        )
    return trim_start, kept


def _concat_graph(infos: list[VideoInfo], keeps: list[tuple[float, float]]) -> str:
    width, height = _even(infos[0].width), _even(infos[0].height)
    fps = infos[0].fps or 24.0
    with_audio = any(info.has_audio for info in infos)
    chains: list[str] = []
    labels: list[str] = []
    for index, (info, (start, kept)) in enumerate(zip(infos, keeps, strict=True)):
        chains.append(
            f"[{index}:v:0]trim=start={start:.6f}:duration={kept:.6f},setpts=PTS-STARTPTS,"
            f"scale={width}:{height}:force_original_aspect_ratio=decrease:flags=lanczos,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps:g},"
            f"format=yuv420p[v{index}]"
        )
        labels.append(f"[v{index}]")
        if with_audio:
            if info.has_audio:
                source = (
                    f"[{index}:a:0]atrim=start={start:.6f}:duration={kept:.6f},"
                    "asetpts=PTS-STARTPTS,"
                )
            else:
                source = f"anullsrc=r={AUDIO_RATE}:cl=stereo,"
            # Pad or cut the sound to exactly the picture's length, so later clips stay in sync.
            chains.append(
                f"{source}aresample={AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
                f"apad,atrim=duration={kept:.6f}[a{index}]"
            )
            labels.append(f"[a{index}]")
    outputs = "[v][a]" if with_audio else "[v]"
    chains.append(f"{''.join(labels)}concat=n={len(infos)}:v=1:a={1 if with_audio else 0}{outputs}")
    return ";".join(chains)


# --- GIF ---------------------------------------------------------------------------------


async def to_gif(
    data: bytes,
    *,
    max_width: int = 480,
    fps: int = 12,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> bytes:
    """An animated, endlessly looping GIF with a palette made for this clip.

    ``palettegen`` picks the 256 colours from the clip itself and ``paletteuse``
    maps frames to them, which looks far better than GIF's default palette.
    Width is at most ``max_width`` (never enlarged), height follows the aspect.
    """
    if max_width < 16:
        raise ValueError("max_width must be at least 16")
    if not 1 <= fps <= 50:
        raise ValueError("fps must be between 1 and 50")
    graph = (
        f"[0:v:0]fps={fps},scale='min(iw,{max_width})':-2:flags=lanczos,split[frames][copy];"
        "[copy]palettegen=stats_mode=diff[palette];"
        "[frames][palette]paletteuse=dither=bayer:bayer_scale=5:diff_mode=rectangle[gif]"
    )
    async with _Workdir() as workdir:
        source = await workdir.write("in.mp4", data)
        output = workdir.path / "out.gif"
        arguments = _ffmpeg(
            *_INPUT_OPTIONS, "-i", str(source),
            "-filter_complex", graph, "-map", "[gif]", "-loop", "0", str(output),
        )  # fmt: skip
        await _run(arguments, timeout_seconds=timeout_seconds, what="making the GIF")
        return await workdir.read(output)


# --- upscale -----------------------------------------------------------------------------


async def upscale(
    data: bytes, *, height: int, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> bytes:
    """Resample with Lanczos so the short side is ``height`` lines ("1080p" → 1080).

    For a landscape clip that is its height; for a portrait clip its width
    (a 720×1280 clip at 1080 becomes 1080×1920), as "1080p" means for phones.
    The other side keeps the aspect ratio, rounded to an even number. Audio is
    copied unchanged.
    """
    if not 16 <= height <= MAX_UPSCALE_LINES or height % 2:
        raise ValueError(f"height must be an even number of lines from 16 to {MAX_UPSCALE_LINES}")
    async with _Workdir() as workdir:
        source = await workdir.write("in.mp4", data)
        info = await _probe_file(source, timeout_seconds)
        scale = f"scale=-2:{height}" if info.width >= info.height else f"scale={height}:-2"
        output = workdir.path / "out.mp4"
        arguments = _ffmpeg(
            *_INPUT_OPTIONS, "-i", str(source), "-map", "0:v:0", "-map", "0:a:0?",
            "-vf", f"{scale}:flags=lanczos,setsar=1",
            "-c:v", "libx264", "-preset", KEEP_PRESET, "-crf", KEEP_CRF, "-pix_fmt", "yuv420p",
            "-c:a", "copy",
            *_MP4_OUTPUT_OPTIONS, str(output),
        )  # fmt: skip
        await _run(arguments, timeout_seconds=timeout_seconds, what="upscaling")
        return await workdir.read(output)


# --- running ffmpeg ----------------------------------------------------------------------


class _Workdir:
    """A temporary directory for one operation, removed on exit (also after errors)."""

    def __init__(self) -> None:
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    @property
    def path(self) -> Path:
        assert self._directory is not None
        return Path(self._directory.name)

    async def __aenter__(self) -> _Workdir:
        self._directory = await asyncio.to_thread(
            tempfile.TemporaryDirectory, prefix="flowgate-video-"
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._directory is not None:
            await asyncio.to_thread(self._directory.cleanup)

    async def write(self, name: str, data: bytes) -> Path:
        """Write ``data`` to a file in the directory."""
        if not data:
            raise VideoError("the video is empty (0 bytes)")
        target = self.path / name
        await asyncio.to_thread(target.write_bytes, data)
        return target

    async def read(self, path: Path) -> bytes:
        """Read an output file; a missing or empty one means ffmpeg produced nothing."""
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            data = b""
        if not data:
            raise VideoError("ffmpeg produced no output")
        return data


def _ffmpeg(*arguments: str) -> list[str]:
    """An ffmpeg command line: quiet but for errors, no stdin, overwrite outputs."""
    return [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *arguments]


async def _run(
    arguments: list[str],
    *,
    timeout_seconds: float,
    what: str = "running ffmpeg",
    check: bool = True,
) -> tuple[bytes, bytes]:
    """Run ffmpeg; return (stdout, stderr). With ``check``, a non-zero exit is a ``VideoError``."""
    process = await asyncio.create_subprocess_exec(
        *arguments,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_seconds)
    except TimeoutError:
        await _kill(process)
        raise VideoError(f"{what}: ffmpeg took longer than {timeout_seconds:g} s") from None
    except BaseException:
        # Cancelled: never leave an ffmpeg behind.
        await _kill(process)
        raise
    if check and process.returncode != 0:
        raise VideoError(_failure(what, stderr))
    return stdout, stderr


async def _kill(process: asyncio.subprocess.Process) -> None:
    # It may have ended on its own just now: then there is nothing to kill.
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def _run_sync(arguments: list[str], timeout_seconds: float, what: str) -> None:
    try:
        completed = subprocess.run(
            arguments, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_seconds
        )
    except subprocess.TimeoutExpired:
        raise VideoError(f"{what}: ffmpeg took longer than {timeout_seconds:g} s") from None
    if completed.returncode != 0:
        raise VideoError(_failure(what, completed.stderr))


def _failure(what: str, stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace")
    # Drop ffmpeg's "[in#0 @ 0x55…]" prefixes and our temporary paths: noise to a reader.
    text = _LOG_PREFIX.sub("", _TEMP_PATH.sub("", text))
    lines = [line.strip() for line in text.splitlines()]
    tail = [line for line in lines if line][-STDERR_LINES:]
    detail = " | ".join(tail) if tail else "no output"
    return f"{what} failed (is it a valid MP4?): ffmpeg said: {detail}"


def _even(pixels: int) -> int:
    return max(2, pixels + pixels % 2)
