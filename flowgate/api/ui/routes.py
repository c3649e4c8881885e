"""The dashboard's pages: parse the form or query, call the services, render a template.

A request sent by htmx (header ``HX-Request``) gets only the live part of a page.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from flowgate.api.deps import RuntimeDep
from flowgate.api.ui import forms, views
from flowgate.api.ui.session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    CheckedSessionDep,
    NotSignedIn,
    PageRoute,
    Session,
    SessionDep,
    clear_cookie,
    current_session,
    login_csrf,
    new_login_nonce,
    read_form,
    server_secret,
    set_cookie,
)
from flowgate.api.ui.templating import render
from flowgate.clock import offset_clock
from flowgate.domain.errors import FlowgateError, Unauthorized
from flowgate.runtime import Runtime

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)

GALLERY_PAGE = 48
JOBS_PAGE = 25
PICKER_SIZE = 24


def _live(request: Request) -> bool:
    """True for htmx's background refreshes and form posts: answer with the fragment only."""
    return request.headers.get("hx-request") == "true"


def _see_other(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


# ---------------------------------------------------------------- sign in / out


@router.get("")
@router.get("/")
async def home() -> RedirectResponse:
    """The dashboard starts on the Accounts page."""
    return _see_other("/ui/accounts")


@router.get("/login")
async def login_page(request: Request, next: str = "") -> Response:
    """The sign-in form (a signed-in visitor goes straight on)."""
    try:
        await current_session(request)
    except NotSignedIn:
        pass
    else:
        return _see_other(forms.safe_next(next))
    return _login_form(request, next, None, 200)


def _login_form(request: Request, next_page: str, error: str | None, status: int) -> Response:
    nonce = new_login_nonce()
    response = render(
        request,
        "login.html",
        {
            "csrf": login_csrf(server_secret(request), nonce),
            "next": forms.safe_next(next_page),
            "error": error,
        },
        status_code=status,
    )
    set_cookie(request, response, LOGIN_COOKIE, nonce, 3600)
    return response


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep) -> Response:
    """Check the token, then keep it in the session cookie."""
    form = await read_form(request, limit=65_536)
    next_page = forms.text(form, "next") or ""
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    sent = forms.text(form, CSRF_FIELD) or ""
    if not nonce or not hmac.compare_digest(sent, login_csrf(server_secret(request), nonce)):
        return _login_form(request, next_page, "The sign-in form expired: try again.", 400)
    token = (forms.text(form, "token") or "").strip()
    try:
        await runtime.users.authenticate(f"Bearer {token}")
    except Unauthorized:
        return _login_form(request, next_page, "That API token is not valid.", 401)
    response = _see_other(forms.safe_next(next_page))
    set_cookie(request, response, SESSION_COOKIE, token, SESSION_MAX_AGE)
    clear_cookie(request, response, LOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, session: CheckedSessionDep) -> Response:
    """Forget the session cookie."""
    response = _see_other("/ui/login")
    clear_cookie(request, response, SESSION_COOKIE)
    return response


# ---------------------------------------------------------------- accounts


async def _accounts_context(runtime: Runtime, session: Session) -> dict[str, Any]:
    caller = session.caller
    listed = await runtime.accounts.list_accounts(caller)
    accounts = [
        runtime.accounts.render(await runtime.accounts.get_account(caller, email), with_models=True)
        for email in listed
    ]
    stats = await runtime.job_stats.stats(caller, "executing")
    # Quarantine ends are on the balancer's clock (shifted in tests by a setting).
    now = offset_clock(runtime.settings.clock_offset_seconds)()
    return {
        "session": session,
        "active": "accounts",
        "accounts": views.account_views(accounts, stats, now),
        "running": views.running_jobs(stats),
        "now": now,
    }


@router.get("/accounts")
async def accounts_page(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    added: str = "",
    removed: str = "",
) -> Response:
    """Accounts with health, models, live score, running jobs and quarantine countdowns."""
    context = await _accounts_context(runtime, session)
    if _live(request):
        return render(request, "_accounts_live.html", context)
    flash = f"Added {added}." if added else f"Removed {removed}." if removed else None
    context.update(flash=flash, form={}, form_error=None)
    return render(request, "accounts.html", context)


@router.post("/accounts")
async def add_account(
    request: Request, runtime: RuntimeDep, session: CheckedSessionDep
) -> Response:
    """Add (or update) an account; the key is checked upstream first."""
    fields = forms.account_fields(await read_form(request))
    try:
        view, _created = await runtime.accounts.upsert(session.caller, fields)
    except FlowgateError as exc:
        context = await _accounts_context(runtime, session)
        context.update(form=fields, form_error=exc.message)
        return render(request, "accounts.html", context, status_code=exc.status)
    return _see_other("/ui/accounts?added=" + quote(view["email"]))


@router.post("/accounts/remove")
async def remove_account(
    request: Request, runtime: RuntimeDep, session: CheckedSessionDep
) -> Response:
    """Delete one of the caller's accounts."""
    email = forms.text(await read_form(request), "email") or ""
    await runtime.accounts.delete_account(session.caller, email)
    return _see_other("/ui/accounts?removed=" + quote(email))


# ---------------------------------------------------------------- jobs


@router.get("/jobs")
async def jobs_page(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    status: str = "",
    type: str = "",
    model: str = "",
    before: str = "",
    limit: str = "",
) -> Response:
    """The caller's jobs, newest first, filtered by status, type and model."""
    page = await runtime.jobs.list_jobs(
        session.caller,
        status=status or None,
        kind=type or None,
        model=model or None,
        limit=forms.page_limit(limit, JOBS_PAGE),
        before=before or None,
    )
    filters = {"status": status, "type": type, "model": model, "limit": limit}
    context = {
        "session": session,
        "active": "jobs",
        "jobs": [views.job_view(item) for item in page.items],
        "next_before": page.next_before,
        "models": page.models,
        "filters": filters,
        "query": forms.query(filters),
        "paged": bool(before),
    }
    if _live(request):
        return render(request, "_jobs_rows.html", context)
    return render(request, "jobs.html", context)


@router.get("/jobs/{job_id}")
async def job_page(
    request: Request, job_id: str, runtime: RuntimeDep, session: SessionDep
) -> Response:
    """One job: parameters, timings, outputs, error and webhook deliveries (404 if not yours)."""
    job = views.job_view(await runtime.jobs.job_listing(session.caller, job_id))
    context = {"session": session, "active": "jobs", "job": job}
    if _live(request):
        return render(request, "_job_detail.html", context)
    return render(request, "job.html", context)


# ---------------------------------------------------------------- gallery and media


@router.get("/gallery")
async def gallery_page(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    kind: str = "",
    before: str = "",
    limit: str = "",
) -> Response:
    """A grid of the caller's images and videos, newest first."""
    page = await runtime.media.list_media(
        session.caller,
        kind=kind or None,
        limit=forms.page_limit(limit, GALLERY_PAGE),
        before=before or None,
    )
    context = {
        "session": session,
        "active": "gallery",
        "items": [views.media_view(row) for row in page.items],
        "next_before": page.next_before,
        "kind": kind,
        "query": forms.query({"kind": kind, "limit": limit}),
    }
    return render(request, "gallery.html", context)


@router.get("/media/{media_id}")
async def media_page(
    request: Request, media_id: str, runtime: RuntimeDep, session: SessionDep
) -> Response:
    """One image or video at full size, with its id, download and upscale."""
    media = views.media_view(await runtime.media.owned(session.caller.user_id, media_id))
    context = {
        "session": session,
        "active": "gallery",
        "media": media,
        "upscale_blocker": views.upscale_blocker(media),
    }
    return render(request, "media.html", context)


@router.get("/files/{media_id}")
async def media_file(
    media_id: str, runtime: RuntimeDep, session: SessionDep, download: bool = False
) -> FileResponse:
    """The caller's own file, shown inline or downloaded."""
    found = await runtime.media.owned_download(session.caller, media_id)
    return FileResponse(
        found.path,
        media_type=found.mime,
        filename=found.filename,
        content_disposition_type="attachment" if download else "inline",
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.post("/media/{media_id}/upscale")
async def upscale(
    request: Request, media_id: str, runtime: RuntimeDep, session: CheckedSessionDep
) -> Response:
    """Upscale an image (the service of POST /images/upscale) and show the result."""
    media = views.media_view(await runtime.media.owned(session.caller.user_id, media_id))
    resolution = forms.text(await read_form(request), "resolution") or "2k"
    result = await runtime.upscale.upscale(
        session.caller,
        {"mediaGenerationId": media.media_generation_id, "resolution": resolution},
        form=True,
    )
    new_id = forms.upscaled_media_id(result) or media_id
    return _see_other(f"/ui/media/{quote(new_id)}")


# ---------------------------------------------------------------- generate


async def _generate_context(
    runtime: Runtime, session: Session, values: dict[str, Any]
) -> dict[str, Any]:
    caller = session.caller
    picks = await runtime.media.list_media(caller, kind="image", limit=PICKER_SIZE)
    characters = await runtime.characters.list_all(caller)
    return {
        "session": session,
        "active": "generate",
        "choices": forms.GENERATE_CHOICES,
        "accounts": list(await runtime.accounts.list_accounts(caller)),
        "picks": [views.media_view(row) for row in picks.items],
        "characters": characters.get("characters", []),
        "values": values,
        "result": None,
    }


@router.get("/generate")
async def generate_page(
    request: Request, runtime: RuntimeDep, session: SessionDep, reference: str = ""
) -> Response:
    """The generation form (``?reference=`` pre-selects a gallery image)."""
    values = {"references": [reference] if reference else []}
    return render(request, "generate.html", await _generate_context(runtime, session, values))


@router.post("/generate")
async def generate(request: Request, runtime: RuntimeDep, session: CheckedSessionDep) -> Response:
    """Upload the attached files, generate, and show the images (or the error)."""
    form = await read_form(request)
    fields = forms.generation_fields(form)
    try:
        for upload in forms.uploads(form):
            data = await forms.read_upload(upload, runtime.settings.max_upload_bytes)
            asset = await runtime.images.upload(session.caller, data, upload.content_type, None)
            forms.add_reference(fields, asset["mediaGenerationId"]["mediaGenerationId"])
        result = views.generated_view(
            await runtime.images.generate(session.caller, fields, form=True)
        )
    except FlowgateError as exc:
        result = views.GeneratedView(exc.job_id, [], exc.message, exc.status)
    if _live(request):
        return render(
            request, "_generate_result.html", {"result": result}, status_code=result.status
        )
    context = await _generate_context(runtime, session, forms.form_values(form))
    context["result"] = result
    return render(request, "generate.html", context, status_code=result.status)
