"""Isolation: user B tries every endpoint on user A's jobs, media, characters and accounts.

B must always get 403 (another user's job, as the contract says) or 404 (another
user's media, character or account), and never see A's data in any answer, list
or statistic. A's prompts carry a marker that must never appear in B's answers.
"""

from __future__ import annotations

import base64
import io
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from tests.gateway import Gateway

FLOW = "/v1/google-flow"
TASKS = "/api/v1/client"


def _png(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, "PNG")
    return buffer.getvalue()


def _media_id(mgid: str) -> str:
    return mgid.rsplit(":", 1)[-1]


def _user_id(mgid: str) -> str:
    # user:{uid}-email:{hex}-image:{id}
    return mgid.split("-email:", 1)[0].split(":", 1)[1]


@dataclass
class Owner:
    """What user A made, and the identifiers B must never see or reach."""

    token: str
    email: str
    marker: str
    image_job: str
    image_mgid: str
    image_url: str
    asset_mgid: str
    character_id: str
    video_job: str
    video_mgid: str
    task_id: str

    @property
    def ids(self) -> list[str]:
        return [
            self.email,
            self.marker,
            self.image_job,
            self.image_mgid,
            _media_id(self.image_mgid),
            self.asset_mgid,
            _media_id(self.asset_mgid),
            self.character_id,
            self.video_job,
            self.video_mgid,
            _media_id(self.video_mgid),
            self.task_id,
        ]


def _wait_task(client: httpx.Client, task_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.get(f"{TASKS}/job/TaskInfo", params={"task_id": task_id}).json()["data"]
        if data["status"] in ("success", "failed"):
            return data
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish")


def _make_owner(gw: Gateway) -> Owner:
    token = gw.new_user()
    email = f"owner-{uuid.uuid4().hex[:6]}@example.com"
    marker = f"secret-{uuid.uuid4().hex[:8]}"
    with gw.client(token) as client:
        resp = client.post(f"{FLOW}/accounts", json={"email": email, "provider": "sandbox"})
        assert resp.status_code == 201, resp.text
        image = client.post(f"{FLOW}/images", json={"prompt": f"{marker} fox", "count": 1})
        assert image.status_code == 200, image.text
        asset = client.post(f"{FLOW}/assets", content=_png(), headers={"Content-Type": "image/png"})
        assert asset.status_code == 200, asset.text
        asset_mgid = asset.json()["mediaGenerationId"]["mediaGenerationId"]
        character = client.post(
            f"{FLOW}/characters", json={"name": f"{marker} hero", "images": [asset_mgid]}
        )
        assert character.status_code == 201, character.text
        video = client.post(f"{FLOW}/videos", json={"prompt": f"{marker} clip", "duration": 4})
        assert video.status_code == 200, video.text
    with httpx.Client(base_url=gw.base_url, headers={"x-api-key": token}, timeout=60) as tasks:
        task = tasks.post(
            f"{TASKS}/job/CreateTask",
            json={"model": "google/nano-banana-v2", "input": {"prompt": f"{marker} task"}},
        )
        assert task.status_code == 200, task.text
        task_id = task.json()["data"]["task_id"]
        assert _wait_task(tasks, task_id)["status"] == "success"
    return Owner(
        token=token,
        email=email,
        marker=marker,
        image_job=image.json()["jobId"],
        image_mgid=image.json()["media"][0]["image"]["generatedImage"]["mediaGenerationId"],
        image_url=image.json()["media"][0]["image"]["generatedImage"]["fifeUrl"],
        asset_mgid=asset_mgid,
        character_id=character.json()["characterId"],
        video_job=video.json()["jobId"],
        video_mgid=video.json()["operations"][0]["mediaGenerationId"],
        task_id=task_id,
    )


@dataclass
class World:
    gw: Gateway
    a: Owner
    b_token: str
    b_email: str
    b_image_mgid: str
    b_image_url: str


@pytest.fixture(scope="module")
def world(gateway: Gateway) -> World:
    a = _make_owner(gateway)
    b_token = gateway.new_user()
    b_email = f"intruder-{uuid.uuid4().hex[:6]}@example.com"
    with gateway.client(b_token) as client:
        resp = client.post(f"{FLOW}/accounts", json={"email": b_email, "provider": "sandbox"})
        assert resp.status_code == 201, resp.text
        own = client.post(f"{FLOW}/images", json={"prompt": "intruder's own", "count": 1})
        assert own.status_code == 200, own.text
    b_image = own.json()["media"][0]["image"]["generatedImage"]
    return World(gateway, a, b_token, b_email, b_image["mediaGenerationId"], b_image["fifeUrl"])


def _no_leak(world: World, resp: httpx.Response) -> None:
    """A's prompts, job ids and media never appear in what B gets back."""
    a = world.a
    for secret in (a.marker, a.image_job, a.video_job, a.task_id):
        assert secret not in resp.text, (resp.request.url, resp.status_code, resp.text[:500])


def _refused(world: World, resp: httpx.Response, *allowed: int) -> None:
    assert resp.status_code in (allowed or (403, 404)), (
        resp.request.method,
        resp.request.url,
        resp.status_code,
        resp.text[:500],
    )
    _no_leak(world, resp)


def test_jobs_of_another_user_are_403(world: World) -> None:
    with world.gw.client(world.b_token) as client:
        for job_id in (world.a.image_job, world.a.video_job, world.a.task_id):
            resp = client.get(f"{FLOW}/jobs/{job_id}")
            assert resp.status_code == 403, resp.text
            assert resp.json() == {"error": "Access denied - job belongs to different user"}


def test_accounts_of_another_user_are_404(world: World) -> None:
    a_email = quote(world.a.email)
    with world.gw.client(world.b_token) as client:
        _refused(world, client.get(f"{FLOW}/accounts/{a_email}"), 404)
        _refused(world, client.delete(f"{FLOW}/accounts/{a_email}"), 404)
        _refused(
            world,
            client.post(
                f"{FLOW}/assets/{a_email}", content=_png(), headers={"Content-Type": "image/png"}
            ),
            404,
        )
        _refused(
            world,
            client.post(f"{FLOW}/images", json={"prompt": "x", "count": 1, "email": world.a.email}),
            404,
        )
        _refused(
            world,
            client.post(f"{FLOW}/videos", json={"prompt": "x", "email": world.a.email}),
            404,
        )
    # A's account is untouched by B's DELETE.
    with world.gw.client(world.a.token) as client:
        assert client.get(f"{FLOW}/accounts/{a_email}").status_code == 200


def test_characters_of_another_user_are_404(world: World) -> None:
    char = world.a.character_id
    with world.gw.client(world.b_token) as client:
        _refused(world, client.get(f"{FLOW}/characters/{char}"), 404)
        _refused(world, client.delete(f"{FLOW}/characters/{char}"), 404)
        _refused(
            world,
            client.post(f"{FLOW}/images", json={"prompt": "x", "count": 1, "character_1": char}),
            404,
        )
        _refused(
            world,
            client.post(
                f"{FLOW}/characters", json={"name": "stolen", "images": [world.a.asset_mgid]}
            ),
            404,
        )
    with world.gw.client(world.a.token) as client:
        assert client.get(f"{FLOW}/characters/{char}").status_code == 200


def _forged(world: World, a_mgid: str) -> str:
    """A's media id inside a mediaGenerationId that names B's user and account."""
    kind = "video" if "-video:" in a_mgid else "image"
    prefix = world.b_image_mgid.rsplit("-image:", 1)[0]
    return f"{prefix}-{kind}:{_media_id(a_mgid)}"


def test_media_of_another_user_cannot_be_used(world: World) -> None:
    a = world.a
    images = [a.image_mgid, a.asset_mgid, _forged(world, a.image_mgid)]
    videos = [a.video_mgid, _forged(world, a.video_mgid)]
    with world.gw.client(world.b_token) as client:
        for mgid in images:
            _refused(
                world,
                client.post(
                    f"{FLOW}/images", json={"prompt": "x", "count": 1, "reference_1": mgid}
                ),
                404,
            )
            _refused(
                world,
                client.post(f"{FLOW}/images/upscale", json={"mediaGenerationId": mgid}),
                404,
            )
            _refused(
                world,
                client.post(
                    f"{FLOW}/videos", json={"prompt": "x", "duration": 4, "startImage": mgid}
                ),
                404,
            )
            _refused(
                world,
                client.post(f"{FLOW}/videos", json={"prompt": "x", "referenceImage_1": mgid}),
                404,
            )
            _refused(
                world, client.post(f"{FLOW}/characters", json={"name": "c", "images": [mgid]}), 404
            )
        for mgid in videos:
            _refused(
                world,
                client.post(
                    f"{FLOW}/videos/extend", json={"mediaGenerationId": mgid, "prompt": "x"}
                ),
                404,
            )
            _refused(
                world, client.post(f"{FLOW}/videos/gif", json={"mediaGenerationId": mgid}), 404
            )
            _refused(
                world,
                client.post(
                    f"{FLOW}/videos/upscale",
                    json={"mediaGenerationId": mgid, "resolution": "1080p"},
                ),
                404,
            )
            _refused(
                world,
                client.post(
                    f"{FLOW}/videos/concatenate",
                    json={"media": [{"mediaGenerationId": mgid}, {"mediaGenerationId": mgid}]},
                ),
                404,
            )


def test_lists_and_stats_show_only_own_data(world: World) -> None:
    with world.gw.client(world.b_token) as client:
        accounts = client.get(f"{FLOW}/accounts")
        assert accounts.status_code == 200 and set(accounts.json()) == {world.b_email}
        characters = client.get(f"{FLOW}/characters")
        assert characters.status_code == 200
        assert characters.json()["characters"] == []
        models = client.get("/v1/models")
        assert models.status_code == 200
        assert models.json()["data"], models.text
        for secret in world.a.ids:
            assert secret not in models.text, secret
    with httpx.Client(
        base_url=world.gw.base_url, headers={"x-api-key": world.b_token}, timeout=30
    ) as tasks:
        _refused(
            world, tasks.get(f"{TASKS}/job/TaskInfo", params={"task_id": world.a.task_id}), 404
        )
        balance = tasks.get(f"{TASKS}/account/balance")
        assert balance.status_code == 200
        _no_leak(world, balance)


def test_task_api_refuses_another_users_images(world: World) -> None:
    a = world.a
    with httpx.Client(
        base_url=world.gw.base_url, headers={"x-api-key": world.b_token}, timeout=60
    ) as tasks:
        for reference in (a.image_mgid, _media_id(a.image_mgid)):
            resp = tasks.post(
                f"{TASKS}/job/CreateTask",
                json={
                    "model": "google/nano-banana-v2",
                    "input": {"prompt": "steal", "image_urls": [reference]},
                },
            )
            _no_leak(world, resp)
            if resp.status_code == 200:
                # Accepted for later: the task itself must fail without using A's image.
                data = _wait_task(tasks, resp.json()["data"]["task_id"])
                assert data["status"] == "failed", data
                assert data["result"]["media_urls"] in (None, []), data
            else:
                assert resp.status_code in (403, 404, 422), resp.text


def test_dashboard_pages_are_404_for_another_users_things(world: World) -> None:
    a = world.a
    with httpx.Client(
        base_url=world.gw.base_url,
        cookies={"flowgate_session": world.b_token},
        timeout=30,
        follow_redirects=False,
    ) as ui:
        for path in (
            f"/ui/jobs/{a.image_job}",
            f"/ui/jobs/{a.video_job}",
            f"/ui/media/{_media_id(a.image_mgid)}",
            f"/ui/media/{_media_id(a.video_mgid)}",
            f"/ui/files/{_media_id(a.image_mgid)}",
            f"/ui/files/{_media_id(a.asset_mgid)}",
        ):
            resp = ui.get(path)
            assert resp.status_code == 404, (path, resp.status_code)
            _no_leak(world, resp)
        for page in ("/ui/jobs", "/ui/gallery", "/ui/accounts"):
            resp = ui.get(page)
            assert resp.status_code == 200, (page, resp.status_code)
            for secret in a.ids:
                assert secret not in resp.text, (page, secret)


def test_unsigned_media_links_are_refused(world: World) -> None:
    with httpx.Client(base_url=world.gw.base_url, timeout=30) as anonymous:
        for mgid in (world.a.image_mgid, world.a.video_mgid):
            resp = anonymous.get(f"/media/{_media_id(mgid)}")
            assert resp.status_code == 403, resp.text
            resp = anonymous.get(
                f"/media/{_media_id(mgid)}", params={"exp": "9999999999", "sig": "0" * 64}
            )
            assert resp.status_code == 403, resp.text


def _wait_executing(client: httpx.Client, job_id: str, timeout: float = 30) -> dict:
    """The caller's ``options=executing`` statistics once ``job_id`` shows as running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = client.get(f"{FLOW}/jobs", params={"options": "executing"})
        assert stats.status_code == 200, stats.text
        if job_id in stats.json()["videos"]["executing"]:
            return stats.json()
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never showed as executing")


def test_stats_hide_another_users_running_job(world: World) -> None:
    """While A's video job is still running, A's statistics show it and B's show none of it."""
    a = world.a
    with world.gw.client(a.token) as owner:
        started = owner.post(
            f"{FLOW}/videos",
            json={
                "prompt": f"{a.marker} still running [sandbox:video-seconds=3]",
                "duration": 4,
                "async": True,
            },
        )
        assert started.status_code == 201, started.text
        running = started.json()["jobid"]
        _wait_executing(owner, running)
        with world.gw.client(world.b_token) as client:
            for option in ("summary", "executing", "history"):
                stats = client.get(f"{FLOW}/jobs", params={"options": option})
                assert stats.status_code == 200, stats.text
                body = stats.json()
                assert body["emails"] == [world.b_email]
                assert body["videos"]["summary"][world.b_email]["executing"] == 0
                assert body["combined"]["summary"][world.b_email]["executing"] == 0
                if option != "summary":
                    assert body["images"]["executing"] == {}, (option, body)
                    assert body["videos"]["executing"] == {}, (option, body)
                for secret in (*a.ids, running):
                    assert secret not in stats.text, (option, secret)
        # Still running after B's reads: B looked while A's job was executing.
        mine = owner.get(f"{FLOW}/jobs", params={"options": "executing"}).json()
        assert mine["videos"]["executing"][running]["email"] == a.email
        assert mine["videos"]["summary"][a.email]["executing"] >= 1


def test_posting_another_users_account_email_makes_a_separate_account(world: World) -> None:
    """The account upsert is keyed by (user, email): B sending A's email gets an account of
    its own (201), cannot inherit A's key by leaving apiKey out, and A's account is unchanged."""
    gw = world.gw
    a_token, b_token = gw.new_user(), gw.new_user()
    email = f"shared-{uuid.uuid4().hex[:6]}@example.com"
    key = f"AIzaSyOWNER-{uuid.uuid4().hex}"
    gemini = {"provider": "gemini", "baseUrl": f"{gw.base_url}/sandbox/gemini"}
    with gw.client(a_token) as owner:
        made = owner.post(f"{FLOW}/accounts", json={"email": email, "apiKey": key, **gemini})
        assert made.status_code == 201, made.text
        before = owner.get(f"{FLOW}/accounts/{quote(email)}")
        assert before.status_code == 200, before.text
    hint = before.json()["apiKey"]
    assert hint and before.json()["maxConcurrency"] != 7 and before.json()["tier"] != "free"
    with gw.client(b_token) as client:
        # Without apiKey an update keeps the stored key: B must not get A's.
        inherit = client.post(f"{FLOW}/accounts", json={"email": email, **gemini})
        assert inherit.status_code == 400, inherit.text
        assert "apiKey is required" in inherit.json()["error"]
        assert client.get(f"{FLOW}/accounts").json() == {}
        own = client.post(
            f"{FLOW}/accounts",
            json={"email": email, "provider": "sandbox", "maxConcurrency": 7, "tier": "free"},
        )
        assert own.status_code == 201, own.text  # created for B, not A's updated
        assert own.json()["provider"] == "sandbox" and own.json()["apiKey"] == ""
        listing = client.get(f"{FLOW}/accounts")
        assert listing.status_code == 200
        assert set(listing.json()) == {email}
        assert listing.json()[email]["provider"] == "sandbox"
        assert listing.json()[email]["maxConcurrency"] == 7
        one = client.get(f"{FLOW}/accounts/{quote(email)}")
        assert one.status_code == 200 and one.json()["provider"] == "sandbox"
        used = client.post(
            f"{FLOW}/images", json={"prompt": "on my own", "count": 1, "email": email}
        )
        assert used.status_code == 200, used.text
        for resp in (inherit, own, listing, one, used):
            assert key not in resp.text and hint not in resp.text, resp.text[:500]
        assert client.delete(f"{FLOW}/accounts/{quote(email)}").status_code == 200
    with gw.client(a_token) as owner:
        after = owner.get(f"{FLOW}/accounts/{quote(email)}")
        assert after.status_code == 200, after.text
        unchanged = {k: v for k, v in before.json().items() if k != "healthChecked"}
        assert {k: v for k, v in after.json().items() if k != "healthChecked"} == unchanged
        assert set(owner.get(f"{FLOW}/accounts").json()) == {email}
        # B's image on its same-named account is not counted as A's.
        stats = owner.get(f"{FLOW}/jobs", params={"options": "history"}).json()
        assert stats["images"]["summary"][email]["completed"] == 0
        assert used.json()["jobId"] not in str(stats)


def test_webhook_secret_is_per_user(world: World) -> None:
    """Each user has its own webhook secret; B's answer does not contain A's."""
    with world.gw.client(world.a.token) as owner:
        mine = owner.get(f"{FLOW}/webhooks/secret")
    with world.gw.client(world.b_token) as client:
        theirs = client.get(f"{FLOW}/webhooks/secret")
    assert mine.status_code == 200 and theirs.status_code == 200
    a_secret, b_secret = mine.json()["secret"], theirs.json()["secret"]
    assert a_secret and b_secret and a_secret != b_secret
    assert a_secret not in theirs.text
    _no_leak(world, theirs)


def test_media_head_needs_the_files_own_signature(world: World) -> None:
    """HEAD (and GET) /media/{id} of A's files is 403 with no, a forged or B's signature,
    anonymously or with B's token; A's own signed link answers 200 to HEAD."""
    b_link = httpx.URL(world.b_image_url).params
    borrowed = {"exp": b_link["exp"], "sig": b_link["sig"]}
    video = _media_id(world.a.video_mgid)
    targets = (
        _media_id(world.a.image_mgid),
        _media_id(world.a.asset_mgid),
        video,
        f"{video}-thumb",
    )
    with (
        httpx.Client(base_url=world.gw.base_url, timeout=30) as anonymous,
        world.gw.client(world.b_token) as client,
    ):
        assert anonymous.head(world.a.image_url).status_code == 200
        for who in (anonymous, client):
            for media_id in targets:
                for params in ({}, {"exp": "9999999999", "sig": "0" * 64}, borrowed):
                    for method in ("HEAD", "GET"):
                        resp = who.request(method, f"/media/{media_id}", params=params)
                        assert resp.status_code == 403, (method, media_id, params, resp.status_code)
                        assert "content-disposition" not in resp.headers
                        _no_leak(world, resp)


def _new_job_records(client: httpx.Client, seen: set[str]) -> list[httpx.Response]:
    """The caller's image job records that are in its history but not in ``seen``."""
    history = client.get(f"{FLOW}/jobs", params={"options": "history"}).json()
    fresh = set(history["images"]["history"]) - seen
    return [client.get(f"{FLOW}/jobs/{job_id.split('-http:')[0]}") for job_id in fresh]


def test_openai_images_api_cannot_use_another_users_media(world: World) -> None:
    """B's /v1/images/generations and /v1/images/edits ignore A's ids sent as flowgate fields,
    refuse an image sent as text instead of a file, and never answer with A's data."""
    a = world.a
    stolen = {
        "reference_1": a.image_mgid,
        "character_1": a.character_id,
        "email": a.email,
    }
    a_bytes = httpx.get(a.image_url).content
    with world.gw.client(world.b_token) as client:
        history = client.get(f"{FLOW}/jobs", params={"options": "history"}).json()
        seen = set(history["images"]["history"])
        generated = client.post(
            "/v1/images/generations",
            json={"prompt": "openai intruder", "n": 1, "response_format": "b64_json", **stolen},
        )
        assert generated.status_code == 200, generated.text
        assert base64.b64decode(generated.json()["data"][0]["b64_json"]) != a_bytes
        for text_image in (a.image_mgid, _media_id(a.image_mgid), a.image_url):
            refused = client.post(
                "/v1/images/edits", data={"prompt": "edit", "image": text_image, **stolen}
            )
            assert refused.status_code == 400, refused.text
            assert "image is required" in refused.json()["error"]["message"]
            _no_leak(world, refused)
        edited = client.post(
            "/v1/images/edits",
            data={"prompt": "openai edit", **stolen},
            files={"image": ("mine.png", _png("blue"), "image/png")},
        )
        assert edited.status_code == 200, edited.text
        for resp in (generated, edited):
            for secret in a.ids:
                assert secret not in resp.text, secret
        assert httpx.URL(edited.json()["data"][0]["url"]).path.rsplit("/", 1)[-1] not in a.ids
        records = _new_job_records(client, seen)
        assert len(records) == 2, [r.text[:200] for r in records]
        for record in records:
            assert record.status_code == 200, record.text
            for secret in a.ids:
                assert secret not in record.text, (secret, record.text[:500])
