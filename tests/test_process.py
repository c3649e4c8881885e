"""The serving process's own settings (flowgate/process.py), each in a fresh interpreter."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from flowgate.process import (
    KEEP_ALIVE_SECONDS,
    MIDDLE_COLLECTION_THRESHOLD,
    YOUNG_COLLECTION_THRESHOLD,
)
from tests.fixtures_sandbox import sandbox_url  # noqa: F401
from tests.gateway import Gateway


def _run(code: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    ).stdout.strip()


def test_garbage_collector_is_frozen_and_collects_less_often() -> None:
    code = (
        "import gc\n"
        "import flowgate.app\n"
        "from flowgate.process import tune_garbage_collector\n"
        "before = gc.get_threshold()\n"
        "tune_garbage_collector()\n"
        "print(gc.get_freeze_count(), *before, *gc.get_threshold())\n"
    )
    frozen, *thresholds = map(int, _run(code).split())
    before, after = thresholds[:3], thresholds[3:]
    assert frozen > 10_000  # the imported app's modules, classes and functions
    assert after == [YOUNG_COLLECTION_THRESHOLD, MIDDLE_COLLECTION_THRESHOLD, before[2]]
    assert after[:2] > before[:2]


_LARGE_BUFFER_FAULTS = (
    "import resource\n"
    "from flowgate.process import tune_memory_allocator\n"
    "def faults_per_round():\n"
    "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "    for _ in range(20):\n"
    "        buffers = [b'x' * 2_000_000 for _ in range(4)]  # an image answer's buffers\n"
    "        del buffers\n"
    "    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 20\n"
    "untuned = faults_per_round()\n"
    "tuned = tune_memory_allocator()\n"
    "faults_per_round()  # the heap grows once\n"
    "print(untuned, tuned, faults_per_round())\n"
)


def test_large_buffers_reuse_memory_instead_of_faulting_in_fresh_pages() -> None:
    """8 MB of buffers per round: ~1,950 page faults each round before, none after."""
    untuned, tuned, after = _run(_LARGE_BUFFER_FAULTS).split()
    assert tuned == "True"
    assert int(untuned) > 1000
    assert int(after) < 50


def test_the_operators_malloc_settings_win() -> None:
    code = "from flowgate.process import tune_memory_allocator\nprint(tune_memory_allocator())\n"
    for variable, value in (
        ("MALLOC_MMAP_THRESHOLD_", "1048576"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576"),
    ):
        assert _run(code, env={**os.environ, variable: value}) == "False", variable


def test_open_file_limit_is_raised_to_the_hard_limit() -> None:
    code = (
        "import resource\n"
        "from flowgate.process import raise_open_file_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "raise_open_file_limit()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    soft, hard = map(int, _run(code).split())
    assert soft == min(hard if hard != -1 else 65536, 65536)
    assert soft > 256


def _idle_connection_survives(base_url: str, seconds: float) -> bool:
    """Two requests on one connection, ``seconds`` apart: does the second get an answer?"""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        first = conn.sock
        time.sleep(seconds)
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            return False
        return conn.sock is first  # answered on the same connection
    finally:
        conn.close()


@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)  # the backend plays no part
def test_servers_keep_idle_connections_longer_than_uvicorns_default(
    gateway: Gateway,
    sandbox_url: str,  # noqa: F811
) -> None:
    """flowgate's and the sandbox's servers keep idle connections (uvicorn alone: 5 s)."""
    assert KEEP_ALIVE_SECONDS > 30  # the upstream pool's expiry (http_pool)
    with ThreadPoolExecutor(2) as pool:
        kept = list(pool.map(_idle_connection_survives, [gateway.base_url, sandbox_url], [6, 6]))
    assert kept == [True, True]
