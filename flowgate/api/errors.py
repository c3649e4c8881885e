"""The one place where flowgate's error hierarchy becomes HTTP responses (contract bodies)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowgate.domain.errors import (
    DatabaseConnectionLost,
    DatabaseLocked,
    FlowgateError,
    InvalidRequest,
    http_status_for_code,
)
from flowgate.observability import request_id_var
from flowgate.storage.database_errors import is_connection_lost, is_database_locked

log = logging.getLogger("flowgate.api")


class ErrorBody(BaseModel):
    """The contract's error envelope: a string from flowgate, or Google's error object."""

    model_config = ConfigDict(extra="allow")

    error: str | dict[str, Any]


_DESCRIPTIONS = {
    400: "Invalid request: the message names the field and the rule",
    401: "Missing or unknown API token",
    402: "User disabled, or not enough credits",
    403: "Another user's job, or a refused upstream",
    404: "Unknown account, media, character or job",
    408: "Polling timeout (the job goes on)",
    409: "The account a video job ran on was deleted while it ran",
    410: "Job expired",
    429: "Upstream quota, no eligible account, or every account busy (Retry-After)",
    500: "Upstream or internal error",
    503: "Upstream unavailable, or flowgate's database not answering or locked (Retry-After)",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"description": "Created (accounts, characters, async videos)"},
    **{status: {"model": ErrorBody, "description": text} for status, text in _DESCRIPTIONS.items()},
    "5XX": {"model": ErrorBody, "description": "An upstream's error passed through"},
}


def error_response(exc: FlowgateError) -> JSONResponse:
    """The contract's body, status and headers for ``exc``."""
    body = exc.body()
    if exc.job_id is not None:
        body = {"jobId": exc.job_id, **body}
    # An upstream can put anything in a code field; only real error statuses go out.
    status = exc.status if 400 <= exc.status <= 599 else http_status_for_code(exc.status)
    return JSONResponse(body, status_code=status, headers=exc.headers())


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(
            str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")
        )
        parts.append(f"{location or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "Invalid request parameters"


def unexpected_error() -> JSONResponse:
    """The answer to an error no handler mapped; call it while handling the exception.

    SQLite's write lock held too long by another program is that program's doing, and a
    database connection that broke in use is the server's or the network's: a 503 that
    says what to do (logged as a warning). Anything else is a 500 with the request's id,
    logged with its traceback.
    """
    request_id = request_id_var.get()
    error = sys.exc_info()[1]
    if is_database_locked(error):
        log.warning("the SQLite database stayed locked by another program; answered 503")
        return error_response(DatabaseLocked())
    if is_connection_lost(error):
        log.warning("the database connection broke while in use; answered 503: %s", error)
        return error_response(DatabaseConnectionLost())
    log.exception("unhandled error")
    return JSONResponse(
        {
            "error": f"Internal error in flowgate (request id {request_id}); the server "
            "log has the details under that id: please report it with the id"
        },
        status_code=500,
        headers={"x-request-id": request_id},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every error, including framework ones, to ``{"error": "..."}`` bodies."""

    @app.exception_handler(FlowgateError)
    async def _flowgate_error(_request: Request, exc: FlowgateError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        if exc.status_code == 404 and message == "Not Found":
            message = "Not found: see /openapi.json for the routes flowgate serves"
        if exc.status_code == 405:
            message = "Method not allowed on this path: see /openapi.json"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return unexpected_error()


ErrorRenderer = Callable[[FlowgateError], JSONResponse]


def route_class_rendering(render: ErrorRenderer) -> type[APIRoute]:
    """An APIRoute class whose errors (auth included) another front door renders its own way."""

    class FrontDoorRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def wrapped(request: Request) -> Response:
                try:
                    return await handler(request)
                except FlowgateError as exc:
                    return render(exc)
                except RequestValidationError as exc:
                    return render(InvalidRequest(_validation_message(exc)))

            return wrapped

    return FrontDoorRoute
