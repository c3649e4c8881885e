"""/v1/google-flow/jobs/{jobId} and the webhook secret."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from flowgate.api.deps import CallerDep, RuntimeDep
from flowgate.api.response_schemas import (
    INTEGER,
    JOB_RECORD,
    NUMBER,
    STRING,
    TIMESTAMP,
    json_response,
    map_of,
    response_object,
)
from flowgate.services.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

router = APIRouter(tags=["jobs"])

_SUMMARY = map_of(
    response_object(
        {
            "executing": INTEGER,
            "completed": INTEGER,
            "failed": INTEGER,
            "rateLimited": INTEGER,
            "avgResponseTime": {"type": "number", "description": "ms, successful attempts"},
            "score": {"type": "integer", "description": "executing + 10 failed + 20 rateLimited"},
        },
        required=["executing", "completed", "failed", "rateLimited", "avgResponseTime", "score"],
    ),
    "Per account (every account, keyed by email): the last 15 minutes",
)
_EXECUTING = map_of(
    response_object(
        {
            "email": {"type": ["string", "null"], "description": "null: no account yet"},
            "timestamp": {"type": "integer", "description": "Created, Unix ms"},
            "elapsed": {"type": "string", "pattern": r"^[0-9]+:[0-5][0-9]$"},
        },
        required=["email", "timestamp", "elapsed"],
    ),
    "Running jobs, keyed by job id (options executing and history)",
)
_HISTORY = map_of(
    response_object(
        {
            "email": STRING,
            "timestamp": {"type": "integer", "description": "Finished, Unix ms"},
            "httpStatus": INTEGER,
            "responseTime": {**NUMBER, "description": "ms"},
        },
        required=["email", "timestamp", "httpStatus", "responseTime"],
    ),
    "The 10 latest finished attempts of the last 15 minutes, keyed by job id "
    "(a second attempt of a job: suffixed -http:STATUS) (option history)",
)
_SECTION = response_object(
    {"summary": _SUMMARY, "executing": _EXECUTING, "history": _HISTORY},
    required=["summary"],
    description="summary; executing with options executing and history; history with history",
)
_STATS_200 = json_response(
    200,
    response_object(
        {
            "emails": {
                "type": "array",
                "items": STRING,
                "description": "The healthy accounts",
            },
            "images": _SECTION,
            "videos": _SECTION,
            "combined": response_object({"summary": _SUMMARY}, required=["summary"]),
            "quarantine": map_of(
                {
                    "type": "array",
                    "items": response_object(
                        {
                            "model": {"type": "string", "description": "A model, or * (all)"},
                            "reason": STRING,
                            "until": TIMESTAMP,
                        },
                        required=["model", "reason", "until"],
                    ),
                },
                "flowgate's addition: active quarantine entries, keyed by account email",
            ),
        },
        required=["emails", "images", "videos", "combined", "quarantine"],
    ),
    "Load-balancing statistics (contract J2)",
)
_SECRET_200 = json_response(
    200,
    response_object(
        {
            "secret": STRING,
            "algorithm": {"type": "string", "enum": ["HMAC-SHA256"]},
            "signatureHeader": STRING,
            "timestampHeader": STRING,
            "signedContent": STRING,
        },
        required=["secret", "algorithm", "signatureHeader", "timestampHeader", "signedContent"],
    ),
    "The webhook secret and how signatures are made",
)


@router.get(
    "/jobs", responses=_STATS_200, summary="Load-balancing statistics of the last 15 minutes"
)
@router.get("/jobs/", include_in_schema=False)
async def job_stats(
    runtime: RuntimeDep, caller: CallerDep, options: str | None = None
) -> dict[str, Any]:
    """``options`` = summary (default) | executing | history."""
    return await runtime.job_stats.stats(caller, options)


@router.get(
    "/jobs/{job_id}",
    responses=json_response(200, JOB_RECORD, "The job record"),
    summary="A job record",
)
async def get_job(job_id: str, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """400 malformed id, 403 another user's, 404 unknown, 410 expired."""
    return await runtime.jobs.get(caller, job_id)


@router.get(
    "/webhooks/secret", responses=_SECRET_200, summary="The secret that signs your webhooks"
)
async def webhook_secret(caller: CallerDep) -> dict[str, str]:
    """How to verify a webhook: HMAC-SHA256 of ``"{timestamp}.{body}"`` with this secret."""
    return {
        "secret": caller.webhook_secret,
        "algorithm": "HMAC-SHA256",
        "signatureHeader": SIGNATURE_HEADER,
        "timestampHeader": TIMESTAMP_HEADER,
        "signedContent": "{timestamp}.{raw body}",
    }
