"""What every command shares: the workspace option, the console, error handling."""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)  # never break a path or command in two: users copy them
err_console = Console(stderr=True, soft_wrap=True)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar="COMP_WORKSPACE",
                 help="Workspace folder (holds competition.yaml). Default: found by walking up from here."),
]


@contextlib.contextmanager
def user_warnings(data_in_full: bool = True):
    """Warnings are for the user: one yellow line each, no source location, each text once
    (stages that load the data again do not repeat its warnings). With ``data_in_full`` False,
    warnings about the data files (:class:`~competition.data.DataWarning`) are counted, not shown:
    one line at the end says how many there were and that ``comp check`` lists them."""
    from competition.data import DataWarning

    shown: set[str] = set()
    about_data: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not data_in_full and issubclass(category, DataWarning):
            about_data.add(str(message))
        elif str(message) not in shown:
            shown.add(str(message))
            err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for developer_only in (DeprecationWarning, PendingDeprecationWarning):   # as Python's default
                warnings.simplefilter("ignore", developer_only)
            warnings.showwarning = show
            yield
    finally:
        if about_data:
            n = len(about_data)
            err_console.print(f"[yellow]note:[/] {n} data warning{'s' if n > 1 else ''} about the files "
                              "(`comp check` lists them)", highlight=False, soft_wrap=True)


def handle_errors(fn=None, *, data_warnings: str = "summary"):
    """Bad-input errors become a red message and exit code 2 (not a traceback); warnings one line
    each. ``data_warnings="full"`` (comp init, comp check) shows every warning about the data files;
    other commands end with one line counting them."""
    if fn is None:
        return functools.partial(handle_errors, data_warnings=data_warnings)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from competition.errors import INTERRUPTED, InputError
        from competition.workspace import WorkspaceError

        try:
            with user_warnings(data_in_full=data_warnings == "full"):
                return fn(*args, **kwargs)
        except (InputError, WorkspaceError) as err:
            # escaped: messages quote YAML lists such as [keyword, text], which are not markup
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print(f"[yellow]{INTERRUPTED}[/]")
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
