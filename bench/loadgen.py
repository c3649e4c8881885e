"""A cheap HTTP/1.1 load generator: one kept-alive connection per worker, run in its own process.

Why not httpx or aiohttp: at a few hundred requests per second on a 2-core machine a
general client spends as much CPU per request as the server under test, and then the
client caps the result. This one writes pre-encoded request bytes on raw asyncio
streams (uvloop when installed) and parses only the status line, ``Content-Length`` and
chunked bodies; it reports its own CPU seconds so a reader can check that it was not
the bottleneck.

Three shapes of load (``LoadSpec.mode``):

- ``closed``: ``concurrency`` workers, each sends its next request as soon as the last
  answer arrived, for ``warmup + duration`` seconds; only the last ``duration`` counts;
- ``burst``: ``concurrency`` connections are opened first (in batches), then every one
  sends ``per_worker`` requests one after another, all starting at the same moment
  (held-concurrency test);
- ``rate``: requests start at ``rate`` per second (open loop) on a pool of at most
  ``concurrency`` connections, for ``duration`` seconds (goodput and soak).

Run it as ``python -m bench.loadgen SPEC.json`` or from Python with :func:`run_in_process`;
the result is one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.procstat import cpu_seconds

COUNTER_MARK = b"{n}"


@dataclass
class RequestTemplate:
    """One request; ``{n}`` in the body is replaced by a per-request counter."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass
class LoadSpec:
    """What to send, how hard, and for how long."""

    host: str
    port: int
    requests: list[RequestTemplate]
    mode: str = "closed"  # closed | burst | rate
    concurrency: int = 1
    duration: float = 10.0
    warmup: float = 2.0
    per_worker: int = 1
    rate: float = 0.0
    connect_batch: int = 100
    timeout: float = 120.0
    keep_bodies: bool = False  # keep every answer body (goodput, soak: job ids and errors)
    measure_after: float = 0.0  # rate mode: requests sent earlier (a ramp) are not summarized
    watch_pids: list[int] = field(default_factory=list)


@dataclass
class Sample:
    """One answered (or failed) request: start offset and latency in seconds."""

    start: float
    latency: float
    status: int  # 0: connection error or timeout
    body: str | None = None


def _encode(template: RequestTemplate, host: str, port: int) -> tuple[bytes, list[bytes]]:
    """The head (without Content-Length) and the body split at each ``{n}``."""
    lines = [f"{template.method} {template.path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in template.headers.items()]
    head = ("\r\n".join(lines) + "\r\n").encode()
    return head, template.body.encode().split(COUNTER_MARK)


class _Requests:
    """Round-robin over the templates, numbering each request."""

    def __init__(self, spec: LoadSpec) -> None:
        self._encoded = [_encode(t, spec.host, spec.port) for t in spec.requests]
        self._counter = 0

    def next(self) -> bytes:
        head, pieces = self._encoded[self._counter % len(self._encoded)]
        self._counter += 1
        body = str(self._counter).encode().join(pieces)
        return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


async def _read_answer(reader: asyncio.StreamReader, keep: bool) -> tuple[int, bytes, bool]:
    """Status, body (when kept or an error) and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    chunked = False
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lower = name.strip().lower()
        if lower == b"content-length":
            length = int(value.strip())
        elif lower == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif lower == b"connection" and value.strip().lower() == b"close":
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        body = b"".join(parts)
    elif length >= 0:
        body = await reader.readexactly(length)
    else:
        body = await reader.read()
        close = True
    return status, body if (keep or status >= 400) else b"", not close


class _Connection:
    """One kept-alive connection; reopened after a close or an error."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: bytes, keep: bool, limit: float) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        try:
            self.writer.write(request)
            status, body, stays = await asyncio.wait_for(_read_answer(self.reader, keep), limit)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            self.close()
            raise
        if not stays:
            self.close()
        return status, body


class _Run:
    """State shared by the workers of one run."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.requests = _Requests(spec)
        self.samples: list[Sample] = []
        self.errors: dict[str, int] = {}
        self.start()
        self.peak_in_flight = 0

    def start(self) -> None:
        """Mark now as the run's start (``t0``), and its wall-clock time to line up with
        what servers log."""
        self.t0 = time.perf_counter()
        self.t0_wall = time.time()

    async def one(self, conn: _Connection) -> None:
        request = self.requests.next()
        started = time.perf_counter()
        try:
            status, body = await conn.send(request, self.spec.keep_bodies, self.spec.timeout)
        except Exception as exc:  # counted, not raised: a load test reports failures
            name = type(exc).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
            self.samples.append(Sample(started - self.t0, time.perf_counter() - started, 0))
            return
        text = body.decode("utf-8", "replace") if body else None
        self.samples.append(Sample(started - self.t0, time.perf_counter() - started, status, text))


async def _closed(run: _Run) -> None:
    spec = run.spec
    end = run.t0 + spec.warmup + spec.duration

    async def worker() -> None:
        conn = _Connection(spec.host, spec.port)
        while time.perf_counter() < end:
            await run.one(conn)
        conn.close()

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))


async def _burst(run: _Run) -> None:
    spec = run.spec
    conns = [_Connection(spec.host, spec.port) for _ in range(spec.concurrency)]
    for index in range(0, len(conns), spec.connect_batch):
        await asyncio.gather(*(c.open() for c in conns[index : index + spec.connect_batch]))
    run.start()

    async def worker(conn: _Connection) -> None:
        for _ in range(spec.per_worker):
            await run.one(conn)
        conn.close()

    await asyncio.gather(*(worker(c) for c in conns))


async def _rate(run: _Run) -> None:
    spec = run.spec
    idle: deque[_Connection] = deque()
    in_flight = 0
    tasks: set[asyncio.Task[None]] = set()

    async def fire() -> None:
        nonlocal in_flight
        conn = idle.popleft() if idle else _Connection(spec.host, spec.port)
        in_flight += 1
        run.peak_in_flight = max(run.peak_in_flight, in_flight)
        try:
            await run.one(conn)
        finally:
            in_flight -= 1
            idle.append(conn)

    interval = 1.0 / spec.rate
    next_at = time.perf_counter()
    end = run.t0 + spec.duration
    skipped = 0
    while next_at < end:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += interval
        if in_flight >= spec.concurrency:
            skipped += 1  # the client is saturated: offered load not sent (reported)
            continue
        task = asyncio.create_task(fire())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    run.errors["not-sent (all connections busy)"] = skipped
    for conn in idle:
        conn.close()


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize(samples: list[Sample], window: tuple[float, float]) -> dict[str, Any]:
    """Throughput and latency of the requests that started inside ``window`` (seconds)."""
    start, end = window
    inside = [s for s in samples if start <= s.start < end]
    ok = [s for s in inside if 200 <= s.status < 300]
    latencies = sorted(s.latency * 1000 for s in ok)
    statuses: dict[str, int] = {}
    for s in inside:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    seconds = max(1e-9, end - start)
    return {
        "requests": len(inside),
        "ok": len(ok),
        "statuses": statuses,
        "throughput_rps": len(ok) / seconds,
        "p50_ms": _percentile(latencies, 50),
        "p95_ms": _percentile(latencies, 95),
        "p99_ms": _percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else float("nan"),
    }


async def _main(spec: LoadSpec) -> dict[str, Any]:
    run = _Run(spec)
    cpu: dict[int, float] = {}
    own = 0.0

    async def meter() -> None:
        nonlocal own
        # CPU of the watched processes and of this one inside the measured window only.
        await asyncio.sleep(spec.warmup if spec.mode == "closed" else 0)
        for pid in spec.watch_pids:
            cpu[pid] = cpu_seconds(pid)
        own = time.process_time()

    watcher = asyncio.create_task(meter())
    if spec.mode == "closed":
        await _closed(run)
    elif spec.mode == "burst":
        await _burst(run)
    elif spec.mode == "rate":
        await _rate(run)
    else:
        raise ValueError(f"unknown mode {spec.mode!r}")
    await watcher
    elapsed = time.perf_counter() - run.t0
    if spec.mode == "closed":
        window = (spec.warmup, spec.warmup + spec.duration)
    else:
        window = (spec.measure_after if spec.mode == "rate" else 0.0, elapsed)
    summary = summarize(run.samples, (window[0], window[1]))
    if spec.mode != "closed":
        summary["throughput_rps"] = summary["ok"] / max(1e-9, elapsed)
    summary["elapsed_s"] = elapsed
    summary["started_at"] = run.t0_wall
    summary["peak_in_flight"] = run.peak_in_flight
    summary["sent"] = len(run.samples)
    summary["errors"] = run.errors
    summary["cpu_s"] = {str(pid): cpu_seconds(pid) - before for pid, before in cpu.items()}
    summary["loadgen_cpu_s"] = time.process_time() - own
    if spec.keep_bodies:
        summary["samples"] = [asdict(s) for s in run.samples]
    else:
        summary["error_bodies"] = [s.body for s in run.samples if s.body][:5]
    return summary


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_here(spec: LoadSpec) -> dict[str, Any]:
    """Run the load in this process (uvloop when installed)."""
    _raise_fd_limit()
    try:
        import uvloop

        return uvloop.run(_main(spec))
    except ImportError:
        return asyncio.run(_main(spec))


def run_in_process(spec: LoadSpec) -> dict[str, Any]:
    """Run the load in a separate process so it competes with nothing in the caller."""
    root = Path(__file__).resolve().parent.parent
    payload = json.dumps(asdict(spec))
    result = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", "-"],
        input=payload,
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
        timeout=spec.warmup + spec.duration + spec.timeout + 120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{result.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def spec_from_json(text: str) -> LoadSpec:
    """A :class:`LoadSpec` from its JSON form."""
    raw = json.loads(text)
    raw["requests"] = [RequestTemplate(**r) for r in raw["requests"]]
    return LoadSpec(**raw)


def main() -> None:
    """``python -m bench.loadgen SPEC.json`` (``-``: read the spec from stdin)."""
    source = sys.argv[1] if len(sys.argv) > 1 else "-"
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    print(json.dumps(run_here(spec_from_json(text))))


if __name__ == "__main__":
    main()
