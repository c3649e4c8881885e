"""What the templates show: plain view objects built from the services' answers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowgate.domain.errors import InvalidRequest
from flowgate.domain.ids import MediaKind, media_generation_id
from flowgate.domain.upscale_request import check_upscalable
from flowgate.services.jobs import JobListing
from flowgate.storage.models import Media, WebhookDelivery

# Short labels for the quarantine reasons of docs/balancing.md.
_REASON_LABELS = {
    "PUBLIC_ERROR_USER_REQUESTS_THROTTLED": "THROTTLED",
    "PUBLIC_ERROR_PER_MODEL_DAILY_QUOTA_REACHED": "DAILY QUOTA",
    "PUBLIC_ERROR_USER_QUOTA_REACHED": "QUOTA",
}


@dataclass(frozen=True)
class QuarantineView:
    """One active quarantine entry of an account."""

    model: str
    reason: str
    label: str
    until: datetime
    seconds_left: float


@dataclass(frozen=True)
class AccountView:
    """A row of the Accounts page."""

    email: str
    provider: str
    health: str
    healthy: bool
    models: list[str]
    max_concurrency: int
    tier: str
    created: str
    executing: int
    completed: int
    failed: int
    rate_limited: int
    avg_ms: float
    score: float
    quarantine: list[QuarantineView]

    @property
    def key(self) -> str:
        """A stable id for the page's elements of this account (emails are not valid ids)."""
        return self.email.encode().hex()


@dataclass(frozen=True)
class RunningJobView:
    """A job running now (from GET /jobs?options=executing)."""

    job_id: str
    kind: str
    email: str
    started: datetime


@dataclass(frozen=True)
class MediaView:
    """A stored image or video as the gallery shows it."""

    id: str
    kind: str
    mime: str
    width: int | None
    height: int | None
    size: int
    source: str
    model: str | None
    prompt: str | None
    seed: int | None
    job_id: str | None
    account_email: str | None
    created: datetime
    media_generation_id: str

    @property
    def is_video(self) -> bool:
        """Videos get a <video> element."""
        return self.kind == "video"


@dataclass(frozen=True)
class DeliveryView:
    """One webhook delivery of a job."""

    seq: int
    event: str
    url: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt: datetime
    delivered: datetime | None


@dataclass(frozen=True)
class JobView:
    """A job on the Jobs page."""

    id: str
    kind: str
    operation: str
    status: str
    model: str | None
    account_email: str | None
    prompt: str
    created: datetime
    started: datetime | None
    finished: datetime | None
    run_seconds: float | None
    error: str | None
    code: int | None
    error_detail: str | None
    params: list[tuple[str, str]]
    media: list[MediaView]
    deliveries: list[DeliveryView] = field(default_factory=list)

    @property
    def running(self) -> bool:
        """Still created or started: the page keeps refreshing it."""
        return self.status in ("created", "started")


def _quarantine(entries: list[Mapping[str, Any]], now: datetime) -> list[QuarantineView]:
    views = []
    for entry in entries:
        until = datetime.fromisoformat(str(entry["until"]).replace("Z", "+00:00"))
        reason = str(entry.get("reason", ""))
        views.append(
            QuarantineView(
                model=str(entry.get("model", "*")),
                reason=reason,
                label=_REASON_LABELS.get(reason, reason.removeprefix("PUBLIC_ERROR_")),
                until=until,
                seconds_left=(until - now).total_seconds(),
            )
        )
    return sorted(views, key=lambda v: v.until)


def account_views(
    accounts: Sequence[Mapping[str, Any]], stats: Mapping[str, Any], now: datetime
) -> list[AccountView]:
    """Accounts (as ``AccountService.render(with_models=True)``) joined with live statistics."""
    combined = stats.get("combined", {}).get("summary", {})
    quarantine = stats.get("quarantine", {})
    views = []
    for account in accounts:
        email = str(account["email"])
        numbers = combined.get(email, {})
        views.append(
            AccountView(
                email=email,
                provider=str(account.get("provider", "")),
                health=str(account.get("health", "")),
                healthy=account.get("health") == "OK",
                models=[str(m) for m in account.get("models", [])],
                max_concurrency=int(account.get("maxConcurrency", 0)),
                tier=str(account.get("tier", "")),
                created=str(account.get("created") or ""),
                executing=int(numbers.get("executing", 0)),
                completed=int(numbers.get("completed", 0)),
                failed=int(numbers.get("failed", 0)),
                rate_limited=int(numbers.get("rateLimited", 0)),
                avg_ms=float(numbers.get("avgResponseTime", 0)),
                score=float(numbers.get("score", 0)),
                quarantine=_quarantine(quarantine.get(email, []), now),
            )
        )
    return views


def running_jobs(stats: Mapping[str, Any]) -> list[RunningJobView]:
    """Running jobs of every kind, oldest first."""
    found = []
    for label, kind in (("images", "image"), ("videos", "video")):
        for job_id, entry in stats.get(label, {}).get("executing", {}).items():
            started = datetime.fromtimestamp(int(entry["timestamp"]) / 1000, UTC)
            found.append(RunningJobView(job_id, kind, str(entry.get("email", "")), started))
    return sorted(found, key=lambda j: j.started)


def media_view(row: Media) -> MediaView:
    """A media row for the templates, with the ``mediaGenerationId`` to copy."""
    extra = row.extra or {}
    seed = extra.get("seed")
    kind: MediaKind = "video" if row.kind == "video" else "image"
    return MediaView(
        id=row.id,
        kind=row.kind,
        mime=row.mime,
        width=row.width,
        height=row.height,
        size=row.size,
        source=row.source,
        model=row.model,
        prompt=str(extra["prompt"]) if extra.get("prompt") else None,
        seed=int(seed) if isinstance(seed, int) else None,
        job_id=row.job_id,
        account_email=row.account_email,
        created=row.created_at,
        media_generation_id=media_generation_id(row.user_id, row.account_email, kind, row.id),
    )


def upscale_blocker(media: MediaView) -> str | None:
    """Why this image cannot be upscaled, or None when it can."""
    if media.is_video:
        return "Videos are not upscaled here."
    try:
        check_upscalable(media.model, media.source)
    except InvalidRequest as exc:
        return exc.message
    return None


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _error_detail(response: Any) -> str | None:
    """The upstream's or flowgate's message inside a failed job's stored error body."""
    if not isinstance(response, Mapping):
        return None
    error = response.get("error")
    if isinstance(error, Mapping):
        return str(error.get("message") or error.get("status") or json.dumps(error))
    if error == "no_eligible_account":
        return str(response.get("message", error))
    return str(error) if error is not None else None


def _delivery(row: WebhookDelivery) -> DeliveryView:
    return DeliveryView(
        seq=row.seq,
        event=row.event,
        url=row.url,
        state=row.state,
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
        next_attempt=row.next_attempt_at,
        delivered=row.delivered_at,
    )


def job_view(listing: JobListing) -> JobView:
    """A job with its outputs and deliveries for the templates."""
    job = listing.job
    request = job.request or {}
    run_seconds = None
    if job.finished_at is not None:
        run_seconds = (job.finished_at - (job.started_at or job.created_at)).total_seconds()
    return JobView(
        id=job.id,
        kind=job.kind,
        operation=job.operation,
        status=job.status,
        model=job.model,
        account_email=job.account_email,
        prompt=str(request.get("prompt", ""))
        or (f"upscale to {request.get('resolution', '')}" if job.operation == "upscale" else ""),
        created=job.created_at,
        started=job.started_at,
        finished=job.finished_at,
        run_seconds=run_seconds,
        error=job.error if isinstance(job.error, str) else None,
        code=job.code,
        error_detail=_error_detail(job.response) if job.status == "failed" else None,
        params=[(key, _param_text(value)) for key, value in request.items()],
        media=[media_view(m) for m in listing.media],
        deliveries=[_delivery(d) for d in listing.deliveries],
    )


@dataclass(frozen=True)
class GeneratedView:
    """The outcome of the Generate form."""

    job_id: str | None
    media_ids: list[str]
    error: str | None = None
    status: int = 200


def generated_view(response: Mapping[str, Any]) -> GeneratedView:
    """The images of a POST /images answer."""
    media = response.get("media", [])
    return GeneratedView(
        job_id=response.get("jobId"),
        media_ids=[str(entry["name"]) for entry in media if isinstance(entry, Mapping)],
    )
