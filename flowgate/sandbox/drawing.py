"""Deterministic test pictures drawn with Pillow.

The same :class:`PictureOrder` (model, prompt, seed, size, ratio, reference
bytes) always yields the same bytes; any change of prompt or seed changes the
colours and shapes visibly. Every picture says "SANDBOX" and carries its own
prompt, seed, model and size, so a picture found later explains itself.

Speed matters more than beauty: the background is a 2×2 image scaled up
(a four-corner gradient in one resize), shapes are opaque (no alpha
compositing of full frames) and PNGs use ``compress_level=1``.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import textwrap
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

# Pillow's default font at a given size (FreeType when available, bitmap otherwise).
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

MAX_PROMPT_LINES = 6
DRAFT_LONG_SIDE_PX = 256
FIXED_SIDE_PX = 256


@dataclass(frozen=True)
class PictureOrder:
    """Everything that decides what a picture looks like."""

    model_id: str
    prompt: str
    seed: int | None
    width: int
    height: int
    size_label: str
    ratio_label: str
    reference_digests: tuple[str, ...] = ()
    caption: str = ""

    def fingerprint(self) -> bytes:
        """A digest of every field: the source of all colours and shapes."""
        return hashlib.sha256(repr(self).encode()).digest()


def reference_digest(data: bytes) -> str:
    """Short digest of a reference's bytes (for :attr:`PictureOrder.reference_digests`)."""
    return hashlib.sha256(data).hexdigest()[:16]


def open_reference(data: bytes) -> Image.Image:
    """Decode a reference image fully; raise ``ValueError`` when the bytes are not an image."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a decodable image: {exc.__class__.__name__}") from exc
    return image


def draw_picture(
    order: PictureOrder,
    references: Sequence[Image.Image] = (),
    *,
    image_format: str = "PNG",
) -> bytes:
    """Render ``order`` at its exact size and encode it (``PNG`` or ``JPEG``)."""
    return encode(draw_scene(order, references), image_format)


def draw_scene(order: PictureOrder, references: Sequence[Image.Image] = ()) -> Image.Image:
    """Render ``order`` as an RGB image: gradient, shapes, reference thumbnails, captions."""
    digest = order.fingerprint()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    width, height = order.width, order.height

    picture = _gradient(rng, width, height)
    draw = ImageDraw.Draw(picture)
    _shapes(draw, rng, width, height)
    _reference_thumbnails(picture, references, width, height)
    _caption(draw, order, width, height)
    return picture


@lru_cache(maxsize=16)
def banner_bottom(width: int, height: int) -> int:
    """Pixel row just below the yellow SANDBOX banner :func:`draw_scene` puts top-left."""
    font_px = _font_px(width, height)
    title_font = _font(font_px * 2)
    pad = max(2, font_px // 2)
    box = ImageDraw.Draw(Image.new("1", (1, 1))).textbbox((pad, pad), "SANDBOX", font=title_font)
    return int(box[3]) + pad


def label_font(width: int, height: int) -> Font:
    """The caption font :func:`draw_scene` uses for a picture of this size."""
    return _font(_font_px(width, height))


def draw_draft(order: PictureOrder) -> bytes:
    """A small "thinking" draft of ``order`` (what Gemini 3 sends as a thought image)."""
    scale = DRAFT_LONG_SIDE_PX / max(order.width, order.height)
    draft = PictureOrder(
        model_id=order.model_id,
        prompt=order.prompt,
        seed=order.seed,
        width=max(2, round(order.width * scale)),
        height=max(2, round(order.height * scale)),
        size_label="draft",
        ratio_label=order.ratio_label,
        reference_digests=order.reference_digests,
        caption="thought draft",
    )
    return draw_picture(draft)


def draw_fixed_picture(image_format: str = "PNG", *, padded_to: int = 0) -> bytes:
    """The one picture the benchmark mode returns for every request: small, or padded
    to at least ``padded_to`` bytes, the size of a real generated image."""
    order = PictureOrder(
        model_id="any",
        prompt="fixed benchmark image (SandboxConfig.fixed_image)",
        seed=None,
        width=FIXED_SIDE_PX,
        height=FIXED_SIDE_PX,
        size_label="fixed",
        ratio_label="1:1",
    )
    picture = draw_picture(order, image_format=image_format)
    return _padded(picture, image_format, padded_to - len(picture))


def _padded(picture: bytes, image_format: str, extra: int) -> bytes:
    """``picture`` with ``extra`` random bytes that every decoder skips: a private PNG
    chunk, or JPEG comment segments (random, so they compress no better than pixels)."""
    if extra <= 0:
        return picture
    filler = random.Random(extra).randbytes(extra)
    if image_format == "JPEG":
        segments = b"".join(
            b"\xff\xfe" + (len(part) + 2).to_bytes(2, "big") + part
            for part in (filler[i : i + 65533] for i in range(0, extra, 65533))
        )
        return picture[:2] + segments + picture[2:]  # right after SOI
    chunk_type = b"flPd"  # ancillary, private, safe to copy: decoders skip it
    chunk = extra.to_bytes(4, "big") + chunk_type + filler
    chunk += zlib.crc32(chunk_type + filler).to_bytes(4, "big")
    return picture[:-12] + chunk + picture[-12:]  # before IEND


def encode(picture: Image.Image, image_format: str) -> bytes:
    """Encode fast: PNG at compress level 1, JPEG at quality 90."""
    buffer = io.BytesIO()
    if image_format == "JPEG":
        picture.save(buffer, "JPEG", quality=90)
    else:
        picture.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _colour(rng: random.Random, *, lightness: tuple[float, float]) -> tuple[int, int, int]:
    hue = rng.random()
    light = rng.uniform(*lightness)
    red, green, blue = colorsys.hls_to_rgb(hue, light, rng.uniform(0.55, 0.95))
    return round(red * 255), round(green * 255), round(blue * 255)


def _gradient(rng: random.Random, width: int, height: int) -> Image.Image:
    corners = Image.new("RGB", (2, 2))
    corners.putdata([_colour(rng, lightness=(0.35, 0.7)) for _ in range(4)])
    return corners.resize((width, height), Image.Resampling.BILINEAR)


def _shapes(draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int) -> None:
    outline_px = max(1, min(width, height) // 200)
    for _ in range(5 + rng.randrange(6)):
        shape_w = rng.uniform(0.08, 0.35) * width
        shape_h = rng.uniform(0.08, 0.35) * height
        left = rng.uniform(-0.05, 0.95) * width
        top = rng.uniform(-0.05, 0.95) * height
        box = (left, top, left + shape_w, top + shape_h)
        fill = _colour(rng, lightness=(0.25, 0.8))
        outline = tuple(channel // 3 for channel in fill)
        kind = rng.randrange(3)
        if kind == 0:
            draw.ellipse(box, fill=fill, outline=outline, width=outline_px)
        elif kind == 1:
            draw.rectangle(box, fill=fill, outline=outline, width=outline_px)
        else:
            triangle = [
                (left + shape_w / 2, top),
                (left + shape_w, top + shape_h),
                (left, top + shape_h),
            ]
            draw.polygon(triangle, fill=fill, outline=outline, width=outline_px)


def _reference_thumbnails(
    picture: Image.Image, references: Sequence[Image.Image], width: int, height: int
) -> None:
    """Paste up to four references top-right, so an edit visibly used its inputs."""
    side = max(8, min(width, height) // 4)
    margin = max(2, side // 16)
    right = width - margin
    for reference in list(references)[:4]:
        # Shrink before converting: converting a large reference first costs far more.
        thumbnail = reference.copy()
        thumbnail.thumbnail((side, side))
        thumbnail = thumbnail.convert("RGB")
        left = right - thumbnail.width
        if left < 0:
            break
        picture.paste(
            (255, 255, 255), (left - 2, margin - 2, right + 2, margin + thumbnail.height + 2)
        )
        picture.paste(thumbnail, (left, margin))
        right = left - margin - 4


def _font_px(width: int, height: int) -> int:
    return max(8, min(round((width * height) ** 0.5 / 30), height // 8))


@lru_cache(maxsize=64)
def _font(size_px: int) -> Font:
    return ImageFont.load_default(size=size_px)


def _caption(draw: ImageDraw.ImageDraw, order: PictureOrder, width: int, height: int) -> None:
    font_px = _font_px(width, height)
    font, title_font = _font(font_px), _font(font_px * 2)
    pad = max(2, font_px // 2)

    # The label first and biggest: nobody may mistake a sandbox picture for a real one.
    title_box = draw.textbbox((pad, pad), "SANDBOX", font=title_font)
    draw.rectangle((0, 0, title_box[2] + pad, title_box[3] + pad), fill=(255, 221, 0))
    draw.text((pad, pad), "SANDBOX", font=title_font, fill=(20, 20, 20))

    chars_per_line = max(8, int((width - 2 * pad) / (font_px * 0.55)))
    prompt = order.prompt or "(no prompt)"
    lines = textwrap.wrap(prompt, chars_per_line)
    if len(lines) > MAX_PROMPT_LINES:
        lines = [*lines[: MAX_PROMPT_LINES - 1], lines[MAX_PROMPT_LINES - 1][:-1] + "…"]
    seed = "none" if order.seed is None else str(order.seed)
    lines.append(f"model {order.model_id}   seed {seed}")
    details = f"{order.size_label} {width}x{height}   ratio {order.ratio_label}"
    if order.caption:
        details += f"   {order.caption}"
    lines.append(details)

    line_px = round(font_px * 1.25)
    block_top = max(0, height - len(lines) * line_px - 2 * pad)
    draw.rectangle((0, block_top, width, height), fill=(16, 16, 24))
    for number, line in enumerate(lines):
        draw.text((pad, block_top + pad + number * line_px), line, font=font, fill=(245, 245, 245))
