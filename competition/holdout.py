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
import pandas as pd

from competition import artifacts, bootstrap, metrics, runs, splitters, thresholds
from competition import data as data_mod
from competition import folds as folds_mod
from competition.errors import InputError
from competition.resume import check_previous_run
from competition.splitters import quantile_bins, time_order
from competition.stack import stack
from competition.train import train
from competition.workspace import HOLDOUT, Workspace


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


MIN_ROWS = 30   # fewer held-out rows than this: a score on them says nothing


def holdout_rows(data, fold: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of the holdout rows: ``fraction`` of every current fold's rows, drawn as the
    folds were drawn (within each fold: stratified by class or target bin, whole groups for the
    group schemes), seeded; time-ordered folds hold out the latest rows.

    Taking the same share of every fold keeps every fold alive for the retrain. (Drawing the
    holdout as one part of a fresh split with the folds' own splitter and seed nests inside the
    folds: 0.2 with 5 stratified folds *was* fold 0, which then had no rows left to validate.)

    Raises:
        InputError: a fraction outside (0, 0.5], one that holds out fewer than ``MIN_ROWS`` rows,
            or (time-ordered) one that would empty the last fold.
    """
    n = len(fold)
    if not 0 < fraction <= 0.5:
        raise InputError(f"{{holdout}} {fraction:g}: give the share of rows to hold out, between 0 and 0.5 "
                         "(e.g. 0.1)", holdout="holdout")
    if fraction * n < MIN_ROWS:
        least = min(0.5, MIN_ROWS / n)
        raise InputError(f"{{holdout}} {fraction:g} holds out {fraction * n:.0f} of {n:,} train rows: a score on "
                         f"fewer than {MIN_ROWS} rows says nothing. "
                         + (f"Hold out {least:.3g} or more." if MIN_ROWS <= n / 2 else
                            f"{n:,} rows are too few to hold any out; judge the stack by its CV."), holdout="holdout")
    spec = data.spec
    if spec.scheme == "time-ordered":
        return _latest(data, fold, fraction)
    rng_seed = int(np.random.SeedSequence([seed, 0x401D]).generate_state(1)[0])
    if spec.scheme in splitters.GROUPED:
        return _whole_groups(data, fold, fraction, rng_seed)
    strata = fold.astype(str)
    if spec.task in ("binary", "multiclass") or spec.scheme == "binned-stratified":
        by_class = np.char.add(np.char.add(strata, ":"), _classes(data).astype(str))
        if len(np.unique(by_class)) <= fraction * n:        # sklearn needs a row of each stratum
            strata = by_class
    mask = np.zeros(n, dtype=bool)
    mask[splitters.stratified_sample(strata, fraction, rng_seed)] = True
    return mask


def _classes(data) -> np.ndarray:
    y = np.asarray(data.y)
    return quantile_bins(y, data.spec.folds.bins) if data.spec.task == "regression" else y


def _whole_groups(data, fold: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Whole groups of each fold, shuffled, taken until they hold ``fraction`` of the fold's rows."""
    groups = pd.factorize(data.train[data.spec.folds.group])[0]        # an empty value: a group of its own
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(fold), dtype=bool)
    for k in np.unique(fold):
        in_fold = fold == k
        names, sizes = np.unique(groups[in_fold], return_counts=True)
        target, taken = fraction * in_fold.sum(), 0
        chosen = []
        for i in rng.permutation(len(names))[:-1]:           # never the fold's every group
            if taken + sizes[i] / 2 > target:
                continue
            chosen.append(names[i])
            taken += sizes[i]
        mask |= in_fold & np.isin(groups, chosen)
    return mask


def _latest(data, fold: np.ndarray, fraction: float) -> np.ndarray:
    """The latest ``fraction`` of the rows (a forecast), refused when it would empty a fold."""
    time = data.spec.folds.time
    order = time_order(data.train[time]) if time else np.arange(len(fold))
    mask = np.zeros(len(fold), dtype=bool)
    mask[order[len(fold) - int(round(fraction * len(fold))):]] = True
    left = np.bincount(fold[~mask], minlength=fold.max() + 1)
    if (left < 2).any():
        k = int(np.argmax(left < 2))
        most = ((fold == fold.max()).sum() - 2) / len(fold)       # the last fold is the latest block
        raise InputError(f"{{holdout}} {fraction:g}: with time-ordered folds the holdout is the latest rows, and "
                         f"{fraction:g} of them leaves fold {k} with {int(left[k])} rows to validate. Hold out "
                         f"{max(most, 0):.3g} or less, or fewer folds.", holdout="holdout")
    return mask


def _retrain_here(ws: Workspace, name: str):
    """The resolved config an input experiment was trained with, as an ExperimentConfig."""
    run = runs.load_run(ws, name)
    if run.manifest.get("kind", "experiment") != "experiment":
        raise InputError(f"{{holdout}} retrains the stack's inputs without the holdout rows; {name} is a "
                         f"{run.manifest.get('kind')}, not an experiment. Stack experiments only with {{holdout}}.",
                         holdout="a holdout")
    cfg = run.config()
    return cfg.model_copy(update={"track": cfg.track.model_copy(update={"wandb": False})})


def stack_with_holdout(ws: Workspace, *, holdout: float, **stack_args):
    """:func:`competition.stack.stack` (same arguments), checked on an outer holdout first: keep
    ``holdout`` of the rows out, retrain the inputs and the stack without them and record whether
    the stack beats its best input and their mean there; a stack that does not is marked not
    preferred (``StackResult.holdout``). The stack's own arguments are checked before anything is
    retrained, and nothing of the stack is written when the holdout refuses."""
    own = {k: stack_args.get(k, default) for k, default in
           (("features", None), ("meta", "lgbm"), ("params", None), ("seed", 42))}

    def guard(src):
        return check(ws, src.data, src.fold, src.names, fraction=holdout, seed=own["seed"],
                     stack_args={**own, "features": list(own["features"] or []), "params": dict(own["params"] or {})})

    return stack(ws, guard=guard, **stack_args)


def check(ws: Workspace, data, fold: np.ndarray, inputs: list[str], *, fraction: float, seed: int,
          stack_args: dict) -> HoldoutResult:
    """Retrain ``inputs`` and the stack without the holdout rows and score them on those rows.

    Args:
        ws: the workspace; ``data``: its dataset; ``fold``: each train row's current fold.
        inputs: experiment names (stacks and blends cannot be retrained here).
        fraction, seed: the holdout's share of rows and the seed that draws them.
        stack_args: the stack's own arguments (features, meta, params, seed).
    """
    configs = {name: _retrain_here(ws, name) for name in inputs}
    spec = data.spec
    outer = holdout_rows(data, fold, fraction, seed)
    inner_data = data_mod.split(data, np.flatnonzero(~outer), np.flatnonzero(outer))
    folder = ws.root / "holdout" / f"{fraction:g}-{seed}"
    sub = _workspace(folder, spec)
    restricted = pd.DataFrame({"id": inner_data.train[spec.id_column].to_numpy(), "fold": fold[~outer]})
    folds_mod.write_assignment(sub, inner_data, restricted, scheme=spec.scheme, seed=spec.folds.seed, force=True)
    hashes = runs.input_hashes(sub, inner_data)
    for name, cfg in configs.items():
        try:      # resumes: folds done before are kept, unless made on another split or config (an older comp)
            check_previous_run(sub.run_dir(name), cfg, hashes, force=False)
            stale = False
        except InputError:
            stale = True
        train(sub, cfg, data=inner_data, force=stale)
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
    artifacts.write_json(folder / HOLDOUT, result.to_json())
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
