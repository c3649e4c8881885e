"""/v1/google-flow/accounts (contract §3, adapted by DESIGN §1.1)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from flowgate.api.body import read_fields
from flowgate.api.deps import CallerDep, RuntimeDep
from flowgate.domain.errors import NotFound

router = APIRouter(tags=["accounts"])

_ACCOUNT_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["email"],
                    "properties": {
                        "email": {"type": "string", "description": "Label and key of the account"},
                        "provider": {"type": "string", "enum": ["gemini", "sandbox"]},
                        "apiKey": {"type": "string", "description": "Gemini API key"},
                        "baseUrl": {"type": "string", "description": "Override the upstream URL"},
                        "modelMap": {"type": "object", "additionalProperties": {"type": "string"}},
                        "maxConcurrency": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "tier": {"type": "string", "enum": ["free", "paid"]},
                        "upscale": {"type": "string", "enum": ["auto", "local"]},
                    },
                }
            }
        },
    }
}

_NO_CAPTCHA = (
    "flowgate calls Google's official APIs and solves no captchas, so {what} does not exist here. "
    "captchaToken, captchaRetry and captchaOrder are accepted on generation calls and ignored."
)


@router.post("/accounts", openapi_extra=_ACCOUNT_BODY_SCHEMA, summary="Add or update an account")
async def add_account(request: Request, runtime: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """201 when created, 200 when an existing account (same email) was updated."""
    fields, _files = await read_fields(request, runtime.settings.max_json_bytes)
    view, created = await runtime.accounts.upsert(caller, fields)
    return JSONResponse(view, status_code=201 if created else 200)


@router.get("/accounts", summary="List accounts, keyed by email")
async def list_accounts(runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """``{}`` when the caller has none."""
    balance = await runtime.credits.balance(caller.user_id)
    return await runtime.accounts.list_accounts(caller, balance)


# One route per method: a route with two methods gets one operationId for both,
# a duplicate in /openapi.json.
@router.get("/accounts/captcha-providers", summary="Not offered: flowgate solves no captchas")
@router.post("/accounts/captcha-providers", summary="Not offered: flowgate solves no captchas")
async def captcha_providers(caller: CallerDep) -> None:
    """Always 404 with an explanation."""
    raise NotFound(_NO_CAPTCHA.format(what="captcha-providers"))


@router.get("/accounts/captcha-stats", summary="Not offered: flowgate solves no captchas")
async def captcha_stats(caller: CallerDep) -> None:
    """Always 404 with an explanation."""
    raise NotFound(_NO_CAPTCHA.format(what="captcha-stats"))


@router.get("/accounts/{email}", summary="One account, with the models its key can use")
async def get_account(email: str, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """404 ``Google Flow account X not found`` when unknown or not the caller's."""
    account = await runtime.accounts.get_account(caller, email)
    balance = await runtime.credits.balance(caller.user_id)
    return {
        **runtime.accounts.render(account, with_models=True),
        "credits": {"credits": balance, "unlimited": balance is None},
    }


@router.delete("/accounts/{email}", summary="Delete an account")
async def delete_account(email: str, runtime: RuntimeDep, caller: CallerDep) -> dict[str, str]:
    """``{"message": "Google Flow account X deleted"}``."""
    return {"message": await runtime.accounts.delete_account(caller, email)}
