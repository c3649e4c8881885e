"""Webhooks: signed deliveries, retries until acknowledged, order, restarts, SSRF guard."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from flowgate.providers.http_pool import new_upstream_client
from flowgate.services.webhooks import MAX_BACKOFF_SECONDS, ROUND_SIZE, WebhookSender
from flowgate.storage.db import session_factory
from flowgate.storage.models import WebhookDelivery
from tests.gateway import Gateway
from tests.receiver import Receiver
from tests.test_write_queue import prepared_engine


def _verify(secret: str, received) -> bool:
    timestamp = received.headers["X-Flowgate-Timestamp"]
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + received.raw, hashlib.sha256
    ).hexdigest()
    return received.headers["X-Flowgate-Signature"] == f"sha256={expected}"


def test_created_and_completed_are_signed_and_carry_reply_ref(gateway: Gateway) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        with gateway.client() as client:
            secret = client.get("/v1/google-flow/webhooks/secret").json()["secret"]
            ref = f"ref-{uuid.uuid4().hex[:6]}"
            resp = client.post(
                "/v1/google-flow/images",
                json={
                    "prompt": "webhook cat",
                    "count": 1,
                    "replyUrl": receiver.url,
                    "replyRef": ref,
                },
            )
            assert resp.status_code == 200, resp.text
        got = receiver.wait_for(2)
        assert [r.json["status"] for r in got] == ["created", "completed"]
        for r in got:
            assert r.json["jobid"] == resp.json()["jobId"]
            assert r.json["request"]["replyRef"] == ref
            assert _verify(secret, r)
        assert got[1].json["response"]["media"][0]["name"] == resp.json()["media"][0]["name"]
    finally:
        receiver.stop()


def test_failed_delivery_is_retried_in_order(gateway: Gateway) -> None:
    receiver = Receiver(fail_next=2)
    receiver.start()
    try:
        with gateway.client() as client:
            resp = client.post(
                "/v1/google-flow/images",
                json={
                    "prompt": "[sandbox:500] boom",
                    "model": "nano-banana-2",
                    "count": 1,
                    "replyUrl": receiver.url,
                    "email": "sandbox@flowgate.local",
                },
            )
            assert resp.status_code == 500
        got = receiver.wait_for(2, timeout=60)
        # The first attempts were refused with 500; the retries came later, created first.
        assert [r.status for r in receiver.received[:2]] == [500, 500]
        assert [r.json["status"] for r in got] == ["created", "failed"]
        assert got[1].json["error"] == "API error: 500"
    finally:
        receiver.stop()


def test_delivery_survives_a_restart(gateway_factory) -> None:
    gw = gateway_factory("sqlite")
    gw.start()
    receiver = Receiver()  # not listening yet: deliveries fail and stay in the outbox
    with gw.client() as client:
        resp = client.post(
            "/v1/google-flow/images",
            json={"prompt": "restart", "count": 1, "replyUrl": receiver.url},
        )
        assert resp.status_code == 200
    gw.stop(kill=True)
    receiver.start()
    try:
        gw.start()
        got = receiver.wait_for(2, timeout=60)
        assert [r.json["status"] for r in got] == ["created", "completed"]
    finally:
        receiver.stop()


def test_private_targets_refused_unless_allowed(gateway_factory) -> None:
    gw = gateway_factory("sqlite", FLOWGATE_WEBHOOK_ALLOW_PRIVATE="0")
    gw.start()
    with gw.client() as client:
        for url in (
            "http://127.0.0.1:9/hook",
            "http://localhost/x",
            "http://10.1.2.3/x",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
        ):
            resp = client.post("/v1/google-flow/images", json={"prompt": "x", "replyUrl": url})
            assert resp.status_code == 400, url
            assert "private" in resp.json()["error"]
        # A host name that cannot be looked up at all (a label over 63 characters): was a 500.
        url = f"http://{'a' * 64}.example.com/hook"
        resp = client.post("/v1/google-flow/images", json={"prompt": "x", "replyUrl": url})
        assert resp.status_code == 400, resp.text
        assert "label must be 1-63 characters" in resp.json()["error"]


def _delivery(
    job_id: str, url: str, *, seq: int = 1, attempts: int = 0, due_in: float = -1.0
) -> WebhookDelivery:
    return WebhookDelivery(
        job_id=job_id,
        user_id=1,
        url=url,
        event="completed",
        seq=seq,
        payload={"jobid": job_id, "seq": seq},
        state="pending",
        attempts=attempts,
        next_attempt_at=datetime.now(UTC) + timedelta(seconds=due_in),
    )


async def _row(engine: AsyncEngine, job_id: str, seq: int = 1) -> WebhookDelivery:
    async with session_factory(engine)() as session:
        return (
            await session.scalars(
                select(WebhookDelivery).where(
                    WebhookDelivery.job_id == job_id, WebhookDelivery.seq == seq
                )
            )
        ).one()


async def test_a_delivery_is_retried_until_acknowledged_however_many_attempts_failed(
    database_url: str,
) -> None:
    engine = await prepared_engine(database_url)
    receiver = Receiver(fail_next=1)
    receiver.start()
    http = new_upstream_client()
    try:
        async with session_factory(engine).begin() as session:
            session.add(_delivery("job-a", receiver.url, attempts=40))
        sender = WebhookSender(session_factory(engine), http, allow_private=True)

        assert await sender.send_due() == 0  # the receiver answered 500
        row = await _row(engine, "job-a")
        assert (row.state, row.attempts, row.last_status) == ("pending", 41, 500)
        wait = (row.next_attempt_at - datetime.now(UTC)).total_seconds()
        assert MAX_BACKOFF_SECONDS - 10 < wait <= MAX_BACKOFF_SECONDS  # backing off, capped

        async with session_factory(engine).begin() as session:
            await session.execute(update(WebhookDelivery).values(next_attempt_at=datetime.now(UTC)))
        assert await sender.send_due() == 1
        row = await _row(engine, "job-a")
        assert (row.state, row.attempts, row.last_status) == ("delivered", 42, 200)
        assert [r.status for r in receiver.received] == [500, 200]
    finally:
        await http.close()
        receiver.stop()
        await engine.dispose()


async def test_deliveries_backing_off_do_not_hold_back_due_ones(database_url: str) -> None:
    engine = await prepared_engine(database_url)
    receiver = Receiver()
    receiver.start()
    http = new_upstream_client()
    try:
        async with session_factory(engine).begin() as session:
            # More than a round of deliveries to a receiver that is down, made first.
            session.add_all(
                _delivery(f"down-{n}", "http://127.0.0.1:9/down", attempts=30, due_in=3600)
                for n in range(ROUND_SIZE + 50)
            )
            # A job whose first delivery is backing off: its second must wait (order).
            session.add(_delivery("ordered", receiver.url, seq=1, attempts=3, due_in=3600))
            session.add(_delivery("ordered", receiver.url, seq=2))
            session.add(_delivery("late", receiver.url))
        sender = WebhookSender(session_factory(engine), http, allow_private=True)

        assert await sender.send_due() == 1
        assert [r.json for r in receiver.received] == [{"jobid": "late", "seq": 1}]
        assert (await _row(engine, "ordered", seq=2)).state == "pending"
    finally:
        await http.close()
        receiver.stop()
        await engine.dispose()
