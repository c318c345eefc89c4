"""``comp tune exp=042 [--trials 30] [--sampler tpe|random|grid|cmaes] [--pruner median|hyperband|wilcoxon|none]
[--folds 0|0,1|all] [--storage URL] [--study NAME] [--seed N] [--show] [--export-wandb-sweep FILE] [key.sub=value ...]``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from competition.commands._common import WorkspaceOpt, console, handle_errors, split_exp_args, workspace

FLAGS = {"folds": "--folds", "force": "--force"}   # tune()'s arguments -> this command's options


@handle_errors(flags=FLAGS)
def command(
    args: Annotated[list[str] | None, typer.Argument(
        help="exp=042 then key.sub=value overrides for every trial", show_default=False)] = None,
    trials: Annotated[int | None, typer.Option(
        "--trials", "-n", min=1,
        help="The study's total of finished (complete + pruned) trials; every worker stops there. "
             "Default: the total the study was given before, else 20 (grid: the grid's size).")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="tpe | random | grid | cmaes")] = "tpe",
    pruner: Annotated[str, typer.Option("--pruner", help="median | hyperband | wilcoxon | none")] = "median",
    folds: Annotated[str, typer.Option("--folds", "-f", help="folds each trial trains: 0, 0,1 or all")] = "0",
    storage: Annotated[str | None, typer.Option(
        "--storage", envvar="COMP_TUNE_STORAGE",
        help="Optuna RDB URL shared by parallel workers, e.g. postgresql://user:pw@host/db "
             "(default: sqlite tuning.db in the workspace)")] = None,
    study: Annotated[str | None, typer.Option("--study", help="study name (default: the experiment id)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="sampler seed (default: the experiment's)")] = None,
    heartbeat: Annotated[int, typer.Option(
        "--heartbeat", min=1, help="seconds between heartbeats; a trial silent for twice that is failed "
                                   "and run again")] = 60,
    show: Annotated[bool, typer.Option("--show", help="show the study: best trials, importances, states")] = False,
    sweep_file: Annotated[Path | None, typer.Option(
        "--export-wandb-sweep", help="write the search space as a W&B sweep config to this file and stop")] = None,
    no_export: Annotated[bool, typer.Option("--no-export", help="don't write the best trial as an experiment")] = False,
    keep_trials: Annotated[bool, typer.Option(
        "--keep-trials", help="keep each trial's artifacts under experiments/.tune/")] = False,
    ray: Annotated[int | None, typer.Option(
        "--ray", min=1, help="start this many tuning workers as Ray tasks on the study (its --storage must be "
                             "an RDB server every worker reaches, e.g. PostgreSQL)")] = None,
    ray_address: Annotated[str, typer.Option(
        "--ray-address", help="with --ray: local (a Ray started for this command), auto (the running "
                              "cluster) or a cluster address")] = "local",
    ws_path: WorkspaceOpt = None,
) -> None:
    """Optuna search over the experiment's `search:` block; the best trial becomes a new experiment."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.search import wandb_sweep, write_wandb_sweep
    from competition.tune import summarize, tune

    ws = workspace(ws_path)
    exp, overrides = split_exp_args(args or [], "tune")
    if sweep_file is not None:
        sweep = wandb_sweep(ws, exp, overrides=overrides, sampler=sampler, pruner=pruner, folds=folds)
        path = write_wandb_sweep(sweep_file, sweep)
        console.print(f"W&B sweep ({sweep['method']}, {len(sweep['parameters'])} parameters) -> {path}\n"
                      f"start it with `wandb sweep {path}`, then `wandb agent <sweep id>`")
        return
    if show:
        _show(summarize(ws, exp, storage=storage, study=study))
        return

    def progress(trial) -> None:
        state = trial.state.name.lower()
        value = "" if trial.value is None else f" {trial.value:.4f}"
        error = trial.user_attrs.get("error")
        params = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        console.print(f"  trial {trial.number}: {state}{value}  {params}"
                      + (f"\n    [red]{error}[/]" if error else ""), highlight=False)

    if ray is not None:
        # the stages load on first use, so `comp --help` starts in a fraction of a second
        from competition.dispatch import tune_on_ray

        console.print(f"[bold]tuning {exp}[/] · {ray} workers on Ray ({ray_address}) · sampler {sampler} · "
                      f"pruner {pruner} · folds {folds}")
        out = tune_on_ray(ws, exp, ray, storage=storage, address=None if ray_address == "local" else ray_address,
                          export=not no_export, overrides=overrides, trials=trials, sampler=sampler, pruner=pruner,
                          folds=folds, study=study, seed=seed, heartbeat=heartbeat, keep_trials=keep_trials)
        for ran, node in zip(out["ran"], out["nodes"]):
            console.print(f"  worker on {node}: {ran} trial(s)", highlight=False)
        _show(summarize(ws, exp, storage=storage, study=study))
        if out["exported"] is not None:
            console.print(f"best trial -> {out['exported']}; train it with "
                          f"`comp train exp={out['exported'].stem} --fold all`")
        return
    console.print(f"[bold]tuning {exp}[/] · sampler {sampler} · pruner {pruner} · folds {folds}")
    result = tune(ws, exp, overrides=overrides, trials=trials, sampler=sampler, pruner=pruner, folds=folds,
                  storage=storage, study=study, seed=seed, heartbeat=heartbeat, export=not no_export,
                  keep_trials=keep_trials, on_trial=progress)
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.states.items()))
    console.print(f"study {result.study!r} ({result.storage}): ran {result.ran} trial(s) here; "
                  f"the study holds {states or 'none'} (target {result.total} finished)", highlight=False)
    if result.best_number is None:
        console.print("[yellow]no complete trial yet[/]")
        return
    params = " ".join(f"{k}={_short(v)}" for k, v in result.best_params.items())
    console.print(f"[bold green]best {result.metric} {result.best_value:.4f}[/] (trial {result.best_number}, "
                  f"folds {','.join(map(str, result.folds))}): {params}", highlight=False)
    if result.exported is not None:
        console.print(f"best trial -> {result.exported}; train it with "
                      f"`comp train exp={result.exported.stem} --fold all`")
    console.print(f"browse the study: optuna-dashboard {result.storage}", highlight=False)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _show(summary) -> None:
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary.states.items())) or "no trials"
    console.print(f"[bold]study {summary.study}[/] ({summary.storage}) · {summary.metric} "
                  f"({summary.direction}) on folds {summary.folds} · {states} · target {summary.total}",
                  highlight=False)
    if summary.best:
        table = Table(title="best trials")
        for col in ("trial", summary.metric, "seconds", "parameters"):
            table.add_column(col, justify="left" if col == "parameters" else "right")
        for row in summary.best:
            table.add_row(str(row["number"]), f"{row['value']:.4f}",
                          "-" if row["seconds"] is None else f"{row['seconds']:.1f}",
                          " ".join(f"{k}={_short(v)}" for k, v in row["params"].items()))
        console.print(table)
    if summary.importances:
        table = Table(title="parameter importances (fANOVA)")
        table.add_column("parameter")
        table.add_column("importance", justify="right")
        for key, value in summary.importances.items():
            table.add_row(key, f"{value:.3f}")
        console.print(table)
    elif summary.importance_note:
        console.print(f"[yellow]{summary.importance_note}[/]")


if __name__ == "__main__":  # pragma: no cover - `python -m competition.commands.tune` until cli wires it
    typer.run(command)
