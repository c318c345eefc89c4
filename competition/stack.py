"""The stack stage: a meta-model over earlier runs' out-of-fold predictions, fit on the same folds.

``comp stack`` calls :func:`stack`. What it writes (a stack is a run like any other, so it can
be blended, stacked again, leaderboarded and submitted)::

    experiments/s01/
        manifest.json      kind stack, family lgbm-stack, inputs and their OOF hashes, features, meta params,
                           hashes, warnings
        metrics.json       the stack's own CV: score per fold, OOF score, threshold
        oof.parquet        id, fold, prediction column(s); fold k predicted by the meta-model fit on the others
        test.parquet       id, prediction column(s) = mean of the fold meta-models, <col>__fold<k>
        importance.json    feature -> share of importance (gain for lgbm, |coef| for linear metas), per fold
        fold0/meta/        fold 0's meta-model: meta.json (the recipe of its level-2 matrix, see
                           :func:`replay`, and its heads) + LightGBM text / skops model files

Why its CV is honest: the level-2 matrix holds OOF predictions only, and the meta-model for fold k
is fit on the other folds' rows of that matrix -- the folds every input was trained on -- so no
row's own label reaches the model that predicts it. LightGBM's number of rounds is chosen by early
stopping on an inner 10% of the *training* folds, never on fold k.

What it cannot see: an input whose OOF predictions leaked the target. Its OOF looks excellent and
the stack trusts it, inflating the stack's CV exactly as much as the input's. The leak is absent
at test time, though, so such an input's test predictions look unlike its OOF predictions;
:func:`competition.inputs.drift_warnings` compares the two distributions (KS statistic) and
warns, in the result, the manifest and the CLI output.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from competition import artifacts, predictions, runs, spans, thresholds, tokens
from competition.errors import InputError
from competition.inputs import (
    best_of,
    check_name,
    claim_name,
    feature_matrix,
    gain,
    load_inputs,
    require_two,
    twin_of,
    versus_best,
)
from competition.models import estimators, saving
from competition.workspace import IMPORTANCE, MANIFEST, STACK_META, Workspace

LGBM_DEFAULTS: dict[str, Any] = {
    # few shallow trees on a few strong columns: a meta-model should combine, not memorise
    "learning_rate": 0.05, "num_leaves": 7, "max_depth": 3, "min_child_samples": 100,
    "lambda_l2": 10.0, "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1,
    "num_boost_round": 1000, "early_stopping_rounds": 50, "inner_valid": 0.1,
    # one thread a fit, one fit a core (the folds run side by side): on a busy 2-core machine two
    # OpenMP threads in one fit ran 3.6x *slower* per round (spin-waiting on each other)
    "num_threads": 1,
}
# Above LARGE_ROWS training rows the meta-model takes bigger steps on coarser bins: in a one-off profile
# of a fold at a million rows x 20 inputs it fitted in about half the time at the same AUC to 4 decimals
# (0.92041 vs 0.92046); the whole stack's time is bench_stack's (BENCHMARKS.md)
LARGE_ROWS = 200_000
LARGE_DEFAULTS: dict[str, Any] = {"learning_rate": 0.1, "max_bin": 63}
LINEAR_DEFAULTS = {"logistic": {"C": 0.1, "max_iter": 1000}, "ridge": {"alpha": 10.0}}
META = "meta"


# -- the level-2 matrix -----------------------------------------------------------------------

def level2(preds: np.ndarray, rows: np.ndarray | None, recipe: dict) -> tuple[np.ndarray, list[int]]:
    """The meta-model's matrix: (n, m*k) input predictions (logits for linear metas), then features.

    >>> p = np.array([[[0.5], [0.9]]], dtype=np.float32)       # 1 row, 2 inputs, 1 column
    >>> level2(p, None, {"logit": True})[0].round(3)
    array([[0.   , 2.197]], dtype=float32)
    >>> level2(p, np.array([[7.0]], dtype=np.float32), {"logit": False, "cat_idx": [0]})
    (array([[0.5, 0.9, 7. ]], dtype=float32), [2])
    """
    n, m, k = preds.shape
    x = preds.reshape(n, m * k)
    if recipe["logit"]:
        p = np.clip(x, 1e-6, 1 - 1e-6)
        x = np.log(p / (1 - p)).astype(np.float32)
    if rows is None:
        return x, []
    return np.hstack([x, rows]), [m * k + i for i in recipe["cat_idx"]]


# -- meta-models ------------------------------------------------------------------------------

def _fit_lgbm(x, y, rows, objective, n_class, cat_idx, params, seed, metric, halt: threading.Event | None = None):
    """LightGBM on ``rows`` of the whole matrix ``x`` (and of ``y``): each fit copies only the rows it
    takes, once, so folds fitted side by side share ``x`` rather than each holding its own copy."""
    p = {**LGBM_DEFAULTS, **(LARGE_DEFAULTS if len(rows) > LARGE_ROWS else {}), **params}
    rounds, patience, inner = p.pop("num_boost_round"), p.pop("early_stopping_rounds"), p.pop("inner_valid")
    p.update({"objective": estimators.lgbm_objective(objective, metric), "seed": seed, "verbose": -1})
    if objective == "multiclass":
        p["num_class"] = n_class
    # early stopping on an inner slice of the training folds: the validation fold stays unseen
    fit, stop = estimators.permuted_split(len(rows), inner, seed)
    p["min_child_samples"] = min(p["min_child_samples"], max(5, len(fit) // 20))
    return estimators.fit_booster(p, x, y, rows[fit], rows[stop], rounds=rounds, patience=patience,
                                  categorical=cat_idx or "auto", halt=halt)[0]


def _fit_linear(x, y, objective, n_class, meta, params):
    return estimators.fit_linear(meta, objective, x, y, n_class, defaults=LINEAR_DEFAULTS[meta], params=params,
                                 impute=True, scale=True, key=f"meta {meta}")


def _fold_workers(meta: str, params: dict) -> int:
    """Folds fitted at once: one per core while each fit is single-threaded (LightGBM's default here,
    and the linear metas), else one (a fit that takes every core, ``params={"num_threads": 0}``)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = params.get("num_threads", LGBM_DEFAULTS["num_threads"]) if meta == "lgbm" else 1
    return max(1, cores // threads) if threads > 0 else 1


def _side_by_side(tasks: dict[Any, Callable[[threading.Event], Any]], workers: int) -> dict[Any, Any]:
    """Each ``task(halt)``, ``workers`` at a time in threads, in the order given (LightGBM and numpy
    release the GIL while they work); their results by key. Ctrl-C sets ``halt``, which stops a running
    LightGBM fit at its next round, and is raised once the threads have returned."""
    halt = threading.Event()
    if workers <= 1:
        return {key: task(halt) for key, task in tasks.items()}
    pool = ThreadPoolExecutor(max_workers=min(workers, len(tasks)), thread_name_prefix="stack")
    try:   # submitting inside: a Ctrl-C between two submits must halt the tasks already started too
        futures = {key: pool.submit(task, halt) for key, task in tasks.items()}
        pending = set(futures.values())
        while pending:   # short waits: the main thread runs Python between them, so Ctrl-C is raised there
            _, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures.values() if f.done() and f.exception() is not None), None)
            if failed is not None:
                raise failed.exception()
        return {key: future.result() for key, future in futures.items()}
    except BaseException:
        halt.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _input_scores(src, halt: threading.Event) -> tuple[dict[str, float], float]:
    """Each input's CV and the mean blend's (the figures the stack is reported against): a task of its
    own, run beside the last fold's fit (5 folds on 2 cores leave one core idle then)."""
    scores = {}
    for j, name in enumerate(src.names):
        if halt.is_set():
            raise KeyboardInterrupt
        scores[name] = src.score(j)
    mean = thresholds.cv(src.spec.metric, src.data.y, src.mean_oof(), src.spec.task, src.fold)
    return scores, float(mean.score)


def _predict(heads: list[tuple[str, Any]], x: np.ndarray, n_class: int) -> np.ndarray:
    """(n, k) predictions of a fold's meta-model heads, side by side."""
    return np.hstack([np.asarray(estimators.predict_model(model, x, objective, n_class, eps=1e-6),
                                 dtype=np.float32).reshape(len(x), -1) for objective, model in heads])


# -- the stage --------------------------------------------------------------------------------

@dataclass
class StackResult:
    """What :func:`stack` reports; ``gain`` > 0 means the stack beat its best input."""

    name: str
    run_dir: Path
    metric: str
    meta: str
    oof_score: float
    threshold: Any
    fold_scores: dict[int, float]
    input_scores: dict[str, float]
    best_input: str
    best_input_score: float
    mean_blend_score: float
    features: list[str]
    importance: dict[str, float]
    warnings: list[str]
    versus_best: Any = None          # bootstrap.Comparison: the stack minus its best input
    holdout: Any = None              # holdout.HoldoutResult with --holdout

    @property
    def gain(self) -> float:
        return gain(self.metric, self.oof_score, self.best_input_score)


def stack(ws: Workspace, *, inputs: list[str] | None = None, features: list[str] | None = None,
          meta: str = "lgbm", name: str | None = None, params: dict | None = None, seed: int = 42,
          force: bool = False, data=None, guard: Callable[[Any], Any] | None = None) -> StackResult:
    """Fit a meta-model over the inputs' OOF predictions on the same folds; write it as a run.

    Args:
        ws: the workspace.
        inputs: run names; None takes every complete experiment on the current folds and data
            (stacks and blends only when named).
        features: extra row features: ``text_len``, ``n_words`` or raw train columns.
        meta: ``lgbm`` (default), ``logistic`` (classification) or ``ridge``.
        name: the stack's run name (default: the next free ``s01``, ``s02``, ...).
        params: overrides of the meta-model's defaults (:data:`LGBM_DEFAULTS`, :data:`LINEAR_DEFAULTS`).
        seed: seed of the meta-model and its inner early-stopping split.
        force: replace an existing stack of that name.
        data: a loaded dataset (loaded from the spec when None).
        guard: called with the loaded inputs once the arguments are checked, before anything is
            written; what it returns (``to_json()``) is recorded in the manifest. How
            :func:`competition.holdout.stack_with_holdout` checks the stack on held-out rows.
    """
    if meta not in ("lgbm", "logistic", "ridge"):
        raise InputError(f"{{meta}} {meta!r}: choose lgbm, logistic or ridge", meta="meta")
    features, params = list(features or []), dict(params or {})
    check_name(name)
    src = load_inputs(ws, inputs, data=data, exclude=name)
    spec, data, task = src.spec, src.data, src.spec.task
    if not features:   # one run plus row features is a new model; one run alone is that run
        require_two(src, "stack")
    units = spec.per_unit     # per-unit predictions: the meta-model's rows are units (tokens.unit_features)
    if units and (meta != "lgbm" or features):
        raise InputError(f"a {task} task's stack is a LightGBM model over units ({{meta}} lgbm) and reads no row "
                         "{features}", meta="meta", features="features")
    if meta == "logistic" and task == "regression":
        raise InputError("{meta} logistic fits classes, but this task is regression: use {meta} ridge or lgbm",
                         meta="meta")
    cols, n_class = spec.pred_columns, len(spec.pred_columns)
    recipe = {"inputs": src.names, "columns": cols, "features": features, "task": task, "meta": meta,
              "logit": meta != "lgbm" and task != "regression", "cat_idx": [], "categories": {}}
    rows = rows_test = None
    if features:
        rows, recipe["cat_idx"], recipe["categories"] = feature_matrix(data.train, spec, features)
        if recipe["cat_idx"] and meta != "lgbm":
            raise InputError(f"{{features}}: {[features[i] for i in recipe['cat_idx']]} are categorical; "
                             "only {meta} lgbm takes them (or drop them)", features="features", meta="meta")
        if data.test is not None:
            rows_test = feature_matrix(data.test, spec, features, recipe["categories"])[0]
    if guard is None:     # the same stack again would be a copy that doubles on the leaderboard
        twin = twin_of(ws, "stack", {"inputs": src.names, "input_hashes": src.versions, "features": features,
                                     "meta": meta, "params": params, "seed": seed, **src.hashes},
                       exclude=name if force else None)
        if twin is not None:
            raise InputError(f"this stack is the same as {twin} (the same inputs at the same versions, meta-model, "
                             f"features, parameters and seed): nothing written; its results are in "
                             f"{ws.run_dir(twin)}. To fit it again anyway: {{name}} {twin} with {{force}}",
                             name="name", force="force=True")
    if guard is not None:   # before anything is written: a refusal there leaves no stack behind
        guard = guard(src)
    if units:
        recipe["window"] = UNIT_WINDOW
        lengths = predictions.lengths(src.input_oof(0))
        x, cat_idx = tokens.unit_features([src.input_oof(j) for j in range(len(src.names))], UNIT_WINDOW), []
        x_test = None if src.test is None else tokens.unit_features(
            [src.input_test(j) for j in range(len(src.names))], UNIT_WINDOW)
        feature_names = _unit_feature_names(src.names, cols, UNIT_WINDOW)
        # tokens: each unit's tag; span: each character's class (neither, start, end, both; spans.char_targets)
        y = np.concatenate(list(data.y) if task == "tokens" else spans.char_targets(data.y))
        fold, task = np.repeat(src.fold, lengths), "multiclass"
    else:
        x, cat_idx = level2(src.oof, rows, recipe)
        x_test = None if src.test is None else level2(src.test, rows_test, recipe)[0]
        feature_names = [r if len(cols) == 1 else f"{r}:{c}" for r in src.names for c in cols] + features
        y, fold = data.y, src.fold
    name = claim_name(ws, name, "s", "stack", force)

    n_splits = int(src.fold.max()) + 1
    oof = np.zeros((len(x), n_class), dtype=np.float32)
    n_fit, out = _classes(spec.task, n_class)

    def as_rows(values: np.ndarray, like) -> Any:
        """Unit rows back into per-row arrays (token tasks); row-level predictions as they are."""
        return predictions.rows(np.split(values, np.cumsum(predictions.lengths(like))[:-1])) if units else values

    def fit_fold(k: int, halt: threading.Event):
        tr, va = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        heads = [(objective, _fit_lgbm(x, target, tr, objective, n_fit, cat_idx, params, seed + k, spec.metric, halt)
                  if meta == "lgbm" else _fit_linear(x[tr], target[tr], objective, n_fit, meta, params))
                 for objective, target in estimators.split_targets(task, y)]
        oof[va] = out(_predict(heads, x[va], n_fit))
        gains = sum(estimators.importance(model) for _, model in heads)
        part = None
        if x_test is not None:
            part = predictions.frame(as_rows(out(_predict(heads, x_test, n_fit)), src.input_test(0) if units else None),
                                     cols)
            part.insert(0, "id", data.test[spec.id_column].to_numpy())
        _save_meta(ws.fold_dir(name, k) / META, heads, recipe)
        return gains / gains.sum() if gains.sum() > 0 else gains, part

    tasks = {k: (lambda halt, k=k: fit_fold(k, halt)) for k in range(n_splits)}
    tasks["inputs"] = lambda halt: _input_scores(src, halt)
    done = _side_by_side(tasks, _fold_workers(meta, params))
    scores, mean_score = done["inputs"]
    importance = [done[k][0] for k in range(n_splits)]
    test_parts = [done[k][1] for k in range(n_splits) if done[k][1] is not None]

    shares = np.mean(importance, axis=0)
    artifacts.write_json(ws.run_dir(name) / IMPORTANCE, {
        "kind": "gain" if meta == "lgbm" else "abs_coef", "features": dict(zip(feature_names, shares.tolist())),
        "folds": {k: dict(zip(feature_names, imp.tolist())) for k, imp in enumerate(importance)}})
    oof = as_rows(oof, src.input_oof(0) if units else None)
    frame = predictions.frame(oof, cols)
    frame.insert(0, "fold", src.fold)
    frame.insert(0, "id", data.train[spec.id_column].to_numpy())
    warnings = src.notes
    run = runs.write_run(
        ws, name, spec=spec, data=data, oof=frame,
        test=runs.average_folds(test_parts, cols) if test_parts else None,
        manifest={"kind": "stack", "family": f"{meta}-stack", "inputs": src.names, "input_hashes": src.versions,
                  "features": features, "meta": meta, "params": params, "seed": seed, **src.hashes, "n_splits": n_splits,
                  "folds_done": list(range(n_splits)), "warnings": warnings,
                  **({"holdout": guard.to_json()} if guard else {})})
    best = best_of(scores, spec.metric)
    return StackResult(name, run.dir, spec.metric, meta, run.score, run.threshold, run.metrics["folds"], scores,
                       best[0], best[1], mean_score, features,
                       dict(zip(feature_names, shares.tolist())), warnings, versus_best(src, oof, best[0]), guard)


UNIT_WINDOW = 2     # a unit-level stack reads each input at the unit and 2 neighbours on each side


def _classes(task: str, n_columns: int) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    """The classes a meta-model fits and how its predictions become the task's columns: a span task's
    characters are fitted as four classes (:func:`competition.spans.char_targets`) and read back as
    start and end probabilities; any other task's as its columns."""
    if task == "span":
        return 4, spans.from_classes
    return n_columns, lambda p: p


def _unit_feature_names(names: list[str], cols: list[str], window: int) -> list[str]:
    """The columns of :func:`competition.tokens.unit_features`, named."""
    at = ["0"] + [f"{s}{d}" for d in range(1, window + 1) for s in ("-", "+")]
    return ([f"{r}:{c}@{a}" for r in names for a in at for c in cols] + [f"mean:{c}" for c in cols]
            + ["position", "units", "relative_position"])


def _save_meta(folder: Path, heads: list[tuple[str, Any]], recipe: dict) -> None:
    """A fold's meta-model in formats that cannot run code when loaded (saving.save_model)."""
    entries = [{"objective": objective, **saving.save_model(folder, f"head{i}", model)}
               for i, (objective, model) in enumerate(heads)]
    artifacts.write_json(folder / STACK_META, {"recipe": recipe, "heads": entries,      # files: verified on read
                                               "files": artifacts.folder_hashes(folder, skip=(STACK_META,))})


def _load_meta(folder: Path, manifest: dict) -> tuple[list[tuple[str, Any]], dict]:
    path = folder / STACK_META
    if not path.is_file():
        old = " (it holds meta.joblib, a pickle comp no longer loads)" if (folder.parent / "meta.joblib").is_file() else ""
        raise InputError(f"{path}: fold {folder.parent.name[4:]}'s meta-model is missing{old}; rebuild the stack "
                         f"(`{runs.remake_command(folder.parent.parent.name, manifest)}`)")
    saved = artifacts.read_json(path)
    artifacts.verify_files(folder, saved.get("files") or {})
    return [(e["objective"], saving.load_model(folder, e)) for e in saved["heads"]], saved["recipe"]


def replay(run_dir: Path, preds: dict[str, np.ndarray], frame: pd.DataFrame | None, spec) -> np.ndarray:
    """A saved stack applied to new rows, without refitting: every fold's meta-model on the inputs'
    predictions (``preds``: run name -> (n, k), rows in ``frame``'s order) and, when the stack used
    row features, on ``frame``; returns the (n, k) mean over the fold meta-models."""
    run_dir = Path(run_dir)
    manifest = artifacts.read_json(run_dir / MANIFEST)
    if manifest.get("kind") != "stack":
        raise InputError(f"{run_dir}: {run_dir.name} is a {manifest.get('kind')}, not a stack")
    out = []
    for k in range(manifest["n_splits"]):
        heads, recipe = _load_meta(run_dir / f"fold{k}" / META, manifest)
        missing = [r for r in recipe["inputs"] if r not in preds]
        if missing:
            raise InputError(f"stack {run_dir.name} needs predictions of {missing} too")
        if recipe["task"] in ("tokens", "span"):      # units as rows, back to per-row arrays
            inputs = [preds[r] for r in recipe["inputs"]]
            x = tokens.unit_features(inputs, recipe["window"])
            n_fit, classes = _classes(recipe["task"], len(recipe["columns"]))
            out.append(np.split(classes(_predict(heads, x, n_fit)), np.cumsum(predictions.lengths(inputs[0]))[:-1]))
            continue
        p = np.stack([np.asarray(preds[r], dtype=np.float32) for r in recipe["inputs"]], axis=1)
        rows = None
        if recipe["features"]:
            if frame is None:
                raise InputError(f"stack {run_dir.name} uses row features {recipe['features']}: pass the raw rows")
            rows = feature_matrix(frame, spec, recipe["features"], recipe["categories"])[0]
        x, _ = level2(p, rows, recipe)
        out.append(_predict(heads, x, len(recipe["columns"])))
    if manifest.get("task") in ("tokens", "span"):
        return predictions.mean([predictions.rows(parts) for parts in out])
    return np.mean(out, axis=0)
