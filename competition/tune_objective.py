"""One trial of ``comp tune``: the objective and the reporter that feeds the pruner.

:func:`objective` applies a trial's sampled values as ``key=value`` overrides, trains the
chosen folds into the tuning scratch area (never the experiment's own folder) and returns
the mean of the fold scores. A config the sampled values make invalid, or a training that
refuses its input, is a failed trial (value NaN, the reason in its ``error`` attribute).

:class:`Reporter` reports to the pruner the running mean after each fold (Wilcoxon: each
fold's score, step = fold number) and, for the torch families, after each validation
inside a fold: fold ``i`` (its position among the chosen folds) reports its validations at
steps ``i*(V+1) .. i*(V+1)+V-1`` and its fold score at ``i*(V+1)+V``, V being the most
validations a fold can make (:func:`validations_per_fold`).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from competition import track
from competition.config import ExperimentConfig, load_config
from competition.errors import InputError
from competition.families import torch_families
from competition.models.callbacks import FoldMonitor
from competition.models.torch_common import EXTRA_CALLBACKS
from competition.search import Param, as_override, sample
from competition.train import train
from competition.tune_storage import AskLock
from competition.workspace import Workspace


@dataclass(frozen=True)
class _TrialWorkspace(Workspace):
    """The workspace as a trial sees it: the trial's own run folder lives in the tuning scratch
    area, never in the experiment's own folder (whose artifacts a trial must not touch); other runs
    (the sources of ``pseudo`` and ``distill``) are the workspace's."""

    scratch: Path = Path(".")
    trial: str = ""

    def run_dir(self, exp: str) -> Path:
        return self.scratch / exp if exp == self.trial else super().run_dir(exp)


class Reporter:
    """Reports a trial's progress to its pruner (the steps: see the module docstring)."""

    def __init__(self, trial, folds: list[int], per_fold: int, wilcoxon: bool, tracker):
        self.trial, self.folds, self.per_fold, self.wilcoxon, self.tracker = trial, folds, per_fold, wilcoxon, tracker
        self.scores: dict[int, float] = {}
        self._validations = 0

    @property
    def value(self) -> float:
        return float(sum(self.scores.values()) / len(self.scores))

    def _report(self, step: int, value: float, last: bool = False) -> None:
        # optuna: only tuning needs it
        import optuna

        self.trial.report(value, step)
        self.tracker.log({"tune/value": value}, step=step)
        if not last and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} (value {value:.6g})")

    def validation(self, score: float) -> None:
        """After each validation of a torch fold: the running mean with this fold at ``score``."""
        if self.wilcoxon or self._validations >= self.per_fold or not math.isfinite(score):
            return
        position = len(self.scores)
        step = position * (self.per_fold + 1) + self._validations
        self._validations += 1
        self._report(step, (sum(self.scores.values()) + score) / (position + 1))

    def fold(self, row) -> None:
        """After each fold (``train``'s ``on_fold``): its score, the running mean."""
        position = len(self.scores)
        self.scores[row.fold] = float(row.score)
        self._validations = 0
        last = position == len(self.folds) - 1
        self.tracker.log({f"fold{row.fold}/score": float(row.score)})
        if self.wilcoxon:
            self._report(row.fold, float(row.score), last)
        else:
            self._report(position * (self.per_fold + 1) + self.per_fold, self.value, last)


def _epoch_callback(reporter: Reporter):
    """A Lightning callback handing each validation's score (computed by the fold's
    FoldMonitor) to the reporter. optuna-integration's PyTorchLightningPruningCallback is not
    used: it imports ``lightning.pytorch`` (we run ``pytorch_lightning``) and reports step =
    epoch, which repeats from one fold to the next."""
    # torch stack (~3 s to import): only the torch families load it
    import pytorch_lightning as pl

    class EpochPruning(pl.Callback):
        def on_validation_epoch_end(self, trainer, module) -> None:
            if trainer.sanity_checking:
                return
            monitor = next((c for c in trainer.callbacks if isinstance(c, FoldMonitor)), None)
            if monitor is not None and monitor.history:
                reporter.validation(monitor.history[-1]["val/score"])

    return EpochPruning()


def validations_per_fold(base: ExperimentConfig, params: list[Param]) -> int:
    """The most validations one fold can make (0 for the classical families): epochs *
    validations per epoch * seeds, at the largest values the search space allows."""
    def most(key: str, default):
        found = [p for p in params if p.key == key]
        if not found:
            return default
        values = found[0].samples()
        return max(len(v) if isinstance(v, list) else v for v in values)

    families = {base.model.family} | {c for p in params if p.key == "model.family" for c in p.choices}
    if not families & set(torch_families()):
        return 0
    return int(most("train.epochs", base.train.epochs) * most("train.val_per_epoch", base.train.val_per_epoch)
               * most("train.seeds", len(base.train.seeds)))


@dataclass
class TrialContext:
    """What every trial of one ``tune`` call shares."""

    ws: Workspace
    exp: str
    overrides: list[str]
    params: list[Param]
    base: dict
    data: Any
    folds: list[int]
    per_fold: int
    wilcoxon: bool
    study_name: str
    tune_dir: Path
    lock: AskLock
    keep: bool = False
    current: int | None = None


def objective(trial, ctx: TrialContext) -> float:
    """The trial's value: the mean of its fold scores; NaN when its config or its training refuses."""
    ctx.lock.release()          # the trial exists: other workers may count it and ask for theirs
    ctx.current = trial.number
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    try:
        sampled = sample(trial, ctx.params, ctx.base)
    except ValueError as err:   # Optuna: a key's distribution differs from the one earlier trials used
        raise InputError(f"study {ctx.study_name!r}: {err}. The search block changed in a way this study "
                         "cannot follow; start another study with --study NAME") from None
    overrides = [*ctx.overrides, *(f"{k}={as_override(v)}" for k, v in sampled.items())]
    trial.set_user_attr("overrides", overrides)
    try:
        cfg = load_config(ctx.ws, ctx.exp, overrides)
    except InputError as err:    # a combination the config refuses (e.g. d_model % heads): a failed trial
        trial.set_user_attr("error", str(err))
        return float("nan")
    trial_cfg = cfg.model_copy(update={"exp": f"{ctx.exp}-trial{trial.number}",
                                       "track": cfg.track.model_copy(update={"wandb": False})})
    trial_ws = _TrialWorkspace(ctx.ws.root, ctx.tune_dir, trial_cfg.exp)
    tracker = track.start(enabled=cfg.track.wandb, project=cfg.track.project or ctx.data.spec.name,
                          group=f"tune-{ctx.study_name}", name=f"{ctx.study_name}-trial{trial.number}",
                          config={"trial": trial.number, "params": sampled, **cfg.to_dict()},
                          run_dir=ctx.tune_dir, job_type="tune")
    reporter = Reporter(trial, ctx.folds, ctx.per_fold, ctx.wilcoxon, tracker)
    token = None
    if cfg.is_torch:
        token = EXTRA_CALLBACKS.set((_epoch_callback(reporter),))
    try:
        train(trial_ws, trial_cfg, folds=ctx.folds, force=True, data=ctx.data, on_fold=reporter.fold)
        tracker.summary({"tune/value": reporter.value, "state": "complete"})
        return reporter.value
    except InputError as err:    # e.g. tfidf with neither word nor char n-grams: a failed trial
        trial.set_user_attr("error", str(err))
        return float("nan")
    finally:
        trial.set_user_attr("fold_scores", {str(k): v for k, v in reporter.scores.items()})
        if token is not None:
            EXTRA_CALLBACKS.reset(token)
        tracker.finish()
        if not ctx.keep:
            shutil.rmtree(trial_ws.run_dir(trial_cfg.exp), ignore_errors=True)
