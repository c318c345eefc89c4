"""``comp train exp=042 --fold all [key.sub=value ...]``"""

from __future__ import annotations

from typing import Annotated

import typer

from competition.commands._common import WorkspaceOpt, console, err_console, handle_errors, workspace


def split_exp_args(args: list[str], verb: str = "train") -> tuple[str, list[str]]:
    """``['exp=042', 'model.lr=3e-5']`` -> ``('042', ['model.lr=3e-5'])``; a bare first word is the id too.

    >>> split_exp_args(["exp=042", "model.lr=3e-5"])
    ('042', ['model.lr=3e-5'])
    >>> split_exp_args(["043"])
    ('043', [])
    """
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


def cv_note(result) -> str:
    """What a threshold metric's CV means, beside it: nested, the optimistic in-sample figure, the
    threshold submissions use.

    >>> from types import SimpleNamespace as NS
    >>> cv_note(NS(in_sample=0.81234, threshold=0.4321))
    ' (thresholds chosen on the other folds; 0.8123 in-sample, optimistic; submissions use 0.4321)'
    >>> cv_note(NS(in_sample=None, threshold=None))
    ''
    """
    if result.in_sample is None:
        return ""
    if isinstance(result.threshold, float):
        thr = f"{result.threshold:.4f}"
    elif len(set(result.threshold)) == 1:   # micro_f1, jaccard: one cut for every label
        thr = f"{result.threshold[0]:.4f} (shared by every label)"
    else:
        thr = "per-label thresholds"
    return (f" (thresholds chosen on the other folds; {result.in_sample:.4f} in-sample, optimistic; "
            f"submissions use {thr})")


@handle_errors
def command(
    args: Annotated[list[str] | None, typer.Argument(
        help="exp=042 then key.sub=value overrides, e.g. model.lr=3e-5", show_default=False)] = None,
    fold: Annotated[str, typer.Option("--fold", "-f", help="'all' or fold numbers, e.g. 0,2")] = "all",
    force: Annotated[bool, typer.Option("--force", help="retrain complete folds; accept a changed config")] = False,
    sweep: Annotated[bool, typer.Option(
        "--sweep", help="a W&B sweep agent's run: drop search keys whose `when:` does not hold, write run "
                        "<exp>-sweep-<run id>, report the folds' mean score to the agent's run")] = False,
    ws_path: WorkspaceOpt = None,
) -> None:
    """Train an experiment on each fold: OOF predictions, test predictions, CV score."""
    from rich.markup import escape
    from rich.table import Table

    from competition.config import load_config
    from competition.train import train

    ws = workspace(ws_path)
    exp, overrides = split_exp_args(args or [])
    if sweep:
        from competition.search import sweep_overrides, sweep_run_name

        overrides, dropped = sweep_overrides(ws, exp, overrides)
        if dropped:
            console.print(f"sweep: dropped {escape(' '.join(dropped))} (their `when:` does not hold)", highlight=False)
    cfg = load_config(ws, exp, overrides)
    if sweep:
        cfg = cfg.model_copy(update={"exp": sweep_run_name(exp, overrides),
                                     "track": cfg.track.model_copy(update={"wandb": False})})
    console.print(f"[bold]experiment {exp}[/] · {cfg.model.family} · folds {fold}"
                  + (f" · run {cfg.exp}" if sweep else ""))

    from competition import metrics
    from competition.spec import load_spec

    spec = load_spec(ws.spec_file)
    # a fold's own threshold while it trains: the other folds' OOF, which the CV uses, comes later
    own = " at its own threshold" if metrics.takes_threshold(spec.metric, spec.task) else ""

    def show(row):
        score = "-" if row.score is None else f"{row.score:.4f}"
        console.print(f"  fold {row.fold}: {row.status:8s} score {score}{own if row.score is not None else ''}"
                      + (f"  ({row.seconds:.1f}s)" if row.seconds is not None else ""))

    from competition.models import PROGRESS

    token = PROGRESS.set(lambda line: console.print(line, highlight=False))   # a line per validation
    try:
        result = train(ws, cfg, folds=fold, force=force, on_fold=show)
    finally:
        PROGRESS.reset(token)
    if sweep:
        _report_to_sweep(ws, exp, cfg, result, tracking=load_config(ws, exp, overrides).track)
    table = Table(title=f"{exp}: {result.metric} per fold"
                  + (" (thresholds chosen on the other folds)" if result.in_sample is not None else ""))
    for col in ("fold", "status", "score", "best epoch", "seconds"):
        table.add_column(col, justify="right")
    for row in result.folds:
        table.add_row(str(row.fold), row.status, "-" if row.score is None else f"{row.score:.4f}",
                      "-" if row.best_epoch is None else str(row.best_epoch),
                      "-" if row.seconds is None else f"{row.seconds:.1f}")
    console.print(table)
    if result.complete:
        console.print(f"[bold green]OOF {result.metric}: {result.oof_score:.4f}[/]{cv_note(result)} -> {result.run_dir}")
        if result.trivial:
            err_console.print(f"[yellow]warning:[/] {cfg.exp} learnt nothing usable: {result.trivial}. "
                              "`comp stack` and `comp blend` leave it out unless named.", highlight=False)
    elif result.other_config:
        folds = ",".join(map(str, result.other_config))
        keys = sorted({k for diff in result.other_config.values() for k in diff})
        console.print(f"[yellow]partial run[/]: folds {folds} were trained with another config "
                      f"(changed: {', '.join(keys[:8])}); no CV until every fold shares one. Train them "
                      f"with this config: `{escape(' '.join(['comp train', f'exp={exp}', *overrides, '--fold', folds]))}`",
                      highlight=False)
    else:
        console.print(f"[yellow]not every fold is complete yet[/]: train the rest with "
                      f"`comp train exp={exp} --fold all`")


def _report_to_sweep(ws, exp: str, cfg, result, tracking) -> None:
    """The agent's W&B run (``wandb.init`` picks its id up from the agent's environment) gets the
    mean score of the folds this command trained or found done, under ``track.SCORE``."""
    from competition import track
    from competition.spec import load_spec

    scores = {row.fold: row.score for row in result.folds if row.score is not None}
    if not scores:
        return
    tracker = track.start(enabled=tracking.wandb, project=tracking.project or load_spec(ws.spec_file).name,
                          group=exp, name=cfg.exp, config=cfg.to_dict(), run_dir=result.run_dir, job_type="sweep")
    tracker.summary({track.SCORE: sum(scores.values()) / len(scores),
                     **{f"fold{k}/score": v for k, v in scores.items()}})
    tracker.finish()
