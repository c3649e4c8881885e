"""FastAPI dependencies: the runtime and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

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


async def get_caller(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer API token")] = None,
) -> Caller:
    """The user behind ``Authorization: Bearer``; 401/402 otherwise."""
    return await runtime_of(request).users.authenticate(authorization)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CallerDep = Annotated[Caller, Depends(get_caller)]
