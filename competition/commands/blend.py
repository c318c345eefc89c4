"""``comp blend [--exp 042,043,s01] [--method hill-climb|mean|weighted|rank|vote-hard|vote-soft|moe] [--name b01]``"""

from __future__ import annotations

from typing import Annotated

import typer

from competition.commands._common import (
    WorkspaceOpt,
    console,
    handle_errors,
    parse_csv_list,
    show_comparison,
    workspace,
)

FLAGS = {"inputs": "--exp", "method": "--method", "name": "--name", "force": "--force"}   # blend()'s arguments


@handle_errors(flags=FLAGS)
def command(
    exp: Annotated[str | None, typer.Option("--exp", "-e", help="runs to blend, e.g. 042,043,s01 "
                                            "(default: every complete experiment on the current folds)")] = None,
    method: Annotated[str, typer.Option(
        "--method", "-m", help="hill-climb, mean, weighted, rank, vote-hard, vote-soft or moe")] = "hill-climb",
    name: Annotated[str | None, typer.Option(
        "--name", help="name of the blend run (default: next free b01, b02, ...)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing blend of that name")] = False,
    ws_path: WorkspaceOpt = None,
) -> None:
    """Blend runs' predictions; weights are fit fold by fold, so the blend's CV is honest."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.api import Workspace

    result = Workspace(workspace(ws_path)).blend(parse_csv_list(exp), method=method, name=name, force=force)
    if result.same_as:
        console.print(f"[yellow]{method} put all the weight on {result.same_as}[/]: the blend is "
                      f"{result.same_as} itself (CV {result.oof_score:.4f}), so no blend run is written. "
                      f"Submit it as it is: `comp submit {result.same_as}`.", highlight=False)
        return
    show_comparison(result, f"blend {result.name}: {method} of {len(result.input_scores)} runs "
                    f"(in-sample {result.in_sample_score:.4f}, optimistic)",
                    {run: f"{w:.3f}" for run, w in result.weights.items()})
