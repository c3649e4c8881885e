"""Which instance drives which job, and taking over the jobs of a dead one (DESIGN §3).

Each instance writes a heartbeat row. A running job whose owner's heartbeat is
stale (or whose owner is this instance's previous life, after a restart) is
taken over with a compare-and-set update: video jobs with stored upstream
operations resume polling; anything else ends ``failed`` with a clear reason,
so no job stays ``started`` forever.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.domain.errors import JobInterrupted
from flowgate.services.jobs import JobService
from flowgate.services.videos import VideoPoller
from flowgate.storage.models import Instance, Job

log = logging.getLogger("flowgate.ownership")
RUNNING = ("created", "started")
RESUMABLE_OPERATIONS = ("generate", "extend")
INTERRUPTED = (
    "flowgate stopped while this job ran and it cannot be resumed (no upstream operation "
    "was recorded for it); send the request again"
)


class OwnershipService:
    """Heartbeats and take-overs for one instance."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        jobs: JobService,
        poller: VideoPoller,
        *,
        instance_id: str,
        heartbeat_seconds: float = 5.0,
        stale_seconds: float = 20.0,
    ) -> None:
        self._sessions = sessions
        self._jobs = jobs
        self._poller = poller
        self.instance_id = instance_id
        self._heartbeat_seconds = heartbeat_seconds
        self._stale = timedelta(seconds=stale_seconds)

    async def heartbeat(self) -> None:
        """Say this instance is alive."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            row = await session.get(Instance, self.instance_id)
            if row is None:
                session.add(Instance(id=self.instance_id, started_at=now, heartbeat_at=now))
            else:
                row.heartbeat_at = now

    async def take_over(self, *, after_restart: bool = False) -> int:
        """Claim orphaned running jobs; ``after_restart`` also claims this id's old jobs."""
        now = datetime.now(UTC)
        async with self._sessions() as session:
            alive = set(
                (
                    await session.scalars(
                        select(Instance.id).where(Instance.heartbeat_at > now - self._stale)
                    )
                ).all()
            )
            if after_restart:
                alive.discard(self.instance_id)
            candidates = (
                await session.scalars(
                    select(Job).where(
                        Job.status.in_(RUNNING),
                        or_(Job.owner.is_(None), Job.owner.not_in(alive or {""})),
                    )
                )
            ).all()
        taken = 0
        for job in candidates:
            if job.owner == self.instance_id and not after_restart:
                continue
            async with self._sessions.begin() as session:
                owner_now = Job.owner.is_(None) if job.owner is None else Job.owner == job.owner
                result = await session.execute(
                    update(Job)
                    .where(Job.id == job.id, owner_now, Job.status.in_(RUNNING))
                    .values(owner=self.instance_id)
                )
            if not result.rowcount:  # type: ignore[attr-defined]
                continue  # another instance was faster
            taken += 1
            operations = (job.internal or {}).get("operations")
            if job.kind == "video" and job.operation in RESUMABLE_OPERATIONS and operations:
                log.info("resuming video job", extra={"job_id": job.id, "from": job.owner})
                self._poller.track(job.id)
            else:
                log.warning("failing interrupted job", extra={"job_id": job.id, "from": job.owner})
                await self._jobs.fail(job, JobInterrupted(INTERRUPTED))
        return taken

    async def run(self, stop: asyncio.Event) -> None:
        """Loop: heartbeat, then look for orphaned jobs."""
        while not stop.is_set():
            try:
                await self.heartbeat()
                await self.take_over()
            except Exception:
                log.exception("ownership round failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._heartbeat_seconds)
            except TimeoutError:
                pass
