"""Benchmark: flowgate's local upscale (Lanczos to a 2048/4096-px long side, JPEG q90).

What it times is exactly what ``POST /images/upscale`` runs in a worker thread when no
upstream can upscale: ``flowgate.media.images.lanczos_jpeg`` on a stored 1K PNG (decode,
Lanczos resample, JPEG encode). Sources are sandbox pictures at the sizes Nano Banana
returns at 1K (16:9 → 1024x576, 1:1 → 1024x1024), so they have gradients, shapes and text.

    .venv/bin/python bench/upscale_local.py [--runs 15] [--threads 2]

Prints one table: per-call latency (median and max of ``--runs`` sequential calls after one
warm-up), and throughput with ``--threads`` calls running at once (Pillow releases the GIL
while resampling and encoding, as it does under ``asyncio.to_thread`` in the server).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import PIL

from flowgate.domain.upscale_request import UPSCALE_LONG_SIDES, upscaled_size
from flowgate.media.images import lanczos_jpeg
from flowgate.sandbox.drawing import PictureOrder, draw_picture

SOURCES = {"16:9": (1024, 576), "1:1": (1024, 1024)}


def source_png(width: int, height: int) -> bytes:
    """A 1K sandbox picture, PNG, as a generated image is stored."""
    order = PictureOrder(
        model_id="gemini-3.1-flash-image-preview",
        prompt="a lighthouse on a cliff at dusk, benchmark source",
        seed=7,
        width=width,
        height=height,
        size_label="1K",
        ratio_label=f"{width}:{height}",
    )
    return draw_picture(order)


def time_calls(data: bytes, size: tuple[int, int], runs: int) -> list[float]:
    """Seconds of ``runs`` sequential calls (after one warm-up)."""
    lanczos_jpeg(data, *size)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        lanczos_jpeg(data, *size)
        timings.append(time.perf_counter() - started)
    return timings


def throughput(data: bytes, size: tuple[int, int], runs: int, threads: int) -> float:
    """Upscales per second with ``threads`` running at once."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: lanczos_jpeg(data, *size), range(runs)))
        return runs / (time.perf_counter() - started)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, Pillow "
        f"{PIL.__version__}, {os.cpu_count()} CPUs, runs={args.runs}, threads={args.threads}"
    )
    print("| source | resolution | output | JPEG size | median ms | max ms | per s (threads) |")
    print("|---|---|---|---|---|---|---|")
    for ratio, (width, height) in SOURCES.items():
        data = source_png(width, height)
        for resolution, long_side in UPSCALE_LONG_SIDES.items():
            size = upscaled_size(width, height, long_side)
            out = lanczos_jpeg(data, *size)
            timings = time_calls(data, size, args.runs)
            rate = throughput(data, size, args.runs, args.threads)
            print(
                f"| {ratio} {width}x{height} | {resolution} | {size[0]}x{size[1]} "
                f"| {len(out) / 1e6:.2f} MB | {statistics.median(timings) * 1000:.0f} "
                f"| {max(timings) * 1000:.0f} | {rate:.1f} |"
            )


if __name__ == "__main__":
    main()
