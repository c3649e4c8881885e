"""Videos: Veo generation and extension (sync and async), concatenate, GIF, upscale (§6).

Generation submits one upstream operation per clip, stores the operation names
on the job (``Job.internal``) and hands the job to the :class:`VideoPoller`. The
poller, owned by the instance whose id is on the job, drives each operation to
the end, downloads and stores the clips, and completes or fails the job. After
a crash another instance (or the restarted one) takes the job over
(:mod:`flowgate.services.ownership`) and resumes polling from the stored names.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pybase64
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.balancer.picker import AccountPicker
from flowgate.domain.catalogue import (
    VIDEO_ASPECT_RATIO_ENUMS,
    VIDEO_MODELS,
    VIDEO_OUTPUT_MODEL_NAMES,
    VIDEO_UPSTREAM_ASPECT_RATIOS,
    resolve_video_model,
    upstream_model_id,
)
from flowgate.domain.errors import (
    AccountDeleted,
    AccountNotFound,
    FlowgateError,
    InvalidRequest,
    JobInterrupted,
    NotFound,
    PollingTimeout,
    UpstreamError,
    http_status_for_code,
)
from flowgate.domain.ids import mask_email, media_generation_id, parse_media_generation_id
from flowgate.domain.video_request import (
    VideoRequestSpec,
    parse_video_request,
    video_request_echo,
)
from flowgate.domain.video_tools_request import (
    ConcatSpec,
    ExtendSpec,
    VideoUpscaleSpec,
    parse_concat_request,
    parse_extend_request,
    parse_gif_request,
    parse_video_upscale_request,
)
from flowgate.media import video as ffmpeg
from flowgate.providers.base import InlineImage, VideoStartRequest
from flowgate.services import webhooks
from flowgate.services.accounts import AccountService
from flowgate.services.background_jobs import BackgroundJobs
from flowgate.services.credits import CreditService
from flowgate.services.jobs import JobService, UpstreamAttempt, iso
from flowgate.services.media import MediaService
from flowgate.services.users import Caller
from flowgate.start_gate import leave_start_phase
from flowgate.storage import accounts as account_rows
from flowgate.storage import media_rows
from flowgate.storage.models import Account, Job, Media

log = logging.getLogger("flowgate.videos")

MEDIA_TYPE = "type.googleapis.com/google.internal.labs.aisandbox.v1.Media"
PENDING = "MEDIA_GENERATION_STATUS_PENDING"
SUCCESSFUL = "MEDIA_GENERATION_STATUS_SUCCESSFUL"
FAILED = "MEDIA_GENERATION_STATUS_FAILED"


@dataclass(frozen=True)
class VideoTimings:
    """The settings that bound video work."""

    poll_seconds: float
    sync_timeout_seconds: float
    max_job_seconds: float
    upstream_retention: timedelta
    concat_timeout_seconds: float


class VideoService:
    """Use cases of the /videos endpoints."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        accounts: AccountService,
        picker: AccountPicker,
        jobs: JobService,
        media: MediaService,
        poller: VideoPoller,
        timings: VideoTimings,
        credits: CreditService,
        background: BackgroundJobs,
        allow_private_webhooks: bool,
    ) -> None:
        self._credits = credits
        self._background = background
        self._sessions = sessions
        self._accounts = accounts
        self._picker = picker
        self._jobs = jobs
        self._media = media
        self._poller = poller
        self._timings = timings
        self._allow_private = allow_private_webhooks

    # ------------------------------------------------------------------ generation

    async def generate(
        self, caller: Caller, fields: Mapping[str, Any], *, form: bool
    ) -> tuple[int, dict[str, Any]]:
        """POST /videos: 201 with the job record (async), else 200 when the clips are stored."""
        spec = parse_video_request(
            fields, form=form, custom_models=await self._mapped_models(caller)
        )
        if spec.reply_url:
            await webhooks.check_target(spec.reply_url, allow_private=self._allow_private)
        frames = await self._load_images(caller, spec)
        unit_price = self._credits.price(spec.model)
        lease = await self._acquire(caller, spec.model, spec.email, unit_price * spec.count)
        reserved = unit_price * spec.count
        try:
            account = lease.account
            echo = {**video_request_echo(spec), "email": mask_email(account.email)}
            job = await self._jobs.create(
                caller,
                kind="video",
                request=echo,
                account_email=account.email,
                model=spec.model,
                reply_url=spec.reply_url,
                internal={"reserved": reserved, "unitPrice": unit_price},
            )
            base_seed = spec.seed if spec.seed is not None else secrets.randbelow(2**31 - 8)
            upstream = VideoStartRequest(
                upstream_model=upstream_model_id(spec.model, account.model_map),
                prompt=spec.prompt,
                aspect_ratio=VIDEO_UPSTREAM_ASPECT_RATIOS[spec.aspect_ratio],
                duration_seconds=spec.duration,
                start_frame=frames.get("start"),
                last_frame=frames.get("end"),
                references=tuple(v for k, v in frames.items() if k.startswith("ref")),
            )
            meta = {
                "prompt": spec.prompt,
                "aspectRatio": spec.aspect_ratio,
                "outputModel": VIDEO_OUTPUT_MODEL_NAMES[spec.mode],
                "model": spec.model,
                "duration": spec.duration,
            }
            await self._submit(caller, job, account, upstream, base_seed, spec.count, meta)
        finally:
            lease.release()
        return await self._answer(caller, job, async_mode=spec.async_mode)

    async def extend(
        self, caller: Caller, fields: Mapping[str, Any], *, form: bool
    ) -> tuple[int, dict[str, Any]]:
        """POST /videos/extend: a new 8 s segment from the end of a stored video."""
        spec: ExtendSpec = parse_extend_request(fields, form=form)
        if spec.reply_url:
            await webhooks.check_target(spec.reply_url, allow_private=self._allow_private)
        source = await self._owned_video(caller, spec.media_generation_id)
        uri = (source.extra or {}).get("upstreamUri")
        if not uri:
            raise InvalidRequest(
                "mediaGenerationId was not made by a Veo upstream (it is a concatenation or an "
                "upscale), so it cannot be extended; extend one of the generated clips"
            )
        if source.created_at < datetime.now(UTC) - self._timings.upstream_retention:
            raise InvalidRequest(
                "the upstream copy of this video has expired (Google keeps generated videos for "
                "2 days), so it can no longer be extended; generate a new clip and extend that"
            )
        account = await self._account_of(caller, source)
        unit_price = self._credits.price(spec.model)
        lease = await self._acquire(caller, spec.model, account.email, unit_price * spec.count)
        try:
            request_echo: dict[str, Any] = {
                "prompt": spec.prompt,
                "mediaGenerationId": spec.media_generation_id,
                "model": spec.model,
                "count": spec.count,
                "email": mask_email(account.email),
            }
            if spec.async_mode:
                request_echo["async"] = True
            for key, value in (
                ("seed", spec.seed),
                ("replyUrl", spec.reply_url),
                ("replyRef", spec.reply_ref),
            ):
                if value is not None:
                    request_echo[key] = value
            job = await self._jobs.create(
                caller,
                kind="video",
                request=request_echo,
                account_email=account.email,
                model=spec.model,
                reply_url=spec.reply_url,
                operation="extend",
                internal={"reserved": unit_price * spec.count, "unitPrice": unit_price},
            )
            aspect = (source.extra or {}).get("aspectRatio", "landscape")
            upstream = VideoStartRequest(
                upstream_model=upstream_model_id(spec.model, account.model_map),
                prompt=spec.prompt,
                aspect_ratio=VIDEO_UPSTREAM_ASPECT_RATIOS.get(aspect, "16:9"),
                duration_seconds=8,
                source_video_uri=str(uri),
            )
            base_seed = spec.seed if spec.seed is not None else secrets.randbelow(2**31 - 8)
            meta = {
                "prompt": spec.prompt,
                "aspectRatio": aspect,
                "outputModel": "veo_3_1_t2v",
                "model": spec.model,
                "duration": 8,
                "extends": source.id,
            }
            try:
                await self._submit(caller, job, account, upstream, base_seed, spec.count, meta)
            except UpstreamError as exc:
                if exc.status in (400, 404):
                    raise InvalidRequest(
                        "the upstream refused the source video (its copy may have expired: "
                        f"Google keeps generated videos for 2 days): {exc.info.message}"
                    ) from exc
                raise
        finally:
            lease.release()
        return await self._answer(caller, job, async_mode=spec.async_mode)

    async def _acquire(self, caller: Caller, model: str, email: str | None, price: int) -> Any:
        """Reserve the credits, then take an account; give the credits back if none."""
        reserved = await self._credits.reserve(caller.user_id, price)
        try:
            return await self._picker.acquire(
                caller.user_id, model=model, email=email, kind="video"
            )
        except FlowgateError:
            await self._credits.refund(caller.user_id, reserved)
            raise

    async def _mapped_models(self, caller: Caller) -> frozenset[str]:
        """Model names the caller's accounts map upstream beyond the catalogue."""
        async with self._sessions() as session:
            accounts = await account_rows.accounts_of(session, caller.user_id)
        return frozenset(
            name for a in accounts for name in (a.model_map or {}) if name not in VIDEO_MODELS
        )

    async def _submit(
        self,
        caller: Caller,
        job: Job,
        account: Account,
        upstream: VideoStartRequest,
        base_seed: int,
        count: int,
        meta: dict[str, Any],
    ) -> None:
        provider = self._accounts.provider_for(account)
        operations: list[dict[str, Any]] = []
        started = time.perf_counter()
        first_error: FlowgateError | None = None
        leave_start_phase()
        for index in range(count):
            seed = base_seed + index
            try:
                name = await provider.start_video(
                    VideoStartRequest(**{**upstream.__dict__, "seed": seed})
                )
            except FlowgateError as exc:
                if isinstance(exc, UpstreamError):
                    await self._picker.report_failure(account, exc, job.model or "")
                first_error = first_error or exc
                operations.append(
                    {
                        "name": f"failed-{uuid.uuid4().hex}",
                        "seed": seed,
                        "sceneId": str(uuid.uuid4()),
                        "state": "failed",
                        "error": {"code": exc.status, "message": exc.message},
                    }
                )
                continue
            operations.append(
                {"name": name, "seed": seed, "sceneId": str(uuid.uuid4()), "state": "pending"}
            )
        if first_error is not None and all(op["state"] == "failed" for op in operations):
            await self._jobs.record_event(
                UpstreamAttempt.of_job(
                    job,
                    account.email,
                    first_error.status,
                    int((time.perf_counter() - started) * 1000),
                )
            )
            await self._jobs.fail(job, first_error)
            first_error.job_id = job.id
            raise first_error
        internal = {
            **(job.internal or {}),
            "accountId": account.id,
            "operations": operations,
            "meta": meta,
            "submittedAt": iso(datetime.now(UTC)),
        }
        await self._jobs.set_internal(job, internal, self._pending_response(operations))
        self._poller.track(job.id)

    @staticmethod
    def _pending_response(operations: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "operations": [
                {"operation": {"name": op["name"]}, "sceneId": op["sceneId"], "status": PENDING}
                for op in operations
            ]
        }

    async def _answer(
        self, caller: Caller, job: Job, *, async_mode: bool
    ) -> tuple[int, dict[str, Any]]:
        if async_mode:
            return 201, self._jobs.render(job)
        try:
            await asyncio.wait_for(
                self._poller.finished(job.id), timeout=self._timings.sync_timeout_seconds
            )
        except TimeoutError:
            error = PollingTimeout()
            error.job_id = job.id
            raise error from None
        record = await self._jobs.get(caller, job.id)
        if record["status"] == "failed":
            raise _FailedJob(record)
        return 200, {"jobId": job.id, **record["response"]}

    # ------------------------------------------------------------------ local tools

    async def concatenate(self, caller: Caller, fields: Mapping[str, Any]) -> dict[str, Any]:
        """POST /videos/concatenate: 2-10 videos, trimmed and joined in order."""
        spec: ConcatSpec = parse_concat_request(fields)
        sources = [await self._owned_video(caller, item.media_generation_id) for item in spec.items]
        ratios = {self._aspect_of(s) for s in sources}
        if len(ratios) > 1:
            raise InvalidRequest(
                "all videos must have the same aspect ratio (all landscape or all portrait); "
                f"got {', '.join(sorted(ratios))}"
            )
        datas = [await self._media.store.read(s.sha256) for s in sources]
        parts = [
            (data, item.trim_start, item.trim_end)
            for data, item in zip(datas, spec.items, strict=True)
        ]
        account_email = sources[0].account_email
        job = await self._jobs.create(
            caller,
            kind="video",
            request={"media": [i.echo() for i in spec.items]},
            account_email=account_email,
            model=None,
            reply_url=None,
            operation="concatenate",
        )
        try:
            joined = await asyncio.wait_for(
                ffmpeg.concatenate(parts), timeout=self._timings.concat_timeout_seconds
            )
        except TimeoutError:
            await self._jobs.fail(job, PollingTimeout())
            error = PollingTimeout()
            error.job_id = job.id
            raise error from None
        except ffmpeg.VideoError as exc:
            failure = InvalidRequest(f"could not join these videos: {exc}")
            await self._jobs.fail(job, failure)
            raise failure from exc
        _row, mgid = await self._store_video(
            caller,
            job,
            joined,
            account_email,
            source="derived",
            extra={"aspectRatio": ratios.pop(), "concatenationOf": [s.id for s in sources]},
        )
        await self._finish_local(
            job, {"inputsCount": len(sources), "mediaGenerationId": mgid, "status": SUCCESSFUL}
        )
        return {
            "jobId": job.id,
            "status": SUCCESSFUL,
            "inputsCount": len(sources),
            "encodedVideo": pybase64.b64encode(joined).decode(),
            "mediaGenerationId": mgid,
        }

    async def gif(self, caller: Caller, fields: Mapping[str, Any]) -> dict[str, Any]:
        """POST /videos/gif: a palette-based GIF of a stored video."""
        media_generation_id_value = parse_gif_request(fields)
        source = await self._owned_video(caller, media_generation_id_value)
        data = await self._media.store.read(source.sha256)
        try:
            encoded = await ffmpeg.to_gif(data)
        except ffmpeg.VideoError as exc:
            raise InvalidRequest(f"could not make a GIF of this video: {exc}") from exc
        return {"encodedGif": pybase64.b64encode(encoded).decode()}

    async def upscale(
        self, caller: Caller, fields: Mapping[str, Any], *, form: bool
    ) -> tuple[int, dict[str, Any]]:
        """POST /videos/upscale: Lanczos to 1080p or 4K with ffmpeg; repeats answer ``rawBytes``."""
        spec: VideoUpscaleSpec = parse_video_upscale_request(fields, form=form)
        if spec.reply_url:
            await webhooks.check_target(spec.reply_url, allow_private=self._allow_private)
        source = await self._owned_video(caller, spec.media_generation_id)
        height = 1080 if spec.resolution == "1080p" else 2160
        output_model = (
            "veo_3_1_upsampler_1080p" if spec.resolution == "1080p" else "veo_3_1_upsampler_4k"
        )
        async with self._sessions() as session:
            existing = await session.scalar(
                select(Media).where(
                    Media.upscale_of == source.id, Media.upscale_resolution == spec.resolution
                )
            )
        request_echo: dict[str, Any] = {
            "mediaGenerationId": spec.media_generation_id,
            "resolution": spec.resolution,
        }
        if spec.async_mode:
            request_echo["async"] = True
        for key, value in (("replyUrl", spec.reply_url), ("replyRef", spec.reply_ref)):
            if value is not None:
                request_echo[key] = value
        # A repeat is free (the contract: cached, no extra credits).
        price = 0 if existing else self._credits.price(f"video-upscale-{spec.resolution}")
        reserved = await self._credits.reserve(caller.user_id, price)
        job = await self._jobs.create(
            caller,
            kind="video",
            request=request_echo,
            account_email=source.account_email,
            model=None,
            reply_url=spec.reply_url,
            operation="upscale",
            internal={"reserved": reserved},
        )
        if existing is not None:
            entry = self._operation_entry(
                caller, existing, output_model, str(uuid.uuid4()), f"cached-{existing.id}"
            )
            data = await self._media.store.read(existing.sha256)
            entry["rawBytes"] = pybase64.b64encode(data).decode()
            await self._finish_local(
                job,
                {
                    "operations": [{**entry, "rawBytes": None}],
                    "upscaler": "ffmpeg-lanczos",
                    "cached": True,
                },
            )
            return 200, {
                "jobId": job.id,
                "operations": [self._media.refresh_links(entry)],
                "upscaler": "ffmpeg-lanczos",
            }

        async def work() -> dict[str, Any]:
            await self._jobs.start(job, webhook=True)
            data = await self._media.store.read(source.sha256)
            try:
                scaled = await ffmpeg.upscale(data, height=height)
            except ffmpeg.VideoError as exc:
                failure = InvalidRequest(f"could not upscale this video: {exc}")
                await self._jobs.fail(job, failure)
                raise failure from exc
            extra = {**(source.extra or {}), "upscaledFrom": source.id}
            extra.pop("upstreamUri", None)  # an upscale is not an upstream output
            extra["outputModel"] = output_model
            row, _ = await self._store_video(
                caller,
                job,
                scaled,
                source.account_email,
                source="derived",
                extra=extra,
                upscale_of=source.id,
                upscale_resolution=spec.resolution,
            )
            entry = self._operation_entry(
                caller, row, output_model, str(uuid.uuid4()), f"upscale-{row.id}"
            )
            response = {"operations": [entry], "upscaler": "ffmpeg-lanczos"}
            await self._finish_local(job, response)
            return response

        if spec.async_mode:
            self._background.start(work(), job_id=job.id)
            return 201, self._jobs.render(job)
        response = await work()
        return 200, {"jobId": job.id, **self._media.refresh_links(response)}

    async def _finish_local(self, job: Job, response: dict[str, Any]) -> None:
        await self._jobs.complete(job, response)

    # ------------------------------------------------------------------ helpers

    async def _store_video(
        self,
        caller: Caller,
        job: Job,
        data: bytes,
        account_email: str | None,
        *,
        source: str,
        extra: dict[str, Any],
        upscale_of: str | None = None,
        upscale_resolution: str | None = None,
    ) -> tuple[Media, str]:
        row = await self._media.save_video(
            user_id=caller.user_id,
            job_id=job.id,
            model=job.model,
            data=data,
            account_email=account_email,
            source=source,
            extra=extra,
            upscale_of=upscale_of,
            upscale_resolution=upscale_resolution,
        )
        return row, media_generation_id(caller.user_id, account_email, "video", row.id)

    def _operation_entry(
        self, caller: Caller, row: Media, output_model: str, scene_id: str, name: str
    ) -> dict[str, Any]:
        extra = row.extra or {}
        return operation_entry(
            caller.user_id,
            row.account_email,
            row.id,
            output_model,
            scene_id,
            name,
            seed=extra.get("seed", 0),
            prompt=extra.get("prompt", ""),
            aspect=self._aspect_of(row),
        )

    @staticmethod
    def _aspect_of(row: Media) -> str:
        aspect = (row.extra or {}).get("aspectRatio")
        if aspect in ("landscape", "portrait"):
            return str(aspect)
        return "portrait" if (row.height or 0) > (row.width or 0) else "landscape"

    async def _owned_video(self, caller: Caller, value: str) -> Media:
        parsed = parse_media_generation_id(value)
        if parsed.kind != "video":
            raise InvalidRequest(f"mediaGenerationId type must be 'video', got '{parsed.kind}'")
        async with self._sessions() as session:
            row = await media_rows.media_by_id(session, parsed.media_id)
        if (
            parsed.user_id != caller.user_id
            or row is None
            or row.user_id != caller.user_id
            or row.kind != "video"
        ):
            raise NotFound("video not found (it must be one of your videos)")
        return row

    async def _account_of(self, caller: Caller, row: Media) -> Account:
        async with self._sessions() as session:
            account = await account_rows.account_by_email(
                session, caller.user_id, row.account_email or ""
            )
        if account is None:
            raise AccountNotFound(row.account_email or "(none)")
        return account

    async def _load_images(self, caller: Caller, spec: VideoRequestSpec) -> dict[str, InlineImage]:
        wanted = []
        if spec.start_image is not None:
            wanted.append(("start", "startImage", spec.start_image))
        if spec.end_image is not None:
            wanted.append(("end", "endImage", spec.end_image))
        for index, (name, parsed) in enumerate(spec.reference_images):
            wanted.append((f"ref{index}", name, parsed))
        loaded: dict[str, InlineImage] = {}
        async with self._sessions() as session:
            for key, field, parsed in wanted:
                row = await media_rows.media_by_id(session, parsed.media_id)
                if (
                    parsed.user_id != caller.user_id
                    or row is None
                    or row.user_id != caller.user_id
                    or row.kind != "image"
                ):
                    raise NotFound(
                        f"{field}: image not found (it must be one of your uploads "
                        "or generated images)"
                    )
                loaded[key] = InlineImage(row.mime, await self._media.store.read(row.sha256))
        return loaded


def operation_entry(
    user_id: int,
    account_email: str | None,
    media_id: str,
    output_model: str,
    scene_id: str,
    name: str,
    *,
    seed: int,
    prompt: str,
    aspect: str,
) -> dict[str, Any]:
    """One successful ``operations[]`` item of the contract's video body.

    Links stay empty here: they are signed when the body is rendered.
    """
    mgid = media_generation_id(user_id, account_email, "video", media_id)
    return {
        "operation": {
            "name": name,
            "metadata": {
                "@type": MEDIA_TYPE,
                "name": media_id,
                "video": {
                    "seed": seed,
                    "mediaGenerationId": mgid,
                    "prompt": prompt,
                    "fifeUrl": "",
                    "mediaVisibility": "PRIVATE",
                    "servingBaseUri": "",
                    "model": output_model,
                    "isLooped": False,
                    "aspectRatio": VIDEO_ASPECT_RATIO_ENUMS[aspect],
                },
            },
        },
        "sceneId": scene_id,
        "mediaGenerationId": mgid,
        "status": SUCCESSFUL,
    }


class _FailedJob(FlowgateError):
    """A sync video call whose job failed: answer with the job's error."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(
            str(record.get("error", "failed")), status=http_status_for_code(record.get("code"))
        )
        self.record = record
        self.job_id = str(record["jobid"])

    def body(self) -> dict[str, Any]:
        return {
            "error": self.record.get("error"),
            "code": self.record.get("code"),
            "response": self.record.get("response"),
        }


# ---------------------------------------------------------------------------- the poller


class VideoPoller:
    """Drives tracked video jobs to the end; one per instance."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        accounts: AccountService,
        picker: AccountPicker,
        jobs: JobService,
        media: MediaService,
        poll_seconds: float,
        max_job_seconds: float,
    ) -> None:
        self._sessions = sessions
        self._accounts = accounts
        self._picker = picker
        self._jobs = jobs
        self._media = media
        self._poll_seconds = poll_seconds
        self._max_job_seconds = max_job_seconds
        self._tracked: set[str] = set()
        self._done: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()

    def track(self, job_id: str) -> None:
        """Poll this job from now on."""
        self._tracked.add(job_id)
        self._done.setdefault(job_id, asyncio.Event())
        self._wake.set()

    async def finished(self, job_id: str) -> None:
        """Wait until the job is completed or failed (on this instance)."""
        await self._done.setdefault(job_id, asyncio.Event()).wait()

    def _mark_done(self, job_id: str) -> None:
        self._tracked.discard(job_id)
        event = self._done.pop(job_id, None)
        if event is not None:
            event.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop``."""
        while not stop.is_set():
            if self._tracked:
                await asyncio.gather(
                    *(self._poll_job(job_id) for job_id in list(self._tracked)),
                    return_exceptions=True,
                )
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            except TimeoutError:
                pass

    async def _poll_job(self, job_id: str) -> None:
        try:
            await self._advance(job_id)
        except Exception:
            log.exception("polling video job failed", extra={"job_id": job_id})

    async def _advance(self, job_id: str) -> None:
        async with self._sessions() as session:
            job = await session.get(Job, job_id)
            account = None
            if job is not None and job.internal:
                account = await session.get(Account, job.internal.get("accountId"))
        if job is None or job.status in ("completed", "failed"):
            self._mark_done(job_id)
            return
        internal = dict(job.internal or {})
        operations: list[dict[str, Any]] = [dict(op) for op in internal.get("operations", [])]
        if account is None or not operations:
            # The user deleted the account mid-job (its operations can no longer be
            # polled): their doing, so a 4xx; otherwise flowgate stopped too early.
            error: FlowgateError = (
                AccountDeleted(
                    "the account this job ran on was deleted while it ran; send the job again"
                )
                if operations
                else JobInterrupted("flowgate stopped before the upstream accepted this job")
            )
            await self._jobs.fail(job, error)
            self._mark_done(job_id)
            return
        if job.status == "created":
            await self._jobs.start(job, webhook=True)
        provider = self._accounts.provider_for(account)
        meta = internal.get("meta", {})
        changed = False
        for op in operations:
            if op["state"] != "pending":
                continue
            try:
                state = await provider.get_operation(op["name"])
            except UpstreamError as exc:
                if exc.status in (404, 400):
                    op.update(
                        state="failed",
                        error={
                            "code": exc.status,
                            "message": (
                                "the upstream no longer knows this operation: " + exc.info.message
                            ),
                        },
                    )
                    changed = True
                continue  # a passing error: poll again next round
            except FlowgateError:
                continue
            if not state.done:
                continue
            changed = True
            if state.error_code is not None or state.error_message:
                op.update(
                    state="failed",
                    error={
                        "code": http_status_for_code(state.error_code),
                        "message": state.error_message,
                    },
                )
            elif not state.video_uris:
                reasons = ", ".join(state.filtered_reasons) or "no video returned"
                op.update(
                    state="failed",
                    error={
                        "code": 400,
                        "message": (
                            "the upstream filtered the video "
                            f"(PUBLIC_ERROR_UNSAFE_GENERATION): {reasons}"
                        ),
                    },
                )
            else:
                try:
                    data = await provider.download(state.video_uris[0])
                except FlowgateError:
                    changed = False
                    continue  # retry the download next round
                row = await self._store_output(job, account, data, op, meta, state.video_uris[0])
                op.update(state="done", mediaId=row.id)
        expired = self._expired(internal)
        if expired:
            for op in operations:
                if op["state"] == "pending":
                    op.update(
                        state="failed",
                        error={
                            "code": 504,
                            "message": (
                                f"the upstream did not finish within {self._max_job_seconds:g} s"
                            ),
                        },
                    )
                    changed = True
        if not changed:
            return
        internal["operations"] = operations
        response = self._response(job, account, operations, meta)
        if any(op["state"] == "pending" for op in operations):
            await self._jobs.set_internal(job, internal, response)
            return
        elapsed = self._elapsed_ms(internal)
        succeeded = [op for op in operations if op["state"] == "done"]
        status = 200 if succeeded else http_status_for_code(operations[0]["error"]["code"])
        await self._jobs.record_event(UpstreamAttempt.of_job(job, account.email, status, elapsed))
        await self._jobs.set_internal(job, internal, response)
        if succeeded:
            unit = int(internal.get("unitPrice", 0))
            await self._jobs.complete(
                job, response, refund=unit * (len(operations) - len(succeeded))
            )
        else:
            first = operations[0]["error"]
            await self._jobs.fail(
                job,
                _OperationsFailed(
                    http_status_for_code(first["code"]), str(first["message"]), response
                ),
            )
        self._mark_done(job_id)

    def _expired(self, internal: dict[str, Any]) -> bool:
        submitted = internal.get("submittedAt")
        if not submitted:
            return False
        started = datetime.fromisoformat(str(submitted).replace("Z", "+00:00"))
        return datetime.now(UTC) - started > timedelta(seconds=self._max_job_seconds)

    @staticmethod
    def _elapsed_ms(internal: dict[str, Any]) -> int:
        submitted = internal.get("submittedAt")
        if not submitted:
            return 0
        started = datetime.fromisoformat(str(submitted).replace("Z", "+00:00"))
        return int((datetime.now(UTC) - started).total_seconds() * 1000)

    async def _store_output(
        self,
        job: Job,
        account: Account,
        data: bytes,
        op: dict[str, Any],
        meta: dict[str, Any],
        uri: str,
    ) -> Media:
        return await self._media.save_video(
            user_id=job.user_id,
            job_id=job.id,
            model=job.model,
            data=data,
            account_email=account.email,
            source="generated",
            extra={
                "seed": op["seed"],
                "prompt": meta.get("prompt", ""),
                "aspectRatio": meta.get("aspectRatio", "landscape"),
                "outputModel": meta.get("outputModel", "veo_3_1_t2v"),
                "upstreamUri": uri,
            },
        )

    def _response(
        self, job: Job, account: Account, operations: list[dict[str, Any]], meta: dict[str, Any]
    ) -> dict[str, Any]:
        entries = []
        for op in operations:
            if op["state"] == "done":
                entries.append(
                    operation_entry(
                        job.user_id,
                        account.email,
                        op["mediaId"],
                        meta.get("outputModel", "veo_3_1_t2v"),
                        op["sceneId"],
                        op["name"],
                        seed=op["seed"],
                        prompt=meta.get("prompt", ""),
                        aspect=meta.get("aspectRatio", "landscape"),
                    )
                )
            elif op["state"] == "failed":
                entries.append(
                    {
                        "operation": {"name": op["name"], "error": op["error"]},
                        "sceneId": op["sceneId"],
                        "status": FAILED,
                    }
                )
            else:
                entries.append(
                    {"operation": {"name": op["name"]}, "sceneId": op["sceneId"], "status": PENDING}
                )
        return {"operations": entries}

    async def resume(self, job_ids: list[str]) -> None:
        """Track jobs this instance took over."""
        for job_id in job_ids:
            self.track(job_id)


class _OperationsFailed(FlowgateError):
    """Every operation of a video job failed."""

    def __init__(self, status: int, message: str, response: dict[str, Any]) -> None:
        super().__init__(message, status=status)
        self._response = response

    def body(self) -> dict[str, Any]:
        return {**self._response, "error": self.message}


def resolve_model_name(name: str) -> str:
    """The canonical video model name (for callers outside the request parser)."""
    return resolve_video_model(name).name
