"""Users, tokens and accounts through a real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from urllib.parse import quote

import httpx

from tests.gateway import Gateway

GEMINI_KEY = "AIzaSyTEST-" + "k" * 20 + "x9"


def _email() -> str:
    return f"acct-{uuid.uuid4().hex[:8]}@example.com"


def _gemini_body(gw: Gateway, email: str, key: str = GEMINI_KEY) -> dict[str, object]:
    # A real Gemini-provider account pointed at the sandbox, so the real key check runs.
    return {
        "email": email,
        "provider": "gemini",
        "apiKey": key,
        "baseUrl": f"{gw.base_url}/sandbox/gemini",
    }


def test_missing_or_bad_token_is_401_exactly(gateway: Gateway) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
    ):
        resp = httpx.get(f"{gateway.base_url}/v1/google-flow/accounts", headers=headers)
        assert resp.status_code == 401
        assert resp.json() == {"error": "Unauthorized"}


def test_bootstrap_user_has_sandbox_account(gateway: Gateway) -> None:
    assert gateway.token.startswith("fg_")
    with gateway.client() as client:
        accounts = client.get("/v1/google-flow/accounts").json()
    assert accounts["sandbox@flowgate.local"]["provider"] == "sandbox"
    assert accounts["sandbox@flowgate.local"]["health"] == "OK"


def test_new_user_starts_with_no_accounts(gateway: Gateway) -> None:
    token = gateway.new_user()
    with gateway.client(token) as client:
        resp = client.get("/v1/google-flow/accounts")
    assert resp.status_code == 200
    assert resp.json() == {}


def test_disabled_user_gets_402_and_enable_restores(gateway: Gateway) -> None:
    name = f"dis-{uuid.uuid4().hex[:6]}"
    token = gateway.new_user(name)
    gateway.cli("users", "disable", name)
    with gateway.client(token) as client:
        # The auth cache lives at most one second.
        import time

        time.sleep(1.1)
        resp = client.get("/v1/google-flow/accounts")
        assert resp.status_code == 402
        assert resp.json() == {"error": "Account has no subscription or subscription expired"}
        gateway.cli("users", "enable", name)
        time.sleep(1.1)
        assert client.get("/v1/google-flow/accounts").status_code == 200


def test_add_gemini_account_then_update(gateway: Gateway) -> None:
    token = gateway.new_user()
    email = _email()
    with gateway.client(token) as client:
        created = client.post("/v1/google-flow/accounts", json=_gemini_body(gateway, email))
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["email"] == email
        assert body["health"] == "OK"
        assert body["provider"] == "gemini"
        assert body["apiKey"] == "AIza…x9"
        assert GEMINI_KEY not in created.text
        assert "gemini-3-pro-image-preview" in body["models"]

        updated = client.post(
            "/v1/google-flow/accounts",
            json={
                "email": email,
                "provider": "gemini",
                "maxConcurrency": 7,
                "baseUrl": f"{gateway.base_url}/sandbox/gemini",
            },
        )
        assert updated.status_code == 200, updated.text
        assert updated.json()["maxConcurrency"] == 7
        assert updated.json()["apiKey"] == "AIza…x9"  # key kept when not resent

        listing = client.get("/v1/google-flow/accounts").json()
        assert set(listing) == {email}
        assert listing[email]["health"] == "OK"
        assert listing[email]["provider"] == "gemini"
        assert "created" in listing[email]

        one = client.get(f"/v1/google-flow/accounts/{quote(email)}")
        assert one.status_code == 200
        assert "imagen-4.0-generate-001" in one.json()["models"]
        assert GEMINI_KEY not in one.text


def test_rejected_key_is_400_with_upstream_message(gateway: Gateway) -> None:
    token = gateway.new_user()
    with gateway.client(token) as client:
        resp = client.post(
            "/v1/google-flow/accounts",
            json=_gemini_body(gateway, _email(), key="invalid-key-123456"),
        )
        assert resp.status_code == 400
        assert "API key not valid" in resp.json()["error"]
        assert client.get("/v1/google-flow/accounts").json() == {}


def test_cookies_body_explains_official_credentials(gateway: Gateway) -> None:
    with gateway.client() as client:
        resp = client.post("/v1/google-flow/accounts", json={"cookies": "HSID\tabc\t.google.com"})
    assert resp.status_code == 400
    message = resp.json()["error"]
    assert "official" in message and "apiKey" in message


def test_account_validation_errors_name_the_field(gateway: Gateway) -> None:
    cases = [
        ({"provider": "gemini", "apiKey": GEMINI_KEY}, "email"),
        ({"email": _email(), "provider": "openai"}, "provider"),
        ({"email": _email(), "provider": "gemini"}, "apiKey"),
        ({"email": _email(), "provider": "sandbox", "maxConcurrency": 0}, "maxConcurrency"),
        ({"email": _email(), "provider": "sandbox", "modelMap": ["x"]}, "modelMap"),
        ({"email": _email(), "provider": "sandbox", "tier": "gold"}, "tier"),
        ({"email": _email(), "provider": "sandbox", "apikey": "x"}, "unknown field"),
    ]
    with gateway.client() as client:
        for body, word in cases:
            resp = client.post("/v1/google-flow/accounts", json=body)
            assert resp.status_code == 400, body
            assert word in resp.json()["error"], (body, resp.json())
        for raw, ctype in (
            (b"not json", "application/json"),
            (b"[1,2]", "application/json"),
            (b"", "application/json"),
            (b"a=b", "text/plain"),
        ):
            resp = client.post(
                "/v1/google-flow/accounts", content=raw, headers={"Content-Type": ctype}
            )
            assert resp.status_code == 400
            assert isinstance(resp.json()["error"], str)


def test_multipart_account_form(gateway: Gateway) -> None:
    token = gateway.new_user()
    email = _email()
    with gateway.client(token) as client:
        resp = client.post(
            "/v1/google-flow/accounts",
            data={
                "email": email,
                "provider": "sandbox",
                "maxConcurrency": "2",
                "modelMap": '{"imagen-4": "imagen-4.0-fast-generate-001"}',
            },
            files={"unused": ("x.txt", b"x")},
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["maxConcurrency"] == 2
        assert resp.json()["modelMap"] == {"imagen-4": "imagen-4.0-fast-generate-001"}


def test_unknown_and_foreign_accounts_are_404(gateway: Gateway) -> None:
    owner = gateway.new_user()
    other = gateway.new_user()
    email = _email()
    with gateway.client(owner) as client:
        assert (
            client.post(
                "/v1/google-flow/accounts", json={"email": email, "provider": "sandbox"}
            ).status_code
            == 201
        )
    with gateway.client(other) as client:
        for method in ("GET", "DELETE"):
            resp = client.request(method, f"/v1/google-flow/accounts/{quote(email)}")
            assert resp.status_code == 404
            assert resp.json() == {"error": f"Google Flow account {email} not found"}
        assert client.get("/v1/google-flow/accounts").json() == {}
    with gateway.client(owner) as client:
        deleted = client.delete(f"/v1/google-flow/accounts/{quote(email)}")
        assert deleted.status_code == 200
        assert deleted.json() == {"message": f"Google Flow account {email} deleted"}
        assert client.get(f"/v1/google-flow/accounts/{quote(email)}").status_code == 404


def test_captcha_endpoints_are_404_with_explanation(gateway: Gateway) -> None:
    with gateway.client() as client:
        for method, path in (
            ("GET", "captcha-providers"),
            ("POST", "captcha-providers"),
            ("GET", "captcha-stats"),
        ):
            resp = client.request(method, f"/v1/google-flow/accounts/{path}")
            assert resp.status_code == 404
            assert "captcha" in resp.json()["error"]


def test_secrets_encrypted_at_rest_and_absent_from_logs(gateway: Gateway) -> None:
    token = gateway.new_user()
    key = "AIzaSySECRET-" + uuid.uuid4().hex
    with gateway.client(token) as client:
        resp = client.post("/v1/google-flow/accounts", json=_gemini_body(gateway, _email(), key))
        assert resp.status_code == 201
    if gateway.backend == "sqlite":
        with sqlite3.connect(gateway.data_dir / "flowgate.db") as db:
            dump = "\n".join(db.iterdump())
    else:
        name = gateway.database_url.rsplit("/", 1)[1]
        dump = subprocess.run(
            ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert "secret_encrypted" in dump
    assert key not in dump
    assert key not in "".join(gateway.output)


def test_healthz_and_openapi(gateway: Gateway) -> None:
    health = httpx.get(f"{gateway.base_url}/healthz")
    assert health.status_code == 200
    assert health.json()["database"] == "ok"
    assert health.headers["x-request-id"]
    spec = httpx.get(f"{gateway.base_url}/openapi.json").json()
    for path in (
        "/v1/google-flow/accounts",
        "/v1/google-flow/accounts/{email}",
        "/media/{media_id}",
        "/healthz",
    ):
        assert path in spec["paths"], path
    # Client generators name methods after operationIds: each must be unique and stable.
    operation_ids = [
        operation["operationId"]
        for methods in spec["paths"].values()
        for operation in methods.values()
    ]
    assert len(operation_ids) == len(set(operation_ids)), sorted(operation_ids)
    assert "get_media_media__media_id__head" in operation_ids


def test_openapi_declares_the_token_as_a_security_scheme(gateway: Gateway) -> None:
    # Generated clients take a scheme's token once, as configuration; a header parameter
    # would make every method take it as an argument.
    spec = httpx.get(f"{gateway.base_url}/openapi.json").json()
    assert spec["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer", "description": "A flowgate API token"},
        "x-api-key": {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "A flowgate API token",
        },
    }
    secured = {
        (method, path): operation["security"]
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
        if "security" in operation
    }
    assert secured[("post", "/v1/google-flow/images")] == [{"bearer": []}]
    assert secured[("post", "/v1/images/generations")] == [{"bearer": []}]
    assert secured[("post", "/api/v1/client/job/CreateTask")] == [{"x-api-key": []}]
    assert ("get", "/healthz") not in secured
    header_params = [
        (path, param["name"])
        for path, methods in spec["paths"].items()
        for operation in methods.values()
        for param in operation.get("parameters", [])
        if param["in"] == "header" and param["name"].lower() in ("authorization", "x-api-key")
    ]
    assert header_params == []
    # The documented scheme is the one enforced: no token, 401 on every secured GET.
    for (method, path), _ in secured.items():
        if method == "get" and "{" not in path:
            assert httpx.get(f"{gateway.base_url}{path}").status_code == 401, path
