"""POST /images and POST /assets: the image workflow (contract §4, §5 C1)."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.balancer.picker import AccountPicker
from flowgate.domain.catalogue import (
    image_aspect_ratio,
    image_aspect_ratio_enum,
    model_name_type,
    resolve_image_model,
    upstream_model_id,
)
from flowgate.domain.errors import (
    ContentBlocked,
    FlowgateError,
    InvalidRequest,
    JobInterrupted,
    NotFound,
    UpstreamError,
)
from flowgate.domain.ids import ParsedMediaId, mask_email, media_generation_id
from flowgate.domain.image_request import (
    ImageRequestSpec,
    check_reference_budget,
    parse_image_request,
    request_echo,
)
from flowgate.media.images import inspect_image
from flowgate.providers.base import (
    ContentImageRequest,
    GeneratedImage,
    InlineImage,
    PredictImageRequest,
)
from flowgate.services import webhooks
from flowgate.services.accounts import AccountService
from flowgate.services.characters import CharacterService
from flowgate.services.credits import CreditService
from flowgate.services.jobs import JobService, UpstreamAttempt
from flowgate.services.media import MediaService
from flowgate.services.users import Caller
from flowgate.start_gate import leave_start_phase
from flowgate.storage import media_rows
from flowgate.storage.models import Account, Job, Media
from flowgate.storage.writes import insert_values

log = logging.getLogger("flowgate.images")


@dataclass(frozen=True)
class LoadedReference:
    """A reference image of the caller, with its bytes."""

    param: str
    media: Media
    media_generation_id: str
    data: bytes


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # an upstream image Pillow cannot read is still stored and served
        return None, None


def _abandon(call: asyncio.Future[Any]) -> None:
    """Cancel an upstream call nobody will wait for; its outcome is dropped unread."""
    call.cancel()
    call.add_done_callback(_drop_outcome)


def _drop_outcome(call: asyncio.Future[Any]) -> None:
    if not call.cancelled():
        call.exception()  # read, so asyncio does not log it as never retrieved


class ImageService:
    """Uploads and generations; the only place that calls image providers."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        accounts: AccountService,
        picker: AccountPicker,
        jobs: JobService,
        media: MediaService,
        characters: CharacterService,
        credits: CreditService,
        allow_private_webhooks: bool,
        max_upload_bytes: int,
        max_image_pixels: int,
    ) -> None:
        self._sessions = sessions
        self._accounts = accounts
        self._picker = picker
        self._jobs = jobs
        self._media = media
        self._characters = characters
        self._credits = credits
        self._allow_private = allow_private_webhooks
        self._max_upload_bytes = max_upload_bytes
        self._max_image_pixels = max_image_pixels

    # ------------------------------------------------------------------ assets

    async def upload(
        self, caller: Caller, data: bytes, content_type: str | None, email: str | None
    ) -> dict[str, Any]:
        """POST /assets[/{email}]: check the bytes, keep them, answer the contract's body."""
        # Decoding a 20 MiB upload takes long enough to stall every other request: a thread.
        info = await asyncio.to_thread(
            inspect_image,
            data,
            content_type,
            max_bytes=self._max_upload_bytes,
            max_pixels=self._max_image_pixels,
        )
        account_email = await self._asset_account(caller, email)
        digest = await self._media.put(data)
        row = self._media.row(
            user_id=caller.user_id,
            data=data,
            kind="image",
            source="upload",
            mime=info.mime,
            width=info.width,
            height=info.height,
            account_email=account_email,
            digest=digest,
        )
        await self._media.insert(row)
        mgid = media_generation_id(caller.user_id, account_email, "image", row.id)
        return {
            "mediaGenerationId": {"mediaGenerationId": mgid},
            "width": info.width,
            "height": info.height,
            "email": account_email,
        }

    async def _asset_account(self, caller: Caller, email: str | None) -> str | None:
        if email is not None:
            return (await self._accounts.get_account(caller, email)).email
        # References travel inline, so an upload is not pinned to an account; the label
        # is still the account the balancer would pick now, as the contract describes.
        try:
            lease = await self._picker.acquire(caller.user_id, model="nano-banana-2", email=None)
        except FlowgateError:
            return None
        lease.release()
        return lease.account.email

    # ------------------------------------------------------------------ generation

    async def generate(
        self, caller: Caller, fields: Mapping[str, Any], *, form: bool, job: Job | None = None
    ) -> dict[str, Any]:
        """POST /images: validate, pick an account, call upstream, store, answer.

        ``job`` is a job created ahead by another front door (task API); it ends ``failed``
        with whatever error stops the work.
        """
        try:
            return await self._generate(caller, fields, form=form, job=job)
        except FlowgateError as exc:
            if job is not None:
                await self._jobs.fail(job, exc)
            raise

    async def _generate(
        self, caller: Caller, fields: Mapping[str, Any], *, form: bool, job: Job | None
    ) -> dict[str, Any]:
        spec = parse_image_request(fields, form=form)
        references = await self._load_references(caller, spec)
        if spec.reply_url:
            await webhooks.check_target(spec.reply_url, allow_private=self._allow_private)
        model = resolve_image_model(spec.model)
        aspect = spec.aspect_ratio
        upstream_ratio: str | None = aspect
        if aspect == "auto":
            first = references[0].media
            aspect = image_aspect_ratio(first.width or 1, first.height or 1)
            upstream_ratio = None  # let the model follow the first reference
        base_seed = spec.seed if spec.seed is not None else secrets.randbelow(2**31 - 4)
        seeds = [base_seed + i for i in range(spec.count)]

        unit_price = self._credits.price(model.name)
        reserved = await self._credits.reserve(caller.user_id, unit_price * spec.count)
        try:
            lease = await self._picker.acquire(caller.user_id, model=model.name, email=spec.email)
        except FlowgateError:
            await self._credits.refund(caller.user_id, reserved)
            raise
        # The first upstream call, when it goes out while the job row is being written.
        first_call: asyncio.Future[list[GeneratedImage]] | None = None
        try:
            started = time.perf_counter()
            if job is None:
                # A new sync job's row and its upstream call go together: the client
                # would otherwise wait a database round trip before the call. The row is
                # stored before anything else is written about the job.
                first_call = asyncio.ensure_future(
                    self._call_upstream(lease.account, spec, upstream_ratio, references, seeds)
                )
                leave_start_phase()
                try:
                    job = await self._jobs.create(
                        caller,
                        kind="image",
                        request={
                            **self._echo(spec, references),
                            "email": mask_email(lease.account.email),
                        },
                        account_email=lease.account.email,
                        model=model.name,
                        reply_url=spec.reply_url,
                        internal={"reserved": reserved},
                        start=True,
                    )
                except BaseException:
                    _abandon(first_call)  # no record could hold its outcome
                    raise
            else:
                job.internal = {**(job.internal or {}), "reserved": reserved}
                await self._jobs.adopt(job, account_email=lease.account.email, model=model.name)
                await self._jobs.start(job)
                leave_start_phase()
            # Without an explicit email, a quota or key failure is retried once elsewhere.
            retries_left = 0 if spec.email else 1
            tried: set[str] = set()
            while True:
                account = lease.account
                try:
                    if first_call is not None:
                        call, first_call = first_call, None
                        outputs = await call
                    else:
                        started = time.perf_counter()
                        outputs = await self._call_upstream(
                            account, spec, upstream_ratio, references, seeds
                        )
                    break
                except FlowgateError as exc:
                    await self._jobs.record_event(
                        UpstreamAttempt.of_job(
                            job,
                            account.email,
                            exc.status,
                            int((time.perf_counter() - started) * 1000),
                        )
                    )
                    retry = False
                    if isinstance(exc, UpstreamError) and not isinstance(exc, ContentBlocked):
                        await self._picker.report_failure(account, exc, model.name)
                        retry = retries_left > 0 and (exc.is_rate_limit or exc.is_key_error)
                    if retry:
                        retries_left -= 1
                        tried.add(account.email)
                        try:
                            other = await self._picker.acquire(
                                caller.user_id,
                                model=model.name,
                                email=None,
                                exclude=frozenset(tried),
                            )
                        except FlowgateError:
                            retry = False  # nobody else can take it: the upstream error stands
                        else:
                            lease.release()
                            lease = other
                            await self._jobs.reassign(job, other.account.email)
                            continue
                    await self._jobs.fail(job, exc)
                    exc.job_id = job.id
                    raise
            elapsed_ms = int((time.perf_counter() - started) * 1000)
            workflow_id = str(uuid.uuid4())
            media_entries: list[dict[str, Any]] = []
            # Files first, outside the transaction (an fsync must not hold the write lock).
            if len(outputs) == 1:
                kept = [await self._keep(outputs[0].data)]
            else:
                kept = await asyncio.gather(*(self._keep(image.data) for image in outputs))
            rows: list[dict[str, Any]] = []
            for seed, image, (digest, width, height) in zip(seeds, outputs, kept, strict=False):
                row = self._media.values(
                    user_id=caller.user_id,
                    data=image.data,
                    kind="image",
                    source="generated",
                    mime=image.mime,
                    width=width,
                    height=height,
                    account_email=account.email,
                    model=model.name,
                    job_id=job.id,
                    extra={"seed": seed, "prompt": spec.prompt, "aspectRatio": aspect},
                    digest=digest,
                )
                rows.append(row)
                media_entries.append(
                    self._media_entry(
                        caller, account, row["id"], spec, seed, aspect, workflow_id, references
                    )
                )
            response = {"media": media_entries}
            missing = spec.count - len(media_entries)
            event = self._jobs.event_write(
                UpstreamAttempt.of_job(job, account.email, 200, elapsed_ms)
            )
            await self._jobs.complete(
                job,
                response,
                refund=unit_price * missing,
                with_writes=[*(insert_values(Media, row) for row in rows), event],
            )
        except Exception as exc:
            # Whatever went wrong, the job must not stay ``started``.
            if job is not None and not isinstance(exc, FlowgateError):
                log.exception("image job crashed", extra={"job_id": job.id})
                await self._jobs.fail(
                    job,
                    JobInterrupted(
                        "Internal error in flowgate while running this job; send it again"
                    ),
                )
            raise
        finally:
            lease.release()
        return {"jobId": job.id, **self._media.refresh_links(response)}

    async def _keep(self, data: bytes) -> tuple[str, int | None, int | None]:
        """Store an output (worker thread) and read its size from the header (here)."""
        digest = await self._media.put(data)
        # Pillow reads only the header to learn the size: cheaper than a thread hop.
        width, height = _image_size(data)
        return digest, width, height

    async def _call_upstream(
        self,
        account: Account,
        spec: ImageRequestSpec,
        ratio: str | None,
        references: list[LoadedReference],
        seeds: list[int],
    ) -> list[GeneratedImage]:
        provider = self._accounts.provider_for(account)
        upstream = upstream_model_id(spec.model, account.model_map)
        model = resolve_image_model(spec.model)
        if model.call_kind == "predict":
            return await provider.predict_images(
                PredictImageRequest(
                    upstream_model=upstream,
                    prompt=spec.prompt,
                    count=spec.count,
                    aspect_ratio=ratio,
                )
            )
        inline = tuple(InlineImage(r.media.mime, r.data) for r in references)
        calls = [
            provider.generate_content_image(
                ContentImageRequest(
                    upstream_model=upstream,
                    prompt=spec.prompt,
                    aspect_ratio=ratio,
                    seed=seed,
                    references=inline,
                )
            )
            for seed in seeds
        ]
        # One image per call: count N is N parallel upstream calls.
        results = await asyncio.gather(*calls, return_exceptions=True)
        images = [r for r in results if isinstance(r, GeneratedImage)]
        if len(images) == len(results):
            return images
        first_error = next(r for r in results if isinstance(r, BaseException))
        if not images or not isinstance(first_error, FlowgateError):
            raise first_error
        # Some images came back: keep what was made (it was paid for) and say what failed.
        log.warning(
            "partial image result", extra={"ok": len(images), "failed": len(results) - len(images)}
        )
        return images

    async def _load_references(
        self, caller: Caller, spec: ImageRequestSpec
    ) -> list[LoadedReference]:
        wanted: list[tuple[str, ParsedMediaId]] = list(spec.references)
        character_images = 0
        for param, character_id in spec.characters:
            ids = await self._characters.media_ids(caller, character_id, field=param)
            character_images += len(ids)
            wanted.extend((param, ref) for ref in ids)
        check_reference_budget(spec.model, len(spec.references), character_images)
        loaded: list[LoadedReference] = []
        if not wanted:
            return loaded
        async with self._sessions() as session:
            for param, ref in wanted:
                row = await media_rows.media_by_id(session, ref.media_id)
                if ref.user_id != caller.user_id or row is None or row.user_id != caller.user_id:
                    raise NotFound(
                        f"{param}: image not found (it must be one of your uploads "
                        "or generated images)"
                    )
                if row.kind != "image":
                    raise InvalidRequest(f"{param} must be an image, got a {row.kind}")
                data = await self._media.store.read(row.sha256)
                loaded.append(
                    LoadedReference(
                        param,
                        row,
                        media_generation_id(caller.user_id, ref.email, "image", row.id),
                        data,
                    )
                )
        return loaded

    @staticmethod
    def _echo(spec: ImageRequestSpec, references: list[LoadedReference]) -> dict[str, Any]:
        echo = request_echo(spec)
        for ref in references:
            if ref.param.startswith("reference_"):
                echo[ref.param] = {
                    "email": mask_email(ref.media.account_email or ""),
                    "id": ref.media.id,
                    "referenceId": ref.media_generation_id,
                    "type": "image",
                    "user": ref.media.user_id,
                }
        return echo

    @staticmethod
    def _media_entry(
        caller: Caller,
        account: Account,
        media_id: str,
        spec: ImageRequestSpec,
        seed: int,
        aspect: str,
        workflow_id: str,
        references: list[LoadedReference],
    ) -> dict[str, Any]:
        mgid = media_generation_id(caller.user_id, account.email, "image", media_id)
        return {
            "name": media_id,
            "workflowId": workflow_id,
            "image": {
                "generatedImage": {
                    "seed": seed,
                    "mediaGenerationId": mgid,
                    "mediaVisibility": "PRIVATE",
                    "prompt": spec.prompt,
                    "modelNameType": model_name_type(spec.model, bool(references)),
                    "workflowId": workflow_id,
                    "fifeUrl": "",  # signed when rendered (links expire; the record does not)
                    "aspectRatio": image_aspect_ratio_enum(aspect),
                    "requestData": {
                        "promptInputs": [{"textInput": spec.prompt}],
                        "imageGenerationRequestData": {
                            "imageGenerationImageInputs": [
                                {
                                    "mediaGenerationId": r.media_generation_id,
                                    "imageInputType": "IMAGE_INPUT_TYPE_REFERENCE",
                                }
                                for r in references
                            ]
                        },
                    },
                }
            },
        }
