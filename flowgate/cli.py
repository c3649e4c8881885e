"""The ``flowgate`` command."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from flowgate import client_cli
from flowgate.config import Settings, SettingsError, load_settings
from flowgate.domain.errors import DatabaseUnavailable, FlowgateError
from flowgate.process import raise_open_file_limit

if TYPE_CHECKING:
    from flowgate.runtime import Runtime

# The server side (flowgate.runtime, flowgate.app: SQLAlchemy, Alembic, aiohttp, Pillow)
# is imported by the commands that use it, so client commands and --help start fast.

app = typer.Typer(
    help="flowgate: self-hosted gateway for AI image and video generation.",
    no_args_is_help=True,
    add_completion=False,
)
users_app = typer.Typer(
    help="Manage users and their API tokens (talks to the database directly).", no_args_is_help=True
)
app.add_typer(users_app, name="users")
# Client commands (talk to a running server over HTTP): flowgate/client_cli.py, docs/cli.md.
app.command()(client_cli.generate)
app.command()(client_cli.upscale)
app.add_typer(client_cli.jobs_app, name="jobs")
app.add_typer(client_cli.accounts_app, name="accounts")
T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        typer.echo(f"flowgate: {exc}", err=True)  # one unwrapped line
        raise typer.Exit(2) from None


@contextmanager
def _database_errors(settings: Settings) -> Iterator[None]:
    """Turn a database the operator must fix (unreachable, or a SQLite file another
    program keeps locked) into one line naming it and what to do, for exit code 1."""
    try:
        yield
    except DatabaseUnavailable as exc:
        from sqlalchemy.engine import make_url

        url = make_url(settings.effective_database_url).render_as_string(hide_password=True)
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else exc.message
        typer.echo(
            f"flowgate: cannot connect to the database {url} ({reason}); check that the "
            "server runs and the database exists, or set FLOWGATE_DATABASE_URL",
            err=True,
        )
        raise typer.Exit(1) from None
    except Exception as exc:
        from flowgate.storage.database_errors import is_database_locked

        if not is_database_locked(exc):
            raise
        typer.echo(
            "flowgate: the SQLite database is locked by another program (SQLite lets one "
            f"program write at a time) for longer than {settings.sqlite_busy_seconds:g} s "
            "(FLOWGATE_SQLITE_BUSY_SECONDS); end that program's write transaction, then run "
            "the command again",
            err=True,
        )
        raise typer.Exit(1) from None


def _with_runtime(action: Callable[[Runtime], Awaitable[T]]) -> T:
    from flowgate.runtime import open_runtime

    settings = _settings()

    async def run() -> T:
        runtime = await open_runtime(settings)
        try:
            return await action(runtime)
        finally:
            await runtime.close()

    try:
        with _database_errors(settings):
            return asyncio.run(run())
    except FlowgateError as exc:
        typer.echo(f"flowgate: {exc.message}", err=True)
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (FLOWGATE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (FLOWGATE_PORT)")] = None,
) -> None:
    """Start the gateway (SQLite, local media and the sandbox upstream by default)."""
    settings = _settings(host=host, port=port)
    raise_open_file_limit()
    from flowgate.storage.db import connect_once

    # Before the server starts: its start-up would fail with a traceback instead.
    with _database_errors(settings):
        asyncio.run(
            connect_once(
                settings.effective_database_url, sqlite_busy_seconds=settings.sqlite_busy_seconds
            )
        )
    if settings.workers > 1:
        from flowgate.workers import run_workers

        raise typer.Exit(run_workers(settings))
    from flowgate.server import serve_app

    if not serve_app(settings):
        raise typer.Exit(3)  # as uvicorn.run: the start failed (its log says why)


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port")] = 8090,
) -> None:
    """Run the sandbox upstream (an imitation Gemini API) on its own."""
    from flowgate.sandbox.server import run

    run(host=host, port=port)


@users_app.command("create")
def users_create(name: str) -> None:
    """Create a user; prints its API token alone on the last line."""

    async def action(runtime: Runtime) -> str:
        user, token = await runtime.users.create_user(name)
        return f"created user {user.name} (id {user.id})\n{token}"

    typer.echo(_with_runtime(action))


@users_app.command("token")
def users_token(name: str) -> None:
    """Issue another API token for a user; prints it alone on the last line."""
    typer.echo(_with_runtime(lambda runtime: runtime.users.issue_token(name)))


@users_app.command("list")
def users_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """List users."""
    users = _with_runtime(lambda runtime: runtime.users.list_users())
    if as_json:
        typer.echo(json.dumps([u.__dict__ for u in users], indent=2))
        return
    table = Table("id", "name", "disabled", "credits", "created")
    for u in users:
        table.add_row(
            str(u.id),
            u.name,
            "yes" if u.disabled else "no",
            "unlimited" if u.credits is None else str(u.credits),
            u.created,
        )
    Console().print(table)


@users_app.command("credit")
def users_credit(
    name: str,
    change: Annotated[str, typer.Argument(help="+N adds, -N removes, =N sets, =none: unlimited")],
) -> None:
    """Change a user's credit balance; prints the new balance."""
    balance = _with_runtime(lambda runtime: runtime.credits.change(name, change))
    typer.echo(f"{name}: {'unlimited' if balance is None else balance}")


@users_app.command("disable")
def users_disable(name: str) -> None:
    """Disable a user: every call answers 402 until enabled again."""
    _with_runtime(lambda runtime: runtime.users.set_disabled(name, True))
    typer.echo(f"disabled {name}")


@users_app.command("enable")
def users_enable(name: str) -> None:
    """Enable a disabled user."""
    _with_runtime(lambda runtime: runtime.users.set_disabled(name, False))
    typer.echo(f"enabled {name}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
