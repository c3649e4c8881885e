"""The task API of seed 003 (CreateTask / TaskInfo / balance) on flowgate's image workflow.

A task is a flowgate job (GET /v1/google-flow/jobs/{id} shows it too), created
at once and run in the background; its callback posts the TaskInfo ``data``
through the webhook outbox when it ends.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.domain.errors import FlowgateError, InvalidRequest, NotFound
from flowgate.domain.ids import is_internal_media_id, media_generation_id, parse_job_id
from flowgate.domain.image_request import parse_image_request
from flowgate.services import webhooks
from flowgate.services.background_jobs import BackgroundJobs
from flowgate.services.credits import CreditService
from flowgate.services.images import ImageService
from flowgate.services.jobs import JobService, iso
from flowgate.services.media import MediaService
from flowgate.services.users import Caller
from flowgate.storage.models import Job

log = logging.getLogger("flowgate.tasks")
FRONT = "task"
TASK_MODELS = {
    "google/nano-banana": "nano-banana",
    "google/nano-banana-v2": "nano-banana-2",
    "google/nano-banana-pro": "nano-banana-pro",
    "google/imagen-4": "imagen-4",
}
_STATUS = {"created": "pending", "started": "running", "completed": "success", "failed": "failed"}
_MEDIA_PATH = re.compile(r"/media/([A-Za-z0-9_-]{1,64})$")
_INPUT_FIELDS = {"prompt", "aspect_ratio", "output_format", "image_urls"}
OUTPUT_FORMATS = ("png", "jpeg", "jpg", "webp")


class TaskService:
    """CreateTask, TaskInfo and the balance."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        images: ImageService,
        jobs: JobService,
        media: MediaService,
        credits: CreditService,
        background: BackgroundJobs,
        allow_private_webhooks: bool,
    ) -> None:
        self._sessions = sessions
        self._background = background
        self._images = images
        self._jobs = jobs
        self._media = media
        self._credits = credits
        self._allow_private = allow_private_webhooks
        jobs.add_payload_renderer(FRONT, self.task_info)

    async def create(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        """Validate, create the job, start the work; ``{"task_id"}``."""
        model_name, fields, callback, param = await self._parse(caller, body)
        parse_image_request(fields)  # every rule now, as 422, before the task exists
        job = await self._jobs.create(
            caller,
            kind="image",
            request=param,
            account_email=None,
            model=fields["model"],
            reply_url=callback,
            internal={"front": FRONT, "taskModel": model_name},
        )
        self._background.start(self._run(caller, fields, job), job_id=job.id)
        return {"task_id": job.id}

    async def _run(self, caller: Caller, fields: dict[str, Any], job: Job) -> None:
        try:
            await self._images.generate(caller, fields, form=False, job=job)
        except FlowgateError as exc:
            log.info("task failed", extra={"job_id": job.id, "status": exc.status})
        except Exception:
            log.exception("task crashed", extra={"job_id": job.id})

    async def _parse(
        self, caller: Caller, body: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any], str | None, dict[str, Any]]:
        unknown = sorted(set(body) - {"model", "callback_url", "input"})
        if unknown:
            raise InvalidRequest(
                f"unknown field(s): {', '.join(unknown)}; send model, input, callback_url"
            )
        model_name = body.get("model")
        if not isinstance(model_name, str) or not model_name:
            raise InvalidRequest("model is required: google/nano-banana or google/nano-banana-v2")
        flowgate_model = TASK_MODELS.get(model_name, model_name)
        task_input = body.get("input")
        if not isinstance(task_input, Mapping):
            raise InvalidRequest('input is required: {"prompt": "...", "aspect_ratio": "1:1"}')
        extra = sorted(set(task_input) - _INPUT_FIELDS)
        if extra:
            raise InvalidRequest(
                f"unknown input field(s): {', '.join(extra)}; accepted: "
                f"{', '.join(sorted(_INPUT_FIELDS))}"
            )
        fields: dict[str, Any] = {
            "prompt": task_input.get("prompt"),
            "model": flowgate_model,
            "count": 1,
        }
        if task_input.get("aspect_ratio") is not None:
            fields["aspectRatio"] = task_input["aspect_ratio"]
        output_format = task_input.get("output_format")
        if output_format is not None and output_format not in OUTPUT_FORMATS:
            raise InvalidRequest(f"input.output_format must be one of {', '.join(OUTPUT_FORMATS)}")
        urls = task_input.get("image_urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InvalidRequest("input.image_urls must be a list of flowgate media URLs or ids")
        for index, url in enumerate(urls, start=1):
            fields[f"reference_{index}"] = await self._reference(caller, url, index)
        callback = body.get("callback_url")
        if callback is not None:
            if not isinstance(callback, str):
                raise InvalidRequest("callback_url must be an http(s) URL")
            await webhooks.check_target(callback, allow_private=self._allow_private)
        param = {"model": model_name, "callback_url": callback, "input": dict(task_input)}
        return model_name, fields, callback, param

    async def _reference(self, caller: Caller, value: str, index: int) -> str:
        if value.startswith("user:"):
            return value
        path = urlsplit(value).path if "://" in value else value
        match = _MEDIA_PATH.search(path)
        media_id = match[1] if match else value
        if not is_internal_media_id(media_id):
            raise InvalidRequest(
                f"input.image_urls[{index - 1}] must be a flowgate media URL (…/media/ID) or a "
                "mediaGenerationId; upload other images with POST /v1/google-flow/assets first"
            )
        row = await self._media.owned(caller.user_id, media_id)
        if row.kind != "image":
            raise InvalidRequest(f"input.image_urls[{index - 1}] is not an image")
        return media_generation_id(caller.user_id, row.account_email, "image", row.id)

    async def info(self, caller: Caller, task_id: str | None) -> dict[str, Any]:
        """TaskInfo ``data`` of one of the caller's tasks (404 otherwise)."""
        if not task_id:
            raise InvalidRequest("task_id is required")
        try:
            parse_job_id(task_id)
        except InvalidRequest:
            raise NotFound("task not found") from None
        async with self._sessions() as session:
            job = await session.get(Job, task_id)
        if job is None or job.user_id != caller.user_id:
            raise NotFound("task not found")
        return self.task_info(job)

    def task_info(self, job: Job) -> dict[str, Any]:
        """The TaskInfo ``data`` object (also the callback body)."""
        internal = job.internal or {}
        status = _STATUS.get(job.status, "pending")
        result: dict[str, Any] = {"code": None, "message": None, "media_urls": []}
        if job.status == "completed":
            response = self._media.refresh_links(job.response or {})
            result = {
                "code": 200,
                "message": "success",
                "media_urls": [
                    m["image"]["generatedImage"]["fifeUrl"] for m in response.get("media", [])
                ],
            }
        elif job.status == "failed":
            error = (job.response or {}).get("error")
            message = error.get("message") if isinstance(error, dict) else error
            result = {
                "code": 501,
                "message": f"generation failed: {message or job.error}",
                "media_urls": [],
            }
        duration = None
        if job.finished_at is not None:
            duration = round((job.finished_at - job.created_at).total_seconds(), 3)
        return {
            "task_id": job.id,
            "model": internal.get("taskModel", job.model),
            "status": status,
            "param": job.request,
            "create_at": iso(job.created_at),
            "complete_at": iso(job.finished_at),
            "duration_s": duration,
            "result": result,
            "credits": int(internal.get("reserved", 0)) if job.status == "completed" else 0,
        }

    async def balance(self, caller: Caller) -> dict[str, Any]:
        """``{"balance": N}`` (``null`` and ``unlimited: true`` when unset)."""
        value = await self._credits.balance(caller.user_id)
        return {"balance": value, "unlimited": value is None, "checked_at": iso(datetime.now(UTC))}
