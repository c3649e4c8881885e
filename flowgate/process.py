"""Settings of the serving processes themselves (not of the app): connections, files, GC."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import resource

# flowgate's server and the sandbox's keep idle client connections this long, as nginx
# does by default (uvicorn's own default is 5 s). A server that closes them sooner than
# its clients' pools expire them (flowgate's upstream pool: 30 s) races those clients:
# a pooled connection can be closed just as it is reused, and that call fails.
KEEP_ALIVE_SECONDS = 75

# A young-generation collection every 10,000 allocations instead of CPython's 700: one
# image request allocates a few thousand objects, so the default ran a collection for
# nearly every request and an older-generation pass every few dozen.
YOUNG_COLLECTION_THRESHOLD = 10_000

# A middle-generation collection every 100 young ones instead of CPython's 10. Objects
# that survive a young collection are walked by every middle one until they are
# promoted; while 2,000 requests wait on the upstream, they are those requests' own
# objects, alive until the answers come back. Every 10th young collection then walked
# them all (five collections of 40-90 ms as bench/held.py's burst came in, 2 cores)
# and freed next to nothing (0-17 objects each). Cycles that outlive a young
# collection are now freed after ~1,000,000 allocations instead of ~100,000.
MIDDLE_COLLECTION_THRESHOLD = 100


# glibc's malloc: requests of this size or more get pages of their own from the kernel
# (mmap), given back on free. Its default starts at 128 KiB and adapts, and it trims the
# heap once 2x that lies free at its top. An image answer passes through several
# buffers of 1.5-10 MB (the HTTP body, its join, the decoded JSON string, the image),
# so every request took fresh pages and faulted each one in: ~2,600 page faults per
# 1.5 MB image and ~35 % of flowgate's CPU for it (bench/overhead.py --image-kb 1500).
# With 32 MiB (the most glibc accepts) they come from the heap and are reused.
LARGE_ALLOCATION_BYTES = 32 * 1024 * 1024
# Free memory the heap keeps at its top before giving it back to the kernel: room for
# the buffers of a few concurrent image answers.
HEAP_TRIM_BYTES = 32 * 1024 * 1024
# glibc's <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# How an operator gives glibc's malloc these thresholds; theirs win.
_MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_MALLOC_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")


def tune_memory_allocator() -> bool:
    """Let glibc's malloc reuse large buffers instead of mapping fresh pages for each.

    Does nothing (False) on another C library, or when the environment already sets
    malloc's thresholds (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or
    their names in ``GLIBC_TUNABLES``).
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (
        platform.libc_ver()[0] != "glibc"
        or any(os.environ.get(name) for name in _MALLOC_VARIABLES)
        or any(name in tunables for name in _MALLOC_TUNABLES)
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 on success, 0 for a value it refuses.
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_BYTES)
    )


def raise_open_file_limit() -> None:
    """Raise the soft limit on open files to the hard limit (at most 65,536)."""
    # Each held request needs a client socket and an upstream socket; 1024 is too few.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 65536), hard))


def tune_garbage_collector() -> None:
    """Freeze what exists now and make collections rarer; call once, after the app is built.

    Modules, classes, routes and compiled statements live as long as the process; frozen,
    they are no longer walked by every full collection. Under 200 concurrent requests the
    collector took 0.4 ms per request before this and under 0.1 ms after (bench/phases.py);
    in bench/held.py's burst of 2,000, 0.41-0.62 s before the middle threshold and 0.19 s after.
    """
    gc.collect()
    gc.freeze()
    *_, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, MIDDLE_COLLECTION_THRESHOLD, old)
