"""Run the sandbox on its own: ``python -m flowgate.sandbox.server --port 8090``.

``flowgate sandbox --port N`` calls :func:`run`.
"""

from __future__ import annotations

import argparse

import uvicorn

from flowgate.process import KEEP_ALIVE_SECONDS, tune_memory_allocator
from flowgate.sandbox.app import create_sandbox_app
from flowgate.sandbox.config import SandboxConfig


def run(
    host: str = "127.0.0.1",
    port: int = 8090,
    config: SandboxConfig | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve a sandbox app with uvicorn until interrupted (blocks)."""
    tune_memory_allocator()  # its answers carry multi-megabyte images too
    uvicorn.run(
        create_sandbox_app(config),
        host=host,
        port=port,
        log_level=log_level,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


def main(argv: list[str] | None = None) -> None:
    """Command line of ``python -m flowgate.sandbox.server``."""
    parser = argparse.ArgumentParser(description="flowgate sandbox: an imitation Gemini API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--delay-ms", type=int, default=0, help="latency added to generations")
    parser.add_argument(
        "--fixed-image", action="store_true", help="benchmark mode: one pre-rendered picture"
    )
    parser.add_argument(
        "--fixed-image-kb",
        type=int,
        default=0,
        help="with --fixed-image: pad the picture to this size (a real image: ~1500)",
    )
    parser.add_argument(
        "--video-seconds", type=float, default=2.0, help="how long a Veo operation runs"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = SandboxConfig(
        default_delay_ms=args.delay_ms,
        fixed_image=args.fixed_image,
        fixed_image_bytes=args.fixed_image_kb * 1000,
        video_seconds=args.video_seconds,
    )
    run(args.host, args.port, config, log_level=args.log_level)


if __name__ == "__main__":
    main()
