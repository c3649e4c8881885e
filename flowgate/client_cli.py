"""Client commands of ``flowgate``: generate, jobs, upscale, accounts (over HTTP).

They talk to a running server through :mod:`flowgate.client` (``--url`` /
``FLOWGATE_URL``, ``--token`` / ``FLOWGATE_TOKEN``), never to the database,
and import nothing of the server. ``--json`` prints machine-readable output on
stdout; messages and progress go to stderr. Exit codes: 0 success, 1 an API
error or a failed item, 2 bad usage or an invalid prompt file (nothing sent),
130 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from flowgate.batch.prompts import (
    BatchItem,
    Problem,
    PromptFileError,
    PromptFormat,
    account_problems,
    load_prompt_file,
)
from flowgate.batch.retry import RetryPolicy
from flowgate.batch.runner import BatchEvent, BatchRunner, BatchSummary
from flowgate.client import (
    DEFAULT_URL,
    AccountCreate,
    AsyncClient,
    Client,
    FlowgateAPIError,
    FlowgateClientError,
    Job,
)

T = TypeVar("T")
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="FLOWGATE_URL", help="flowgate server URL (FLOWGATE_URL)"),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="FLOWGATE_TOKEN", help="API token (FLOWGATE_TOKEN)", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON output for scripts (stdout)")]

jobs_app = typer.Typer(help="Read jobs on a flowgate server.", no_args_is_help=True)
accounts_app = typer.Typer(
    help="Manage your upstream accounts on a flowgate server.", no_args_is_help=True
)

_err = Console(stderr=True, highlight=False)
# Piped output is for reading in full: no 80-column cut of ids, emails and URLs.
_out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    _err.print(f"flowgate: {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _need_token(token: str | None) -> str:
    if not token:
        _fail("no API token: pass --token or set FLOWGATE_TOKEN", EXIT_USAGE)
    return token


def _print_json(value: Any) -> None:
    # Plain print, not Rich: scripts need the bytes exactly (no wrapping, no markup).
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _api(action: Callable[[Client], T], url: str, token: str | None) -> T:
    """Run ``action`` with a client; API and connection errors become one stderr line, exit 1."""
    with Client(url, _need_token(token)) as client:
        try:
            return action(client)
        except FlowgateAPIError as exc:
            _fail(str(exc))
        except FlowgateClientError as exc:
            _fail(str(exc))


# ================================================================================ generate


class _ImagesPerMinute(ProgressColumn):
    """Images written per minute in this run."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        images = int(task.fields.get("images", 0))
        rate = images / elapsed * 60 if elapsed > 0 else 0.0
        return Text(f"{rate:5.1f} img/min", style="cyan")


class _BatchView:
    """Turns runner events into a progress bar and one line per finished prompt."""

    def __init__(self, progress: Progress, total: int, *, as_json: bool) -> None:
        self.progress = progress
        self.as_json = as_json
        self.retrying: set[int] = set()
        self.done = 0
        self.failed = 0
        self.images = 0
        self.task = progress.add_task(
            "generating", total=total, done=0, failed=0, retrying=0, images=0
        )

    def __call__(self, event: BatchEvent) -> None:
        index = event.item.index
        console = self.progress.console
        if event.kind == "started":
            self.retrying.discard(index)
        elif event.kind == "retrying":
            self.retrying.add(index)
            console.print(
                f"[yellow]↻[/] #{index} {event.what}: {escape(_one_line(event.message))} — "
                f"retry {event.attempt + 1} in {event.delay or 0:.1f} s",
                soft_wrap=True,
            )
        elif event.kind in ("done", "failed") and event.record is not None:
            self.retrying.discard(index)
            record = event.record
            if event.kind == "done":
                self.done += 1
                self.images += len(record.files)
                console.print(
                    f"[green]✓[/] #{index} {' '.join(record.files)}  ({record.job_id})",
                    soft_wrap=True,
                )
            else:
                self.failed += 1
                console.print(
                    f"[red]✗[/] #{index} {record.stage} failed: "
                    f"{escape(_one_line(_describe_error(record.http_status, record.error)))}",
                    soft_wrap=True,
                )
            if self.as_json:
                sys.stdout.write(record.to_json() + "\n")
                sys.stdout.flush()
            self.progress.advance(self.task)
        self.progress.update(
            self.task,
            done=self.done,
            failed=self.failed,
            retrying=len(self.retrying),
            images=self.images,
        )


def _one_line(text: str, limit: int = 200) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _describe_error(status: int | None, body: Any) -> str:
    if status is None:
        return str(body)
    return str(FlowgateAPIError(status, body))


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "[green]✓ {task.fields[done]}[/] [red]✗ {task.fields[failed]}[/] "
            "[yellow]↻ {task.fields[retrying]}[/]"
        ),
        _ImagesPerMinute(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=_err,
    )


def _report_problems(problems: list[Problem]) -> NoReturn:
    for problem in problems:
        _err.print(f"[red]✗[/] {escape(str(problem))}", soft_wrap=True)
    noun = "problem" if len(problems) == 1 else "problems"
    _fail(f"{len(problems)} {noun} in the prompt file; nothing was sent", EXIT_USAGE)


async def _preflight(
    client: AsyncClient, items: list[BatchItem], file_problems: list[Problem]
) -> None:
    """Check the accounts the prompts name; report them with the file's problems (exit 2)."""
    try:
        accounts = await client.list_accounts()
    except FlowgateClientError:
        if file_problems:
            _report_problems(file_problems)  # the file is wrong anyway: say so first
        raise
    problems = list(file_problems)
    if not accounts:
        problems.append(
            Problem(
                "accounts", "you have no accounts: add one with `flowgate accounts add EMAIL ...`"
            )
        )
    problems += account_problems(items, {email: a.health for email, a in accounts.items()})
    if problems:
        _report_problems(sorted(problems, key=lambda p: p.line))


async def _run_batch(
    url: str,
    token: str,
    items: list[BatchItem],
    file_problems: list[Problem],
    out: Path,
    *,
    concurrency: int,
    retry: RetryPolicy,
    check_only: bool,
    as_json: bool,
    holder: list[BatchRunner],
) -> BatchSummary | None:
    main_task = asyncio.current_task()
    if main_task is not None:
        # SIGTERM stops like Ctrl-C: in-flight prompts are dropped, finished ones are recorded.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    async with AsyncClient(url, token, max_connections=concurrency * 2 + 4) as client:
        await _preflight(client, items, file_problems)
        if check_only:
            return None
        runner = BatchRunner(client, items, out, concurrency=concurrency, retry=retry)
        holder.append(runner)
        done, to_run = runner.plan()
        if done:
            _err.print(
                f"{len(done)} of {len(items)} prompts already done in {out} (manifest.jsonl): "
                "skipping them"
            )
        if not to_run:
            return await runner.run()
        progress = _progress()
        runner.on_event = _BatchView(progress, len(to_run), as_json=as_json)
        with progress:
            return await runner.run()


def generate(
    prompts: Annotated[
        Path,
        typer.Argument(
            metavar="PROMPTS",
            help="prompts.json (list of objects), a .jsonl file, or a text file (one prompt "
            "per line)",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output folder: {index}_{n}.{ext} and manifest.jsonl"),
    ],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight at once")] = 4,
    email: Annotated[str | None, typer.Option(help="Account for prompts that set no email")] = None,
    model: Annotated[str | None, typer.Option(help="Model for prompts that set none")] = None,
    count: Annotated[
        int | None, typer.Option(help="Images per prompt for prompts that set none")
    ] = None,
    aspect_ratio: Annotated[
        str | None, typer.Option("--aspect-ratio", help="aspectRatio for prompts that set none")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="auto | json | jsonl | text (auto: by extension)")
    ] = "auto",
    max_retries: Annotated[
        int, typer.Option(min=0, help="Retries per request on 429 / 503 / connection errors")
    ] = 8,
    max_wait: Annotated[
        float,
        typer.Option(
            min=0, help="Fail a prompt (resume later) when the server asks to wait longer (s)"
        ),
    ] = 600.0,
    check: Annotated[
        bool, typer.Option("--check", help="Only validate the file (and accounts); send nothing")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Generate images for every prompt of a file; re-run the same command to resume."""
    if fmt not in ("auto", "json", "jsonl", "text"):
        _fail(f"--format must be auto, json, jsonl or text, got {fmt!r}", EXIT_USAGE)
    defaults = {"model": model, "count": count, "aspectRatio": aspect_ratio, "email": email}
    try:
        items = load_prompt_file(prompts, fmt=_format(fmt), defaults=defaults)
        file_problems: list[Problem] = []
    except PromptFileError as exc:
        items, file_problems = exc.items, exc.problems
        if not token:
            _report_problems(file_problems)
    if check and not token:
        _err.print(f"{len(items)} prompts OK (accounts not checked: no token)")
        return
    api_token = _need_token(token)
    retry = RetryPolicy(max_retries=max_retries, max_wait=max_wait)
    holder: list[BatchRunner] = []
    started = time.monotonic()
    try:
        summary = asyncio.run(
            _run_batch(
                url,
                api_token,
                items,
                file_problems,
                out,
                concurrency=concurrency,
                retry=retry,
                check_only=check,
                as_json=as_json,
                holder=holder,
            )
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        partial = holder[0].summary if holder else None
        finished = f"{partial.done} done, {partial.failed} failed this run; " if partial else ""
        _fail(f"interrupted: {finished}re-run the same command to resume", EXIT_INTERRUPTED)
    except FlowgateClientError as exc:
        _fail(str(exc))
    if summary is None:
        _err.print(f"{len(items)} prompts OK")
        return
    elapsed = time.monotonic() - started
    _err.print(
        f"{summary.done} done, {summary.failed} failed, {summary.skipped} done earlier, "
        f"{summary.images} images in {elapsed:.1f} s → {out}"
    )
    if summary.stopped is not None:
        _fail(
            f"stopped: {summary.stopped} ({summary.not_started} prompts not sent; "
            "fix it and re-run the same command)"
        )
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)


def _format(value: str) -> PromptFormat:
    if value == "json":
        return "json"
    if value == "jsonl":
        return "jsonl"
    if value == "text":
        return "text"
    return "auto"


# ================================================================================ jobs


def _job_view(job: Job) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("job", job.jobid)
    table.add_row("type", job.type)
    style = {"completed": "green", "failed": "red"}.get(job.status, "yellow")
    table.add_row("status", f"[{style}]{job.status}[/]")
    for name in ("created", "updated"):
        value = getattr(job, name)
        if value:
            table.add_row(name, value)
    for key in ("model", "email", "prompt"):
        if key in job.request:
            table.add_row(key, escape(str(job.request[key])))
    if job.error is not None:
        table.add_row("error", escape(_describe_error(job.code, {"error": job.error})))
    for number, image in enumerate(job.images, start=1):
        table.add_row(f"image {number}", image.media_generation_id)
        table.add_row("", image.fife_url)
    return table


def _job_json(job: Job) -> dict[str, Any]:
    return job.model_dump(by_alias=True, exclude_none=True, mode="json")


@jobs_app.command("get")
def jobs_get(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id (jobId / jobid)")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one job (GET /jobs/{id})."""
    job = _api(lambda c: c.get_job(job_id), url, token)
    if as_json:
        _print_json(_job_json(job))
    else:
        _out.print(_job_view(job))


@jobs_app.command("watch")
def jobs_watch(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls")] = 2.0,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up after this many seconds (exit 1)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a job until it is completed (exit 0) or failed (exit 1).

    Prints a line at each status change; with --json one job record per line.
    """
    started = time.monotonic()
    last_status: str | None = None

    def poll(client: Client) -> Job:
        nonlocal last_status
        with _err.status("waiting…") as spinner:
            while True:
                job = client.get_job(job_id)
                if job.status != last_status:
                    last_status = job.status
                    if as_json:
                        sys.stdout.write(json.dumps(_job_json(job), ensure_ascii=False) + "\n")
                        sys.stdout.flush()
                    else:
                        stamp = datetime.now().strftime("%H:%M:%S")
                        _out.print(f"{stamp}  {job.jobid}  {job.status}")
                if job.finished:
                    return job
                waited = time.monotonic() - started
                if timeout is not None and waited >= timeout:
                    _fail(f"job {job_id} is still {job.status} after {waited:.0f} s")
                spinner.update(f"{job.status} for {waited:.0f} s…")
                time.sleep(interval)

    job = _api(poll, url, token)
    if not as_json:
        _out.print(_job_view(job))
    if job.status == "failed":
        raise typer.Exit(EXIT_FAILED)


@jobs_app.command("stats")
def jobs_stats(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    options: Annotated[
        str | None, typer.Option(help="summary (default), executing or history")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Load-balancing statistics of the last 15 minutes (GET /jobs)."""
    stats = _api(lambda c: c.job_stats(options), url, token)
    if as_json:
        _print_json(stats.model_dump(by_alias=True, exclude_none=True, mode="json"))
        return
    table = Table("account", "kind", "executing", "completed", "failed", "rate limited", "score")
    for kind in ("images", "videos"):
        bucket: dict[str, Any] = getattr(stats, kind)
        for email, row in (bucket.get("summary") or {}).items():
            table.add_row(
                email,
                kind,
                *(str(row.get(k, "")) for k in ("executing", "completed", "failed")),
                str(row.get("rateLimited", "")),
                str(row.get("score", "")),
            )
    _out.print(table)


# ================================================================================ upscale


def upscale(
    media_id: Annotated[
        str,
        typer.Argument(
            metavar="MEDIA_ID", help="mediaGenerationId of a nano-banana-2 / -pro image"
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (JPEG)")],
    resolution: Annotated[str, typer.Option(help="2k or 4k (4k needs a paid account)")] = "2k",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upscale a generated image to 2k or 4k (POST /images/upscale) and save it."""
    if resolution not in ("2k", "4k"):
        _fail(f"--resolution must be 2k or 4k, got {resolution!r}", EXIT_USAGE)
    result = _api(
        lambda c: c.upscale_image(media_id, "4k" if resolution == "4k" else "2k"), url, token
    )
    data = result.image_bytes()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    if as_json:
        _print_json(
            {
                "file": str(output),
                "bytes": len(data),
                "resolution": resolution,
                "upscaler": result.upscaler,
                "mediaGenerationId": result.media_generation_id,
            }
        )
    else:
        _out.print(f"wrote {output} ({len(data)} bytes, {resolution}, upscaler {result.upscaler})")


# ================================================================================ accounts


def _model_map(pairs: list[str]) -> dict[str, str] | None:
    if not pairs:
        return None
    mapping: dict[str, str] = {}
    for pair in pairs:
        model, sep, upstream = pair.partition("=")
        if not sep or not model.strip() or not upstream.strip():
            _fail(f"--model-map takes MODEL=UPSTREAM_ID, got {pair!r}", EXIT_USAGE)
        mapping[model.strip()] = upstream.strip()
    return mapping


@accounts_app.command("add")
def accounts_add(
    email: Annotated[str, typer.Argument(help="Label and key of the account (name@domain)")],
    provider: Annotated[str, typer.Option(help="gemini or sandbox")] = "gemini",
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="FLOWGATE_ACCOUNT_API_KEY",
            help="Gemini API key; '-' reads it from stdin (FLOWGATE_ACCOUNT_API_KEY)",
            show_default=False,
        ),
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="Another upstream base URL")] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(min=1, help="Requests this account runs at once")
    ] = None,
    tier: Annotated[str | None, typer.Option(help="free or paid (4k upscales need paid)")] = None,
    upscale_mode: Annotated[str | None, typer.Option("--upscale", help="auto or local")] = None,
    model_map: Annotated[
        list[str] | None,
        typer.Option("--model-map", help="MODEL=UPSTREAM_ID, repeatable", show_default=False),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add an account, or update the one with this email (POST /accounts)."""
    if api_key == "-":
        api_key = sys.stdin.readline().strip()
    fields: dict[str, Any] = {
        "email": email,
        "provider": provider,
        "api_key": api_key,
        "base_url": base_url,
        "model_map": _model_map(model_map or []),
        "max_concurrency": max_concurrency,
        "tier": tier,
        "upscale": upscale_mode,
    }
    try:
        body = AccountCreate.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        _fail(f"invalid account: {problems}", EXIT_USAGE)
    saved = _api(lambda c: c.add_account(body), url, token)
    if as_json:
        _print_json(saved.account.model_dump(by_alias=True, exclude_none=True, mode="json"))
        return
    verb = "added" if saved.created else "updated"
    account = saved.account
    _out.print(f"{verb} {account.email} ({account.provider}, health {account.health})")


@accounts_app.command("list")
def accounts_list(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List your accounts (GET /accounts)."""
    accounts = _api(lambda c: c.list_accounts(), url, token)
    if as_json:
        _print_json(
            {
                email: a.model_dump(by_alias=True, exclude_none=True, mode="json")
                for email, a in accounts.items()
            }
        )
        return
    if not accounts:
        _out.print("no accounts: add one with `flowgate accounts add EMAIL --api-key KEY`")
        return
    table = Table("email", "provider", "health", "max concurrency", "tier", "created")
    for email, a in sorted(accounts.items()):
        health = "[green]OK[/]" if a.healthy else f"[red]{escape(a.health or '?')}[/]"
        table.add_row(
            email,
            a.provider or "",
            health,
            str(a.max_concurrency or ""),
            a.tier or "",
            a.created or "",
        )
    _out.print(table)


@accounts_app.command("get")
def accounts_get(
    email: str,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one account and the upstream models its key can use (GET /accounts/{email})."""
    account = _api(lambda c: c.get_account(email), url, token)
    data = account.model_dump(by_alias=True, exclude_none=True, mode="json")
    if as_json:
        _print_json(data)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in data.items():
        if isinstance(value, list):
            shown = ", ".join(str(v) for v in value)
        elif isinstance(value, dict):
            shown = json.dumps(value)
        else:
            shown = str(value)
        table.add_row(key, escape(shown))
    _out.print(table)


@accounts_app.command("rm")
def accounts_rm(
    email: str,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete an account (DELETE /accounts/{email})."""
    message = _api(lambda c: c.delete_account(email), url, token)
    if as_json:
        _print_json(message.model_dump(mode="json"))
    else:
        _out.print(message.message)
