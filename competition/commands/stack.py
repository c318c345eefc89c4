"""``comp stack [--exp 042,043] [--with-features keyword,text_len] [--meta lgbm|logistic|ridge] [--name s01]``"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from competition.commands._common import (
    WorkspaceOpt,
    console,
    handle_errors,
    parse_csv_list,
    show_comparison,
    workspace,
)

FLAGS = {"inputs": "--exp", "features": "--with-features", "meta": "--meta", "name": "--name",
         "holdout": "--holdout", "force": "--force"}   # stack()'s arguments -> this command's options


@handle_errors(flags=FLAGS)
def command(
    exp: Annotated[str | None, typer.Option("--exp", "-e", help="runs to stack, e.g. 042,043,s01 "
                                            "(default: every complete experiment on the current folds)")] = None,
    with_features: Annotated[str | None, typer.Option(
        "--with-features", help="row features too: text_len, n_words or raw columns, e.g. keyword,text_len")] = None,
    meta: Annotated[str, typer.Option("--meta", help="meta-model: lgbm, logistic or ridge")] = "lgbm",
    name: Annotated[str | None, typer.Option(
        "--name", help="name of the stack run (default: next free s01, s02, ...)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the meta-model (and of the --holdout rows)")] = 42,
    holdout: Annotated[float | None, typer.Option(
        "--holdout", help="share of rows kept out: retrain the inputs and the stack without them and check "
                          "the stack beats its best input and their mean there (e.g. 0.1)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing stack of that name")] = False,
    ws_path: WorkspaceOpt = None,
) -> None:
    """Fit a meta-model over the OOF predictions of experiments, on the same folds."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.api import Workspace

    result = Workspace(workspace(ws_path)).stack(parse_csv_list(exp), features=parse_csv_list(with_features),
                                                 meta=meta, name=name, seed=seed, force=force, holdout=holdout)
    shares = {}
    for feature, share in result.importance.items():  # multiclass inputs have one feature per class
        run = feature.split(":")[0]
        shares[run] = shares.get(run, 0.0) + share
    extras = [f"{f} {s:.0%}" for f, s in result.importance.items() if f in result.features]
    console.print(f"mean of the inputs: {result.mean_blend_score:.4f}"
                  + (f"; features: {', '.join(extras)}" if extras else ""))
    show_comparison(result, f"stack {result.name}: {result.meta} meta-model on {len(result.input_scores)} runs",
                    {run: f"{share:.0%}" for run, share in shares.items()})
    if result.holdout is not None:
        show_holdout(result)


def show_holdout(result) -> None:
    """The stack, its inputs and their mean on the outer holdout rows, and the verdict."""
    h = result.holdout
    table = Table(title=f"holdout: {h.rows:,} rows ({h.fraction:g}) kept out of every fit, seed {h.seed}")
    table.add_column("run")
    table.add_column(f"{result.metric} on the holdout", justify="right")
    for run, score in h.scores.items():
        label = {"stack": f"[bold]{result.name}[/] (stack)", "mean": "mean of the inputs"}.get(run, run)
        table.add_row(label + (" (best input)" if run == h.best_input else ""), f"{score:.4f}")
    console.print(table)
    gap = f"{h.versus_best['diff']:+.4f} [{h.versus_best['low']:+.4f}, {h.versus_best['high']:+.4f}]"
    if h.preferred:
        console.print(f"[bold green]{result.name} beats its best input {h.best_input} and the inputs' mean on "
                      f"the holdout[/] ({gap} vs {h.best_input}).")
    else:
        console.print(f"[yellow]{result.name} does not beat both its best input {h.best_input} and the inputs' "
                      f"mean on the holdout[/] ({gap} vs {h.best_input}): its CV may be stacked overfitting. "
                      f"It is marked not preferred: `comp submit` passes over it unless it is named.",
                      highlight=False)

