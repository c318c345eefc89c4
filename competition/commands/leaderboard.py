"""``comp leaderboard [--json]``"""

from __future__ import annotations

from typing import Annotated

import typer

from competition.commands._common import WorkspaceOpt, console, handle_errors, workspace


@handle_errors
def command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ws_path: WorkspaceOpt = None,
) -> None:
    """Every run with its CV, per-fold mean ± std, train time and status (complete / partial / stale)."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition import metrics
    from competition.leaderboard import leaderboard, show, to_json
    from competition.spec import load_spec

    ws = workspace(ws_path)
    spec = load_spec(ws.spec_file)
    direction = metrics.METRICS[spec.metric].direction
    entries = leaderboard(ws)
    if as_json:
        typer.echo(to_json(entries, spec.metric, direction))
        return
    if not entries:
        console.print("no runs yet: train one with `comp train exp=001 --fold all`")
        return
    show(console, entries, spec.metric, direction)
