"""Settings of one sandbox app."""

from __future__ import annotations

from dataclasses import dataclass

# Longest delay a ``[sandbox:delay=MS]`` directive may ask for (ten minutes).
MAX_DELAY_MS = 600_000


@dataclass(frozen=True)
class SandboxConfig:
    """How a sandbox app behaves.

    ``default_delay_ms`` is added before every generation answer (simulated
    upstream latency). ``fixed_image`` is the benchmark mode: every generation
    returns one small pre-rendered image, so drawing does not dominate the
    measurement (sizes and ratios are still validated but not drawn).
    ``call_log_size`` bounds the in-memory call log. ``max_page_size`` caps
    ``GET /v1beta/models?pageSize=`` (Google's cap is 1000; lower it to exercise
    a client's ``nextPageToken`` handling).

    Per-key quotas will be another field here (e.g. a mapping from key to
    requests per minute/day); the app already funnels every generation through
    one admission step that turns directives into faults, and the call log
    already counts calls per key and model, so a quota is a check in that step.
    """

    default_delay_ms: int = 0
    fixed_image: bool = False
    call_log_size: int = 10_000
    max_page_size: int = 1000

    def __post_init__(self) -> None:
        if not 0 <= self.default_delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"default_delay_ms must be between 0 and {MAX_DELAY_MS}")
        if self.call_log_size < 1:
            raise ValueError("call_log_size must be at least 1")
        if self.max_page_size < 1:
            raise ValueError("max_page_size must be at least 1")
