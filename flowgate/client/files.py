"""Image file types the API accepts, recognised from their bytes."""

from __future__ import annotations

UPLOAD_CONTENT_TYPES: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp")
MAX_UPLOAD_BYTES = 20_971_520
"""The contract's upload limit (20 MiB)."""

_EXTENSIONS: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
}


def sniff_content_type(data: bytes) -> str | None:
    """``image/png``, ``image/jpeg`` or ``image/webp`` from the magic bytes, else ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def describe_bytes(data: bytes) -> str:
    """A short name for what a file holds, for error messages (``a GIF image``, ``text``)."""
    if not data:
        return "an empty file"
    kind = sniff_content_type(data)
    if kind:
        return f"a {kind.split('/')[1].upper()} image"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF image"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "a HEIC/AVIF image"
    if data.startswith(b"BM"):
        return "a BMP image"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "a TIFF image"
    try:
        data[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "binary data of an unknown type"
    return "text"


def extension_for(content_type: str, default: str = "bin") -> str:
    """The file extension for a content type (``image/jpeg`` → ``jpg``)."""
    return _EXTENSIONS.get(content_type.split(";", 1)[0].strip().lower(), default)
