"""Profile: CPU of each step of a sync image request, flowgate run in this process.

A profiler's samples of an asyncio server are hard to read (every coroutine resumes
from the event loop, and SQLite work runs on aiosqlite's thread), so this tool
measures the steps themselves: it wraps the methods a ``POST /images`` goes through
with timers of process CPU time (every thread, user + system) and wall time, serves
flowgate with uvicorn in this process, and sends requests one at a time from the
load generator in another process (concurrency 1, so each step's CPU is its own).
The upstream is a standalone sandbox in ``--fixed-image`` mode.

    .venv/bin/python -m bench.phases [--seconds 15] [--backend sqlite|postgres]

Prints, per request: CPU ms and wall ms of each step (nested steps are included in
their parent), and the total CPU of the process per request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import pstats
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import uvicorn

from bench.loadgen import LoadSpec, run_in_process
from bench.overhead import API_KEY, flowgate_request
from bench.servers import Flowgate, Sandbox, Scratch, free_port, machine_line

# (class path, method) of each step, in request order; indented names are nested.
STEPS: list[tuple[str, str, str]] = [
    ("flowgate.api.middleware", "RequestIdMiddleware", "__call__"),
    ("flowgate.services.users", "UserService", "authenticate"),
    ("fastapi.routing", "", "run_endpoint_function"),
    ("flowgate.api.body", "", "read_fields"),
    ("flowgate.services.images", "ImageService", "generate"),
    ("flowgate.services.images", "ImageService", "_load_references"),
    ("flowgate.services.credits", "CreditService", "reserve"),
    ("flowgate.balancer.picker", "AccountPicker", "acquire"),
    ("flowgate.balancer.picker", "AccountPicker", "_snapshot"),
    ("flowgate.services.jobs", "JobService", "create"),
    ("flowgate.services.jobs", "JobService", "start"),
    ("flowgate.services.accounts", "AccountService", "provider_for"),
    ("flowgate.providers.gemini", "GeminiProvider", "generate_content_image"),
    ("flowgate.providers.gemini", "GeminiProvider", "_call"),
    ("flowgate.services.images", "ImageService", "_keep"),
    ("flowgate.services.media", "MediaService", "put"),
    ("flowgate.services.jobs", "JobService", "complete"),
    ("flowgate.storage.write_queue", "WriteQueue", "run"),
    ("flowgate.storage.write_queue", "WriteQueue", "_execute_sqlite"),
    ("flowgate.services.media", "MediaService", "refresh_links"),
    ("fastapi.routing", "", "serialize_response"),
    ("starlette.responses", "JSONResponse", "render"),
]


class Meter:
    """CPU and wall seconds per step, and how often each ran."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.on = False
        self.depth: dict[str, int] = defaultdict(int)
        self.gc_seconds = 0.0
        self.gc_runs: dict[int, int] = defaultdict(int)
        self._gc_started = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        """``gc.callbacks`` hook: time spent in garbage collections, per generation."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self.on:
            self.gc_seconds += time.perf_counter() - self._gc_started
            self.gc_runs[info["generation"]] += 1

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed under ``name`` (recursive calls, such as refresh_links, count once)."""
        meter = self

        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                if not meter.on or meter.depth[name]:
                    return await fn(*args, **kwargs)
                meter.depth[name] += 1
                cpu, wall = time.process_time(), time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    meter.depth[name] -= 1
                    meter.cpu[name] += time.process_time() - cpu
                    meter.wall[name] += time.perf_counter() - wall
                    meter.calls[name] += 1

            return timed_async

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not meter.on or meter.depth[name]:
                return fn(*args, **kwargs)
            meter.depth[name] += 1
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                meter.depth[name] -= 1
                meter.cpu[name] += time.process_time() - cpu
                meter.wall[name] += time.perf_counter() - wall
                meter.calls[name] += 1

        return timed


def install(meter: Meter) -> None:
    """Wrap every step (module functions too: their importers are patched as well)."""
    import importlib

    for module_name, class_name, method in STEPS:
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name) if class_name else module
        name = f"{class_name}.{method}" if class_name else method
        if not hasattr(owner, method):
            print(f"  (step {name} no longer exists: not measured)")
            continue
        wrapped = meter.wrap(name, getattr(owner, method))
        setattr(owner, method, wrapped)
        if not class_name:
            import flowgate.api.flow.images as images_api

            if hasattr(images_api, method):
                setattr(images_api, method, wrapped)


def count_statements(meter: Meter, backend: str) -> None:
    """Count SQL statements and commits (every engine) while measuring.

    SQLite: the statements ``sqlite3`` runs on the write queue's connections (a trace
    callback; a cursor listener would send the queue's statements through SQLAlchemy
    instead, see ``write_queue._run_grouped``), so reads on aiosqlite's are not counted.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_execute(*_args: Any) -> None:
        if meter.on:
            meter.calls["SQL statements"] += 1

    def on_sqlite_statement(sql: str) -> None:
        if not sql.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")):
            on_execute()

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        trace = getattr(dbapi_connection, "set_trace_callback", None)
        if trace is not None:  # sqlite3 (aiosqlite's adapter has none)
            trace(on_sqlite_statement)

    def on_commit(*_args: Any) -> None:
        if meter.on:
            meter.calls["SQL commits"] += 1

    if backend == "sqlite":
        event.listen(Engine, "connect", on_connect)
    else:
        event.listen(Engine, "before_cursor_execute", on_execute)
    event.listen(Engine, "commit", on_commit)


def main() -> None:
    """Serve flowgate here, drive it from a load generator, print the steps."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument(
        "--concurrency", type=int, default=1, help=">1: steps overlap; totals and GC stay exact"
    )
    parser.add_argument(
        "--cprofile",
        type=int,
        default=0,
        metavar="N",
        help="instead of timing steps, cProfile the event-loop thread; print the top N",
    )
    parser.add_argument(
        "--callers",
        default="",
        metavar="REGEX",
        help="with --cprofile: also print who calls the functions matching REGEX",
    )
    args = parser.parse_args()
    print(machine_line())
    meter = Meter()
    if not args.cprofile:
        install(meter)
    gc.callbacks.append(meter.on_gc)
    count_statements(meter, args.backend)
    from flowgate.app import create_app
    from flowgate.config import load_settings
    from flowgate.process import tune_garbage_collector

    with Scratch() as work, Sandbox(work).start() as sandbox:
        # A Flowgate object only to get a scratch database and the CLI environment.
        holder = Flowgate(work, backend=args.backend, port=free_port())
        env = holder.full_env
        settings = load_settings(
            data_dir=env["FLOWGATE_DATA_DIR"],
            database_url=env["FLOWGATE_DATABASE_URL"],
            port=holder.port,
            sandbox=False,
            log_level="WARNING",
        )
        application = create_app(settings)
        tune_garbage_collector()  # as `flowgate serve` does
        server = uvicorn.Server(
            uvicorn.Config(application, host="127.0.0.1", port=holder.port, log_level="warning")
        )
        result: dict[str, Any] = {}

        def drive() -> None:
            while not server.started:
                time.sleep(0.05)
            token = holder.new_user("phases")
            holder.add_sandbox_account(
                token, "bench@example.com", sandbox, api_key=API_KEY, max_concurrency=100
            )
            spec = LoadSpec(
                "127.0.0.1",
                holder.port,
                [flowgate_request(token)],
                duration=2.0,
                warmup=0.5,
                concurrency=args.concurrency,
            )
            run_in_process(spec)  # warm-up: imports, caches, first file write
            meter.on = True
            cpu0 = time.process_time()
            spec.duration, spec.warmup = args.seconds, 0.0
            result.update(run_in_process(spec))
            result["process_cpu"] = time.process_time() - cpu0
            meter.on = False
            server.should_exit = True

        threading.Thread(target=drive, daemon=True).start()
        profiler = cProfile.Profile() if args.cprofile else None
        try:
            import uvloop

            serve: Callable[[], Any] = lambda: uvloop.run(server.serve())  # noqa: E731
        except ImportError:
            serve = lambda: asyncio.run(server.serve())  # noqa: E731
        if profiler is not None:
            profiler.runcall(serve)
        else:
            serve()
        holder.dispose()
    ok = max(1, result.get("ok", 0))
    print(
        f"{ok} requests, concurrency {args.concurrency}, {args.backend}; "
        f"{result['throughput_rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms"
    )
    print(f"process CPU per request (all threads): {1000 * result['process_cpu'] / ok:.2f} ms")
    print(
        f"garbage collection: {1000 * meter.gc_seconds / ok:.3f} ms per request "
        f"(collections per generation: {dict(meter.gc_runs)})"
    )
    print(
        f"SQL per request: {meter.calls['SQL statements'] / ok:.2f} statements, "
        f"{meter.calls['SQL commits'] / ok:.2f} commits"
    )
    if profiler is not None:
        stats = pstats.Stats(profiler).sort_stats("tottime")
        stats.print_stats(args.cprofile)
        if args.callers:
            stats.print_callers(args.callers)
        return
    if args.concurrency > 1:
        return  # steps of different requests overlap: their figures would mislead
    print("| step | calls/request | CPU ms/request | wall ms/request |")
    print("|---|---|---|---|")
    for module_name, class_name, method in STEPS:
        name = f"{class_name}.{method}" if class_name else method
        if meter.calls[name]:
            print(
                f"| {name} | {meter.calls[name] / ok:.2f} | {1000 * meter.cpu[name] / ok:.3f} | "
                f"{1000 * meter.wall[name] / ok:.3f} |"
            )
        del module_name


if __name__ == "__main__":
    main()
