"""Google-shaped error bodies, as the Gemini API sends them.

Every sandbox error is a :class:`GoogleApiError`; its :meth:`~GoogleApiError.body`
is ``{"error": {"code", "message", "status", "details"?}}`` with the same detail
objects (``ErrorInfo``, ``QuotaFailure``, ``Help``, ``RetryInfo``,
``LocalizedMessage``) and in the same order as real responses.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
HELP = "type.googleapis.com/google.rpc.Help"
LOCALIZED_MESSAGE = "type.googleapis.com/google.rpc.LocalizedMessage"

SERVICE = "generativelanguage.googleapis.com"
RATE_LIMITS_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"
TROUBLESHOOTING_URL = "https://developers.generativeai.google/guide/troubleshooting"

INVALID_KEY_MESSAGE = "API key not valid. Please pass a valid API key."
LEAKED_KEY_MESSAGE = "Your API key was reported as leaked. Please use another API key."
UNREGISTERED_CALLER_MESSAGE = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
OVERLOADED_MESSAGE = "The model is overloaded. Please try again later."
INTERNAL_MESSAGE = (
    f"An internal error has occurred. Please retry or report in {TROUBLESHOOTING_URL}"
)
BAD_IMAGE_MESSAGE = (
    f"Unable to process input image. Please retry or report in {TROUBLESHOOTING_URL}"
)

QuotaKind = Literal["daily", "minute", "project"]

PER_DAY_QUOTA_ID = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
PER_MINUTE_QUOTA_ID = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
PROJECT_DAY_QUOTA_ID = "GenerateRequestsPerDayPerProject-FreeTier"
# Google publishes no id for a concurrency limit; this one follows its naming and, like
# every per-model id, contains "PerModel" (and neither "PerDay" nor "PerMinute").
CONCURRENT_QUOTA_ID = "ConcurrentGenerateRequestsPerProjectPerModel-FreeTier"
REQUESTS_METRIC = f"{SERVICE}/generate_content_free_tier_requests"
QUOTA_METRICS: dict[str, str] = {
    CONCURRENT_QUOTA_ID: f"{SERVICE}/concurrent_generate_requests",
}

# Default RetryInfo delays in seconds; a directive may override them (``[sandbox:429-minute=2]``).
DEFAULT_RETRY_SECONDS: dict[QuotaKind, float] = {"daily": 58.0, "minute": 26.0, "project": 3600.0}


class GoogleApiError(Exception):
    """An error the sandbox answers with a Google error body."""

    def __init__(
        self,
        http_status: int,
        status: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        """The JSON body; ``details`` is omitted when empty, as Google does."""
        error: dict[str, Any] = {
            "code": self.http_status,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid_argument(message: str) -> GoogleApiError:
    """400 INVALID_ARGUMENT with Google's wording supplied by the caller."""
    return GoogleApiError(400, "INVALID_ARGUMENT", message)


def field_error(request_type: str, field_path: str, problem: str) -> GoogleApiError:
    """400 in Google's field-violation style: ``* Request.field: problem\\n``."""
    return invalid_argument(f"* {request_type}.{field_path}: {problem}\n")


def unknown_field(name: str, at: str) -> GoogleApiError:
    """400 for a JSON field the proto does not have (Google rejects unknown names)."""
    return invalid_argument(
        f"Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
    )


def not_found(message: str) -> GoogleApiError:
    """404 NOT_FOUND."""
    return GoogleApiError(404, "NOT_FOUND", message)


def permission_denied(message: str) -> GoogleApiError:
    """403 PERMISSION_DENIED without details (e.g. a file that is gone or someone else's)."""
    return GoogleApiError(403, "PERMISSION_DENIED", message)


def unimplemented(message: str) -> GoogleApiError:
    """501 UNIMPLEMENTED (a Gemini route the sandbox does not imitate yet)."""
    return GoogleApiError(501, "UNIMPLEMENTED", message)


def _project_number(key: str) -> str:
    """A stable fake project number for a key (Google names the consumer project)."""
    return str(100_000_000_000 + int(hashlib.sha256(key.encode()).hexdigest()[:10], 16) % 10**11)


def _error_info(reason: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {"@type": ERROR_INFO, "reason": reason, "domain": "googleapis.com", "metadata": metadata}


def _localized(message: str) -> dict[str, Any]:
    return {"@type": LOCALIZED_MESSAGE, "locale": "en-US", "message": message}


def missing_key() -> GoogleApiError:
    """403 for a call without any API key."""
    return GoogleApiError(403, "PERMISSION_DENIED", UNREGISTERED_CALLER_MESSAGE)


def invalid_key() -> GoogleApiError:
    """400 API_KEY_INVALID."""
    return GoogleApiError(
        400,
        "INVALID_ARGUMENT",
        INVALID_KEY_MESSAGE,
        [
            _error_info("API_KEY_INVALID", {"service": SERVICE}),
            _localized(INVALID_KEY_MESSAGE),
        ],
    )


def leaked_key() -> GoogleApiError:
    """403 for a key Google found published (no details, as observed)."""
    return GoogleApiError(403, "PERMISSION_DENIED", LEAKED_KEY_MESSAGE)


def suspended_key(key: str) -> GoogleApiError:
    """403 CONSUMER_SUSPENDED; like Google, the message quotes the key itself."""
    message = f"Permission denied: Consumer 'api_key:{key}' has been suspended."
    return GoogleApiError(
        403,
        "PERMISSION_DENIED",
        message,
        [
            _error_info(
                "CONSUMER_SUSPENDED",
                {"service": SERVICE, "consumer": f"projects/{_project_number(key)}"},
            ),
            _localized(message),
        ],
    )


def service_disabled(key: str) -> GoogleApiError:
    """403 SERVICE_DISABLED: the key's project has not enabled the API."""
    project = _project_number(key)
    url = f"https://console.developers.google.com/apis/api/{SERVICE}/overview?project={project}"
    message = (
        f"Generative Language API has not been used in project {project} before or it is "
        f"disabled. Enable it by visiting {url} then retry. If you enabled this API recently, "
        "wait a few minutes for the action to propagate to our systems and retry."
    )
    return GoogleApiError(
        403,
        "PERMISSION_DENIED",
        message,
        [
            _error_info(
                "SERVICE_DISABLED",
                {
                    "service": SERVICE,
                    "consumer": f"projects/{project}",
                    "activationUrl": url,
                    "serviceTitle": "Generative Language API",
                },
            ),
            _localized(message),
            {
                "@type": HELP,
                "links": [{"description": "Google developers console API activation", "url": url}],
            },
        ],
    )


def format_retry_delay(seconds: float) -> str:
    """``google.protobuf.Duration`` JSON form: ``26s``, ``0.5s``."""
    return f"{seconds:g}s"


def _rate_limits_help() -> dict[str, Any]:
    return {
        "@type": HELP,
        "links": [{"description": "Learn more about Gemini API quotas", "url": RATE_LIMITS_URL}],
    }


_QUOTA_MESSAGE_HEAD = (
    "You exceeded your current quota, please check your plan and billing details. "
    f"For more information on this error, head to: {RATE_LIMITS_URL}. "
    "To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. "
)


def quota_exhausted(model_id: str, kind: QuotaKind, retry_seconds: float) -> GoogleApiError:
    """The 429 of a ``[sandbox:429-…]`` directive (fixed limits, as Google's free tier).

    ``daily`` and ``minute`` are per-model quotas (``quotaDimensions.model`` is set);
    ``project`` is a project-wide daily quota with no model dimension, which a gateway
    should read as "this whole key is spent".
    """
    if kind == "daily":
        return quota_violation(
            model_id, quota_id=PER_DAY_QUOTA_ID, limit=100, retry_seconds=retry_seconds
        )
    if kind == "minute":
        return quota_violation(
            model_id, quota_id=PER_MINUTE_QUOTA_ID, limit=10, retry_seconds=retry_seconds
        )
    return quota_violation(
        None, quota_id=PROJECT_DAY_QUOTA_ID, limit=1500, retry_seconds=retry_seconds
    )


def quota_violation(
    model_id: str | None, *, quota_id: str, limit: int, retry_seconds: float
) -> GoogleApiError:
    """429 RESOURCE_EXHAUSTED with QuotaFailure, Help and RetryInfo details.

    ``model_id`` ``None`` leaves out the model dimension (a project-wide quota).
    """
    metric = QUOTA_METRICS.get(quota_id, REQUESTS_METRIC)
    dimensions: dict[str, str] = {"location": "global"}
    exceeded = f"* Quota exceeded for metric: {metric}, limit: {limit}"
    if model_id is not None:
        dimensions["model"] = model_id
        exceeded += f", model: {model_id}"
    message = f"{_QUOTA_MESSAGE_HEAD}\n{exceeded}\nPlease retry in {retry_seconds:.1f}s."
    return GoogleApiError(
        429,
        "RESOURCE_EXHAUSTED",
        message,
        [
            {
                "@type": QUOTA_FAILURE,
                "violations": [
                    {
                        "quotaMetric": metric,
                        "quotaId": quota_id,
                        "quotaDimensions": dimensions,
                        "quotaValue": str(limit),
                    }
                ],
            },
            _rate_limits_help(),
            {"@type": RETRY_INFO, "retryDelay": format_retry_delay(retry_seconds)},
        ],
    )


def bare_rate_limit() -> GoogleApiError:
    """429 with neither QuotaFailure nor RetryInfo (Google's short throttling form)."""
    return GoogleApiError(
        429,
        "RESOURCE_EXHAUSTED",
        _QUOTA_MESSAGE_HEAD.rstrip(),
        [_rate_limits_help()],
    )


def overloaded() -> GoogleApiError:
    """503 UNAVAILABLE."""
    return GoogleApiError(503, "UNAVAILABLE", OVERLOADED_MESSAGE)


def internal() -> GoogleApiError:
    """500 INTERNAL."""
    return GoogleApiError(500, "INTERNAL", INTERNAL_MESSAGE)
