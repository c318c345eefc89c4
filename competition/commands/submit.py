"""``comp submit [SOURCE] [--kaggle] [--message ...]``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from competition.commands._common import WorkspaceOpt, console, handle_errors, workspace

FLAGS = {"out": "--out", "allow_stale": "--allow-stale"}   # submit()'s arguments -> this command's options


@handle_errors(flags=FLAGS)
def command(
    source: Annotated[str | None, typer.Argument(
        help="Run to submit (experiment, stack or blend). Default: the best complete run by CV.")] = None,
    kaggle: Annotated[bool, typer.Option(
        "--kaggle", help="Also hand the file to `kaggle competitions submit` (when installed and configured).")] = False,
    message: Annotated[str | None, typer.Option(
        "--message", "-m", help="Kaggle submission message. Default: the source and its CV.")] = None,
    competition: Annotated[str | None, typer.Option(
        "--competition", "-c", help="Kaggle competition slug. Default: the spec's name.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="File or folder to write to instead of submissions/.")] = None,
    allow_stale: Annotated[bool, typer.Option(
        "--allow-stale", help="Submit a named run although its folds or train data changed since training.")] = False,
    ws_path: WorkspaceOpt = None,
) -> None:
    """Write a run's test predictions as a validated submission CSV (sample submission's format) + manifest."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.api import Workspace

    ws = workspace(ws_path)
    result = Workspace(ws).submit(source, out=out, kaggle=kaggle, message=message, competition=competition,
                    allow_stale=allow_stale)
    cv = "-" if result.cv is None else f"{result.cv:.4f}"
    thr = f", threshold {result.threshold:g}" if isinstance(result.threshold, float) else ""
    console.print(f"[bold green]{result.path}[/] ({result.rows} rows, {result.output}{thr})")
    console.print(f"  source {result.source} ({result.kind}) · CV {result.metric} {cv} · manifest {result.manifest_path.name}")
    for note in result.notes:
        console.print(f"  [yellow]note:[/] {escape(note)}", highlight=False)
    if result.kaggle:
        console.print(f"  kaggle: {result.kaggle}", highlight=False, soft_wrap=True)
