"""``comp train exp=042 --fold all [key.sub=value ...]``"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from competition.commands._common import WorkspaceOpt, console, err_console, handle_errors, split_exp_args, workspace
from competition.errors import InputError


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
    if getattr(result, "metric", None) == "entity_f1":     # task tokens: the decoder's setting
        return (f" (the decoder's O bias chosen on the other folds; {result.in_sample:.4f} in-sample, optimistic; "
                f"submissions decode at O bias {result.threshold:+.2f})")
    if isinstance(result.threshold, float):
        thr = f"{result.threshold:.4f}"
    elif len(set(result.threshold)) == 1:   # micro_f1, jaccard: one cut for every label
        thr = f"{result.threshold[0]:.4f} (shared by every label)"
    else:
        thr = "per-label thresholds"
    return (f" (thresholds chosen on the other folds; {result.in_sample:.4f} in-sample, optimistic; "
            f"submissions use {thr})")


FLAGS = {"folds": "--fold", "force": "--force"}   # train()'s arguments -> this command's options


@handle_errors(flags=FLAGS)
def command(
    args: Annotated[list[str] | None, typer.Argument(
        help="exp=042 then key.sub=value overrides, e.g. model.lr=3e-5", show_default=False)] = None,
    fold: Annotated[str, typer.Option("--fold", "-f", help="'all' or fold numbers, e.g. 0,2")] = "all",
    force: Annotated[bool, typer.Option("--force", help="retrain complete folds; accept a changed config")] = False,
    sweep: Annotated[bool, typer.Option(
        "--sweep", help="a W&B sweep agent's run: drop search keys whose `when:` does not hold, write run "
                        "<exp>-sweep-<run id>, report the folds' mean score to the agent's run")] = False,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="local|auto|ADDRESS", show_default=False,
        help="every (experiment, fold) as a Ray task: --ray local starts a Ray on this machine for the "
             "command, --ray auto joins the running cluster, --ray ray://host:10001 a remote one")] = None,
    ws_path: WorkspaceOpt = None,
) -> None:
    """Train an experiment on each fold: OOF predictions, test predictions, CV score.
    exp=042,043 trains several experiments, one after another (or all at once with --ray)."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.config import load_config
    from competition.train import follower_rank, train

    if follower_rank() > 0:   # a ddp rank re-running this command: it trains in step, rank 0 speaks
        console.quiet = err_console.quiet = True
    ws = workspace(ws_path)
    exp, overrides = split_exp_args(args or [])
    exps = [e.strip() for e in exp.split(",") if e.strip()]
    if ray is not None and (ray.startswith("-") or not ray.strip()):
        raise InputError(f"--ray {ray!r}: give where to run: local (a Ray started for this command), auto "
                         "(the running cluster) or a cluster address such as ray://head:10001")
    if ray is not None or len(exps) > 1:
        if sweep:
            raise InputError("--sweep trains one experiment in one process: drop --ray and name one experiment")
        cfgs = [load_config(ws, e, overrides) for e in exps]
        if ray is not None:
            return _train_on_ray(ws, cfgs, overrides, fold, force, ray)
        for cfg in cfgs:
            console.print(f"[bold]experiment {cfg.exp}[/] · {cfg.model.family} · folds {fold}")
            _report(cfg.exp, overrides, cfg, train(ws, cfg, folds=fold, force=force, on_fold=_show_row(ws)))
        return
    if sweep:
        # the stages load on first use, so `comp --help` starts in a fraction of a second
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

    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.models import PROGRESS

    token = PROGRESS.set(lambda line: console.print(line, highlight=False))   # a line per validation
    try:
        result = train(ws, cfg, folds=fold, force=force, on_fold=_show_row(ws))
    finally:
        PROGRESS.reset(token)
    if sweep:
        _report_to_sweep(ws, exp, cfg, result, tracking=load_config(ws, exp, overrides).track)
    _report(exp, overrides, cfg, result)


def _show_row(ws, node: bool = False):
    """The line printed as each fold finishes: its score (at its own threshold, where the metric
    takes one: the other folds' OOF, which the CV uses, comes later), its time, and its node."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition import thresholds
    from competition.spec import load_spec

    spec = load_spec(ws.spec_file)
    own = " at its own threshold" if thresholds.takes_threshold(spec.metric, spec.task) else ""

    def show(row, exp: str | None = None, where: str | None = None):
        score = "-" if row.score is None else f"{row.score:.4f}"
        console.print(f"  {exp + ' ' if exp else ''}fold {row.fold}: {row.status:8s} score {score}"
                      f"{own if row.score is not None else ''}"
                      + (f"  ({row.seconds:.1f}s)" if row.seconds is not None else "")
                      + (f" on {where}" if where else ""), highlight=False)

    return show


def _train_on_ray(ws, cfgs, overrides, fold, force, address) -> None:
    """Every (experiment, fold) as a Ray task; a line per finished fold with its node; each run's
    summary; failed folds named with the command that resumes them (exit 1)."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.dispatch import train_on_ray

    show = _show_row(ws)
    where = "a local Ray" if address == "local" else f"Ray at {address}"
    console.print(f"[bold]experiments {', '.join(c.exp for c in cfgs)}[/] · folds {fold} · {where}")
    out = train_on_ray(ws, cfgs, folds=fold, force=force, address=None if address == "local" else address,
                       on_fold=lambda exp, row, node: show(row, exp, node))
    for cfg in cfgs:
        if out.results.get(cfg.exp) is not None:
            _report(cfg.exp, overrides, cfg, out.results[cfg.exp])
    if out.failed:
        for (exp, k), why in sorted(out.failed.items()):
            err_console.print(f"[red]failed:[/] {exp} fold {k}: {why}", highlight=False)
        lost = sorted({exp for exp, _ in out.failed})
        err_console.print(f"the other folds are kept; resume with `comp train exp={','.join(lost)} --fold all` "
                          "(with or without --ray)", highlight=False)
        raise typer.Exit(1)


def _report(exp: str, overrides: list[str], cfg, result) -> None:
    """A run's per-fold table and its CV line (or what is missing)."""
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
    # the stages load on first use, so `comp --help` starts in a fraction of a second
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
