"""What every provider offers, in normalized types.

A provider knows nothing of jobs, users or HTTP requests to flowgate: it turns
a normalized request into bytes or raises :class:`flowgate.domain.errors.UpstreamError`
(or a subclass such as ``ContentBlocked``) / ``UpstreamUnreachable``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class InlineImage:
    """Image bytes sent upstream inline (references, start frames)."""

    mime: str
    data: bytes


@dataclass(frozen=True)
class ContentImageRequest:
    """One ``:generateContent`` image call (one image out)."""

    upstream_model: str
    prompt: str
    aspect_ratio: str | None = None  # "16:9" etc.; None = follow the first reference ("auto")
    image_size: str | None = None  # "1K" | "2K" | "4K"
    seed: int | None = None
    references: tuple[InlineImage, ...] = ()


@dataclass(frozen=True)
class PredictImageRequest:
    """One ``:predict`` (Imagen) call returning ``count`` images."""

    upstream_model: str
    prompt: str
    count: int = 1
    aspect_ratio: str | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """An image an upstream returned."""

    mime: str
    data: bytes
    text: str | None = None  # any non-thought text part that came with it


@dataclass(frozen=True)
class HealthReport:
    """Result of a successful health check: the upstream model ids the key can use."""

    models: list[str] = field(default_factory=list)


class ImageProvider(Protocol):
    """The image side of a provider."""

    async def health_check(self) -> HealthReport:
        """Validate the credential; raise ``UpstreamError`` if the upstream rejects it."""
        ...

    async def generate_content_image(self, request: ContentImageRequest) -> GeneratedImage:
        """One Nano Banana style call; raises ``ContentBlocked`` on safety blocks."""
        ...

    async def predict_images(self, request: PredictImageRequest) -> list[GeneratedImage]:
        """One Imagen style call with ``sampleCount``."""
        ...


@dataclass(frozen=True)
class VideoStartRequest:
    """One ``:predictLongRunning`` call (one video out)."""

    upstream_model: str
    prompt: str
    aspect_ratio: str = "16:9"
    duration_seconds: int = 8
    resolution: str = "720p"
    seed: int | None = None
    start_frame: InlineImage | None = None
    last_frame: InlineImage | None = None
    references: tuple[InlineImage, ...] = ()
    source_video_uri: str | None = None  # extension of an earlier output


@dataclass(frozen=True)
class VideoOperation:
    """The state of an upstream long-running operation."""

    name: str
    done: bool
    video_uris: tuple[str, ...] = ()
    error_code: int | None = None
    error_message: str | None = None
    filtered_reasons: tuple[str, ...] = ()


class VideoProvider(Protocol):
    """The video side of a provider."""

    async def start_video(self, request: VideoStartRequest) -> str:
        """Submit; return the upstream operation name."""
        ...

    async def get_operation(self, name: str) -> VideoOperation:
        """Poll one operation."""
        ...

    async def download(self, uri: str) -> bytes:
        """Fetch an output file the upstream produced."""
        ...


class Provider(ImageProvider, VideoProvider, Protocol):
    """Everything an account's upstream offers."""
