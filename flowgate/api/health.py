"""/healthz: is this instance able to serve (database reachable)?"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from flowgate.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness and database reachability")
async def healthz(runtime: RuntimeDep) -> JSONResponse:
    """200 ``{"status": "ok", …, "instance": id}`` or 503 naming what failed."""
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready"
        return JSONResponse({"status": "error", "database": str(exc)[:200]}, status_code=503)
    settings = runtime.settings
    return JSONResponse(
        {
            "status": "ok",
            "database": "ok",
            "sandbox": settings.sandbox,
            "instance": settings.effective_instance_id,
        }
    )
