"""/v1/google-flow/accounts (contract §3, adapted by DESIGN §1.1)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from flowgate.api.body import read_fields
from flowgate.api.deps import CallerDep, RuntimeDep
from flowgate.api.response_schemas import (
    INTEGER,
    STRING,
    TIMESTAMP,
    json_response,
    map_of,
    response_object,
)
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

_TIER = {"type": "string", "enum": ["free", "paid"]}
_HEALTH = {"type": "string", "description": 'OK, or the upstream\'s error ("403 …")'}
_NULLABLE_TIMESTAMP = {**TIMESTAMP, "type": ["string", "null"]}
_ACCOUNT_PROPERTIES: dict[str, dict[str, Any]] = {
    "email": STRING,
    "provider": {"type": "string", "description": "gemini or sandbox"},
    "created": TIMESTAMP,
    "updated": TIMESTAMP,
    "health": _HEALTH,
    "apiKey": {"type": "string", "description": "The key, masked (empty: none)"},
    "baseUrl": {"type": ["string", "null"]},
    "modelMap": {"type": "object", "additionalProperties": STRING},
    "maxConcurrency": INTEGER,
    "tier": _TIER,
    "upscale": {"type": "string", "enum": ["auto", "local"]},
    "healthChecked": _NULLABLE_TIMESTAMP,
    "models": {
        "type": "array",
        "items": STRING,
        "description": "The upstream models the key can use (only when health is OK)",
    },
}
_ACCOUNT_REQUIRED = [
    "email",
    "provider",
    "created",
    "updated",
    "health",
    "apiKey",
    "baseUrl",
    "modelMap",
    "maxConcurrency",
    "tier",
    "upscale",
    "healthChecked",
]
_CREDITS = response_object(
    {
        "credits": {"type": ["integer", "null"], "description": "null: unlimited"},
        "unlimited": {"type": "boolean"},
    },
    required=["credits", "unlimited"],
    description="Your flowgate credits (not the account's)",
)
# After an upsert the key was just checked: health is OK and the models are listed.
_SAVED_ACCOUNT = response_object(
    _ACCOUNT_PROPERTIES,
    required=[*_ACCOUNT_REQUIRED, "models"],
    description="The account (the key masked)",
)
_ADD_RESPONSES = {
    **json_response(201, _SAVED_ACCOUNT, "Created"),
    **json_response(200, _SAVED_ACCOUNT, "Updated (same email)"),
}
_LIST_200 = json_response(
    200,
    map_of(
        response_object(
            {
                "created": TIMESTAMP,
                "health": _HEALTH,
                "provider": STRING,
                "maxConcurrency": INTEGER,
                "tier": _TIER,
                "credits": _CREDITS,
            },
            required=["created", "health", "provider", "maxConcurrency", "tier", "credits"],
        ),
        "Your accounts keyed by full email ({} when none)",
    ),
    "Your accounts",
)
_GET_200 = json_response(
    200,
    response_object(
        {**_ACCOUNT_PROPERTIES, "credits": _CREDITS},
        required=[*_ACCOUNT_REQUIRED, "credits"],
        description="The account (the key masked); models only when health is OK",
    ),
    "The account",
)
_DELETE_200 = json_response(
    200,
    response_object(
        {"message": {"type": "string", "pattern": r"^Google Flow account [\s\S]+ deleted$"}},
        required=["message"],
    ),
    "Deleted",
)

_NO_CAPTCHA = (
    "flowgate calls Google's official APIs and solves no captchas, so {what} does not exist here. "
    "captchaToken, captchaRetry and captchaOrder are accepted on generation calls and ignored."
)


@router.post(
    "/accounts",
    openapi_extra=_ACCOUNT_BODY_SCHEMA,
    responses=_ADD_RESPONSES,
    summary="Add or update an account",
)
async def add_account(request: Request, runtime: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """201 when created, 200 when an existing account (same email) was updated."""
    fields, _files = await read_fields(request, runtime.settings.max_json_bytes)
    view, created = await runtime.accounts.upsert(caller, fields)
    return JSONResponse(view, status_code=201 if created else 200)


@router.get("/accounts", responses=_LIST_200, summary="List accounts, keyed by email")
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


@router.get(
    "/accounts/{email}",
    responses=_GET_200,
    summary="One account, with the models its key can use",
)
async def get_account(email: str, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """404 ``Google Flow account X not found`` when unknown or not the caller's."""
    account = await runtime.accounts.get_account(caller, email)
    balance = await runtime.credits.balance(caller.user_id)
    return {
        **runtime.accounts.render(account, with_models=True),
        "credits": {"credits": balance, "unlimited": balance is None},
    }


@router.delete("/accounts/{email}", responses=_DELETE_200, summary="Delete an account")
async def delete_account(email: str, runtime: RuntimeDep, caller: CallerDep) -> dict[str, str]:
    """``{"message": "Google Flow account X deleted"}``."""
    return {"message": await runtime.accounts.delete_account(caller, email)}
