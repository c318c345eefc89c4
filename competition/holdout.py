"""The stacked-overfitting guard of ``comp stack --holdout 0.1`` (after AutoGluon's dynamic stacking).

A stack's CV is honest only if its inputs' OOF predictions look, to the meta-model, like the
test predictions it will combine later. A leaky input (its OOF saw its own labels), or OOF that
are distributed unlike the fold models' averaged test predictions, makes the stack learn a
trust the test set will not repay -- and the stack's CV cannot show it, since it is measured
on those same OOF rows.

So an outer holdout is kept away from everything: rows drawn as the spec's fold scheme draws
(stratified, grouped, ...), seeded. Each base experiment is retrained on the other rows, with
the current folds restricted to them, in a workspace of its own (resumable)::

    holdout/<fraction>-<seed>/
        competition.yaml    the competition's spec (data read from the same files)
        folds/              the current folds without the holdout rows
        experiments/<run>/  each input retrained there; its test predictions are the holdout rows

and predicts the holdout rows as it will predict the test set (the average of its fold
models). The stack is fit on their inner OOF and predicts the holdout rows the same way. On
the holdout's labels, with each run's threshold chosen on its inner OOF: the stack against its
best input and against the inputs' mean. The stack is *preferred* only if it beats both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from competition import artifacts, metrics, thresholds
from competition.errors import InputError
from competition.workspace import CONFIG, Workspace


@dataclass(frozen=True)
class HoldoutResult:
    """Scores on the outer holdout rows (``scores``: each input, ``stack`` and ``mean``)."""

    fraction: float
    seed: int
    rows: int
    scores: dict[str, float]
    best_input: str
    preferred: bool
    versus_best: dict          # the stack minus its best input on the holdout: diff, low, high
    folder: str

    def to_json(self) -> dict:
        return asdict(self)


def holdout_rows(data, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of the holdout rows: one part of a split made as the spec's folds are made
    (stratified, grouped, time-ordered: the latest part) into ``round(1 / fraction)`` parts.

    Raises:
        InputError: a fraction outside (0, 0.5].
    """
    from competition import splitters

    if not 0 < fraction <= 0.5:
        raise InputError(f"{{holdout}} {fraction}: give the share of rows to hold out, between 0 and 0.5 (e.g. 0.1)",
                         holdout="holdout")
    spec = data.spec
    parts = max(2, int(round(1 / fraction)))
    group, time = spec.folds.group, spec.folds.time
    split = splitters.make_folds(data.train[spec.id_column].to_numpy(), data.y, task=spec.task,
                                 scheme=spec.scheme, n_splits=parts, seed=seed, bins=spec.folds.bins,
                                 groups=data.train[group] if group else None,
                                 time=data.train[time] if time else None, labels=data.labels)
    chosen = parts - 1 if spec.scheme == "time-ordered" else 0
    return split["fold"].to_numpy() == chosen


def _retrain_here(ws: Workspace, name: str):
    """The resolved config an input experiment was trained with, as an ExperimentConfig."""
    from competition import runs
    from competition.config import ExperimentConfig

    run = runs.load_run(ws, name)
    if run.manifest.get("kind", "experiment") != "experiment":
        raise InputError(f"{{holdout}} retrains the stack's inputs without the holdout rows; {name} is a "
                         f"{run.manifest.get('kind')}, not an experiment. Stack experiments only with {{holdout}}.",
                         holdout="a holdout")
    config_file = run.dir / CONFIG
    if not config_file.is_file():
        raise InputError(f"{config_file}: missing, so {name} cannot be retrained for the holdout. "
                         f"Remake it: `comp train exp={name} --fold all --force`.")
    import yaml

    cfg = ExperimentConfig.model_validate(yaml.safe_load(config_file.read_text()))
    return cfg.model_copy(update={"track": cfg.track.model_copy(update={"wandb": False})})


def check(ws: Workspace, data, fold: np.ndarray, inputs: list[str], *, fraction: float, seed: int,
          stack_args: dict) -> HoldoutResult:
    """Retrain ``inputs`` and the stack without the holdout rows and score them on those rows.

    Args:
        ws: the workspace; ``data``: its dataset; ``fold``: each train row's current fold.
        inputs: experiment names (stacks and blends cannot be retrained here).
        fraction, seed: the holdout's share of rows and the seed that draws them.
        stack_args: the stack's own arguments (features, meta, params, seed).
    """
    import pandas as pd

    from competition import bootstrap
    from competition import data as data_mod
    from competition import folds as folds_mod
    from competition import runs
    from competition.stack import stack
    from competition.train import train

    configs = {name: _retrain_here(ws, name) for name in inputs}
    spec = data.spec
    outer = holdout_rows(data, fraction, seed)
    inner_data = data_mod.split(data, np.flatnonzero(~outer), np.flatnonzero(outer))
    folder = ws.root / "holdout" / f"{fraction:g}-{seed}"
    sub = _workspace(folder, spec)
    restricted = pd.DataFrame({"id": inner_data.train[spec.id_column].to_numpy(), "fold": fold[~outer]})
    folds_mod.write_assignment(sub, inner_data, restricted, scheme=spec.scheme, seed=spec.folds.seed, force=True)
    for name, cfg in configs.items():
        train(sub, cfg, data=inner_data)           # resumes: folds done before are kept
    built = stack(sub, inputs=inputs, data=inner_data, name="stack", force=True, **stack_args)

    y = data.y[outer]
    preds = {name: _holdout_preds(runs.load_run(sub, name)) for name in [*inputs, built.name]}
    inner_mean = np.mean([runs.load_run(sub, n).oof()[spec.pred_columns].to_numpy(float) for n in inputs], axis=0)
    mean_threshold = thresholds.best_threshold(spec.metric, inner_data.y, inner_mean, spec.task)
    preds["mean"] = (np.mean([preds[n][0] for n in inputs], axis=0), mean_threshold)
    needed = {n: metrics.to_needed(spec.metric, p, spec.task, t) for n, (p, t) in preds.items()}
    scores = {n: float(metrics.score(spec.metric, y, p, spec.task, threshold=t)) for n, (p, t) in preds.items()}
    scores["stack"] = scores.pop(built.name)
    needed["stack"] = needed.pop(built.name)
    best = max(inputs, key=lambda n: scores[n] if metrics.greater_is_better(spec.metric) else -scores[n])
    c = bootstrap.compare(spec.metric, y, needed["stack"], needed[best], spec.task)
    preferred = all(metrics.is_better(spec.metric, scores["stack"], scores[other]) for other in (best, "mean"))
    result = HoldoutResult(fraction, seed, int(outer.sum()), scores, best, preferred,
                           {"diff": c.diff, "low": c.low, "high": c.high}, str(folder))
    artifacts.write_json(folder / "holdout.json", result.to_json())
    return result


def _holdout_preds(run) -> tuple[np.ndarray, object]:
    """A run's predictions of the holdout rows (its test set there) and its inner-OOF threshold."""
    return run.test()[run.pred_columns].to_numpy(dtype=float), run.threshold


def _workspace(folder: Path, spec) -> Workspace:
    """The holdout's own workspace: the competition's spec (data paths made absolute)."""
    (folder / "experiments").mkdir(parents=True, exist_ok=True)
    text = spec.model_copy(update={"data_dir": str(spec.data_path)}).to_yaml()
    artifacts.write_text(folder / "competition.yaml", text)
    return Workspace(folder)
