"""The dashboard at /ui: sessions, CSRF, per-user data, and end-to-end in headless Chromium."""

from __future__ import annotations

import io
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.gateway import Gateway
from tests.receiver import Receiver
from tests.ui_browser import (
    CHROMIUM_ARGS,
    chromium_path,
    csrf_of,
    screenshot_dir,
    sign_in,
    ui_client,
)

API = "/v1/google-flow"


def _user_with_sandbox(gw: Gateway) -> tuple[str, str]:
    token = gw.new_user()
    email = f"ui-{uuid.uuid4().hex[:8]}@example.com"
    with gw.client(token) as client:
        resp = client.post(f"{API}/accounts", json={"email": email, "provider": "sandbox"})
        assert resp.status_code == 201, resp.text
    return token, email


def _generate(gw: Gateway, token: str, prompt: str, **extra: object) -> httpx.Response:
    with gw.client(token) as client:
        return client.post(
            f"{API}/images", json={"prompt": prompt, "count": 1, "model": "nano-banana-2", **extra}
        )


def _set_cookie_headers(resp: httpx.Response) -> list[str]:
    return resp.headers.get_list("set-cookie")


# ---------------------------------------------------------------- sessions and CSRF


def test_sign_in_cookie_is_strict_http_only_and_sign_out_clears_it(gateway: Gateway) -> None:
    token = gateway.new_user()
    with ui_client(gateway) as client:
        page = client.get("/ui/jobs?status=failed")
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/login?next=" + quote("/ui/jobs?status=failed", "")

        form = client.get("/ui/login")
        assert form.status_code == 200
        (nonce_cookie,) = _set_cookie_headers(form)
        assert "HttpOnly" in nonce_cookie and "SameSite=strict" in nonce_cookie
        csrf = csrf_of(form.text)

        forged = client.post("/ui/login", data={"csrf_token": "x" * 64, "token": token})
        assert forged.status_code == 400
        assert "flowgate_session" not in client.cookies

        form = client.get("/ui/login")
        wrong = client.post("/ui/login", data={"csrf_token": csrf_of(form.text), "token": "fg_no"})
        assert wrong.status_code == 401
        assert "That API token is not valid." in wrong.text

        form = client.get("/ui/login")
        signed = client.post(
            "/ui/login",
            data={"csrf_token": csrf_of(form.text), "token": token, "next": "/ui/jobs"},
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/jobs"
        session_cookie = next(c for c in _set_cookie_headers(signed) if "flowgate_session=" in c)
        assert f"flowgate_session={token}" in session_cookie
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/ui"):
            assert attribute in session_cookie
        assert "Secure" not in session_cookie  # plain http public URL

        accounts = client.get("/ui/accounts")
        assert accounts.status_code == 200
        assert "default-src 'self'" in accounts.headers["content-security-policy"]
        assert accounts.headers["x-frame-options"] == "DENY"
        session_csrf = csrf_of(accounts.text)
        assert session_csrf != csrf

        refused = client.post("/ui/logout", data={"csrf_token": "0" * 64})
        assert refused.status_code == 400
        assert client.get("/ui/accounts").status_code == 200

        out = client.post("/ui/logout", data={"csrf_token": session_csrf})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        cleared = next(c for c in _set_cookie_headers(out) if "flowgate_session=" in c)
        assert "Max-Age=0" in cleared
        assert client.get("/ui/accounts").status_code == 303


def test_open_redirect_is_not_followed(gateway: Gateway) -> None:
    token = gateway.new_user()
    with ui_client(gateway) as client:
        form = client.get("/ui/login")
        resp = client.post(
            "/ui/login",
            data={"csrf_token": csrf_of(form.text), "token": token, "next": "//evil.example/x"},
        )
        assert resp.headers["location"] == "/ui/accounts"


def test_posts_without_the_session_csrf_token_change_nothing(gateway: Gateway) -> None:
    token = gateway.new_user()
    other_token = gateway.new_user()
    with ui_client(gateway) as other:
        other_csrf = sign_in(other, other_token)
    with ui_client(gateway) as client:
        csrf = sign_in(client, token)
        body = {"email": "csrf@example.com", "provider": "sandbox"}
        for sent in ({}, {"csrf_token": "f" * 64}, {"csrf_token": other_csrf}):
            resp = client.post("/ui/accounts", data={**body, **sent})
            assert resp.status_code == 400, resp.text
            assert "reload" in resp.text
        with gateway.client(token) as api:
            assert api.get(f"{API}/accounts").json() == {}
        # The htmx header works as the form field does.
        ok = client.post("/ui/accounts", data=body, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 303
        with gateway.client(token) as api:
            assert list(api.get(f"{API}/accounts").json()) == ["csrf@example.com"]


def test_cookie_is_secure_behind_an_https_public_url(gateway_factory) -> None:
    gw = gateway_factory("sqlite", FLOWGATE_PUBLIC_URL="https://flowgate.example")
    gw.start()
    with ui_client(gw) as client:
        form = client.get("/ui/login")
        (nonce_cookie,) = _set_cookie_headers(form)
        assert "Secure" in nonce_cookie
        # A client keeps Secure cookies for https only; send the nonce as a proxy would.
        nonce = nonce_cookie.split(";")[0].split("=", 1)[1]
        resp = client.post(
            "/ui/login",
            data={"csrf_token": csrf_of(form.text), "token": gw.token},
            headers={"Cookie": f"flowgate_login={nonce}"},
        )
        assert resp.status_code == 303, resp.text
        session_cookie = next(c for c in _set_cookie_headers(resp) if "flowgate_session=" in c)
        assert "Secure" in session_cookie and "HttpOnly" in session_cookie


# ---------------------------------------------------------------- per-user data


def test_a_user_sees_only_their_own_data(gateway: Gateway) -> None:
    owner_token, owner_email = _user_with_sandbox(gateway)
    made = _generate(gateway, owner_token, "owner's private fox")
    assert made.status_code == 200, made.text
    job_id = made.json()["jobId"]
    media_id = made.json()["media"][0]["name"]

    with ui_client(gateway) as owner:
        sign_in(owner, owner_token)
        assert owner_email in owner.get("/ui/accounts").text
        assert job_id in owner.get("/ui/jobs").text
        assert media_id in owner.get("/ui/gallery").text
        assert owner.get(f"/ui/jobs/{quote(job_id)}").status_code == 200
        assert owner.get(f"/ui/media/{media_id}").status_code == 200
        file = owner.get(f"/ui/files/{media_id}")
        assert file.status_code == 200 and file.content.startswith(b"\x89PNG")

    intruder_token, intruder_email = _user_with_sandbox(gateway)
    with ui_client(gateway) as intruder:
        csrf = sign_in(intruder, intruder_token)
        accounts = intruder.get("/ui/accounts").text
        assert intruder_email in accounts and owner_email not in accounts
        assert job_id not in intruder.get("/ui/jobs").text
        assert media_id not in intruder.get("/ui/gallery").text
        assert "owner&#39;s private fox" not in intruder.get("/ui/generate").text
        for path in (
            f"/ui/jobs/{quote(job_id)}",
            f"/ui/media/{media_id}",
            f"/ui/files/{media_id}",
            f"/ui/files/{media_id}?download=true",
        ):
            resp = intruder.get(path)
            assert resp.status_code == 404, path
        assert intruder.get(f"/ui/jobs?before={quote(job_id)}").status_code == 400
        assert intruder.get(f"/ui/gallery?before={media_id}").status_code == 404
        removed = intruder.post(
            "/ui/accounts/remove", data={"email": owner_email, "csrf_token": csrf}
        )
        assert removed.status_code == 404
        upscale = intruder.post(f"/ui/media/{media_id}/upscale", data={"csrf_token": csrf})
        assert upscale.status_code == 404
    with gateway.client(owner_token) as api:
        assert owner_email in api.get(f"{API}/accounts").json()


# ---------------------------------------------------------------- listings


def _job_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-job-id="([^"]+)"', html)


def test_jobs_newest_first_with_filters_and_pages(gateway: Gateway) -> None:
    token, email = _user_with_sandbox(gateway)
    done = [_generate(gateway, token, f"fox {n}").json()["jobId"] for n in range(3)]
    failed = _generate(gateway, token, "[sandbox:503] fox", email=email)
    assert failed.status_code == 503
    failed_id = failed.json()["jobId"]
    with ui_client(gateway) as client:
        sign_in(client, token)
        listed = _job_ids(client.get("/ui/jobs").text)
        assert listed == [failed_id, *reversed(done)]

        only_failed = client.get("/ui/jobs?status=failed").text
        assert _job_ids(only_failed) == [failed_id]
        assert "The model is overloaded" in only_failed
        assert _job_ids(client.get("/ui/jobs?status=completed&model=nano-banana-2").text) == list(
            reversed(done)
        )
        assert _job_ids(client.get("/ui/jobs?type=video").text) == []
        assert _job_ids(client.get("/ui/jobs?model=imagen-4").text) == []

        first = client.get("/ui/jobs?limit=2").text
        assert _job_ids(first) == listed[:2]
        older = re.search(r'href="/ui/jobs\?limit=2&amp;before=([^"]+)" id="older"', first)
        assert older
        second = client.get(f"/ui/jobs?limit=2&before={older.group(1)}").text
        assert _job_ids(second) == listed[2:]
        assert 'id="older"' not in second

        for bad in ("status=bogus", "type=gif", "limit=0", "limit=abc", "before=nope"):
            resp = client.get(f"/ui/jobs?{bad}")
            assert resp.status_code == 400, bad
            assert '<p class="error" role="alert">' in resp.text

        # htmx's refresh gets the rows only.
        live = client.get("/ui/jobs?status=failed", headers={"HX-Request": "true"})
        assert live.text.lstrip().startswith("<tr") and "<html" not in live.text


def test_gallery_pages_and_kinds(gateway: Gateway) -> None:
    token, _ = _user_with_sandbox(gateway)
    made = _generate(gateway, token, "three foxes", count=3).json()
    ids = [m["name"] for m in made["media"]]
    with ui_client(gateway) as client:
        sign_in(client, token)
        page = client.get("/ui/gallery").text
        shown = re.findall(r'data-media-id="([^"]+)"', page)
        assert sorted(shown) == sorted(ids)
        first = client.get("/ui/gallery?limit=2").text
        first_ids = re.findall(r'data-media-id="([^"]+)"', first)
        before = re.search(r'id="older" href="[^"]*before=([0-9a-f]+)"', first)
        assert before and len(first_ids) == 2
        rest = client.get(f"/ui/gallery?limit=2&before={before.group(1)}").text
        rest_ids = re.findall(r'data-media-id="([^"]+)"', rest)
        assert sorted(first_ids + rest_ids) == sorted(ids)
        assert (
            re.findall(r'data-media-id="([^"]+)"', client.get("/ui/gallery?kind=video").text) == []
        )
        assert client.get("/ui/gallery?kind=gif").status_code == 400
        media = client.get(f"/ui/media/{ids[0]}").text
        assert "user:" in media and "-image:" + ids[0] in media
        download = client.get(f"/ui/files/{ids[0]}?download=true")
        assert download.headers["content-disposition"].startswith("attachment")


def test_job_page_lists_webhook_deliveries(gateway: Gateway) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        token, _ = _user_with_sandbox(gateway)
        made = _generate(gateway, token, "hooked fox", replyUrl=receiver.url)
        assert made.status_code == 200, made.text
        receiver.wait_for(2)
        job_id = made.json()["jobId"]
        with ui_client(gateway) as client:
            sign_in(client, token)
            # The outbox row is marked delivered right after the receiver answers.
            for _ in range(100):
                page = client.get(f"/ui/jobs/{quote(job_id)}").text
                if page.count(">delivered</span>") == 2:
                    break
                time.sleep(0.05)
            deliveries = page[page.index('id="deliveries"') :]
            assert ">created<" in deliveries and ">completed<" in deliveries
            assert page.count(">delivered</span>") == 2
            assert receiver.url in deliveries
            assert "hooked fox" in page  # the parameters
    finally:
        receiver.stop()


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (20, 140, 90)).save(buf, "PNG")
    return buf.getvalue()


def test_generate_form_without_javascript_uploads_references(gateway: Gateway) -> None:
    token, email = _user_with_sandbox(gateway)
    picked = _generate(gateway, token, "a picked fox").json()["media"][0]
    picked_id = picked["image"]["generatedImage"]["mediaGenerationId"]
    with ui_client(gateway) as client:
        csrf = sign_in(client, token)
        form = client.get("/ui/generate").text
        assert f'value="{picked_id}"' in form  # offered in the picker
        resp = client.post(
            "/ui/generate",
            data={
                "csrf_token": csrf,
                "prompt": "the same fox, in the rain",
                "model": "nano-banana-2",
                "aspectRatio": "",
                "count": "1",
                "seed": "",
                "email": email,
                "reference": picked_id,
            },
            files={"upload": ("portrait.png", _png(300, 600), "image/png")},
        )
        assert resp.status_code == 200, resp.text
        assert "<html" in resp.text and 'id="generated"' in resp.text
        (job_id,) = re.findall(r'href="/ui/jobs/([^"]+)">job</a>', resp.text)
        job = client.get(f"/ui/jobs/{job_id}").text
        params = job[job.index('id="params"') :]
        assert "reference_1" in params and "reference_2" in params
        assert "aspectRatio</dt><dd>auto" in params  # the default with references

        bad = client.post(
            "/ui/generate",
            data={"csrf_token": csrf, "prompt": "x", "count": "9"},
            headers={"HX-Request": "true"},
        )
        assert bad.status_code == 400
        assert 'id="generate-error"' in bad.text and "count" in bad.text
        assert "<html" not in bad.text  # htmx gets the fragment
        with gateway.client(token) as api:
            assert len(api.get(f"{API}/jobs?options=history").json()["images"]["history"]) == 2


def test_add_account_errors_are_shown_on_the_page(gateway: Gateway) -> None:
    token = gateway.new_user()
    with ui_client(gateway) as client:
        csrf = sign_in(client, token)
        resp = client.post("/ui/accounts", data={"csrf_token": csrf, "email": "no-key@example.com"})
        assert resp.status_code == 400
        assert "apiKey is required" in resp.text
        assert 'value="no-key@example.com"' in resp.text  # the form keeps what was typed
        missing = client.post(
            "/ui/accounts/remove", data={"csrf_token": csrf, "email": "nobody@example.com"}
        )
        assert missing.status_code == 404


# ---------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"ui-{name}.png"))


def _image_loaded(page: Page, selector: str) -> None:
    image = page.locator(selector).first
    expect(image).to_be_visible()
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=image.element_handle())


def test_dashboard_in_chromium(gateway: Gateway, browser: Browser, tmp_path: Path) -> None:
    # Screenshots for docs/ come from the SQLite run (the pages look the same on PostgreSQL).
    shots = screenshot_dir(tmp_path) if gateway.backend == "sqlite" else tmp_path
    token = gateway.new_user(f"ada-{uuid.uuid4().hex[:4]}")
    email = f"studio-{uuid.uuid4().hex[:4]}@example.com"
    context = browser.new_context(
        base_url=gateway.base_url, viewport={"width": 1280, "height": 800}
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.base_url)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        # Sign in.
        page.goto("/ui/gallery")
        expect(page).to_have_url(re.compile(r"/ui/login\?next="))
        _shot(page, shots, "login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        expect(page).to_have_url(re.compile(r"/ui/gallery$"))
        page.goto("/ui/accounts")
        expect(page.get_by_text("No accounts yet")).to_be_visible()

        # Add a sandbox account.
        page.fill("#email", email)
        page.select_option("#provider", "sandbox")
        page.click("#add-account button[type=submit]")
        expect(page.locator(".flash")).to_have_text(f"Added {email}.")
        row = page.locator(f'tr[data-email="{email}"]')
        expect(row.locator(".badge.ok")).to_have_text("OK")
        expect(row).to_contain_text("gemini-3.1-flash-image-preview")

        # Generate an image from the form.
        page.goto("/ui/generate")
        page.fill("#prompt", "a red fox in the snow")
        page.select_option("#model", "nano-banana-2")
        page.select_option("#aspectRatio", "1:1")
        page.select_option("#count", "2")
        page.fill("#seed", "42")
        page.click("#generate-form button[type=submit]")
        expect(page.locator("#generated img")).to_have_count(2)
        _image_loaded(page, "#generated img")
        expect(page).to_have_url(re.compile(r"/ui/generate$"))  # no full reload
        _shot(page, shots, "generate")

        # See it in the gallery and open it.
        page.goto("/ui/gallery")
        tiles = page.locator("#gallery .tile")
        expect(tiles).to_have_count(2)
        _image_loaded(page, "#gallery img")
        _shot(page, shots, "gallery")
        tiles.first.click()
        expect(page).to_have_url(re.compile(r"/ui/media/[0-9a-f]+$"))
        _image_loaded(page, "#full-image")
        size = page.evaluate("document.getElementById('full-image').naturalWidth")
        assert size == 1024
        media_id = page.input_value("#media-id")
        assert re.fullmatch(r"user:\d+-email:[0-9a-f]+-image:[0-9a-f]+", media_id)
        page.click("[data-copy-target=media-id]")
        expect(page.locator("[data-copy-target=media-id]")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == media_id
        _shot(page, shots, "media")
        with page.expect_download() as download:
            page.click("text=Download")
        assert download.value.suggested_filename.endswith(".png")

        # Upscale it: the result opens as a new, larger image.
        page.select_option("#upscale select", "2k")
        page.click("#upscale button[type=submit]")
        page.wait_for_url(lambda url: "/ui/media/" in url and media_id.rsplit(":", 1)[1] not in url)
        _image_loaded(page, "#full-image")
        assert page.evaluate("document.getElementById('full-image').naturalWidth") == 2048
        page.goto("/ui/gallery")
        expect(page.locator("#gallery .tile")).to_have_count(3)

        # A generated image reused as a reference, from the media page.
        page.goto("/ui/media/" + media_id.rsplit(":", 1)[1])
        page.click("text=Use as reference")
        expect(page.locator(f'input[name=reference][value="{media_id}"]')).to_be_checked()

        # The job's page has its thumbnails, parameters and timings.
        page.goto("/ui/jobs?type=image&status=completed&model=nano-banana-2")
        job_row = page.locator("#job-rows tr").last
        expect(job_row.locator(".badge")).to_have_text("completed")
        expect(job_row.locator(".thumbs img")).to_have_count(3)  # 2 outputs and the upscale
        job_row.locator("a").first.click()
        expect(page.locator("#params")).to_contain_text("a red fox in the snow")
        expect(page.locator("#params")).to_contain_text("42")
        _image_loaded(page, "#job .results img")
        _shot(page, shots, "job")

        # The Accounts page stays open in a second tab; its live part refreshes by itself.
        watcher = context.new_page()
        watcher.goto("/ui/accounts")
        watched = watcher.locator(f'tr[data-email="{email}"]')
        expect(watched.locator(".quarantine")).to_contain_text("—")
        watched.locator("details.models summary").click()

        # A sandbox 429 quarantines the model on the account.
        page.goto("/ui/generate")
        page.fill("#prompt", "[sandbox:429-minute=300] a fox")
        page.select_option("#model", "nano-banana-2")
        page.click("#generate-form button[type=submit]")
        expect(page.locator("#generate-error")).to_contain_text("429")

        expect(watched).to_have_class(re.compile("quarantined"), timeout=15_000)
        entry = watched.locator(".quarantine-entry")
        expect(entry).to_contain_text("THROTTLED")
        expect(entry).to_contain_text("nano-banana-2")
        expect(entry.locator(".countdown")).to_have_text(re.compile(r"^[0-5]:\d\d$"))  # 300 s
        expect(watched.locator(".numbers")).to_contain_text("429 × 1")
        # The refresh that showed the quarantine kept the opened model list open.
        expect(watched.locator("details.models")).to_have_attribute("open", "")
        # An account added elsewhere appears without a reload too.
        spare = f"spare-{uuid.uuid4().hex[:4]}@example.com"
        with gateway.client(token) as api:
            added = api.post(f"{API}/accounts", json={"email": spare, "provider": "sandbox"})
            assert added.status_code == 201, added.text
        expect(watcher.locator(f'tr[data-email="{spare}"] .badge.ok')).to_have_text("OK")
        _shot(watcher, shots, "accounts")

        # The Jobs page lists every job, the failed one with its error.
        page.goto("/ui/jobs")
        expect(page.locator("#job-rows tr").first.locator(".badge").first).to_have_text("failed")
        expect(page.locator("#job-rows tr").first).to_contain_text("429")
        _image_loaded(page, "#job-rows .thumbs img")
        _shot(page, shots, "jobs")

        # Remove the account; sign out.
        watcher.close()
        page.goto("/ui/accounts")
        page.locator(f'tr[data-email="{email}"] button.danger').click()
        expect(page.locator(".flash")).to_have_text(f"Removed {email}.")
        expect(page.locator(f'tr[data-email="{email}"]')).to_have_count(0)
        page.click("text=Sign out")
        expect(page).to_have_url(re.compile(r"/ui/login$"))
        page.goto("/ui/jobs")
        expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    finally:
        context.close()
