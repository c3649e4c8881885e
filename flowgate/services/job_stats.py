"""GET /jobs: the contract's load-balancing statistics (J2), plus quarantine entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.balancer.picker import HEALTH_OK, WINDOW
from flowgate.balancer.selection import score
from flowgate.clock import Clock
from flowgate.domain.errors import InvalidRequest
from flowgate.services.jobs import iso
from flowgate.services.users import Caller
from flowgate.storage import accounts as account_rows
from flowgate.storage import quarantine as quarantine_rows
from flowgate.storage import stats as stat_rows

OPTIONS = ("summary", "executing", "history")
KINDS = (("images", "image"), ("videos", "video"))
HISTORY_SIZE = 10


def _elapsed(since: datetime, now: datetime) -> str:
    seconds = max(0, int((now - since).total_seconds()))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _summary_entry(executing: int, counts: stat_rows.EventCounts) -> dict[str, Any]:
    avg = round(counts.total_ms / counts.completed, 2) if counts.completed else 0
    return {
        "executing": executing,
        "completed": counts.completed,
        "failed": counts.failed,
        "rateLimited": counts.rate_limited,
        "avgResponseTime": avg,
        "score": score(executing, counts.failed, counts.rate_limited),
    }


class JobStatsService:
    """Reads the 15-minute window from the database (shared by all instances)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def stats(self, caller: Caller, option: str | None) -> dict[str, Any]:
        """The J2 body for ``options`` = summary (default) | executing | history."""
        option = option or "summary"
        if option not in OPTIONS:
            raise InvalidRequest("Invalid options parameter. Use: summary, executing, or history")
        now = self._clock()
        since = now - WINDOW
        async with self._sessions() as session:
            accounts = await account_rows.accounts_of(session, caller.user_id)
            counts = await stat_rows.event_counts(session, caller.user_id, since)
            executing = await stat_rows.executing_counts(session, caller.user_id)
            running = (
                await stat_rows.running_jobs(session, caller.user_id) if option != "summary" else []
            )
            recent = (
                await stat_rows.recent_events(session, caller.user_id, since, HISTORY_SIZE * 4)
                if option == "history"
                else []
            )
            entries = await quarantine_rows.active_entries(session, caller.user_id, now)
        emails = [a.email for a in accounts]
        body: dict[str, Any] = {"emails": [a.email for a in accounts if a.health == HEALTH_OK]}
        combined: dict[str, Any] = {}
        for label, kind in KINDS:
            summary = {
                email: _summary_entry(
                    executing.get((email, kind), 0),
                    counts.get((email, kind), stat_rows.EventCounts()),
                )
                for email in emails
            }
            section: dict[str, Any] = {"summary": summary}
            if option in ("executing", "history"):
                section["executing"] = {
                    job.id: {
                        "email": job.account_email,
                        "timestamp": _millis(job.created_at),
                        "elapsed": _elapsed(job.created_at, now),
                    }
                    for job in running
                    if job.kind == kind
                }
            if option == "history":
                history: dict[str, Any] = {}
                for event in recent:
                    if event.kind != kind or len(history) >= HISTORY_SIZE:
                        continue
                    key = (
                        event.job_id
                        if event.job_id not in history
                        else (f"{event.job_id}-http:{event.http_status}")
                    )
                    history.setdefault(
                        key,
                        {
                            "email": event.account_email,
                            "timestamp": _millis(event.finished_at),
                            "httpStatus": event.http_status,
                            "responseTime": event.response_ms,
                        },
                    )
                section["history"] = history
            body[label] = section
        for email in emails:
            image = counts.get((email, "image"), stat_rows.EventCounts())
            video = counts.get((email, "video"), stat_rows.EventCounts())
            total = stat_rows.EventCounts(
                image.completed + video.completed,
                image.failed + video.failed,
                image.rate_limited + video.rate_limited,
                image.total_ms + video.total_ms,
            )
            running_total = executing.get((email, "image"), 0) + executing.get((email, "video"), 0)
            combined[email] = _summary_entry(running_total, total)
        body["combined"] = {"summary": combined}
        # flowgate's addition: the hosted service hides why an account is skipped.
        body["quarantine"] = {
            email: [
                {"model": e.model, "reason": e.reason, "until": iso(e.until)}
                for e in entries
                if e.account_email == email
            ]
            for email in emails
            if any(e.account_email == email for e in entries)
        }
        return body
