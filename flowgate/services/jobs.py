"""Job records: create, move through created → started → completed | failed, read, expire."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.domain.errors import FlowgateError, Forbidden, Gone, NotFound
from flowgate.domain.ids import JobKind, new_job_id, parse_job_id
from flowgate.services import webhooks
from flowgate.services.users import Caller
from flowgate.storage.models import Job, JobEvent

log = logging.getLogger("flowgate.jobs")

UrlRefresher = Callable[[Any], Any]
"""Re-signs media links inside a stored response when a record is read."""


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with milliseconds and ``Z``, as in the contract's examples."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobService:
    """The one writer of job rows; each status change also enqueues its webhook."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        retention: timedelta,
        refresh_urls: UrlRefresher,
        on_enqueue: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._retention = retention
        self._refresh_urls = refresh_urls
        self._on_enqueue = on_enqueue

    def render(self, job: Job) -> dict[str, Any]:
        """The contract's job record (GET /jobs/{jobId}, webhook payloads)."""
        record: dict[str, Any] = {
            "jobid": job.id,
            "type": job.kind,
            "status": job.status,
            "created": iso(job.created_at),
            "updated": iso(job.updated_at),
            "request": job.request,
        }
        if job.response is not None:
            record["response"] = self._refresh_urls(job.response)
        if job.error is not None:
            record["error"] = job.error
        if job.code is not None:
            record["code"] = job.code
        return record

    async def _webhook(self, session: AsyncSession, job: Job, event: str) -> None:
        if job.reply_url:
            await webhooks.enqueue(
                session,
                job_id=job.id,
                user_id=job.user_id,
                url=job.reply_url,
                event=event,
                payload=self.render(job),
            )

    async def create(
        self,
        caller: Caller,
        *,
        kind: JobKind,
        request: dict[str, Any],
        account_email: str | None,
        model: str | None,
        reply_url: str | None,
        operation: str = "generate",
    ) -> Job:
        """A new job in ``created`` (webhook ``created``)."""
        now = datetime.now(UTC)
        job = Job(
            id=new_job_id(kind, caller.user_id, account_email, now),
            user_id=caller.user_id,
            kind=kind,
            operation=operation,
            status="created",
            account_email=account_email,
            model=model,
            request=request,
            reply_url=reply_url,
            created_at=now,
            updated_at=now,
        )
        async with self._sessions.begin() as session:
            session.add(job)
            await self._webhook(session, job, "created")
        self._notify(job)
        return job

    async def start(self, job: Job) -> None:
        """``created`` → ``started`` (no webhook for images; the contract posts none)."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(status="started", started_at=now, updated_at=now)
            )
        job.status, job.started_at, job.updated_at = "started", now, now

    async def reassign(self, job: Job, account_email: str) -> None:
        """The job moved to another account (retry after a quota failure)."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(account_email=account_email, updated_at=now)
            )
        job.account_email, job.updated_at = account_email, now

    async def complete(
        self, job: Job, response: dict[str, Any], *, session: AsyncSession | None = None
    ) -> None:
        """``completed`` with ``response``; pass ``session`` to commit with the outputs."""
        now = datetime.now(UTC)
        job.status, job.response, job.updated_at, job.finished_at = "completed", response, now, now
        job.code = 200
        await self._finish(job, "completed", session)

    async def fail(self, job: Job, error: FlowgateError) -> None:
        """``failed`` with the error, as the contract's failed record: ``API error: N``."""
        now = datetime.now(UTC)
        job.status, job.updated_at, job.finished_at = "failed", now, now
        job.code = error.status
        job.error = f"API error: {error.status}"
        job.response = error.body()
        await self._finish(job, "failed", None)

    async def _finish(self, job: Job, event: str, session: AsyncSession | None) -> None:
        if session is not None:
            await session.merge(job)
            await self._webhook(session, job, event)
        else:
            async with self._sessions.begin() as own:
                await own.merge(job)
                await self._webhook(own, job, event)
        self._notify(job)

    def _notify(self, job: Job) -> None:
        if job.reply_url:
            self._on_enqueue()

    async def record_event(
        self,
        *,
        user_id: int,
        account_email: str,
        kind: str,
        model: str | None,
        job_id: str,
        http_status: int,
        response_ms: int,
    ) -> None:
        """One finished upstream attempt, for the 15-minute statistics."""
        async with self._sessions.begin() as session:
            session.add(
                JobEvent(
                    user_id=user_id,
                    account_email=account_email,
                    kind=kind,
                    model=model,
                    job_id=job_id,
                    http_status=http_status,
                    response_ms=response_ms,
                    finished_at=datetime.now(UTC),
                )
            )

    async def get(self, caller: Caller, job_id: str) -> dict[str, Any]:
        """GET /jobs/{jobId}: 400 malformed, 403 foreign, 404 unknown, 410 expired."""
        parse_job_id(job_id)
        async with self._sessions() as session:
            job = await session.get(Job, job_id)
        if job is None:
            raise NotFound("Job not found")
        if job.user_id != caller.user_id:
            raise Forbidden("Access denied - job belongs to different user")
        if job.purged or job.created_at < datetime.now(UTC) - self._retention:
            raise Gone("Job has expired")
        return self.render(job)

    async def purge_expired(self) -> int:
        """Turn records past retention into tombstones (GET answers 410)."""
        cutoff = datetime.now(UTC) - self._retention
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Job)
                .where(Job.created_at < cutoff, Job.purged.is_(False))
                .values(purged=True, request={}, response=None, error=None)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def fail_abandoned(self, older_than: timedelta) -> int:
        """Sync jobs left ``created``/``started`` by a crash end ``failed`` with a reason."""
        cutoff = datetime.now(UTC) - older_than
        async with self._sessions() as session:
            stale = (
                await session.scalars(
                    select(Job).where(
                        Job.status.in_(("created", "started")),
                        Job.kind == "image",
                        Job.updated_at < cutoff,
                    )
                )
            ).all()
        for job in stale:
            await self.fail(job, _Interrupted())
        return len(stale)

    async def run_maintenance(
        self, interval_seconds: float, *, abandoned_after: timedelta, stop: asyncio.Event
    ) -> None:
        """Background loop: purge expired records, fail sync jobs nobody is running."""
        while not stop.is_set():
            try:
                await self.purge_expired()
                await self.fail_abandoned(abandoned_after)
            except Exception:
                log.exception("job maintenance failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
            except TimeoutError:
                pass


class _Interrupted(FlowgateError):
    status = 500

    def __init__(self) -> None:
        super().__init__(
            "flowgate stopped while this job ran; it was not completed. Send the request again."
        )
