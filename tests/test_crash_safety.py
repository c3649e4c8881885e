"""Crash safety: ``kill -9`` the server mid-work, restart it, and nothing is lost.

After the restart every job is ``completed`` or ``failed`` with a reason (none is
left ``started``), every file a completed job references can be downloaded, and
every webhook delivery reaches its receiver once it acknowledges (at-least-once).
The upstream is a standalone sandbox, so it outlives the gateway like Google does.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway import BACKENDS, Gateway, free_port
from tests.receiver import Receiver
from tests.test_operations import start_standalone_sandbox

FLOW = "/v1/google-flow"
FINAL = ("completed", "failed")


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    """A standalone sandbox that keeps running across the gateway's crashes."""
    port = free_port()
    proc = start_standalone_sandbox(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.start()
    try:
        yield rec
    finally:
        rec.stop()


def _user(gw: Gateway, sandbox_url: str) -> tuple[str, str]:
    token = gw.new_user()
    email = f"crash-{uuid.uuid4().hex[:6]}@example.com"
    body = {
        "email": email,
        "provider": "sandbox",
        "apiKey": f"sandbox-{uuid.uuid4().hex[:6]}",
        "baseUrl": sandbox_url,
        "maxConcurrency": 50,
    }
    with gw.client(token) as client:
        resp = client.post(f"{FLOW}/accounts", json=body)
        assert resp.status_code == 201, resp.text
    return token, email


def _executing(client: httpx.Client) -> dict[str, Any]:
    body = client.get(f"{FLOW}/jobs", params={"options": "executing"}).json()
    return {**body["images"]["executing"], **body["videos"]["executing"]}


def _wait_executing(client: httpx.Client, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(_executing(client)) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} jobs started in {timeout} s")


def _final_record(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """The job's record once it is completed or failed (the last one seen on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = client.get(f"{FLOW}/jobs/{job_id}").json()
        if record["status"] in FINAL or time.monotonic() > deadline:
            return record
        time.sleep(0.2)


def _final_events(rec: Receiver) -> dict[str, list[str]]:
    """Job id → the statuses its accepted webhooks carried, in arrival order."""
    events: dict[str, list[str]] = {}
    for got in rec.accepted():
        body = got.json
        job_id = body.get("jobid") or body.get("task_id")
        status = body.get("status")
        events.setdefault(job_id, []).append(status)
    return events


def _wait_webhooks_settle(rec: Receiver, job_ids: set[str], timeout: float = 90) -> None:
    """Every job has its ``created`` and a final webhook accepted."""
    deadline = time.monotonic() + timeout
    missing: set[str] = set(job_ids)
    while time.monotonic() < deadline:
        events = _final_events(rec)
        missing = {
            j
            for j in job_ids
            if "created" not in events.get(j, []) or not set(events.get(j, [])) & set(FINAL)
        }
        if not missing:
            return
        time.sleep(0.2)
    raise AssertionError(f"webhooks missing for {sorted(missing)}: {_final_events(rec)}")


def _check_files(job: dict[str, Any]) -> None:
    """Every output of a completed job can be downloaded from its (fresh) signed link."""
    urls: list[str] = []
    response = job.get("response") or {}
    for media in response.get("media", []):
        urls.append(media["image"]["generatedImage"]["fifeUrl"])
    for op in response.get("operations", []):
        video = op.get("operation", {}).get("metadata", {}).get("video")
        if video and op.get("status") == "MEDIA_GENERATION_STATUS_SUCCESSFUL":
            urls.append(video["fifeUrl"])
    assert urls, job
    for url in urls:
        resp = httpx.get(url, timeout=30)
        assert resp.status_code == 200 and len(resp.content) > 100, (url, resp.status_code)


def _fire(
    gw: Gateway, token: str, body: dict[str, Any], answers: list[httpx.Response | str]
) -> None:
    try:
        with gw.client(token) as client:
            answers.append(client.post(f"{FLOW}/images", json=body))
    except httpx.HTTPError as exc:  # the server died under this request
        answers.append(type(exc).__name__)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_during_sync_image_jobs(
    gateway_factory: Any, sandbox_url: str, receiver: Receiver, backend: str
) -> None:
    gw: Gateway = gateway_factory(backend)
    gw.start()
    token, _ = _user(gw, sandbox_url)
    answers: list[httpx.Response | str] = []
    threads = []
    # Quick jobs that finish before the crash, then slow ones that are mid-upstream-call.
    for n in range(12):
        delay = 0 if n < 4 else 20_000
        body = {
            "prompt": f"[sandbox:delay={delay}] crash {n}",
            "model": "nano-banana-2",
            "count": 1 + n % 2,
            "replyUrl": receiver.url,
        }
        thread = threading.Thread(target=_fire, args=(gw, token, body, answers), daemon=True)
        thread.start()
        threads.append(thread)
        if n == 3:
            for quick in threads:
                quick.join(timeout=60)
    with gw.client(token) as client:
        _wait_executing(client, at_least=8)
        running = set(_executing(client))
    gw.stop(kill=True)
    for thread in threads:
        thread.join(timeout=30)
    finished = [a for a in answers if isinstance(a, httpx.Response)]
    assert finished and all(a.status_code == 200 for a in finished), answers
    gw.start()
    with gw.client(token) as client:
        assert _executing(client) == {}
        # Jobs that were running, and jobs that answered: each one's ``created`` webhook was
        # in the outbox before the crash, and its final one comes after.
        job_ids = running | {a.json()["jobId"] for a in finished}
        _wait_webhooks_settle(receiver, job_ids)
        # Requests cut off before their job existed left nothing behind; any job that did
        # exist announced itself by webhook.
        job_ids |= set(_final_events(receiver))
        assert len(job_ids) >= 8 + len(finished)
        statuses = {}
        for job_id in job_ids:
            job = client.get(f"{FLOW}/jobs/{job_id}").json()
            statuses[job_id] = job["status"]
            assert job["status"] in FINAL, job
            if job["status"] == "completed":
                _check_files(job)
            else:
                assert job["error"] and "flowgate stopped" in str(job["response"]), job
        assert sorted(statuses.values()).count("completed") >= len(finished)
        assert "failed" in statuses.values()
    for job_id, events in _final_events(receiver).items():
        assert events[0] == "created" and events[-1] in FINAL, (job_id, events)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_during_async_jobs(
    gateway_factory: Any, sandbox_url: str, receiver: Receiver, backend: str
) -> None:
    gw: Gateway = gateway_factory(backend)
    gw.start()
    token, _ = _user(gw, sandbox_url)
    with gw.client(token) as client:
        video = client.post(
            f"{FLOW}/videos",
            json={
                "prompt": "[sandbox:video-seconds=4] survives a crash",
                "duration": 4,
                "count": 2,
                "async": True,
                "replyUrl": receiver.url,
            },
        )
        assert video.status_code == 201, video.text
        video_job = video.json()["jobid"]
    with httpx.Client(base_url=gw.base_url, headers={"x-api-key": token}, timeout=30) as tasks:
        task = tasks.post(
            "/api/v1/client/job/CreateTask",
            json={
                "model": "google/nano-banana-v2",
                "callback_url": receiver.url,
                "input": {"prompt": "[sandbox:delay=20000] task cut short"},
            },
        )
        assert task.status_code == 200, task.text
        task_id = task.json()["data"]["task_id"]
    with gw.client(token) as client:
        _wait_executing(client, at_least=2)
        # The video's upstream operations are stored once the upstream accepted them.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = client.get(f"{FLOW}/jobs/{video_job}").json()
            names = [op["operation"].get("name") for op in job["response"]["operations"]]
            if all(names):
                break
            time.sleep(0.1)
    gw.stop(kill=True)
    gw.start()
    with gw.client(token) as client:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            video_record = client.get(f"{FLOW}/jobs/{video_job}").json()
            task_record = client.get(f"{FLOW}/jobs/{task_id}").json()
            if video_record["status"] in FINAL and task_record["status"] in FINAL:
                break
            time.sleep(0.3)
        assert video_record["status"] == "completed", video_record
        _check_files(video_record)
        assert task_record["status"] == "failed", task_record
        assert task_record["error"], task_record
        assert _executing(client) == {}
    # The video's webhooks (created, started, completed) and the task's one callback.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = _final_events(receiver)
        if "completed" in events.get(video_job, []) and "failed" in events.get(task_id, []):
            break
        time.sleep(0.2)
    events = _final_events(receiver)
    assert events.get(video_job, [])[:1] == ["created"], events
    assert "completed" in events[video_job], events
    assert "failed" in events.get(task_id, []), events


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_with_webhook_deliveries_pending(
    gateway_factory: Any, sandbox_url: str, receiver: Receiver, backend: str
) -> None:
    gw: Gateway = gateway_factory(backend)
    gw.start()
    token, _ = _user(gw, sandbox_url)
    receiver.fail_next = 10_000  # refuse everything: deliveries back off and wait
    job_ids = set()
    with gw.client(token) as client:
        for n in range(5):
            resp = client.post(
                f"{FLOW}/images",
                json={"prompt": f"pending {n}", "count": 1, "replyUrl": receiver.url},
            )
            assert resp.status_code == 200, resp.text
            job_ids.add(resp.json()["jobId"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len({r.raw for r in receiver.received}) < 5:
        time.sleep(0.1)
    assert receiver.received and not receiver.accepted()
    gw.stop(kill=True)
    gw.start()
    time.sleep(1)  # a round of refused retries after the restart
    gw.stop(kill=True)
    receiver.fail_next = 0
    gw.start()
    _wait_webhooks_settle(receiver, job_ids, timeout=120)
    events = _final_events(receiver)
    for job_id in job_ids:
        assert events[job_id][0] == "created" and events[job_id][-1] == "completed", events


def test_a_stop_finishes_background_jobs_first(
    gateway_factory: Any, sandbox_url: str, receiver: Receiver
) -> None:
    """SIGTERM (a deploy, a restart) while task API jobs wait on the upstream: the stop
    waits for them, so an image the upstream already made is kept and its callback sent;
    one still running after FLOWGATE_STOP_GRACE_SECONDS is cut and fails at the next start."""
    gw: Gateway = gateway_factory("sqlite", FLOWGATE_STOP_GRACE_SECONDS="6")
    gw.start()
    token, _ = _user(gw, sandbox_url)
    ids: dict[str, str] = {}
    with httpx.Client(base_url=gw.base_url, headers={"x-api-key": token}, timeout=30) as tasks:
        for label, delay_ms in (("short", 2000), ("long", 60000)):
            created = tasks.post(
                "/api/v1/client/job/CreateTask",
                json={
                    "model": "google/nano-banana-v2",
                    "callback_url": receiver.url,
                    "input": {"prompt": f"[sandbox:delay={delay_ms}] {label}"},
                },
            )
            assert created.status_code == 200, created.text
            ids[label] = created.json()["data"]["task_id"]
    with gw.client(token) as client:
        _wait_executing(client, at_least=2)
    stopping = time.monotonic()
    gw.stop()  # SIGTERM; SIGKILL after 20 s
    took = time.monotonic() - stopping
    # It ended by itself (uvicorn ends by the signal it got), not killed after 20 s.
    assert gw.proc is not None and gw.proc.returncode == -signal.SIGTERM, gw.output[-20:]
    assert took >= 5, took  # it waited out the grace for the long one
    # The short job's callback went out before the process ended.
    assert "success" in _final_events(receiver).get(ids["short"], []), _final_events(receiver)
    gw.start()
    with gw.client(token) as client:
        short = client.get(f"{FLOW}/jobs/{ids['short']}").json()
        assert short["status"] == "completed", short
        _check_files(short)
        long = _final_record(client, ids["long"])
    assert long["status"] == "failed" and long["error"], long
    assert any("were cut; they fail at the next start" in line for line in gw.output)


def test_a_second_ctrl_c_stops_without_waiting_for_background_jobs(
    gateway_factory: Any, sandbox_url: str
) -> None:
    gw: Gateway = gateway_factory("sqlite")  # the default grace: 60 s
    gw.start()
    token, _ = _user(gw, sandbox_url)
    with httpx.Client(base_url=gw.base_url, headers={"x-api-key": token}, timeout=30) as tasks:
        created = tasks.post(
            "/api/v1/client/job/CreateTask",
            json={
                "model": "google/nano-banana-v2",
                "input": {"prompt": "[sandbox:delay=60000] outlasts the patience"},
            },
        )
        assert created.status_code == 200, created.text
        task_id = created.json()["data"]["task_id"]
    with gw.client(token) as client:
        _wait_executing(client, at_least=1)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    while not any("for 1 background jobs" in line for line in gw.output):
        assert time.monotonic() < deadline, gw.output[-20:]
        time.sleep(0.05)
    stopping = time.monotonic()
    gw.proc.send_signal(signal.SIGINT)
    gw.proc.wait(timeout=20)
    assert time.monotonic() - stopping < 5  # not the 60 s grace
    assert any("were cut; they fail at the next start" in line for line in gw.output)
    gw.start()
    with gw.client(token) as client:
        record = _final_record(client, task_id)
    assert record["status"] == "failed" and record["error"], record
