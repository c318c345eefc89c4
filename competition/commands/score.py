"""``comp score FILE [--solution FILE]``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from competition.commands._common import WorkspaceOpt, console, err_console, handle_errors, workspace


@handle_errors
def command(
    file: Annotated[Path, typer.Argument(help="Submission CSV to score, e.g. submissions/<time>_042_cv0.83.csv")],
    solution: Annotated[Path | None, typer.Option(
        "--solution", help="Solution CSV (the test ids and true targets) to score against instead of "
                           "competition.yaml's `solution:` file.")] = None,
    ws_path: WorkspaceOpt = None,
) -> None:
    """Score a submission against the workspace's solution file (the hidden test targets) and record
    the score in the run it came from (experiments/<run>/scores.json)."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.score import compare_text, score_and_record

    result = score_and_record(workspace(ws_path), file, solution=solution)
    if result.note:
        err_console.print(f"[yellow]warning:[/] {escape(result.note)}", highlight=False, soft_wrap=True)
    console.print(f"[bold green]{result.metric}: {result.score:.4f}[/] on {result.rows} rows "
                  f"({'higher' if result.direction == 'maximize' else 'lower'} is better) · "
                  f"{escape(str(result.path))} against {escape(str(result.solution))}", highlight=False)
    if result.cv is not None:
        console.print(f"run {escape(result.source)}: {compare_text(result.score, result.cv, result.direction)}",
                      highlight=False)
    if result.recorded is not None:
        console.print(f"recorded in {escape(str(result.recorded))}", highlight=False)
    else:
        err_console.print(f"[yellow]note:[/] not recorded: {escape(result.not_recorded or '')}",
                          highlight=False, soft_wrap=True)
