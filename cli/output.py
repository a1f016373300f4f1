"""What every command prints with: the consoles, status tables, progress, and clean exits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from devstack import ComponentStatus
from shared.logs import configure_logging as setup_logging
from shared.settings import Settings, secret_values

console = Console()
err = Console(stderr=True)


def show(statuses: list[ComponentStatus]) -> bool:
    """Print one row per part or service; True when every one is healthy."""
    table = Table("part", "state", "url", "pid", "detail")
    for s in statuses:
        state = "[green]healthy[/green]" if s.healthy else "[red]down[/red]"
        table.add_row(s.name, state, s.url, str(s.pid or "-"), s.detail)
    console.print(table)
    return all(s.healthy for s in statuses)


def progress(message: str) -> None:
    err.print(f"[dim]·[/dim] {message}")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` on stderr; the caller raises what this returns."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@contextmanager
def exit_on(error: type[Exception], code: int) -> Iterator[None]:
    """Turn `error` into a one-line message on stderr and exit status `code`."""
    try:
        yield
    except error as exc:
        # A KeyError's str() is its repr, quotes included: show the message itself.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise fail(str(message), code) from None


def configure_logging(level: str, settings: Settings | None = None, force: bool = False) -> None:
    """Log to stderr at `level`, in the settings' format, their secrets masked (the
    environment's settings when none are given); `force`: even if logging is configured
    already (`shared.logs.configure_logging`)."""
    if settings is None:
        try:
            settings = Settings()
        except ValidationError:  # the command reports it; log as text meanwhile
            setup_logging(level, force=force)
            return
    setup_logging(level, settings.log_format, secret_values(settings), force=force)
