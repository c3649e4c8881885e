"""FastAPI dependencies: the runtime and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.openapi.models import SecurityBase as SecurityBaseModel
from fastapi.security.base import SecurityBase

from flowgate.runtime import Runtime
from flowgate.services.users import Caller


def runtime_of(request: Request) -> Runtime:
    """The instance's wired services."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    """:func:`runtime_of` as a dependency (``async``: FastAPI runs plain ``def``
    dependencies in a worker thread, a thread hop on every request)."""
    return runtime_of(request)


class TokenCaller(SecurityBase):
    """The user whose flowgate API token the request carries in ``header``; 401/402
    otherwise.

    A security scheme, so OpenAPI documents the token once and generated clients take
    it as configuration. It reads the header itself: a declared header parameter costs
    FastAPI a validation on every request (~0.1 M instructions).
    """

    def __init__(self, model: SecurityBaseModel, scheme_name: str, header: str) -> None:
        self.model = model
        self.scheme_name = scheme_name
        self._header = header
        # ``Authorization`` carries its scheme; a key header carries the bare token.
        self._prefix = "" if header == "authorization" else "Bearer "

    async def __call__(self, request: Request) -> Caller:
        value = request.headers.get(self._header)
        return await runtime_of(request).users.authenticate(
            f"{self._prefix}{value}" if value and self._prefix else value
        )


get_caller = TokenCaller(
    HTTPBearerModel(description="A flowgate API token"), "bearer", header="authorization"
)
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CallerDep = Annotated[Caller, Depends(get_caller)]
