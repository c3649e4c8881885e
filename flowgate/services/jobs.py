"""Job records: create, move through created → started → completed | failed, read, expire."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.domain.errors import FlowgateError, Forbidden, Gone, InvalidRequest, NotFound
from flowgate.domain.ids import JobKind, new_job_id, parse_job_id
from flowgate.services import webhooks
from flowgate.services.credits import CreditService
from flowgate.services.users import Caller
from flowgate.storage import listings
from flowgate.storage.database_errors import is_connection_lost
from flowgate.storage.models import Job, JobEvent, Media, WebhookDelivery
from flowgate.storage.write_queue import Write, WriteQueue
from flowgate.storage.writes import insert_row, insert_values, together, update_job

log = logging.getLogger("flowgate.jobs")

UrlRefresher = Callable[[Any], Any]
"""Re-signs media links inside a stored response when a record is read."""


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with milliseconds and ``Z``, as in the contract's examples."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


JOB_STATUSES = ("created", "started", "completed", "failed")
JOB_KINDS = ("image", "video")
MAX_PAGE_SIZE = 200
JOB_ID_ATTEMPTS = 5
"""Draws of a job id before giving up: a taken id is one chance in a million per pair
of jobs made in the same millisecond for the same account, so a second draw is rare."""

JobIdSource = Callable[[JobKind, int, str | None, datetime], str]


@dataclass(frozen=True)
class UpstreamAttempt:
    """One finished upstream call, for the 15-minute statistics (a ``job_events`` row)."""

    user_id: int
    account_email: str
    kind: str
    model: str | None
    job_id: str
    http_status: int
    response_ms: int

    @classmethod
    def of_job(
        cls, job: Job, account_email: str, http_status: int, response_ms: int
    ) -> UpstreamAttempt:
        """The attempt made for ``job`` (its user, kind, model and id) on ``account_email``."""
        return cls(
            user_id=job.user_id,
            account_email=account_email,
            kind=job.kind,
            model=job.model,
            job_id=job.id,
            http_status=http_status,
            response_ms=response_ms,
        )


@dataclass(frozen=True)
class JobListing:
    """A job as the dashboard shows it: the row, its outputs, and (detail only) deliveries."""

    job: Job
    media: list[Media]
    deliveries: list[WebhookDelivery] = field(default_factory=list)


@dataclass(frozen=True)
class JobPage:
    """One page of :meth:`JobService.list_jobs`; ``next_before`` is None on the last page."""

    items: list[JobListing]
    next_before: str | None
    models: list[str]


def _choice(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise InvalidRequest(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
    return value


_ENDING_FIELDS = ("status", "response", "error", "code", "internal", "updated_at", "finished_at")


def _ending_state(job: Job) -> tuple[Any, ...]:
    return tuple(getattr(job, name) for name in _ENDING_FIELDS)


def _restore_ending_state(job: Job, state: tuple[Any, ...]) -> None:
    for name, value in zip(_ENDING_FIELDS, state, strict=True):
        setattr(job, name, value)


def page_size(limit: int) -> int:
    """Check a page size: 1 to :data:`MAX_PAGE_SIZE`."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be 1-{MAX_PAGE_SIZE} (got {limit})")
    return limit


class JobService:
    """The one writer of job rows; each status change also enqueues its webhook."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writes: WriteQueue,
        *,
        retention: timedelta,
        refresh_urls: UrlRefresher,
        on_enqueue: Callable[[], None],
        instance_id: str = "",
        credits: CreditService | None = None,
        job_ids: JobIdSource = new_job_id,
    ) -> None:
        self._sessions = sessions
        self._job_ids = job_ids
        self._writes = writes
        self._retention = retention
        self._refresh_urls = refresh_urls
        self._on_enqueue = on_enqueue
        self.instance_id = instance_id
        self._credits = credits
        self._payload_renderers: dict[str, Callable[[Job], dict[str, Any]]] = {}

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

    def _webhook(self, job: Job, event: str) -> Write | None:
        """The outbox row for ``event``, as a write (None when nothing is to be sent)."""
        if not job.reply_url:
            return None
        front = (job.internal or {}).get("front")
        renderer = self._payload_renderers.get(front) if front else None
        if renderer is not None:
            # Other front doors (task API) call back once, when the job ends.
            if event not in ("completed", "failed"):
                return None
            payload = renderer(job)
        else:
            payload = self.render(job)
        return functools.partial(
            webhooks.enqueue,
            job_id=job.id,
            user_id=job.user_id,
            url=job.reply_url,
            event=event,
            payload=payload,
        )

    async def _commit(self, job: Job | None, *writes: Write | None) -> None:
        """Run ``writes`` in one transaction of the write queue; wake the webhook sender."""
        await self._writes.run(together(*writes))
        if job is not None:
            self._notify(job)

    def add_payload_renderer(self, front: str, renderer: Callable[[Job], dict[str, Any]]) -> None:
        """Webhook bodies for jobs of another front door (``internal["front"]``)."""
        self._payload_renderers[front] = renderer

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
        internal: dict[str, Any] | None = None,
        start: bool = False,
    ) -> Job:
        """A new job in ``created`` (webhook ``created``).

        ``start`` writes it as ``started`` at once (the ``created`` webhook still says
        ``created``): a sync image job starts right away, so this saves a write.
        """
        now = datetime.now(UTC)
        attempt = 1
        while True:
            job = Job(
                id=self._job_ids(kind, caller.user_id, account_email, now),
                internal=internal,
                user_id=caller.user_id,
                kind=kind,
                operation=operation,
                status="created",
                account_email=account_email,
                model=model,
                request=request,
                reply_url=reply_url,
                owner=self.instance_id,
                created_at=now,
                updated_at=now,
            )
            webhook = self._webhook(job, "created")
            if start:
                job.status, job.started_at = "started", now
            try:
                await self._commit(job, webhook, insert_row(job))
            except Exception as error:
                # An id is the millisecond and 6 random digits: two jobs of one account
                # made in the same millisecond can draw the same one. Draw again. Other
                # errors are raised: they leave no row with this id, except a broken
                # COMMIT whose outcome cannot be read (the next start fails that row).
                if (
                    isinstance(error, IntegrityError)
                    and attempt < JOB_ID_ATTEMPTS
                    and await self._id_taken(job.id)
                ):
                    log.warning("job id %s was already taken; drawing another", job.id)
                    attempt += 1
                    continue
                # The connection broke once the COMMIT was sent: look whether it is stored.
                if is_connection_lost(error) and attempt < JOB_ID_ATTEMPTS:
                    stored = await self._new_job_stored(job)
                    if stored:
                        self._notify(job)
                        return job
                    if stored is False:
                        log.warning("new job lost with its connection; sent again")
                        attempt += 1
                        continue
                await self._give_back_reservation(caller, internal)
                raise
            return job

    async def _stored_row(self, job_id: str) -> Row[tuple[str, datetime, datetime]] | None:
        """The stored status, ``created_at`` and ``updated_at`` of a job (``None``: no
        such row); raises when the database cannot be read."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(Job.status, Job.created_at, Job.updated_at).where(Job.id == job_id)
            )
            return rows.first()

    async def _new_job_stored(self, job: Job) -> bool | None:
        """Whether ``job``'s row is stored (``None``: the database cannot say)."""
        try:
            row = await self._stored_row(job.id)
        except Exception:
            return None
        if row is None:
            return False
        return True if row.created_at == job.created_at else None

    async def _id_taken(self, job_id: str) -> bool:
        try:
            return await self._stored_row(job_id) is not None
        except Exception:  # the database fails reads too: the insert's error stands
            return False

    async def _give_back_reservation(self, caller: Caller, internal: dict[str, Any] | None) -> None:
        """The credits reserved for a job that could not be stored: no record holds
        them, so nothing else would give them back."""
        reserved = int((internal or {}).get("reserved", 0))
        if reserved <= 0 or self._credits is None:
            return
        try:
            await self._credits.refund(caller.user_id, reserved)
        except Exception:  # the database that refused the job may refuse this too
            log.exception(
                "credits reserved for a job that could not be stored were not given back",
                extra={"user_id": caller.user_id, "credits": reserved},
            )

    async def start(self, job: Job, *, webhook: bool = False) -> None:
        """``created`` → ``started``; video jobs post a ``started`` webhook, images none."""
        now = datetime.now(UTC)
        job.status, job.started_at, job.updated_at = "started", now, now
        await self._commit(
            job if webhook else None,
            update_job(job.id, status="started", started_at=now, updated_at=now),
            self._webhook(job, "started") if webhook else None,
        )

    async def set_internal(
        self, job: Job, internal: dict[str, Any], response: dict[str, Any]
    ) -> None:
        """Store what a poller needs to resume, and the response so far."""
        now = datetime.now(UTC)
        job.internal, job.response, job.updated_at = internal, response, now
        await self._commit(
            None, update_job(job.id, internal=internal, response=response, updated_at=now)
        )

    async def reassign(self, job: Job, account_email: str) -> None:
        """The job moved to another account (retry after a quota failure)."""
        now = datetime.now(UTC)
        await self._commit(None, update_job(job.id, account_email=account_email, updated_at=now))
        job.account_email, job.updated_at = account_email, now

    async def adopt(self, job: Job, *, account_email: str, model: str) -> None:
        """A job created ahead (task API) gets the account and model that run it."""
        now = datetime.now(UTC)
        job.account_email, job.model, job.updated_at = account_email, model, now
        await self._commit(
            None,
            update_job(
                job.id,
                account_email=account_email,
                model=model,
                updated_at=now,
                internal=job.internal,
            ),
        )

    async def complete(
        self,
        job: Job,
        response: dict[str, Any],
        *,
        refund: int = 0,
        with_writes: Sequence[Write] = (),
    ) -> None:
        """``completed`` with ``response``, committed together with ``with_writes``.

        ``refund`` gives back the part of the credit reservation that bought nothing
        (e.g. 3 of 4 images came back).
        """
        now = datetime.now(UTC)
        before = _ending_state(job)
        job.status, job.response, job.updated_at, job.finished_at = "completed", response, now, now
        job.code = 200
        try:
            await self._finish(job, "completed", refund, with_writes)
        except BaseException:
            # Not stored: the job is still running, so ``fail`` can still end it.
            _restore_ending_state(job, before)
            raise

    async def fail(self, job: Job, error: FlowgateError) -> None:
        """``failed`` with the error, as the contract's failed record: ``API error: N``.

        Failures are never charged: the job's credit reservation is given back.
        """
        if job.status in ("completed", "failed"):
            return
        now = datetime.now(UTC)
        before = _ending_state(job)
        job.status, job.updated_at, job.finished_at = "failed", now, now
        job.code = error.status
        job.error = f"API error: {error.status}"
        job.response = error.body()
        try:
            await self._finish(job, "failed", int((job.internal or {}).get("reserved", 0)), ())
        except BaseException:
            _restore_ending_state(job, before)
            raise

    def _settle(self, job: Job, refund: int) -> Write | None:
        reserved = int((job.internal or {}).get("reserved", 0))
        refund = min(refund, reserved)
        if refund <= 0 or self._credits is None:
            return None
        job.internal = {**(job.internal or {}), "reserved": reserved - refund}
        return self._credits.refund_write(job.user_id, refund)

    async def _finish(self, job: Job, event: str, refund: int, writes: Sequence[Write]) -> None:
        settle = self._settle(job, refund)
        # A plain UPDATE of the changed columns: no SELECT first, unlike session.merge.
        finish = update_job(
            job.id,
            status=job.status,
            response=job.response,
            error=job.error,
            code=job.code,
            internal=job.internal,
            updated_at=job.updated_at,
            finished_at=job.finished_at,
        )
        ending = (*writes, settle, finish, self._webhook(job, event))
        try:
            await self._commit(job, *ending)
        except Exception as error:
            # The connection broke at the COMMIT: the server may have stored the ending
            # or not. Look, rather than fail a job whose result was paid for upstream
            # (or end it a second time: a refund given back twice).
            if not is_connection_lost(error):
                raise
            stored = await self._stored_ending(job)
            if stored is None:
                raise
            if stored:
                self._notify(job)
                return
            log.warning("job ending lost with its connection; sent again", extra={"job_id": job.id})
            await self._commit(job, *ending)

    async def _stored_ending(self, job: Job) -> bool | None:
        """Whether ``job``'s ending (status and ``updated_at`` as set here) is stored;
        ``None`` when the database cannot say (another writer got there first, or it
        cannot be read)."""
        try:
            row = await self._stored_row(job.id)
        except Exception:
            return None
        if row is None:
            return None
        if row.status == job.status and row.updated_at == job.updated_at:
            return True
        return False if row.status in ("created", "started") else None

    def _notify(self, job: Job) -> None:
        if job.reply_url:
            self._on_enqueue()

    @staticmethod
    def event_write(attempt: UpstreamAttempt) -> Write:
        """``attempt`` as a write, to commit with the rest of a job's end."""
        return insert_values(JobEvent, {**vars(attempt), "finished_at": datetime.now(UTC)})

    async def record_event(self, attempt: UpstreamAttempt) -> None:
        """Write ``attempt`` on its own (a failed attempt)."""
        await self._commit(None, self.event_write(attempt))

    async def add_upscale(self, job_id: str, entry: dict[str, Any]) -> bool:
        """List an upscale result on the job that made its source (``response["upscales"]``).

        An entry with the same ``mediaGenerationId`` is replaced. False when the job is
        gone or purged. The record's status and ``updated`` are left as they are.
        """

        def apply(connection: Connection) -> bool:
            # Read and write in one queued transaction: no other write interleaves.
            row = connection.execute(
                select(Job.response, Job.purged).where(Job.id == job_id).with_for_update()
            ).first()
            if row is None or row.purged:
                return False
            response = dict(row.response or {})
            upscales = [
                item
                for item in response.get("upscales") or []
                if item.get("mediaGenerationId") != entry.get("mediaGenerationId")
            ]
            response["upscales"] = [*upscales, entry]
            connection.execute(update(Job).where(Job.id == job_id).values(response=response))
            return True

        return await self._writes.run(apply)

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

        def apply(connection: Connection) -> int:
            result = connection.execute(
                update(Job)
                .where(Job.created_at < cutoff, Job.purged.is_(False))
                .values(purged=True, request={}, response=None, error=None)
            )
            return int(result.rowcount)

        return await self._writes.run(apply)

    async def run_maintenance(self, interval_seconds: float, stop: asyncio.Event) -> None:
        """Background loop: purge expired records."""
        while not stop.is_set():
            try:
                await self.purge_expired()
            except Exception:
                log.exception("job maintenance failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
            except TimeoutError:
                pass

    async def list_jobs(
        self,
        caller: Caller,
        *,
        status: str | None = None,
        kind: str | None = None,
        model: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> JobPage:
        """The caller's jobs, newest first, with their outputs (expired records left out).

        ``before`` is the last job id of the previous page; bad filters are 400.
        """
        status = _choice(status, JOB_STATUSES, "status")
        kind = _choice(kind, JOB_KINDS, "type")
        limit = page_size(limit)
        async with self._sessions() as session:
            anchor = None
            if before:
                anchor = await listings.job_of_user(session, caller.user_id, before)
                if anchor is None:
                    raise InvalidRequest("before must be the id of one of your jobs")
            rows = await listings.jobs_page(
                session,
                caller.user_id,
                status=status,
                kind=kind,
                model=model or None,
                limit=limit + 1,
                before=anchor,
            )
            more = len(rows) > limit
            rows = rows[:limit]
            outputs = await self._outputs(session, caller, rows)
            models = await listings.job_models(session, caller.user_id)
        items = [JobListing(job, outputs.get(job.id, [])) for job in rows]
        return JobPage(items, rows[-1].id if more else None, models)

    @staticmethod
    async def _outputs(
        session: AsyncSession, caller: Caller, jobs: list[Job]
    ) -> dict[str, list[Media]]:
        """Each job's media: rows made by it, and the result an upscale job names."""
        outputs = await listings.media_of_jobs(session, caller.user_id, [j.id for j in jobs])
        # An upscale's result is kept on its source's job; the upscale job names it.
        named = {
            job.id: str(job.response["upscale"]["mediaGenerationId"]).rsplit(":", 1)[-1]
            for job in jobs
            if isinstance(job.response, dict)
            and isinstance(job.response.get("upscale"), dict)
            and job.response["upscale"].get("mediaGenerationId")
        }
        found = {
            m.id: m
            for m in await listings.media_by_ids(session, caller.user_id, list(named.values()))
        }
        for job_id, media_id in named.items():
            if media_id in found:
                outputs.setdefault(job_id, []).append(found[media_id])
        return outputs

    async def job_listing(self, caller: Caller, job_id: str) -> JobListing:
        """One of the caller's jobs with outputs and webhook deliveries; 404 otherwise."""
        async with self._sessions() as session:
            job = await listings.job_of_user(session, caller.user_id, job_id)
            if job is None:
                raise NotFound("Job not found")
            outputs = await self._outputs(session, caller, [job])
            deliveries = await listings.deliveries_of_job(session, caller.user_id, job.id)
        return JobListing(job, outputs.get(job.id, []), deliveries)
