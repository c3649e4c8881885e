"""Deterministic test videos: frames drawn with Pillow, encoded by ``flowgate.media.video``.

A video is a :class:`VideoRecipe`: one :class:`ClipSegment` for a generation,
plus one more per extension. Every frame shows the SANDBOX label, the frame
number and time, and the segment's prompt, model and resolution; a ball moves
along a path of its own, so motion (and a frozen decoder) is visible. With a
start image the first frame *is* that image and the first second fades into
the drawn scene; with a last frame the last second fades into it. An
extension's first second fades in from the previous segment's last frame.

Frames are small whatever ``resolution`` says (16:9 → 480×270, 9:16 → 270×480,
24 fps) and encoded with ``-preset ultrafast``, so an 8-second clip takes a few
tenths of a second. The same recipe always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageOps

from flowgate.media.video import encode_frames_sync
from flowgate.sandbox.drawing import (
    PictureOrder,
    banner_bottom,
    draw_scene,
    label_font,
    reference_digest,
)

FPS = 24
FRAME_SIZES: dict[str, tuple[int, int]] = {"16:9": (480, 270), "9:16": (270, 480)}
EXTENSION_SECONDS = 7  # Veo 3.1 extends a video by 7 seconds (the output holds both)
MAX_VIDEO_SECONDS = 148  # Veo's longest extended video (8 s + 20 extensions)


@dataclass(frozen=True)
class ClipSegment:
    """One generated stretch of a video: what it shows and for how long."""

    model_id: str
    prompt: str  # as written on the frames (directives removed)
    aspect_ratio: str
    resolution: str
    seconds: int
    first_frame: bytes | None = field(default=None, repr=False)
    last_frame: bytes | None = field(default=None, repr=False)
    references: tuple[bytes, ...] = field(default=(), repr=False)
    extends: str | None = None  # the file id this segment continues

    def fingerprint(self) -> str:
        """Every field, the images by digest."""
        images = [
            reference_digest(data) if data else "-"
            for data in (self.first_frame, self.last_frame, *self.references)
        ]
        return f"{self!r} images={images}"


@dataclass(frozen=True)
class VideoRecipe:
    """Everything that decides a video's bytes."""

    segments: tuple[ClipSegment, ...]

    @property
    def seconds(self) -> int:
        """Length of the whole video."""
        return sum(segment.seconds for segment in self.segments)

    @property
    def aspect_ratio(self) -> str:
        """The ratio of the first segment (extensions keep it)."""
        return self.segments[0].aspect_ratio

    def fingerprint(self) -> str:
        """A digest that changes whenever the video would."""
        text = "\n".join(segment.fingerprint() for segment in self.segments)
        return hashlib.sha256(text.encode()).hexdigest()

    def extended(self, segment: ClipSegment) -> VideoRecipe:
        """This video with ``segment`` appended."""
        return VideoRecipe(segments=(*self.segments, segment))


def fixed_recipe(aspect_ratio: str, seconds: int) -> VideoRecipe:
    """The one video the benchmark mode (``fixed_image``) returns for a ratio and length."""
    segment = ClipSegment(
        model_id="any",
        prompt="fixed benchmark video (SandboxConfig.fixed_image)",
        aspect_ratio=aspect_ratio,
        resolution="fixed",
        seconds=seconds,
    )
    return VideoRecipe(segments=(segment,))


def render_video(recipe: VideoRecipe) -> bytes:
    """Draw and encode ``recipe`` as an MP4 with an audio track (blocking: run in a thread)."""
    return encode_frames_sync(_frames(recipe), FPS, with_audio=True)


def _frames(recipe: VideoRecipe) -> Iterator[Image.Image]:
    width, height = FRAME_SIZES[recipe.aspect_ratio]
    total = recipe.seconds * FPS
    number = 0
    previous: Image.Image | None = None
    for segment in recipe.segments:
        scene = _scene(segment, width, height)
        start = _fitted(segment.first_frame, width, height) if segment.first_frame else None
        if start is None and segment.extends is not None:
            start = previous
        end = _fitted(segment.last_frame, width, height) if segment.last_frame else None
        ball = _BallPath(segment, width, height)
        count = segment.seconds * FPS
        frame = scene
        for index in range(count):
            frame = scene.copy()
            if start is not None and index < FPS:
                frame = Image.blend(start, frame, index / FPS)
            if end is not None and index >= count - FPS:
                frame = Image.blend(frame, end, (index - (count - FPS) + 1) / FPS)
            draw = ImageDraw.Draw(frame)
            ball.draw(draw, index / FPS)
            _frame_label(draw, number, total, width, height)
            number += 1
            yield frame
        previous = frame


def _scene(segment: ClipSegment, width: int, height: int) -> Image.Image:
    caption = f"{segment.seconds}s {FPS}fps"
    if segment.extends is not None:
        caption += f", extends {segment.extends}"
    order = PictureOrder(
        model_id=segment.model_id,
        prompt=segment.prompt,
        seed=None,  # Veo on the Gemini API takes no seed
        width=width,
        height=height,
        size_label=segment.resolution,
        ratio_label=segment.aspect_ratio,
        reference_digests=tuple(reference_digest(data) for data in segment.references),
        caption=caption,
    )
    references = [_open(data) for data in segment.references]
    return draw_scene(order, references)


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.copy()


def _fitted(data: bytes, width: int, height: int) -> Image.Image:
    """The image cropped and scaled to cover the whole frame (what a first frame becomes)."""
    return ImageOps.fit(_open(data).convert("RGB"), (width, height), Image.Resampling.LANCZOS)


class _BallPath:
    """A ball on a Lissajous path chosen by the segment (moves every frame)."""

    def __init__(self, segment: ClipSegment, width: int, height: int) -> None:
        digest = hashlib.sha256(segment.fingerprint().encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        self.radius = max(6, min(width, height) // 14)
        self.centre = (width / 2, height * 0.45)
        self.reach = (width / 2 - self.radius - 4, height * 0.25)
        self.speeds = (rng.uniform(0.15, 0.35), rng.uniform(0.2, 0.5))
        self.phases = (rng.uniform(0, math.tau), rng.uniform(0, math.tau))
        self.colour = tuple(rng.randrange(120, 256) for _ in range(3))

    def draw(self, draw: ImageDraw.ImageDraw, seconds: float) -> None:
        x = self.centre[0] + self.reach[0] * math.sin(
            math.tau * self.speeds[0] * seconds + self.phases[0]
        )
        y = self.centre[1] + self.reach[1] * math.sin(
            math.tau * self.speeds[1] * seconds + self.phases[1]
        )
        box = (x - self.radius, y - self.radius, x + self.radius, y + self.radius)
        draw.ellipse(box, fill=self.colour, outline=(20, 20, 20), width=2)


def _frame_label(
    draw: ImageDraw.ImageDraw, number: int, total: int, width: int, height: int
) -> None:
    """ "SANDBOX frame N/T t=S.SSs" under the banner, legible on any background."""
    font = label_font(width, height)
    text = f"SANDBOX  frame {number + 1}/{total}  t={number / FPS:.2f}s"
    top = banner_bottom(width, height) + 2
    box = draw.textbbox((4, top), text, font=font)
    draw.rectangle((0, box[1] - 2, box[2] + 4, box[3] + 2), fill=(255, 221, 0))
    draw.text((4, top), text, font=font, fill=(20, 20, 20))
