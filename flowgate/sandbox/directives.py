"""Fault directives written into prompts: ``[sandbox:429-daily]``, ``[sandbox:delay=500]`` …

They let a test or a client developer provoke each upstream behaviour on
purpose through the normal request path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flowgate.sandbox.config import MAX_DELAY_MS
from flowgate.sandbox.google_errors import (
    DEFAULT_RETRY_SECONDS,
    GoogleApiError,
    QuotaKind,
    bare_rate_limit,
    internal,
    invalid_argument,
    overloaded,
    quota_exhausted,
)

# Directive names that select a fault; ``delay`` is separate because it combines with them.
FAULTS: frozenset[str] = frozenset(
    {
        "429-daily",
        "429-minute",
        "429-project",
        "429",
        "503",
        "500",
        "unsafe",
        "unsafe-image",
        "video-fail",
    }
)
# Directives that only mean something to Veo (``:predictLongRunning``).
VIDEO_ONLY_FAULTS = frozenset({"video-fail"})
MAX_VIDEO_SECONDS = 3600.0
# Faults that take an optional ``=SECONDS`` overriding the RetryInfo delay.
FAULTS_WITH_RETRY = frozenset({"429-daily", "429-minute", "429-project"})

_DIRECTIVE = re.compile(r"\[sandbox:([A-Za-z0-9-]+)(?:=([^\]]*))?\]")


@dataclass(frozen=True)
class Directives:
    """What the prompt asked the sandbox to do besides drawing."""

    fault: str | None = None
    retry_seconds: float | None = None
    delay_ms: int = 0
    # ``[sandbox:video-seconds=N]``: how long a video operation runs (``None``: the config's).
    video_seconds: float | None = None

    def is_video_only(self) -> bool:
        """Whether a directive here applies only to video generation."""
        return self.fault in VIDEO_ONLY_FAULTS or self.video_seconds is not None


def strip_directives(prompt: str) -> str:
    """The prompt without its directives (what gets written on the picture)."""
    return " ".join(_DIRECTIVE.sub(" ", prompt).split())


def parse_directives(prompt: str) -> Directives:
    """Read every ``[sandbox:…]`` in ``prompt``; the first fault wins.

    An unknown name or a malformed value is a 400, so a typo in a test prompt
    fails loudly instead of silently drawing a picture.
    """
    fault: str | None = None
    retry_seconds: float | None = None
    delay_ms = 0
    video_seconds: float | None = None
    for match in _DIRECTIVE.finditer(prompt):
        name, value = match.group(1).lower(), match.group(2)
        if name == "delay":
            delay_ms = max(delay_ms, _parse_delay(match.group(0), value))
        elif name == "video-seconds":
            video_seconds = _parse_video_seconds(match.group(0), value)
        elif name in FAULTS:
            if value is not None and name not in FAULTS_WITH_RETRY:
                raise _bad(match.group(0), "this directive takes no value")
            if fault is None:
                fault = name
                if value is not None:
                    retry_seconds = _parse_seconds(match.group(0), value)
        else:
            raise _bad(match.group(0), "unknown sandbox directive")
    return Directives(
        fault=fault, retry_seconds=retry_seconds, delay_ms=delay_ms, video_seconds=video_seconds
    )


_QUOTA_KINDS: dict[str, QuotaKind] = {
    "429-daily": "daily",
    "429-minute": "minute",
    "429-project": "project",
}


def error_for_fault(directives: Directives, model_id: str) -> GoogleApiError | None:
    """The error an error-type fault answers with; ``None`` for no fault or a safety fault."""
    fault = directives.fault
    if fault in _QUOTA_KINDS:
        kind = _QUOTA_KINDS[fault]
        retry = directives.retry_seconds
        return quota_exhausted(
            model_id, kind, DEFAULT_RETRY_SECONDS[kind] if retry is None else retry
        )
    if fault == "429":
        return bare_rate_limit()
    if fault == "503":
        return overloaded()
    if fault == "500":
        return internal()
    return None


def _parse_delay(directive: str, value: str | None) -> int:
    if value is None or not value.isdigit():
        raise _bad(directive, "expected [sandbox:delay=MILLISECONDS]")
    return min(int(value), MAX_DELAY_MS)


def _parse_video_seconds(directive: str, value: str | None) -> float:
    try:
        seconds = float((value or "").removesuffix("s"))
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_VIDEO_SECONDS:
        raise _bad(directive, f"expected [sandbox:video-seconds=N], 0 ≤ N ≤ {MAX_VIDEO_SECONDS:g}")
    return seconds


def _parse_seconds(directive: str, value: str) -> float:
    try:
        seconds = float(value.removesuffix("s"))
    except ValueError:
        raise _bad(directive, "expected a retry delay in seconds, e.g. =2.5") from None
    if not 0 <= seconds <= 86_400:
        raise _bad(directive, "retry delay must be between 0 and 86400 seconds")
    return seconds


def _bad(directive: str, problem: str) -> GoogleApiError:
    return invalid_argument(f"Sandbox directive {directive}: {problem}.")
