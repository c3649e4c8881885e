"""Schemathesis against the running server's ``/openapi.json``: every /v1/google-flow route.

With a valid token, generated requests (schema-valid and schema-invalid) must never get
a 5xx, every response must match the OpenAPI document (status code documented, body
schema, content type), and schema-invalid data must be refused. Bounded and
deterministic for CI (fixed seed, ``--generation-deterministic``, 25 examples per
operation, one worker, no time budget: the same 1,784 cases every run, ~25 s per
backend); ``python -m bench.fuzz`` runs many more.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from bench.fuzz import DEFAULT_CHECKS, st_command
from tests.gateway import Gateway, free_port

MAX_EXAMPLES = 25
# No time budget (it would make schemathesis repeat fuzzing until spent): the run is a fixed
# set of cases; this only stops a hung run.
MAX_SECONDS = 150
SEED = 20261122


@pytest.fixture(scope="session")
def fast_sandbox() -> Iterator[str]:
    """A standalone sandbox with one fixed picture and 0.2 s videos, so valid cases are quick."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "flowgate.sandbox.server", "--port", str(port)),
            *("--fixed-image", "--video-seconds", "0.2", "--log-level", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/_sandbox/calls", timeout=0.5)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the fuzzing sandbox did not start") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.kill()
        proc.wait()


def _fuzz_user(gateway: Gateway, sandbox_url: str) -> str:
    token = gateway.new_user(f"fuzz-{uuid.uuid4().hex[:6]}")
    body = {
        "email": "fuzz@example.com",
        "provider": "sandbox",
        "apiKey": "sandbox-fuzz",
        "baseUrl": sandbox_url,
        "maxConcurrency": 20,
    }
    with gateway.client(token) as client:
        assert client.post("/v1/google-flow/accounts", json=body).status_code == 201
    return token


def test_no_server_errors_and_responses_match_the_schema(
    gateway: Gateway, fast_sandbox: str
) -> None:
    token = _fuzz_user(gateway, fast_sandbox)
    command = st_command(
        gateway.base_url,
        token,
        max_examples=MAX_EXAMPLES,
        max_time=None,
        checks=DEFAULT_CHECKS,
        seed=SEED,
        phases="examples,coverage,fuzzing",
        workers=1,
    )
    # Deterministic generation (which implies no example database).
    at = command.index("--generation-database")
    command[at : at + 2] = ["--generation-deterministic"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=MAX_SECONDS, check=False
    )
    report = result.stdout[result.stdout.find("FAILURES") :] if result.returncode else ""
    assert result.returncode == 0, (report or result.stdout + result.stderr)[-20_000:]
    assert "Tested: " in result.stdout, result.stdout[-3000:]
