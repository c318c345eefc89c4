"""What every command shares: the workspace option, the console, error handling, the ``exp=042 a.b=c``
arguments, and the table comparing a stack or blend with its inputs."""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from competition.errors import DataWarning

console = Console(soft_wrap=True)  # never break a path or command in two: users copy them
err_console = Console(stderr=True, soft_wrap=True)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar="COMP_WORKSPACE",
                 help="Workspace folder (holds competition.yaml). Default: found by walking up from here."),
]


COMMON_FLAGS = {"workspace": "--workspace"}   # find_workspace's explicit folder: every command's --workspace


def handle_errors(fn=None, *, data_warnings: str = "summary", flags: dict[str, str] | None = None):
    """Bad-input errors become a red message and exit code 2 (not a traceback); warnings one line
    each. ``data_warnings="full"`` (comp init, comp check) shows every warning about the data files;
    other commands end with one line counting them.

    ``flags`` maps the library arguments the command fills from its options to those options
    (``{"folds": "--fold"}``): an error naming an argument names the flag instead
    (:meth:`competition.errors.InputError.phrased`)."""
    if fn is None:
        return functools.partial(handle_errors, data_warnings=data_warnings, flags=flags)
    names = {**COMMON_FLAGS, **(flags or {})}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # the stages load on first use, so `comp --help` starts in a fraction of a second
        from competition.errors import INTERRUPTED, InputError

        try:
            with user_warnings(data_in_full=data_warnings == "full", console=err_console):
                return fn(*args, **kwargs)
        except InputError as err:   # a WorkspaceError too
            # escaped: messages quote YAML lists such as [keyword, text], which are not markup
            err_console.print(f"[bold red]error:[/] {escape(err.phrased(names))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as err:      # a read-only, forbidden or full folder (a lock, a run folder): one line
            # the stages load on first use, so `comp --help` starts in a fraction of a second
            from competition.artifacts import unwritable

            known = unwritable(err)
            if known is None:
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(known))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print(f"[yellow]{INTERRUPTED}[/]")
            raise typer.Exit(130) from None

    return wrapper


def workspace(path: Path | None):
    """The workspace named by --workspace / $COMP_WORKSPACE, else the one above the current folder."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.workspace import find_workspace

    return find_workspace(explicit=path)


def parse_csv_list(value: str | None) -> list[str] | None:
    """'a,b, c' -> ['a', 'b', 'c']; None or '' -> None."""
    if not value:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def split_exp_args(args: list[str], verb: str = "train") -> tuple[str, list[str]]:
    """``['exp=042', 'model.lr=3e-5']`` -> ``('042', ['model.lr=3e-5'])``; a bare first word is the id too.

    >>> split_exp_args(["exp=042", "model.lr=3e-5"])
    ('042', ['model.lr=3e-5'])
    >>> split_exp_args(["043"])
    ('043', [])
    """
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.errors import InputError

    exp, overrides = None, []
    for arg in args:
        if arg.startswith("exp="):
            exp = arg.split("=", 1)[1]
        elif "=" not in arg and exp is None:
            exp = arg
        else:
            overrides.append(arg)
    if not exp:
        raise InputError(f"name the experiment: `comp {verb} exp=042` (its file is experiments/042.yaml)")
    return exp, overrides


def show_comparison(result, title: str, extra: dict[str, str] | None = None) -> None:
    """Print each input's CV, the combined run's CV and its gain over the best single input
    (a stack and a blend report alike)."""
    table = Table(title=title)
    for col in ("run", f"CV {result.metric}", "weight / importance"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for run, score in result.input_scores.items():
        mark = " (best single)" if run == result.best_input else ""
        table.add_row(f"{run}{mark}", f"{score:.4f}", (extra or {}).get(run, ""))
    folds = ", ".join(f"{s:.4f}" for s in result.fold_scores.values())
    table.add_row(f"[bold]{result.name}[/]", f"[bold]{result.oof_score:.4f}[/]", f"folds {folds}")
    console.print(table)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(gain_line(result))


def gain_line(result) -> str:
    """The combined run against its best input: the gain, its 95% paired interval, and plainly
    whether it is more than noise.

    >>> from types import SimpleNamespace as NS
    >>> from competition.bootstrap import Comparison
    >>> r = NS(name="s01", best_input="042", metric="f1", oof_score=0.8100, best_input_score=0.8095,
    ...        run_dir="experiments/s01", versus_best=Comparison(0.0005, -0.0031, 0.0042, True))
    >>> print(gain_line(r))
    [yellow]s01 is not significantly better than its best input 042[/]: +0.0005 [-0.0031, +0.0042] (f1, 95% paired bootstrap); the gain may be noise, prefer 042. Kept at experiments/s01
    """
    c = result.versus_best
    figures = f"{c.text()} ({result.metric}, 95% paired bootstrap)"
    if c.better > 0 and c.significant:
        return (f"[bold green]{result.name} beats its best input {result.best_input}[/]: {figures} -> "
                f"{result.run_dir}")
    if c.better > 0:
        return (f"[yellow]{result.name} is not significantly better than its best input {result.best_input}[/]: "
                f"{figures}; the gain may be noise, prefer {result.best_input}. Kept at {result.run_dir}")
    return (f"[yellow]{result.name} does not beat its best input {result.best_input}[/]: {figures}. "
            f"Kept at {result.run_dir}")


@contextlib.contextmanager
def user_warnings(data_in_full: bool = True, console=None):
    """Warnings are for the user: one yellow line each, no source location, each text once
    (stages that load the data again do not repeat its warnings). With ``data_in_full`` False,
    warnings about the data files (:class:`~competition.data.DataWarning`) are counted, not shown:
    one line at the end says how many there were and that ``comp check`` lists them. ``console``
    is the rich Console they are printed on (default: a new one on stderr)."""

    console = console if console is not None else Console(stderr=True, soft_wrap=True)
    shown: set[str] = set()
    about_data: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not data_in_full and issubclass(category, DataWarning):
            about_data.add(str(message))
        elif str(message) not in shown:
            shown.add(str(message))
            console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)

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
            console.print(f"[yellow]note:[/] {n} data warning{'s' if n > 1 else ''} about the files "
                          "(`comp check` lists them)", highlight=False, soft_wrap=True)
