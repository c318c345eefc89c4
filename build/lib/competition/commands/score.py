"""``comp score FILE``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from competition.commands._common import WorkspaceOpt, console, err_console, handle_errors, workspace


@handle_errors
def command(
    file: Annotated[Path, typer.Argument(help="Submission CSV to score, e.g. submissions/<time>_042_cv0.83.csv")],
    ws_path: WorkspaceOpt = None,
) -> None:
    """Score a submission against the workspace's solution file (the hidden test targets)."""
    from competition.score import score_file

    result = score_file(workspace(ws_path), file)
    if result.note:
        err_console.print(f"[yellow]warning:[/] {result.note}", highlight=False, soft_wrap=True)
    console.print(f"[bold green]{result.metric}: {result.score:.4f}[/] on {result.rows} rows "
                  f"({'higher' if result.direction == 'maximize' else 'lower'} is better) · {result.path}")
