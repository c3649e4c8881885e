"""Webhooks: a persistent outbox and its sender (DESIGN §3).

Each state change of a job with a ``replyUrl`` adds one delivery row in the
same transaction as the change. A sender loop posts due deliveries, in order
per job, signs each body, and retries failures with exponential backoff capped
at :data:`MAX_BACKOFF_SECONDS`, until the receiver acknowledges (a 2xx): it never
gives up. Rows survive restarts, so no delivery is lost (docs/webhooks.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import Connection, Select, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from flowgate.domain.errors import InvalidRequest
from flowgate.providers.http_pool import HttpPool
from flowgate.storage.models import User, WebhookDelivery, table_of

log = logging.getLogger("flowgate.webhooks")

SIGNATURE_HEADER = "X-Flowgate-Signature"
TIMESTAMP_HEADER = "X-Flowgate-Timestamp"
TIMEOUT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 600.0
# Due deliveries read per round; more wait for the next round (0.5 s later by default).
ROUND_SIZE = 500
# A claimed delivery is leased this long, so a crashed sender's claim expires.
_LEASE_SECONDS = 30.0


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``"{timestamp}.{body}"``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def backoff_seconds(attempts: int) -> float:
    """Delay before attempt ``attempts + 1``: 2, 4, 8 … seconds, capped."""
    return float(min(MAX_BACKOFF_SECONDS, 2 ** max(1, attempts)))


def _forbidden_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse webhook targets on private, loopback or link-local addresses (SSRF guard)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("replyUrl must be an absolute http:// or https:// URL")
    if allow_private:
        return
    host = parts.hostname
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise InvalidRequest(f"replyUrl host {host!r} does not resolve") from exc
    except UnicodeError as exc:  # IDNA: an empty label, or one over 63 characters
        raise InvalidRequest(
            f"replyUrl host {host[:80]!r} is not a valid host name: each dot-separated "
            "label must be 1-63 characters"
        ) from exc
    for info in infos:
        if _forbidden_address(str(info[4][0])):
            raise InvalidRequest(
                f"replyUrl {host!r} points to a private, loopback or link-local address; "
                "use a public URL (operators may allow private targets with "
                "FLOWGATE_WEBHOOK_ALLOW_PRIVATE=1)"
            )


def enqueue(
    connection: Connection,
    *,
    job_id: str,
    user_id: int,
    url: str,
    event: str,
    payload: dict[str, Any],
) -> None:
    """Add a delivery to the outbox inside the caller's transaction (a queued write)."""
    last = connection.scalar(
        select(func.max(WebhookDelivery.seq)).where(WebhookDelivery.job_id == job_id)
    )
    connection.execute(
        insert(table_of(WebhookDelivery)),
        {
            "job_id": job_id,
            "user_id": user_id,
            "url": url,
            "event": event,
            "seq": (last or 0) + 1,
            "payload": payload,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": datetime.now(UTC),
        },
    )


def _due_heads(now: datetime) -> Select[tuple[WebhookDelivery]]:
    """Due deliveries that are the earliest pending one of their job (per-job order).

    Only due rows are read: deliveries backing off for a receiver that is down (they
    are never given up) must not crowd later ones out of the round.
    """
    earlier = aliased(WebhookDelivery)
    return (
        select(WebhookDelivery)
        .where(
            WebhookDelivery.state == "pending",
            WebhookDelivery.next_attempt_at <= now,
            ~exists().where(
                earlier.job_id == WebhookDelivery.job_id,
                earlier.state == "pending",
                earlier.seq < WebhookDelivery.seq,
            ),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(ROUND_SIZE)
    )


class WebhookSender:
    """Posts due deliveries; one loop per instance, safe with several instances."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        http: HttpPool,
        *,
        allow_private: bool,
        poll_seconds: float = 0.5,
    ) -> None:
        self._sessions = sessions
        self._http = http
        self._allow_private = allow_private
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look at the outbox now (called after a local enqueue)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop``: send what is due, then wait for a wake-up or the poll tick."""
        while not stop.is_set():
            try:
                await self.send_due()
            except Exception:
                log.exception("webhook round failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            except TimeoutError:
                pass

    async def send_due(self) -> int:
        """Send the earliest pending delivery of each job whose time has come."""
        now = datetime.now(UTC)
        async with self._sessions() as session:
            due = (await session.scalars(_due_heads(now))).all()
        sent = await asyncio.gather(*(self._attempt(d, now) for d in due))
        return sum(sent)

    async def _claim(self, delivery: WebhookDelivery, now: datetime) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery.id,
                    WebhookDelivery.state == "pending",
                    WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
                )
                .values(next_attempt_at=now + timedelta(seconds=_LEASE_SECONDS))
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _attempt(self, delivery: WebhookDelivery, now: datetime) -> int:
        if not await self._claim(delivery, now):
            return 0
        async with self._sessions() as session:
            secret = await session.scalar(
                select(User.webhook_secret).where(User.id == delivery.user_id)
            )
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "flowgate-webhooks",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign_payload(secret or "", timestamp, body),
            "X-Flowgate-Event": delivery.event,
            "X-Flowgate-Delivery": str(delivery.id),
        }
        status: int | None = None
        error: str | None = None
        try:
            await check_target(delivery.url, allow_private=self._allow_private)
            async with self._http.post(
                delivery.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
                allow_redirects=False,
            ) as response:
                status = response.status
            if not 200 <= status < 300:
                error = f"receiver answered {status}"
        except InvalidRequest as exc:
            error = exc.message
        except (aiohttp.ClientError, OSError, ValueError) as exc:  # TimeoutError is an OSError
            error = f"{type(exc).__name__}: {exc}"[:500]
        await self._record(delivery, status, error)
        return 1 if error is None else 0

    async def _record(
        self, delivery: WebhookDelivery, status: int | None, error: str | None
    ) -> None:
        now = datetime.now(UTC)
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error}
        if error is None:
            values.update(state="delivered", delivered_at=now)
        else:
            values.update(next_attempt_at=now + timedelta(seconds=backoff_seconds(attempts)))
        async with self._sessions.begin() as session:
            await session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values)
            )
