"""POST /images/upscale: a stored image at 2K or 4K (contract §5 C2; docs/upscale.md).

Order of work: validate the body (domain) → load the source image (owner
check, upscale results lead back to their original) → the contract's rules
(only nano-banana-2 / nano-banana-pro outputs; 4k needs a paid account) → a
stored result for (image, resolution) is answered as it is → otherwise the
upscale runs on the account that made the image when it is eligible, else on
one the balancer picks, re-rendered by Nano Banana Pro at ``imageSize`` 2K/4K
with the image as the only reference; with no eligible upstream (or
``upscale: "local"`` on the account) flowgate resamples locally (Lanczos).
Every upstream upscale is a job row (``operation`` "upscale", not returned:
the contract's answer has no jobId) with job events, so the balancer's
statistics count it. The result is stored and listed on the source's job.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pybase64
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.balancer.picker import AccountPicker, Lease
from flowgate.domain.catalogue import upstream_model_id
from flowgate.domain.errors import (
    ContentBlocked,
    FlowgateError,
    InvalidRequest,
    NoEligibleAccount,
    NotFound,
    UpstreamError,
    UpstreamUnreachable,
)
from flowgate.domain.ids import mask_email, media_generation_id
from flowgate.domain.upscale_request import (
    UPSCALE_MODEL,
    UPSCALE_PROMPT,
    UPSCALER_LANCZOS,
    UPSCALER_NANO_BANANA_PRO,
    UpscaleRequestSpec,
    check_tier,
    check_upscalable,
    parse_upscale_request,
    upscaled_size,
    upstream_aspect_ratio,
)
from flowgate.media.images import lanczos_jpeg
from flowgate.providers.base import ContentImageRequest, InlineImage
from flowgate.services.accounts import AccountService
from flowgate.services.credits import CreditService
from flowgate.services.jobs import JobService, UpstreamAttempt, iso
from flowgate.services.media import MediaService
from flowgate.services.users import Caller
from flowgate.start_gate import leave_start_phase
from flowgate.storage import accounts as account_rows
from flowgate.storage import media_rows
from flowgate.storage.models import Account, Job, Media

log = logging.getLogger("flowgate.upscale")

NATIVE_UPSCALE_PROVIDERS = frozenset({"gemini", "sandbox"})
"""Account providers that upscale upstream (Gemini API: Nano Banana Pro at imageSize 2K/4K)."""

JPEG_QUALITY = 90


@dataclass(frozen=True)
class _Source:
    """The image to upscale, with its bytes and the account that made it (if it still exists)."""

    row: Media
    data: bytes
    width: int
    height: int
    origin: Account | None


@dataclass(frozen=True)
class _Pool:
    """The caller's accounts for one upscale: all of them, and those able to run it upstream."""

    every: frozenset[str]
    able: frozenset[str]


@dataclass(frozen=True)
class _Result:
    """An upscaled JPEG and how it was made."""

    jpeg: bytes
    upscaler: str
    account_email: str | None
    model: str | None
    job: Job | None


class UpscaleService:
    """The only place that upscales images."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        accounts: AccountService,
        picker: AccountPicker,
        jobs: JobService,
        media: MediaService,
        max_image_pixels: int,
        credits: CreditService,
    ) -> None:
        self._credits = credits
        self._sessions = sessions
        self._accounts = accounts
        self._picker = picker
        self._jobs = jobs
        self._media = media
        self._max_image_pixels = max_image_pixels
        # One upscale of an (image, resolution) at a time on this instance; a second identical
        # request waits and then gets the stored result instead of a second upstream call.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def upscale(
        self, caller: Caller, fields: Mapping[str, Any], *, form: bool
    ) -> dict[str, Any]:
        """POST /images/upscale: ``{"encodedImage", "upscaler", "mediaGenerationId"}``."""
        spec = parse_upscale_request(fields, form=form)
        row = await self._source_row(caller, spec)
        check_upscalable(row.model, row.source)
        origin = await self._origin_account(caller, row)
        if origin is not None:
            check_tier(spec.resolution, origin.tier, origin.email)
        key = (row.id, spec.resolution)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            stored = await self._stored(row.id, spec.resolution)
            if stored is not None:
                return await self._answer_stored(caller, stored)
            source = await self._load(row, origin)
            # Charged only for new work that succeeds; a stored repeat is free.
            reserved = await self._credits.reserve(
                caller.user_id, self._credits.price(f"upscale-{spec.resolution}")
            )
            try:
                result = await self._run(caller, spec, source)
                return await self._keep(caller, spec, source, result)
            except BaseException:
                await self._credits.refund(caller.user_id, reserved)
                raise

    # ------------------------------------------------------------------ the source

    async def _source_row(self, caller: Caller, spec: UpscaleRequestSpec) -> Media:
        not_found = NotFound(
            f"Image {spec.media_generation_id} not found: send the mediaGenerationId of one of "
            "your images from POST /images"
        )
        if spec.media.user_id != caller.user_id:
            raise not_found
        async with self._sessions() as session:
            row = await media_rows.media_by_id(session, spec.media.media_id)
            if row is None or row.user_id != caller.user_id:
                raise not_found
            if row.kind != "image":
                raise InvalidRequest(
                    f"mediaGenerationId type must be 'image', got '{row.kind}': "
                    "POST /images/upscale upscales images made by POST /images"
                )
            if row.upscale_of is not None:
                # An upscale of an upscale is an upscale of the original: no quality lost twice.
                original = await media_rows.media_by_id(session, row.upscale_of)
                if original is not None and original.user_id == caller.user_id:
                    return original
        return row

    async def _origin_account(self, caller: Caller, row: Media) -> Account | None:
        if not row.account_email:
            return None
        async with self._sessions() as session:
            return await account_rows.account_by_email(session, caller.user_id, row.account_email)

    async def _load(self, row: Media, origin: Account | None) -> _Source:
        if not row.width or not row.height:
            raise InvalidRequest(
                "this image could not be decoded when it was stored, so it cannot be upscaled"
            )
        data = await self._media.store.read(row.sha256)
        return _Source(row, data, row.width, row.height, origin)

    async def _stored(self, media_id: str, resolution: str) -> Media | None:
        async with self._sessions() as session:
            row: Media | None = await session.scalar(
                select(Media).where(
                    Media.upscale_of == media_id, Media.upscale_resolution == resolution
                )
            )
        if row is None:
            return None
        if not self._media.store.exists(row.sha256):
            # The file is gone (store cleaned by hand): forget the row and upscale again.
            async with self._sessions.begin() as session:
                stale = await session.get(Media, row.id)
                if stale is not None:
                    await session.delete(stale)
            return None
        return row

    # ------------------------------------------------------------------ choosing the method

    async def _run(self, caller: Caller, spec: UpscaleRequestSpec, source: _Source) -> _Result:
        origin = source.origin
        if origin is not None and origin.upscale == "local":
            return await self._local(spec, source)
        async with self._sessions() as session:
            accounts = await account_rows.accounts_of(session, caller.user_id)
        pool = _Pool(
            every=frozenset(a.email for a in accounts),
            able=frozenset(a.email for a in accounts if self._can_upscale(a, spec)),
        )
        lease = await self._acquire(caller, origin, pool)
        if lease is None:
            return await self._local(spec, source)
        return await self._upstream(caller, spec, source, lease, pool)

    @staticmethod
    def _can_upscale(account: Account, spec: UpscaleRequestSpec) -> bool:
        """Whether ``account`` may run this upscale upstream (health and quarantine aside)."""
        return (
            account.upscale != "local"
            and account.provider in NATIVE_UPSCALE_PROVIDERS
            and not (spec.resolution == "4k" and account.tier == "free")
        )

    async def _acquire(
        self,
        caller: Caller,
        origin: Account | None,
        pool: _Pool,
        tried: frozenset[str] = frozenset(),
    ) -> Lease | None:
        """A slot on the origin account when it is eligible and free, else the balancer's pick.

        None when no account is eligible (unhealthy, model unsupported, quarantined, or
        not able to upscale upstream): the caller then resamples locally. Accounts that
        are eligible but full make the request wait, as on POST /images (429 after the
        queue timeout).
        """
        if not pool.able - tried:
            return None
        if (
            origin is not None
            and origin.email in pool.able - tried
            and self._picker.board.has_room(origin.id, origin.max_concurrency)
        ):
            try:
                # Every other account excluded: the balancer's filters judge the origin alone.
                return await self._picker.acquire(
                    caller.user_id,
                    model=UPSCALE_MODEL,
                    email=None,
                    exclude=pool.every - {origin.email},
                )
            except (NoEligibleAccount, NotFound):
                pass
        try:
            return await self._picker.acquire(
                caller.user_id,
                model=UPSCALE_MODEL,
                email=None,
                exclude=(pool.every - pool.able) | tried,
            )
        except (NoEligibleAccount, NotFound):
            return None

    # ------------------------------------------------------------------ the two methods

    async def _local(self, spec: UpscaleRequestSpec, source: _Source) -> _Result:
        width, height = upscaled_size(source.width, source.height, spec.long_side)
        leave_start_phase()
        try:
            jpeg = await asyncio.to_thread(
                lanczos_jpeg,
                source.data,
                width,
                height,
                quality=JPEG_QUALITY,
                max_pixels=self._max_image_pixels * 2,
            )
        except ValueError as exc:
            raise InvalidRequest(f"this image cannot be upscaled: {exc}") from exc
        return _Result(jpeg, UPSCALER_LANCZOS, source.row.account_email, source.row.model, None)

    async def _upstream(
        self,
        caller: Caller,
        spec: UpscaleRequestSpec,
        source: _Source,
        lease: Lease,
        pool: _Pool,
    ) -> _Result:
        """Re-render on the leased account; a quota or key failure is retried once elsewhere.

        Mirrors POST /images: each attempt is a job event, upstream errors are reported
        to the balancer (quarantine, health), the job ends ``completed`` or ``failed``.
        """
        try:
            job = await self._jobs.create(
                caller,
                kind="image",
                request={
                    "mediaGenerationId": spec.media_generation_id,
                    "resolution": spec.resolution,
                    "model": UPSCALE_MODEL,
                    "email": mask_email(lease.account.email),
                },
                account_email=lease.account.email,
                model=UPSCALE_MODEL,
                reply_url=None,
                operation="upscale",
            )
            await self._jobs.start(job)
            retries_left = 1
            tried: set[str] = set()
            leave_start_phase()
            while True:
                account = lease.account
                started = time.perf_counter()
                try:
                    jpeg = await self._render(account, spec, source)
                    break
                except FlowgateError as exc:
                    await self._event(account, job, exc.status, started)
                    retry = False
                    if isinstance(exc, UpstreamError) and not isinstance(exc, ContentBlocked):
                        await self._picker.report_failure(account, exc, UPSCALE_MODEL)
                        retry = retries_left > 0 and (exc.is_rate_limit or exc.is_key_error)
                    if retry:
                        retries_left -= 1
                        tried.add(account.email)
                        try:
                            other = await self._acquire(caller, None, pool, frozenset(tried))
                        except FlowgateError:
                            other = None  # the others are busy: the upstream error stands
                        if other is not None:
                            lease.release()
                            lease = other
                            await self._jobs.reassign(job, other.account.email)
                            continue
                    await self._jobs.fail(job, exc)
                    raise
            await self._event(account, job, 200, started)
        finally:
            lease.release()
        return _Result(jpeg, UPSCALER_NANO_BANANA_PRO, account.email, UPSCALE_MODEL, job)

    async def _render(self, account: Account, spec: UpscaleRequestSpec, source: _Source) -> bytes:
        """One ``:generateContent`` call at ``imageSize`` 2K/4K, brought to the exact size."""
        provider = self._accounts.provider_for(account)
        seed = source.row.extra.get("seed") if source.row.extra else None
        image = await provider.generate_content_image(
            ContentImageRequest(
                upstream_model=upstream_model_id(UPSCALE_MODEL, account.model_map),
                prompt=UPSCALE_PROMPT,
                aspect_ratio=upstream_aspect_ratio(source.width, source.height),
                image_size=spec.image_size,
                seed=seed if isinstance(seed, int) else None,
                references=(InlineImage(source.row.mime, source.data),),
            )
        )
        width, height = upscaled_size(source.width, source.height, spec.long_side)
        try:
            # Google's "2K" is about 4 megapixels (16:9 → 2752x1536): the answer is cropped to
            # the source's exact proportions and resampled to the contract's long side.
            return await asyncio.to_thread(
                lanczos_jpeg,
                image.data,
                width,
                height,
                quality=JPEG_QUALITY,
                max_pixels=self._max_image_pixels * 2,
            )
        except ValueError as exc:
            raise UpstreamUnreachable(
                f"upstream answered the upscale with an image flowgate cannot decode: {exc}"
            ) from exc

    async def _event(self, account: Account, job: Job, status: int, started: float) -> None:
        await self._jobs.record_event(
            UpstreamAttempt.of_job(
                job, account.email, status, int((time.perf_counter() - started) * 1000)
            )
        )

    # ------------------------------------------------------------------ keeping and answering

    async def _keep(
        self, caller: Caller, spec: UpscaleRequestSpec, source: _Source, result: _Result
    ) -> dict[str, Any]:
        """Store the JPEG, complete the upscale job, list it on the source's job, answer."""
        width, height = upscaled_size(source.width, source.height, spec.long_side)
        digest = await self._media.put(result.jpeg)
        row = self._media.row(
            user_id=caller.user_id,
            data=result.jpeg,
            kind="image",
            source="derived",
            mime="image/jpeg",
            width=width,
            height=height,
            account_email=result.account_email,
            model=result.model,
            job_id=source.row.job_id,
            extra={
                "upscaler": result.upscaler,
                "resolution": spec.resolution,
                "upscaleJobId": result.job.id if result.job else None,
            },
            upscale_of=source.row.id,
            upscale_resolution=spec.resolution,
            digest=digest,
        )
        try:
            await self._media.insert(row)
        except IntegrityError:
            # Another instance stored the same upscale first: answer that one.
            stored = await self._stored(source.row.id, spec.resolution)
            if stored is None:
                raise
            if result.job is not None:
                await self._jobs.complete(
                    result.job, self._job_response(caller, stored, source.row)
                )
            return await self._answer_stored(caller, stored)
        if result.job is not None:
            await self._jobs.complete(result.job, self._job_response(caller, row, source.row))
        if source.row.job_id:
            await self._jobs.add_upscale(source.row.job_id, self._entry(caller, row))
        return self._answer(caller, row, result.jpeg)

    def _mgid(self, caller: Caller, row: Media) -> str:
        return media_generation_id(caller.user_id, row.account_email, "image", row.id)

    def _entry(self, caller: Caller, row: Media) -> dict[str, Any]:
        """How an upscale is listed on a job record (``fifeUrl`` is signed when read)."""
        return {
            "mediaGenerationId": self._mgid(caller, row),
            "fifeUrl": "",
            "resolution": row.upscale_resolution,
            "upscaler": (row.extra or {}).get("upscaler"),
            "width": row.width,
            "height": row.height,
            "created": iso(row.created_at),
        }

    def _job_response(self, caller: Caller, row: Media, source: Media) -> dict[str, Any]:
        """The upscale job's ``response``: the result and the image it was made from."""
        return {
            "upscale": {
                **self._entry(caller, row),
                "sourceMediaGenerationId": self._mgid(caller, source),
            }
        }

    def _answer(self, caller: Caller, row: Media, jpeg: bytes) -> dict[str, Any]:
        return {
            "encodedImage": pybase64.b64encode(jpeg).decode("ascii"),
            "upscaler": (row.extra or {}).get("upscaler"),
            "mediaGenerationId": self._mgid(caller, row),
        }

    async def _answer_stored(self, caller: Caller, row: Media) -> dict[str, Any]:
        return self._answer(caller, row, await self._media.store.read(row.sha256))
