"""The dashboard's session: the API token in a cookie, CSRF tokens, and the page route class.

The session cookie holds the user's API token itself (HttpOnly, SameSite=Strict,
Secure behind https), so signing in needs nothing stored on the server and
revoking the token ends every dashboard session too. Every POST carries a CSRF
token: an HMAC of the session (the token's SHA-256) under the server secret, so
it cannot be computed without both. Before sign-in the same is done with a
random nonce cookie set by the sign-in page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from flowgate.api.deps import runtime_of
from flowgate.api.ui.templating import render
from flowgate.config import ensure_secret_key
from flowgate.domain.errors import FlowgateError, InvalidRequest, Unauthorized
from flowgate.services.users import Caller

SESSION_COOKIE = "flowgate_session"
LOGIN_COOKIE = "flowgate_login"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE = 30 * 24 * 3600

# Pages load scripts, styles and images from flowgate itself only; nothing inline, no eval.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class NotSignedIn(Exception):
    """No valid session cookie: pages redirect to the sign-in page."""


def server_secret(request: Request) -> str:
    """The instance's secret key (read once, then kept on the app)."""
    secret: str | None = getattr(request.app.state, "ui_secret", None)
    if secret is None:
        secret = ensure_secret_key(runtime_of(request).settings)
        request.app.state.ui_secret = secret
    return secret


def _mac(secret: str, purpose: str, value: str) -> str:
    message = f"flowgate-ui:{purpose}:{value}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def session_csrf(secret: str, token: str) -> str:
    """The CSRF token of a signed-in session."""
    return _mac(secret, "csrf", hashlib.sha256(token.encode()).hexdigest())


def login_csrf(secret: str, nonce: str) -> str:
    """The CSRF token of the sign-in form, bound to the nonce cookie."""
    return _mac(secret, "login", nonce)


def secure_cookies(request: Request) -> bool:
    """Cookies are Secure when flowgate's public URL is https."""
    return runtime_of(request).settings.public_url.startswith("https://")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """A dashboard cookie: HttpOnly, SameSite=Strict, Secure behind https, path /ui."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    """Remove a dashboard cookie."""
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=secure_cookies(request)
    )


class Session:
    """The signed-in user of a dashboard request, with the CSRF token of the session."""

    def __init__(self, caller: Caller, csrf: str) -> None:
        self.caller = caller
        self.csrf = csrf


async def current_session(request: Request) -> Session:
    """The session behind the cookie; :class:`NotSignedIn` when missing or revoked."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotSignedIn()
    try:
        caller = await runtime_of(request).users.authenticate(f"Bearer {token}")
    except Unauthorized:
        raise NotSignedIn() from None
    return Session(caller, session_csrf(server_secret(request), token))


async def checked_session(request: Request) -> Session:
    """As :func:`current_session`, for POSTs: the CSRF token must match (400 otherwise).

    The session is checked before the body is read, so nobody signed out can make the
    server parse an upload.
    """
    session = await current_session(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await read_form(request)
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, session.csrf):
        raise InvalidRequest("The form has expired or did not come from this page: reload it")
    return session


async def read_form(request: Request, limit: int | None = None) -> Any:
    """The POSTed form (parsed once), at most ``limit`` bytes (default: an upload + 1 MiB)."""
    if limit is None:
        limit = runtime_of(request).settings.max_upload_bytes + 1_048_576
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit() or int(declared) > limit:
        raise InvalidRequest(
            f"The form is too large or has no Content-Length: at most {limit} bytes in total"
        )
    return await request.form(max_files=10, max_fields=100)


def new_login_nonce() -> str:
    """A random value for the sign-in form's cookie."""
    return secrets.token_urlsafe(24)


SessionDep = Annotated[Session, Depends(current_session)]
CheckedSessionDep = Annotated[Session, Depends(checked_session)]


def _sign_in_redirect(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    location = "/ui/login"
    if request.method == "GET" and not request.headers.get("hx-request"):
        location += "?next=" + quote(target, safe="")
    if request.headers.get("hx-request"):
        # htmx would swap the sign-in page into a fragment; ask it to navigate instead.
        return Response(status_code=204, headers={"HX-Redirect": location})
    response = RedirectResponse(location, status_code=303)
    if request.cookies.get(SESSION_COOKIE):
        clear_cookie(request, response, SESSION_COOKIE)
    return response


class PageRoute(APIRoute):
    """Dashboard routes: errors become HTML pages, missing sessions go to sign-in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler with the dashboard's error pages and security headers."""
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except NotSignedIn:
                response = _sign_in_redirect(request)
            except FlowgateError as exc:
                response = render(
                    request,
                    "_error.html" if request.headers.get("hx-request") else "error.html",
                    {"status": exc.status, "message": exc.message},
                    status_code=exc.status,
                )
            for name, value in _SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return handler
