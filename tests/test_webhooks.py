"""Webhooks: signed deliveries, retries after receiver failures, order, restarts, SSRF guard."""

from __future__ import annotations

import hashlib
import hmac
import uuid

from tests.gateway import Gateway
from tests.receiver import Receiver


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
