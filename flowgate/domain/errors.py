"""The one error hierarchy of flowgate.

Every error a client can see is a subclass of :class:`FlowgateError`. Each
carries its HTTP status and knows its contract body; the API layer maps the
hierarchy to responses in one place (``flowgate.api.errors``). Other front
doors (OpenAI, task API) translate the same types into their own envelopes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class FlowgateError(Exception):
    """Base of all client-visible errors. ``message`` is the contract's ``error`` string."""

    status: int = 400
    # Set when the error ended a job, so the client can still fetch the record.
    job_id: str | None = None

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def body(self) -> dict[str, Any]:
        """The contract's JSON body for this error."""
        return {"error": self.message}

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. ``Retry-After``)."""
        return {}


class InvalidRequest(FlowgateError):
    """400: the request breaks a rule; the message names the field and the rule."""

    status = 400


class Unauthorized(FlowgateError):
    """401 with the contract's exact body."""

    status = 401

    def __init__(self) -> None:
        super().__init__("Unauthorized")


class SubscriptionRequired(FlowgateError):
    """402: user disabled or out of credits (contract wording)."""

    status = 402

    def __init__(
        self, message: str = "Account has no subscription or subscription expired"
    ) -> None:
        super().__init__(message)


class Forbidden(FlowgateError):
    """403: the thing exists but belongs to someone else (jobs only; see DESIGN §5)."""

    status = 403


class NotFound(FlowgateError):
    """404."""

    status = 404


class AccountNotFound(NotFound):
    """404 for an unknown account email, in the contract's wording."""

    def __init__(self, email: str) -> None:
        super().__init__(f"Google Flow account {email} not found")
        self.email = email


class AccountDeleted(FlowgateError):
    """409: the account a job ran on was deleted while the job ran; send it again."""

    status = 409


class Gone(FlowgateError):
    """410: the record expired."""

    status = 410


class PayloadTooLarge(FlowgateError):
    """Body over a size limit. The contract answers 400 for uploads."""

    status = 400


class Busy(FlowgateError):
    """429 raised by flowgate itself (queue full or wait timed out)."""

    status = 429

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, self.retry_after_seconds))}


@dataclass(frozen=True)
class SkipReason:
    """Why one account was not used for a request."""

    email: str
    reason: str
    model: str


class NoEligibleAccount(FlowgateError):
    """429 ``no_eligible_account``: every account was skipped (contract §8.4)."""

    status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after_iso: str,
        retry_after_seconds: int,
        skip_reasons: list[SkipReason],
    ) -> None:
        super().__init__(message)
        self.retry_after_iso = retry_after_iso
        self.retry_after_seconds = retry_after_seconds
        self.skip_reasons = skip_reasons

    def body(self) -> dict[str, Any]:
        return {
            "error": "no_eligible_account",
            "message": self.message,
            "retryAfter": self.retry_after_iso,
            "skipReasons": [
                {"email": s.email, "reason": s.reason, "model": s.model} for s in self.skip_reasons
            ],
        }

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, self.retry_after_seconds))}


@dataclass
class GoogleErrorInfo:
    """The parts of a Google ``{"error": {...}}`` body that flowgate acts on."""

    code: int
    message: str
    status: str = ""
    reason: str | None = None
    quota_ids: tuple[str, ...] = ()
    retry_delay_seconds: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class UpstreamError(FlowgateError):
    """An error answered by an upstream (Google or the sandbox), passed through.

    ``status`` is the upstream's HTTP status; the body is the upstream's error
    object in the contract's envelope ``{"error": {...}}``.
    """

    def __init__(self, info: GoogleErrorInfo, *, http_status: int | None = None) -> None:
        super().__init__(info.message, status=http_status or info.code or 502)
        self.info = info

    def body(self) -> dict[str, Any]:
        raw = self.info.raw or {
            "code": self.info.code,
            "message": self.info.message,
            "status": self.info.status,
        }
        return {"error": raw}

    @property
    def is_rate_limit(self) -> bool:
        """True for 429 RESOURCE_EXHAUSTED."""
        return self.status == 429

    @property
    def is_key_error(self) -> bool:
        """True when the credential itself is rejected (invalid, leaked, suspended)."""
        if self.status in (401, 403):
            return True
        return self.status == 400 and self.info.reason == "API_KEY_INVALID"


UNSAFE_REASON = "PUBLIC_ERROR_UNSAFE_GENERATION"


class ContentBlocked(UpstreamError):
    """The upstream refused the content (safety filter): the contract's 400 body."""

    def __init__(self, detail: str) -> None:
        raw = {
            "code": 400,
            "message": "Request contains an invalid argument.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": UNSAFE_REASON}
            ],
        }
        super().__init__(
            GoogleErrorInfo(
                code=400,
                message="Request contains an invalid argument.",
                status="INVALID_ARGUMENT",
                reason=UNSAFE_REASON,
                raw=raw,
            ),
            http_status=400,
        )
        self.detail = detail


class PollingTimeout(FlowgateError):
    """408: a sync call stopped waiting; the job goes on and can be fetched."""

    status = 408

    def __init__(self) -> None:
        super().__init__("Polling timeout")


class JobInterrupted(FlowgateError):
    """500: the job could not run to its end (crash, lost account, unexpected error)."""

    status = 500


class DatabaseTrouble(FlowgateError):
    """503 with ``Retry-After``: flowgate's own database could not do its part now."""

    status = 503
    RETRY_AFTER_SECONDS = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.RETRY_AFTER_SECONDS)}


class DatabaseUnavailable(DatabaseTrouble):
    """flowgate could not open a connection to its own database."""

    def __init__(self) -> None:
        super().__init__(
            "flowgate's database is not answering; nothing was done, "
            f"send the request again in {self.RETRY_AFTER_SECONDS} seconds"
        )


class DatabaseConnectionLost(DatabaseTrouble):
    """flowgate's connection to its database broke while it answered (the server
    restarted, ended the session, or a proxy dropped it)."""

    def __init__(self) -> None:
        super().__init__(
            "flowgate lost its connection to its database while answering, so this "
            f"request was not completed: send it again in {self.RETRY_AFTER_SECONDS} seconds"
        )


class DatabaseLocked(DatabaseTrouble):
    """Another program held the SQLite file's write lock for longer than flowgate
    waits (``FLOWGATE_SQLITE_BUSY_SECONDS``)."""

    def __init__(self) -> None:
        super().__init__(
            "flowgate's SQLite database is locked by another program (SQLite lets one "
            "program write at a time) for longer than flowgate waits, so this request was "
            "not completed: end that program's write transaction, then send the request again"
        )


class UpstreamUnreachable(FlowgateError):
    """The upstream could not be reached or answered garbage (503 to the client)."""

    status = 503

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": 503,
                "message": self.message,
                "status": "UNAVAILABLE",
            }
        }


_GRPC_TO_HTTP = {
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}


def http_status_for_code(code: int | None) -> int:
    """An HTTP status for a code found in an upstream body (HTTP or google.rpc.Code)."""
    if code is None:
        return 500
    if 400 <= code <= 599:
        return code
    return _GRPC_TO_HTTP.get(code, 500)
