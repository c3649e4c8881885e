"""Job work that runs on after its request was answered, and waits for it at a stop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("flowgate.background")


class BackgroundJobs:
    """The running work of jobs answered before they finished: task API images
    (``CreateTask``) and asynchronous local video upscales.

    Each task is kept referenced (the event loop keeps only a weak one) and logged if it
    crashes. A stop waits for them (:meth:`drain`), as uvicorn waits for requests in
    flight: a result already paid for upstream is kept, not failed at the next start.
    """

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()

    def start(self, work: Coroutine[Any, Any, Any], *, job_id: str) -> asyncio.Task[Any]:
        """Run ``work`` (the job ``job_id``'s) in the background."""
        task = asyncio.create_task(work, name=f"job {job_id}")
        self._running.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background %s failed: %r", task.get_name(), task.exception())

    async def drain(self, seconds: float, *, give_up: Callable[[], bool] = lambda: False) -> int:
        """Wait up to ``seconds`` for the running work (less if ``give_up()`` turns true:
        a second Ctrl-C), then cancel what is left; how many were cancelled (their jobs
        stay running and fail at the next start)."""
        if not self._running:
            return 0
        log.warning(
            "stopping: waiting up to %g s for %d background jobs (a second Ctrl-C cuts them)",
            seconds,
            len(self._running),
        )
        deadline = time.monotonic() + seconds
        left = set(self._running)
        while left and not give_up():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            _, left = await asyncio.wait(left, timeout=min(remaining, 0.2))
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        return len(left)
