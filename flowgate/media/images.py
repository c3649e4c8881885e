"""Image checks and conversions with Pillow: upload inspection, JPEG re-encoding, thumbnails.

Uploads are untrusted. :func:`inspect_image` therefore reads the dimensions
from the file header with its own few lines of parsing *before* Pillow decodes
anything, rejects decompression bombs by that size, and opens files through
the format's own Pillow plugin class rather than ``Image.open``. That keeps
Pillow's process-global ``MAX_IMAGE_PIXELS`` check (which warns or raises
depending on a global, and would need process-wide warning filters to tame)
out of the request path, and avoids libwebp allocating a canvas for a forged
16383x16383 WebP header just to report its size.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

from flowgate.domain.errors import InvalidRequest

ImageFormat = Literal["PNG", "JPEG", "WEBP"]

MAX_UPLOAD_BYTES = 20_971_520
"""The contract's upload limit (20 MiB)."""

MAX_UPLOAD_PIXELS = 50_000_000
"""Default bound on widthxheight of an upload (a 50 MP image decodes to ≤ 200 MB RGBA)."""

ALLOWED_IMAGE_MIME_TYPES: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp")

_MIME_BY_FORMAT: dict[str, str] = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_FORMAT_BY_MIME: dict[str, ImageFormat] = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WEBP",
}
_ALLOWED_TEXT = "image/png, image/jpeg or image/webp"
_EMPTY_MESSAGE = f"Empty body: send the image bytes with Content-Type {_ALLOWED_TEXT}"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers that carry the frame size (C4 DHT, C8 JPG, CC DAC are not frames).
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})
# EXIF orientations that rotate by 90° and so swap width and height.
_ORIENTATIONS_SWAPPING_SIDES = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    """What an accepted image is: its MIME type, displayed size and Pillow format name."""

    mime: str
    width: int
    height: int
    format: ImageFormat


# --------------------------------------------------------------------------- sniffing


def _sniff_format(data: bytes) -> ImageFormat | None:
    """The accepted format the magic bytes announce, or None."""
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_other(data: bytes) -> str:
    """A short human description of bytes that are not PNG, JPEG or WebP."""
    head = data[:16]
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF image"
    if head.startswith(b"BM"):
        return "a BMP image"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "a TIFF image"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "an AVIF image"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "a HEIC/HEIF image"
        return "an MP4/QuickTime video"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head.lstrip().startswith((b"<", b"{", b"[")):
        return "text (HTML, XML or JSON)"
    return "not a PNG, JPEG or WebP image"


# --------------------------------------------------------------------------- header sizes


def _png_size(data: bytes) -> tuple[int, int] | None:
    # IHDR is always the first chunk: length(4) type(4) width(4) height(4).
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2  # after SOI
    length_of_data = len(data)
    while position + 4 <= length_of_data:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        (segment_length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if segment_length < 2:
            return None
        if marker in _JPEG_SOF_MARKERS:
            if position + 9 > length_of_data:
                return None
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        position += 2 + segment_length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            return None
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _header_size(data: bytes, image_format: ImageFormat) -> tuple[int, int] | None:
    """Width and height as the file header states them, without decoding pixels."""
    if image_format == "PNG":
        return _png_size(data)
    if image_format == "JPEG":
        return _jpeg_size(data)
    return _webp_size(data)


# --------------------------------------------------------------------------- decoding


def _open_with_plugin(data: bytes, image_format: ImageFormat) -> ImageFile.ImageFile:
    """Open ``data`` with exactly the plugin of ``image_format`` (reads the header only).

    Raises SyntaxError / OSError when the bytes are not that format. Bypasses
    ``Image.open``'s global decompression-bomb check on purpose: callers check
    the size against their own limit first.
    """
    stream = io.BytesIO(data)
    if image_format == "PNG":
        return PngImagePlugin.PngImageFile(stream)
    if image_format == "JPEG":
        return JpegImagePlugin.JpegImageFile(stream)
    return WebPImagePlugin.WebPImageFile(stream)


def _bomb_message(width: int, height: int, max_pixels: int) -> str:
    return (
        f"Image is {width}x{height} = {width * height} pixels, over the limit of "
        f"{max_pixels} pixels (possible decompression bomb); send a smaller image"
    )


def _displayed_size(image: Image.Image) -> tuple[int, int]:
    """The size a viewer shows: width and height swapped for EXIF rotations of 90°."""
    width, height = image.size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG)
    except Exception:  # a broken EXIF block must not reject an otherwise fine image
        orientation = None
    if orientation in _ORIENTATIONS_SWAPPING_SIDES:
        return height, width
    return width, height


def _normalized_mime(declared_mime: str | None) -> str:
    if declared_mime is None or not declared_mime.strip():
        raise InvalidRequest(f"Content-Type is required: send {_ALLOWED_TEXT}")
    mime = declared_mime.split(";", 1)[0].strip().lower()
    if mime not in _FORMAT_BY_MIME:
        hint = " (the correct name is image/jpeg)" if mime in ("image/jpg", "image/pjpeg") else ""
        raise InvalidRequest(
            f"Content-Type {declared_mime.strip()} is not supported{hint}; send {_ALLOWED_TEXT}"
        )
    return mime


def inspect_image(
    data: bytes,
    declared_mime: str | None,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> ImageInfo:
    """Check an uploaded image and return its type and displayed size.

    Rejects, each with :class:`InvalidRequest` (400): an empty body; more than
    ``max_bytes`` bytes (``File size (N) is over M bytes``, the contract's
    wording); a declared type other than PNG, JPEG or WebP (parameters such
    as ``; charset=`` are ignored); bytes that are not the declared type;
    a header whose widthxheight exceeds ``max_pixels`` (checked before any
    decoding); and data Pillow cannot fully decode (corrupt or truncated).
    ``width``/``height`` follow the EXIF orientation, as viewers show them.
    """
    if not data:
        raise InvalidRequest(_EMPTY_MESSAGE)
    if len(data) > max_bytes:
        raise InvalidRequest(f"File size ({len(data)}) is over {max_bytes} bytes")
    mime = _normalized_mime(declared_mime)
    expected = _FORMAT_BY_MIME[mime]

    actual = _sniff_format(data)
    if actual is None:
        raise InvalidRequest(
            f"The bytes are {_describe_other(data)}, but Content-Type says {mime}; "
            f"send a PNG, JPEG or WebP image with its matching Content-Type"
        )
    if actual != expected:
        actual_mime = _MIME_BY_FORMAT[actual]
        raise InvalidRequest(
            f"The bytes are a {actual} image ({actual_mime}), but Content-Type says {mime}; "
            f"send Content-Type {actual_mime}"
        )

    size = _header_size(data, expected)
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise InvalidRequest(
            f"The {expected} image has a damaged header (no readable size); "
            "send a complete, uncorrupted file"
        )
    width, height = size
    if width * height > max_pixels:
        raise InvalidRequest(_bomb_message(width, height, max_pixels))

    # Any decoder failure below means the upload is broken; Pillow raises a
    # zoo of types for that (SyntaxError, OSError, ValueError, struct.error…).
    try:
        with _open_with_plugin(data, expected) as probe:
            if probe.size != (width, height):
                raise ValueError(f"header says {width}x{height}, decoder says {probe.size}")
            probe.verify()
        with _open_with_plugin(data, expected) as image:
            image.load()
            shown_width, shown_height = _displayed_size(image)
    except Exception as exc:
        raise InvalidRequest(
            f"The {expected} image could not be decoded ({_short_reason(exc)}); it is corrupt "
            "or truncated: send the complete file"
        ) from exc
    return ImageInfo(mime=mime, width=shown_width, height=shown_height, format=expected)


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


# --------------------------------------------------------------------------- conversions


def _decode_trusted(data: bytes, max_pixels: int) -> Image.Image:
    """Decode bytes flowgate stored or an upstream returned; ValueError when not a sane image."""
    image_format = _sniff_format(data)
    if image_format is None:
        raise ValueError(f"expected PNG, JPEG or WebP bytes, got {_describe_other(data)}")
    size = _header_size(data, image_format)
    if size is None or size[0] * size[1] <= 0:
        raise ValueError(f"{image_format} header has no readable size")
    if size[0] * size[1] > max_pixels:
        raise ValueError(_bomb_message(size[0], size[1], max_pixels))
    try:
        return _open_with_plugin(data, image_format)
    except Exception as exc:
        raise ValueError(f"{image_format} image could not be opened: {_short_reason(exc)}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for JPEG: transparency composited onto white, 16-bit greyscale scaled to 8 bits."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    _to_rgb(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def to_jpeg(data: bytes, quality: int = 90, *, max_pixels: int = MAX_UPLOAD_PIXELS * 2) -> bytes:
    """Re-encode a PNG, JPEG or WebP image as JPEG (EXIF rotation applied, alpha on white).

    For bytes flowgate already holds (stored uploads, upstream outputs); raises
    ``ValueError`` when they are not a decodable image within ``max_pixels``.
    """
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be 1..95, got {quality}")
    image = _decode_trusted(data, max_pixels)
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
        return _encode_jpeg(upright, quality)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"image could not be decoded: {_short_reason(exc)}") from exc
    finally:
        image.close()


def thumbnail_jpeg(
    data: bytes, max_side: int, *, quality: int = 85, max_pixels: int = MAX_UPLOAD_PIXELS * 2
) -> bytes:
    """A JPEG no larger than ``max_side`` on either side, aspect ratio kept, never enlarged.

    JPEG sources are decoded at a reduced scale when possible (fast for big
    photos). Raises ``ValueError`` like :func:`to_jpeg`.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    image = _decode_trusted(data, max_pixels)
    try:
        if image.format == "JPEG":
            # draft() lets libjpeg decode at 1/2, 1/4 or 1/8 scale: far less work.
            image.draft("RGB", (max_side, max_side))
        image.load()
        upright = ImageOps.exif_transpose(image)
        upright.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return _encode_jpeg(upright, quality)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"image could not be decoded: {_short_reason(exc)}") from exc
    finally:
        image.close()


def lanczos_jpeg(
    data: bytes,
    width: int,
    height: int,
    *,
    quality: int = 90,
    max_pixels: int = MAX_UPLOAD_PIXELS * 2,
) -> bytes:
    """Resample an image to exactly ``width`` x ``height`` with Lanczos and encode it as JPEG.

    Used for upscales: locally (the source enlarged to 2K/4K) and to bring an
    upstream's answer to the requested size. When the proportions differ, the
    image is first cropped about its centre to ``width``:``height`` (never
    stretched). EXIF rotation is applied, transparency composited on white.
    Blocking (a 4096-px Lanczos pass takes a fraction of a second): run it in a
    thread. Raises ``ValueError`` like :func:`to_jpeg`.
    """
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be 1..95, got {quality}")
    if width * height > max_pixels:
        raise ValueError(_bomb_message(width, height, max_pixels))
    image = _decode_trusted(data, max_pixels)
    try:
        image.load()
        upright = _to_rgb(ImageOps.exif_transpose(image))
        if upright.size != (width, height):
            upright = ImageOps.fit(upright, (width, height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        upright.save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"image could not be decoded: {_short_reason(exc)}") from exc
    finally:
        image.close()
