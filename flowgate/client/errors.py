"""The client's exceptions: one type for every HTTP error answer, one for transport failures."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

_RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s\s*$")


class FlowgateClientError(Exception):
    """Base of the exceptions raised by :mod:`flowgate.client`."""


@dataclass(frozen=True)
class SkipReason:
    """One entry of a ``no_eligible_account`` answer's ``skipReasons``."""

    email: str
    reason: str
    model: str


class FlowgateAPIError(FlowgateClientError):
    """The server answered with a non-2xx status.

    ``body`` is the decoded JSON body (or the text when it is not JSON);
    ``error`` is its ``error`` member: a string for errors raised by flowgate
    (``"Unauthorized"``, ``"no_eligible_account"``, a validation message) or
    Google's error object ``{"code", "message", "status", "details"}`` when an
    upstream error was passed through. ``retry_after`` is the number of seconds
    the server asks to wait before retrying, from the ``Retry-After`` header,
    else the body's ``retryAfter`` (ISO time), else Google's
    ``RetryInfo.retryDelay``; ``None`` when the answer gives no hint.
    """

    def __init__(
        self,
        status: int,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        method: str = "",
        url: str = "",
        now: datetime | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.method = method
        self.url = url
        self.error: str | dict[str, Any] | None = (
            body.get("error") if isinstance(body, dict) else None
        )
        self.retry_after = _retry_after_seconds(self.headers, body, now or datetime.now(UTC))
        super().__init__(f"HTTP {status}: {self.message}")

    @property
    def message(self) -> str:
        """A one-line human description of the error."""
        body = self.body
        if isinstance(self.error, str):
            extra = body.get("message") if isinstance(body, dict) else None
            return f"{self.error}: {extra}" if isinstance(extra, str) and extra else self.error
        if isinstance(self.error, dict):
            text = str(self.error.get("message") or self.error.get("status") or "upstream error")
            reason = self.reason
            return f"{text} ({reason})" if reason else text
        if isinstance(body, str) and body.strip():
            return body.strip()[:500]
        return "no error details in the answer"

    @property
    def reason(self) -> str | None:
        """Google's ``ErrorInfo.reason`` of a passed-through error, or flowgate's error code.

        ``"no_eligible_account"`` for that 429; ``"PUBLIC_ERROR_UNSAFE_GENERATION"``
        for a content-policy 400; ``None`` when the error has no machine-readable reason.
        """
        if self.error == "no_eligible_account":
            return "no_eligible_account"
        if isinstance(self.error, dict):
            for detail in self.error.get("details") or []:
                if isinstance(detail, dict) and detail.get("@type") == _ERROR_INFO_TYPE:
                    reason = detail.get("reason")
                    if isinstance(reason, str):
                        return reason
        return None

    @property
    def job_id(self) -> str | None:
        """The id of the job the error ended (POST /images failures carry it), if any."""
        if isinstance(self.body, dict):
            value = self.body.get("jobId") or self.body.get("jobid")
            return value if isinstance(value, str) else None
        return None

    @property
    def skip_reasons(self) -> list[SkipReason]:
        """Why each account was skipped (``no_eligible_account`` answers only)."""
        if not isinstance(self.body, dict):
            return []
        return [
            SkipReason(str(s.get("email", "")), str(s.get("reason", "")), str(s.get("model", "")))
            for s in self.body.get("skipReasons") or []
            if isinstance(s, dict)
        ]

    @property
    def retryable(self) -> bool:
        """True for answers that a later identical request may not get: 429, 502, 503, 504."""
        return self.status in (429, 502, 503, 504)


class FlowgateConnectionError(FlowgateClientError):
    """The server could not be reached, or the connection broke before an answer came."""

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.url = url


def _retry_after_seconds(headers: Mapping[str, str], body: Any, now: datetime) -> float | None:
    header = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if header is not None:
        seconds = _parse_retry_after_header(header, now)
        if seconds is not None:
            return seconds
    if isinstance(body, dict):
        iso = body.get("retryAfter")
        if isinstance(iso, str):
            seconds = _seconds_until_iso(iso, now)
            if seconds is not None:
                return seconds
        error = body.get("error")
        if isinstance(error, dict):
            for detail in error.get("details") or []:
                if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO_TYPE:
                    match = _DURATION_RE.match(str(detail.get("retryDelay", "")))
                    if match:
                        return float(match.group(1))
    return None


def _parse_retry_after_header(value: str, now: datetime) -> float | None:
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:  # RFC 7231 also allows an HTTP-date
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def _seconds_until_iso(value: str, now: datetime) -> float | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())
