"""/v1/google-flow/jobs/{jobId} and the webhook secret."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from flowgate.api.deps import CallerDep, RuntimeDep
from flowgate.services.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

router = APIRouter(tags=["jobs"])


@router.get("/jobs", summary="Load-balancing statistics of the last 15 minutes")
@router.get("/jobs/", include_in_schema=False)
async def job_stats(
    runtime: RuntimeDep, caller: CallerDep, options: str | None = None
) -> dict[str, Any]:
    """``options`` = summary (default) | executing | history."""
    return await runtime.job_stats.stats(caller, options)


@router.get("/jobs/{job_id}", summary="A job record")
async def get_job(job_id: str, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """400 malformed id, 403 another user's, 404 unknown, 410 expired."""
    return await runtime.jobs.get(caller, job_id)


@router.get("/webhooks/secret", summary="The secret that signs your webhooks")
async def webhook_secret(caller: CallerDep) -> dict[str, str]:
    """How to verify a webhook: HMAC-SHA256 of ``"{timestamp}.{body}"`` with this secret."""
    return {
        "secret": caller.webhook_secret,
        "algorithm": "HMAC-SHA256",
        "signatureHeader": SIGNATURE_HEADER,
        "timestampHeader": TIMESTAMP_HEADER,
        "signedContent": "{timestamp}.{raw body}",
    }
