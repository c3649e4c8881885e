"""The serving process's own settings (flowgate/process.py), each in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

from flowgate.process import YOUNG_COLLECTION_THRESHOLD


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
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
    assert after == [YOUNG_COLLECTION_THRESHOLD, before[1], before[2]]


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
