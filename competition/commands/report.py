"""``comp report [--out DIR] [--runs a,b] [--force]``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from competition.commands._common import WorkspaceOpt, console, handle_errors, parse_csv_list, workspace

FLAGS = {"out": "--out", "runs": "--runs", "force": "--force"}   # report()'s arguments -> this command's options


@handle_errors(flags=FLAGS)
def command(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="report folder (default: "
                                             "reports/<UTC time>/ in the workspace)")] = None,
    runs: Annotated[str | None, typer.Option("--runs", "-r", help="runs to plot, e.g. 042,043,s01 "
                                             "(default: every complete run on the current folds)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace the earlier report in --out")] = False,
    ws_path: WorkspaceOpt = None,
) -> None:
    """Plots of the runs (per-fold scores, OOF correlations, confusion / residuals, calibration,
    learning curves, stack importance) and an HTML page showing them with the leaderboard."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.report import report

    ws = workspace(ws_path)
    result = report(ws, out=out, runs=parse_csv_list(runs), force=force)
    for plot in result.skipped:
        console.print(f"[dim]skipped {plot.title}: {plot.caption}[/]", highlight=False)
    console.print(f"{len(result.written)} plots of {', '.join(result.runs)}:", highlight=False)
    typer.echo(str(result.index))
