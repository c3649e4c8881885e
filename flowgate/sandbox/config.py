"""Settings of one sandbox app."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from flowgate.sandbox.quotas import KeyQuota

# Longest delay a ``[sandbox:delay=MS]`` directive may ask for (ten minutes).
MAX_DELAY_MS = 600_000


@dataclass(frozen=True)
class SandboxConfig:
    """How a sandbox app behaves.

    ``default_delay_ms`` is added before every generation answer (simulated
    upstream latency). ``fixed_image`` is the benchmark mode: every generation
    returns one small pre-rendered image (and every video one pre-rendered
    clip per ratio and length), so drawing does not dominate the measurement
    (sizes and ratios are still validated but not drawn); ``fixed_image_bytes``
    pads that image to a real image's size (0: ~18 kB). ``call_log_size``
    bounds the in-memory call log. ``max_page_size`` caps
    ``GET /v1beta/models?pageSize=`` (Google's cap is 1000; lower it to exercise
    a client's ``nextPageToken`` handling).

    ``quotas`` maps an API key to its limits (one :class:`KeyQuota`, or several
    for different models); ``PUT /_sandbox/quotas/{key}`` changes them at run
    time. ``now`` is the clock (seconds since the epoch) of quota windows, video
    operations and file expiry: tests pass a fake one instead of sleeping.

    ``video_seconds`` is how long a Veo operation runs before it is done (a
    ``[sandbox:video-seconds=N]`` directive overrides it per request).
    ``video_download_redirect`` makes ``…/files/{id}:download`` answer 302 to a
    key-less URL as Google does (``False``: answer the bytes directly).
    ``max_video_files`` bounds the videos kept in memory (oldest go first).
    """

    default_delay_ms: int = 0
    fixed_image: bool = False
    fixed_image_bytes: int = 0
    call_log_size: int = 10_000
    max_page_size: int = 1000
    quotas: Mapping[str, KeyQuota | Sequence[KeyQuota]] = field(default_factory=dict)
    now: Callable[[], float] = time.time
    video_seconds: float = 2.0
    video_download_redirect: bool = True
    max_video_files: int = 500

    def __post_init__(self) -> None:
        if not 0 <= self.default_delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"default_delay_ms must be between 0 and {MAX_DELAY_MS}")
        if self.call_log_size < 1:
            raise ValueError("call_log_size must be at least 1")
        if self.max_page_size < 1:
            raise ValueError("max_page_size must be at least 1")
        if not 0 <= self.video_seconds <= 3600:
            raise ValueError("video_seconds must be between 0 and 3600")
        if self.max_video_files < 1:
            raise ValueError("max_video_files must be at least 1")
