"""Veo operations and the files they produce, kept in memory like a short-lived Google.

An operation runs for ``video_seconds`` of the sandbox clock, then is done.
Its video is rendered in a worker thread as soon as the operation starts (at
most :data:`RENDER_WORKERS` at a time; identical recipes share one render), and
the operation reports ``done`` only when both the time has passed and the
render has finished. A finished video is a file (``files/{id}``) of the key
that made it, kept for two days of the sandbox clock; only that key may
download or extend it. A restarted sandbox forgets everything, as a real
operation name from another server would be unknown.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from flowgate.sandbox.video_drawing import VideoRecipe, render_video

RENDER_WORKERS = 2
RENDER_CACHE_SIZE = 32
FILE_TTL_SECONDS = 2 * 86_400  # Google keeps generated videos for two days
MAX_OPERATIONS = 10_000
PREDICT_RESPONSE_TYPE = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
)
RAI_VIDEO_REASON = (
    "Unable to generate videos because the prompt or input images violated Google's "
    "Responsible AI practices. You will not be charged for blocked videos. Try rephrasing "
    "the prompt. If you think this was an error, send feedback. Support codes: 58061214"
)
VIDEO_FAILED_MESSAGE = "Video generation failed. Please try again."
GRPC_INTERNAL = 13

Outcome = Literal["video", "failed", "filtered"]
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_id(length: int = 12) -> str:
    """An id in Google's style for operations and files: lowercase letters and digits."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


@dataclass
class SandboxFile:
    """A generated video: who made it, how to redraw it, when it appears and expires."""

    file_id: str
    owner_key: str
    recipe: VideoRecipe
    render: asyncio.Task[bytes]
    available_at: float  # the operation's end: before that the file does not exist yet
    expires_at: float
    download_token: str  # the secret of the key-less redirect target


@dataclass
class VideoOperation:
    """One ``predictLongRunning`` call."""

    operation_id: str
    model_id: str
    key: str
    finish_at: float
    outcome: Outcome
    file: SandboxFile | None

    @property
    def name(self) -> str:
        """``models/{model}/operations/{id}``, as Google names it."""
        return f"models/{self.model_id}/operations/{self.operation_id}"


class VeoStore:
    """Operations, files and renders of one sandbox app (one event loop: no locks)."""

    def __init__(self, now: Callable[[], float], max_files: int) -> None:
        self._now = now
        self._max_files = max_files
        self._operations: OrderedDict[str, VideoOperation] = OrderedDict()
        self._files: OrderedDict[str, SandboxFile] = OrderedDict()
        self._by_token: dict[str, str] = {}
        self._renders: OrderedDict[str, asyncio.Task[bytes]] = OrderedDict()
        self._workers = asyncio.Semaphore(RENDER_WORKERS)

    def start(
        self,
        *,
        model_id: str,
        key: str,
        recipe: VideoRecipe,
        seconds: float,
        outcome: Outcome,
    ) -> VideoOperation:
        """Begin an operation that finishes ``seconds`` from now (must run on the event loop)."""
        finish_at = self._now() + seconds
        file = None
        if outcome == "video":
            file = SandboxFile(
                file_id=new_id(),
                owner_key=key,
                recipe=recipe,
                render=self._render(recipe),
                available_at=finish_at,
                expires_at=finish_at + FILE_TTL_SECONDS,
                download_token=secrets.token_urlsafe(24),
            )
            self._add_file(file)
        operation = VideoOperation(
            operation_id=new_id(),
            model_id=model_id,
            key=key,
            finish_at=finish_at,
            outcome=outcome,
            file=file,
        )
        self._operations[operation.operation_id] = operation
        while len(self._operations) > MAX_OPERATIONS:
            self._operations.popitem(last=False)
        return operation

    def operation(self, operation_id: str) -> VideoOperation | None:
        """The operation, or ``None`` if this sandbox never started it (or forgot it)."""
        return self._operations.get(operation_id)

    def file(self, file_id: str) -> SandboxFile | None:
        """A file that exists now: its operation has finished and it has not expired."""
        file = self._files.get(file_id)
        now = self._now()
        if file is None or now < file.available_at:
            return None
        if now >= file.expires_at:
            self.expire(file_id)
            return None
        return file

    async def file_data(self, file: SandboxFile) -> bytes | None:
        """The file's MP4 (waiting for its render); ``None`` if rendering failed."""
        try:
            return await asyncio.shield(file.render)
        except Exception:
            return None  # the operation reports the failure; the file never came to be

    def file_by_token(self, token: str) -> SandboxFile | None:
        """The file a download redirect points at."""
        file_id = self._by_token.get(token)
        return None if file_id is None else self.file(file_id)

    def expire(self, file_id: str) -> bool:
        """Forget a file now (``DELETE /_sandbox/files/{id}``); ``False`` if unknown."""
        file = self._files.pop(file_id, None)
        if file is None:
            return False
        self._by_token.pop(file.download_token, None)
        return True

    def response(self, operation: VideoOperation, file_uri: Callable[[str], str]) -> dict[str, Any]:
        """The operation as ``GET …/operations/{id}`` shows it right now."""
        body: dict[str, Any] = {"name": operation.name}
        file = operation.file
        rendering = file is not None and not file.render.done()
        if self._now() < operation.finish_at or rendering:
            body["done"] = False
            return body
        body["done"] = True
        if operation.outcome == "failed":
            body["error"] = {"code": GRPC_INTERNAL, "message": VIDEO_FAILED_MESSAGE}
        elif operation.outcome == "filtered":
            body["response"] = {
                "@type": PREDICT_RESPONSE_TYPE,
                "generateVideoResponse": {
                    "raiMediaFilteredCount": 1,
                    "raiMediaFilteredReasons": [RAI_VIDEO_REASON],
                },
            }
        elif file is not None and (problem := _render_problem(file.render)) is not None:
            body["error"] = {
                "code": GRPC_INTERNAL,
                "message": f"Sandbox could not render the video: {problem}",
            }
        elif file is not None:
            samples = [{"video": {"uri": file_uri(file.file_id)}}]
            body["response"] = {
                "@type": PREDICT_RESPONSE_TYPE,
                "generateVideoResponse": {"generatedSamples": samples},
            }
        return body

    def _add_file(self, file: SandboxFile) -> None:
        self._files[file.file_id] = file
        self._by_token[file.download_token] = file.file_id
        while len(self._files) > self._max_files:
            oldest, _ = next(iter(self._files.items()))
            self.expire(oldest)

    def _render(self, recipe: VideoRecipe) -> asyncio.Task[bytes]:
        """The render of ``recipe``: a running or finished one when there is one."""
        fingerprint = recipe.fingerprint()
        task = self._renders.get(fingerprint)
        if task is not None and not (task.done() and _render_problem(task) is not None):
            self._renders.move_to_end(fingerprint)
            return task
        task = asyncio.create_task(self._render_in_thread(recipe))
        # Fetch a failure's exception even if nobody polls, so asyncio does not log it.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._renders[fingerprint] = task
        while len(self._renders) > RENDER_CACHE_SIZE:
            self._renders.popitem(last=False)
        return task

    async def _render_in_thread(self, recipe: VideoRecipe) -> bytes:
        async with self._workers:
            return await asyncio.to_thread(render_video, recipe)


def _render_problem(task: asyncio.Task[bytes]) -> str | None:
    """Why a finished render has no bytes, or ``None`` if it has them (or is still running)."""
    if not task.done():
        return None
    if task.cancelled():
        return "the render was cancelled"
    error = task.exception()
    return None if error is None else str(error) or error.__class__.__name__
