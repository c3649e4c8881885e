"""Run a validated prompt list against a server: upload, generate, download, record.

:class:`BatchRunner` is what ``flowgate generate`` drives; it knows nothing of
terminals. It reports progress through ``on_event`` callbacks and writes
``{index}_{n}.{ext}`` files and ``manifest.jsonl`` into the output folder.

Resume: before running, the manifest is read. A prompt whose last record is
``done`` with the same fingerprint and whose files all exist is skipped. One
whose images were generated but not all saved (a failed or missing download)
is fetched again from its job (``GET /jobs/{id}``) instead of being generated
again. Everything else is sent.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from flowgate.batch.manifest import Manifest, ManifestRecord
from flowgate.batch.prompts import BatchItem, ReferenceFile
from flowgate.batch.retry import FATAL_STATUSES, RetryPolicy
from flowgate.client.errors import FlowgateAPIError, FlowgateClientError, FlowgateConnectionError
from flowgate.client.files import extension_for
from flowgate.client.http import AsyncClient
from flowgate.client.models import GeneratedImage

T = TypeVar("T")
EventKind = Literal["skipped", "started", "retrying", "done", "failed"]


@dataclass(frozen=True)
class BatchEvent:
    """Something that happened to one prompt.

    ``started``: an attempt of ``what`` (upload, generate, download, job)
    begins; ``retrying``: it failed and will be retried after ``delay``
    seconds; ``done`` / ``failed``: the prompt is finished and ``record`` is
    its manifest line; ``skipped``: it was done in an earlier run.
    """

    kind: EventKind
    item: BatchItem
    what: str = ""
    attempt: int = 0
    delay: float | None = None
    message: str = ""
    record: ManifestRecord | None = None


@dataclass
class BatchSummary:
    """Counts of one run. ``stopped`` is the error that ended the run early (401, 402)."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    images: int = 0
    stopped: FlowgateAPIError | None = None
    records: list[ManifestRecord] = field(default_factory=list)

    @property
    def not_started(self) -> int:
        """Prompts left untouched because the run stopped early."""
        return self.total - self.skipped - self.done - self.failed


class _StepFailed(Exception):
    """A step gave up; carries the error and which step it was."""

    def __init__(self, stage: str, error: Exception, attempts: int) -> None:
        super().__init__(str(error))
        self.stage = stage
        self.error = error
        self.attempts = attempts


def _error_fields(error: Exception) -> tuple[int | None, object]:
    if isinstance(error, FlowgateAPIError):
        return error.status, error.body
    return None, str(error)


def _write_file(path: Path, data: bytes) -> None:
    # Write beside the target, then rename: a killed run never leaves half an image.
    part = path.with_name(f".{path.name}.part")
    part.write_bytes(data)
    os.replace(part, path)


class BatchRunner:
    """Sends ``items`` with at most ``concurrency`` requests in flight."""

    def __init__(
        self,
        client: AsyncClient,
        items: list[BatchItem],
        out_dir: Path,
        *,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        on_event: Callable[[BatchEvent], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.client = client
        self.items = items
        self.out_dir = out_dir
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.manifest = Manifest(out_dir)
        self.on_event = on_event
        self._uploads: dict[tuple[Path, str | None], asyncio.Task[str]] = {}
        self._summary = BatchSummary(total=len(items))

    @property
    def summary(self) -> BatchSummary:
        """The counts so far (complete once :meth:`run` returns)."""
        return self._summary

    def _emit(self, event: BatchEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # ------------------------------------------------------------------ plan

    def plan(self) -> tuple[list[BatchItem], list[tuple[BatchItem, ManifestRecord | None]]]:
        """``(done, to_run)``: prompts finished earlier, and the rest with their last record.

        A record whose fingerprint differs (the prompt or a reference changed) does
        not count as done; it is kept only to remove its files once replaced.
        """
        previous = self.manifest.latest()
        done: list[BatchItem] = []
        to_run: list[tuple[BatchItem, ManifestRecord | None]] = []
        for item in self.items:
            record = previous.get(item.index)
            if (
                record is not None
                and record.fingerprint == item.fingerprint()
                and record.status == "done"
                and record.files
                and all((self.out_dir / name).is_file() for name in record.files)
            ):
                done.append(item)
            else:
                to_run.append((item, record))
        return done, to_run

    # ------------------------------------------------------------------ run

    async def run(self) -> BatchSummary:
        """Run every prompt not done yet; return the counts (records are in the manifest)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.out_dir.glob(".*.part"):
            stale.unlink(missing_ok=True)
        done, to_run = self.plan()
        for item in done:
            self._summary.skipped += 1
            self._emit(BatchEvent("skipped", item))
        queue = deque(to_run)

        async def worker() -> None:
            while queue and self._summary.stopped is None:
                item, previous = queue.popleft()
                await self._process(item, previous)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.concurrency, len(to_run))):
                group.create_task(worker())
        return self._summary

    async def _process(self, item: BatchItem, previous: ManifestRecord | None) -> None:
        try:
            record = None
            if (
                previous is not None
                and previous.fingerprint == item.fingerprint()
                and previous.job_id
                and previous.media_generation_ids
            ):
                record = await self._recover(item, previous)
            if record is None:
                record = await self._generate(item, previous)
        except _StepFailed as failed:
            status, body = _error_fields(failed.error)
            record = ManifestRecord(
                index=item.index,
                line=item.line,
                status="failed",
                prompt=item.prompt,
                parameters=item.parameters(),
                fingerprint=item.fingerprint(),
                job_id=getattr(failed.error, "job_id", None),
                http_status=status,
                error=body,
                stage=failed.stage,
                attempts=failed.attempts,
            )
            if isinstance(failed.error, FlowgateAPIError) and failed.error.status in FATAL_STATUSES:
                self._summary.stopped = failed.error
        self.manifest.append(record)
        self._summary.records.append(record)
        if record.status == "done":
            self._summary.done += 1
            self._summary.images += len(record.files)
        else:
            self._summary.failed += 1
        self._emit(BatchEvent(record.status, item, record=record, attempt=record.attempts))

    async def _retrying(
        self, item: BatchItem, what: str, op: Callable[[], Awaitable[T]]
    ) -> tuple[T, int]:
        """Run ``op`` under the retry policy; return its value and the number of attempts."""
        attempt = 0
        while True:
            attempt += 1
            self._emit(BatchEvent("started", item, what=what, attempt=attempt))
            try:
                return await op(), attempt
            except (FlowgateAPIError, FlowgateConnectionError) as exc:
                decision = self.retry.decide(exc, attempt)
                if decision.delay is None:
                    raise _StepFailed(what, exc, attempt) from exc
                self._emit(
                    BatchEvent(
                        "retrying",
                        item,
                        what=what,
                        attempt=attempt,
                        delay=decision.delay,
                        message=str(exc),
                    )
                )
                await asyncio.sleep(decision.delay)
            except FlowgateClientError as exc:
                raise _StepFailed(what, exc, attempt) from exc

    # ------------------------------------------------------------------ steps

    async def _upload(self, item: BatchItem, reference: ReferenceFile) -> str:
        key = (reference.path, item.email.lower() if item.email else None)
        task = self._uploads.get(key)
        if task is None:

            async def upload() -> str:
                data = await asyncio.to_thread(reference.path.read_bytes)
                result, _ = await self._retrying(
                    item,
                    "upload",
                    lambda: self.client.upload_asset(
                        data, content_type=reference.content_type, email=item.email
                    ),
                )
                return result.id

            # One upload per file (and account), shared by every prompt that uses it.
            task = asyncio.create_task(upload())
            self._uploads[key] = task
        return await asyncio.shield(task)

    async def _generate(self, item: BatchItem, previous: ManifestRecord | None) -> ManifestRecord:
        uploaded = {
            slot: await self._upload(item, reference)
            for slot, reference in sorted(item.reference_files.items())
        }
        body = item.request_body(uploaded)
        result, attempts = await self._retrying(
            item, "generate", lambda: self.client.generate_images(body)
        )
        return await self._save(item, result.job_id, result.images, attempts, previous)

    async def _recover(self, item: BatchItem, previous: ManifestRecord) -> ManifestRecord | None:
        """Download the images of an earlier run's job again; ``None`` if that is not possible."""
        assert previous.job_id is not None
        job_id = previous.job_id
        try:
            job, _ = await self._retrying(item, "job", lambda: self.client.get_job(job_id))
        except _StepFailed:
            return None  # expired or gone: generate anew
        if job.status != "completed" or not job.images:
            return None
        return await self._save(item, job.jobid, job.images, previous.attempts, previous)

    async def _save(
        self,
        item: BatchItem,
        job_id: str,
        images: list[GeneratedImage],
        attempts: int,
        previous: ManifestRecord | None,
    ) -> ManifestRecord:
        files: list[str] = []
        media_ids = [image.media_generation_id for image in images]

        def record(**outcome: Any) -> ManifestRecord:
            return ManifestRecord(
                index=item.index,
                line=item.line,
                prompt=item.prompt,
                parameters=item.parameters(),
                fingerprint=item.fingerprint(),
                job_id=job_id,
                media_generation_ids=media_ids,
                files=files,
                attempts=attempts,
                **outcome,
            )

        def unsaved(stage: str, error: Exception) -> ManifestRecord:
            # The images exist on the server: keep the job id so a re-run fetches them again.
            status, body = _error_fields(error)
            return record(status="failed", http_status=status, error=body, stage=stage)

        for number, image in enumerate(images, start=1):
            url = image.fife_url
            try:
                download, _ = await self._retrying(
                    item, "download", functools.partial(self.client.download, url)
                )
            except _StepFailed as failed:
                return unsaved("download", failed.error)
            name = f"{item.index}_{number}.{extension_for(download.content_type, 'png')}"
            try:
                await asyncio.to_thread(_write_file, self.out_dir / name, download.data)
            except OSError as exc:  # disk full, permissions: the run goes on, a re-run retries
                return unsaved("save", exc)
            files.append(name)
        if previous is not None:
            for stale in set(previous.files) - set(files):
                (self.out_dir / stale).unlink(missing_ok=True)
        return record(status="done", http_status=200)
