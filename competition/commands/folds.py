"""``comp folds [--scheme S] [--n-splits K] [--seed N] [--force]``: write folds/folds.csv once."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.table import Table

from competition.commands._common import WorkspaceOpt, console, handle_errors, workspace

SCHEME_HELP = ("kfold, stratified, group, stratified-group, multilabel-stratified, binned-stratified "
               "or time-ordered. Default: the spec's folds.scheme (else from the task)")


def summary_table(frame, title: str | None = None):
    """A rich Table of :func:`competition.folds.summary`'s frame: counts as integers, rest 4 digits."""
    table = Table(title=title)
    table.add_column("fold", justify="right")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for name, row in frame.iterrows():
        cells = [f"{int(v):,}" if c == "rows" else f"{v:.4f}" for c, v in row.items()]
        table.add_row(str(name), *cells, style="bold" if name == "all" else None)
    return table


FLAGS = {"scheme": "--scheme", "force": "--force"}   # write_folds()'s arguments -> this command's options


@handle_errors(flags=FLAGS)
def command(
    ws_path: WorkspaceOpt = None,
    scheme: Annotated[str | None, typer.Option("--scheme", "-s", help=SCHEME_HELP)] = None,
    n_splits: Annotated[int | None, typer.Option("--n-splits", "-k", min=2,
                                                 help="number of folds (default: the spec's folds.n_splits)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="splitter seed (default: the spec's folds.seed)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace folds that trained runs already use")] = False,
) -> None:
    """Assign every train row to a fold and write folds/folds.csv with its manifest."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition import data, folds, splitters
    from competition.spec import load_spec

    ws = workspace(ws_path)
    spec = load_spec(ws.spec_file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", splitters.FoldWarning)
        warnings.simplefilter("ignore", data.DataWarning)  # `comp check` reports those
        ds = data.load(spec, with_test=False)
        result = folds.write_folds(ws, ds, scheme=scheme, n_splits=n_splits, seed=seed, force=force)
    m = result.manifest
    extra = "".join(f", {k} {m[k]!r}" for k in ("group", "time", "bins") if m.get(k) is not None)
    title = f"{spec.name}: {m['scheme']}, {m['n_splits']} folds, seed {m['seed']}{extra}"
    console.print(f"[bold]{title}[/]", highlight=False)
    console.print(summary_table(folds.summary(result.folds, ds.y, spec.task, ds.labels)))
    for warning in caught:
        console.print(f"[yellow]warning:[/] {warning.message}", highlight=False, soft_wrap=True)
    if result.status == "unchanged":
        console.print(f"[green]unchanged[/]: {ws.folds_file} already holds these folds "
                      f"(folds_hash {m['folds_hash']}); kept as they are")
        if result.files:
            console.print(f"updated {result.files[0]}")
        return
    for path in result.files:
        console.print(f"wrote {path}")
    if result.replaced_runs:
        console.print(f"[yellow]replaced folds used by {', '.join(result.replaced_runs)}[/]: retrain them "
                      "(`comp train exp=<id> --force`) before stacking or blending them")
    console.print(f"[bold green]folds {result.status}[/] (folds_hash {m['folds_hash']})")
