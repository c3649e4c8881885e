"""FastAPI dependencies: the runtime and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
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


class BearerCaller(SecurityBase):
    """The user behind ``Authorization: Bearer``; 401/402 otherwise.

    A security scheme, so OpenAPI documents the token once (``bearer``) and generated
    clients take it as configuration. It reads the header itself: a declared header
    parameter costs FastAPI a validation on every request (~0.1 M instructions).
    """

    def __init__(self) -> None:
        self.model = HTTPBearerModel(description="A flowgate API token")
        self.scheme_name = "bearer"

    async def __call__(self, request: Request) -> Caller:
        return await runtime_of(request).users.authenticate(request.headers.get("authorization"))


get_caller = BearerCaller()
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CallerDep = Annotated[Caller, Depends(get_caller)]
