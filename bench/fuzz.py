"""Fuzz: schemathesis against ``/openapi.json`` of a running flowgate, every /v1/google-flow route.

Starts a standalone sandbox (``--fixed-image``, 0.2 s videos) and a flowgate server,
creates a user with one sandbox account on it, then runs ``st run`` with that user's
token on every operation under ``/v1/google-flow`` (positive and negative data,
examples, coverage and fuzzing phases). The CI test (``tests/test_fuzz_schema.py``)
runs a small, deterministic version of the same; this one runs many more examples.

    .venv/bin/python -m bench.fuzz [--max-examples 200] [--max-time 600] [--phases …]
        [--checks not_a_server_error,response_schema_conformance,content_type_conformance]
        [--backend sqlite|postgres] [--report DIR]

The default ``--checks`` (``DEFAULT_CHECKS``) include status-code conformance: every
status must be documented in the OpenAPI document. ``--checks all`` (what ``st run``
itself runs when not told, in schemathesis 4) adds positive-data acceptance, the header
and method checks and those that need stateful links (use_after_free,
ensure_resource_availability, object_level_authorization). Exits with schemathesis's
status (0: nothing found).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from bench.servers import Flowgate, Sandbox, Scratch, machine_line

DEFAULT_CHECKS = (
    "not_a_server_error,response_schema_conformance,content_type_conformance,"
    "status_code_conformance,negative_data_rejection,ignored_auth"
)


def st_command(
    base_url: str,
    token: str,
    *,
    max_examples: int,
    max_time: int | None,
    checks: str,
    seed: int,
    phases: str = "examples,coverage,fuzzing,stateful",
    workers: int = 2,
) -> list[str]:
    """The ``st run`` command line for ``base_url`` with ``token``.

    With ``max_time`` the fuzzing and stateful phases repeat until that many seconds are
    spent; without it each operation gets ``max_examples`` once (a deterministic run).
    """
    # The venv's own ``st`` first: another ``st`` on PATH may be a different program.
    beside = Path(sys.executable).parent / "st"
    st = str(beside) if beside.exists() else shutil.which("st") or "st"
    budget = ["--max-time", str(max_time)] if max_time else []
    return [
        st,
        "run",
        f"{base_url}/openapi.json",
        "--include-path-regex",
        "^/v1/google-flow",
        "-H",
        f"Authorization: Bearer {token}",
        "--checks",
        checks,
        "--phases",
        phases,
        "--max-examples",
        str(max_examples),
        *budget,
        "--seed",
        str(seed),
        "--request-timeout",
        "60",
        "--workers",
        str(workers),
        "--suppress-health-check",
        "all",
        "--continue-on-failure",
        "--no-color",
        "--generation-database",
        "none",
    ]


def main() -> None:
    """Start the servers, run schemathesis, exit with its status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument(
        "--max-time", type=int, default=600, help="seconds, whole run (0: no budget)"
    )
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    parser.add_argument("--checks", default=DEFAULT_CHECKS)
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--report", type=Path, help="also write junit and ndjson reports here")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    with Scratch() as work, Sandbox(work, video_seconds=0.2).start() as sandbox:
        # Poll the sandbox's 0.2 s videos as often as the test gateway does, not every 5 s:
        # every valid POST /videos waits for its clips.
        fast_polls = {"FLOWGATE_VIDEO_POLL_SECONDS": "0.3"}
        with Flowgate(work, backend=args.backend, env=fast_polls).start() as gateway:
            token = gateway.new_user("fuzz")
            gateway.add_sandbox_account(
                token, "fuzz@example.com", sandbox, api_key="sandbox-fuzz", max_concurrency=20
            )
            command = st_command(
                gateway.base_url,
                token,
                max_examples=args.max_examples,
                max_time=args.max_time or None,
                checks=args.checks,
                seed=args.seed,
                phases=args.phases,
            )
            if args.report:
                args.report.mkdir(parents=True, exist_ok=True)
                command += ["--report", "junit,ndjson", "--report-dir", str(args.report)]
            result = subprocess.run(command, check=False, timeout=(args.max_time or 3600) + 300)
            errors = [
                line
                for line in gateway.log.read_text(errors="replace").splitlines()
                if "Traceback" in line or "unhandled error" in line
            ]
            print(f"server log: {len(errors)} unhandled errors")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
