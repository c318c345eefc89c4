"""What every command shares: the workspace option, the console, error handling."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(soft_wrap=True)  # never break a path or command in two: users copy them
err_console = Console(stderr=True, soft_wrap=True)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar="COMP_WORKSPACE",
                 help="Workspace folder (holds competition.yaml). Default: found by walking up from here."),
]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings are for the user: one yellow line each, no source location."""
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def handle_errors(fn):
    """Bad-input errors become a red message and exit code 2 (not a traceback); warnings one line each."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from competition.errors import InputError
        from competition.workspace import WorkspaceError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("once")
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except (InputError, WorkspaceError) as err:
            err_console.print(f"[bold red]error:[/] {err}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted: finished artifacts are kept; run the command again to resume[/]")
            raise typer.Exit(130) from None

    return wrapper


def workspace(path: Path | None):
    """The workspace named by --workspace / $COMP_WORKSPACE, else the one above the current folder."""
    from competition.workspace import find_workspace

    return find_workspace(explicit=path)


def parse_csv_list(value: str | None) -> list[str] | None:
    """'a,b, c' -> ['a', 'b', 'c']; None or '' -> None."""
    if not value:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]
