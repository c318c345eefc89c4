"""The blend stage: combine earlier runs' predictions with weights chosen fold-honestly.

``comp blend`` calls :func:`blend`. What it writes (a blend is a run like any other)::

    experiments/b01/
        manifest.json   kind blend, family <method>-blend, inputs and their OOF hashes, weights, hashes, warnings
        metrics.json    the blend's honest CV: score per fold, OOF score, threshold
        oof.parquet     id, fold, prediction column(s); fold k blended with weights fit on the other folds
        test.parquet    id, prediction column(s): the weights fit on every OOF row, applied to the
                        inputs' test predictions (no per-fold columns: there is one final blend)
        blend.json      what replays it on new rows (:func:`replay`): method, inputs and the final
                        parameters -- weights, vote thresholds, the gate's mu / sd / theta -- as JSON

Methods (``P`` = the inputs' predictions, probabilities or values, one slice per input):

- ``mean``, ``vote-soft``: the plain mean (vote-soft: classification only).
- ``weighted``: weights >= 0 summing to 1, fit with ``scipy.optimize.minimize`` (L-BFGS on a
  softmax parametrisation, so the constraints hold by construction) on a smooth surrogate of the
  metric: log-loss for classification, MSE (per target variance) for regression. Metrics like F1
  or AUC are step functions of the weights; the surrogate has gradients and rarely disagrees.
- ``rank``: each input's scores replaced by their rank scaled to 0..1 (within the OOF, and within
  the test set), then averaged. For AUC-type metrics; binary and multilabel only. A threshold
  metric re-optimises its threshold on the OOF ranks: a quantile, which carries over to the test
  set when its positive rate matches train's.
- ``hill-climb``: Caruana et al. (2004) ensemble selection: start from the best input (adding the
  next best while that helps, up to three), then repeatedly add, with replacement, the input that
  most improves the metric itself; stop when nothing improves. Weights = how often each was added.
- ``vote-hard``: each input's labels (its threshold, fit on the training folds, or argmax) voted;
  the prediction is the vote share, so a threshold metric picks "k of m votes" on the OOF.
- ``moe``: mixture of experts: a gate (multinomial logistic regression, fit by the same
  surrogate) maps row features -- log text length and word count, the inputs' predictions -- to
  per-row softmax weights over the inputs.

Honesty: for every method that fits something (weighted, hill-climb, vote-hard, moe) the
parameters used on fold k were fit on the other folds' OOF rows only, so the reported CV is an
out-of-sample figure. ``BlendResult.in_sample_score`` is the optimistic figure of the final
weights scored on the rows they were fit on, kept for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition import artifacts, metrics, predictions, runs, thresholds
from competition.errors import InputError
from competition.inputs import (
    best_of,
    check_name,
    claim_name,
    feature_matrix,
    gain,
    load_inputs,
    require_two,
    versus_best,
)
from competition.workspace import BLEND, MANIFEST, Workspace

METHODS = ("hill-climb", "mean", "weighted", "rank", "vote-hard", "vote-soft", "moe")
STATELESS = ("mean", "vote-soft", "rank")      # nothing fit: applied once to the whole OOF
_ROWS = ("binary", "multiclass", "multilabel", "regression")
TASKS = {"vote-soft": ("binary", "multiclass", "multilabel"), "vote-hard": ("binary", "multiclass", "multilabel"),
         "rank": ("binary", "multilabel"), "weighted": _ROWS, "moe": _ROWS}   # tokens: mean and hill-climb
EPS = 1e-6


# -- the combiners: fit(P, y, Z) -> params; apply(params, P, Z) -> (n, k) ------------------------
# P is (n, m, k) float32: m inputs, k prediction columns; Z is the gate's row features or None.

def _mix(w: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Per-row (n, m) or global (m,) weights times (n, m, k) predictions -> (n, k).

    >>> _mix(np.array([0.25, 0.75]), np.array([[[0.0], [1.0]]]))
    array([[0.75]])
    """
    if P.dtype == object:      # per-unit predictions (token tasks): (n, m) cells of (units, k)
        return predictions.mean([predictions.column(P, j) for j in range(P.shape[1])], w)
    return np.einsum("nm,nmk->nk", w, P) if w.ndim == 2 else np.einsum("m,nmk->nk", w, P)



def _surrogate(p: np.ndarray, y: np.ndarray, task: str) -> tuple[float, np.ndarray]:
    """Mean smooth loss of blended predictions ``p`` (n, k) and its gradient per row and column."""
    n, k = p.shape
    if task == "multiclass":
        q = np.clip(p[np.arange(n), y], EPS, None)
        r = np.zeros_like(p)
        r[np.arange(n), y] = -1.0 / q
        return float(-np.log(q).mean()), r
    if task == "regression":
        t = y.reshape(n, -1)
        scale = np.maximum(t.var(axis=0), EPS)
        return float((((p - t) ** 2) / scale).mean()), 2 * (p - t) / scale / k
    t = y.reshape(n, -1)
    q = np.clip(p, EPS, 1 - EPS)
    loss = -(t * np.log(q) + (1 - t) * np.log(1 - q)).mean()
    return float(loss), (q - t) / (q * (1 - q)) / k


def _fit_gate(P: np.ndarray, y: np.ndarray, Z: np.ndarray, task: str, l2: float = 1e-3) -> np.ndarray:
    """theta (d, m) minimising surrogate(sum_j softmax(Z @ theta)_j P_j) + l2 |theta|^2 / 2.

    With Z a column of ones this is the weighted blend (one softmax over inputs); with row
    features it is the mixture-of-experts gate. theta = 0 starts from the plain mean.
    """
    # scipy (~1 s): loaded where used
    from scipy.optimize import minimize
    from scipy.special import softmax

    P = P.astype(np.float64)
    n, m, _ = P.shape

    def loss_grad(flat):
        theta = flat.reshape(Z.shape[1], m)
        g = softmax(Z @ theta, axis=1)                                # (n, m) per-row weights
        p = _mix(g, P)
        loss, r = _surrogate(p, y, task)                               # r = dloss/dp per row, (n, k)
        s_j = np.einsum("nk,nmk->nm", r, P)                            # each input's pull
        d_logit = g * (s_j - (r * p).sum(axis=1, keepdims=True)) / n   # softmax chain rule
        return loss + 0.5 * l2 * (theta ** 2).sum(), (Z.T @ d_logit + l2 * theta).ravel()

    res = minimize(loss_grad, np.zeros(Z.shape[1] * m), jac=True, method="L-BFGS-B")
    return res.x.reshape(Z.shape[1], m)


def _ones(n: int) -> np.ndarray:
    return np.ones((n, 1))


def _thresholds(P, y, spec) -> np.ndarray:
    """(m, k) label thresholds of each input, fit on these rows (0.5 when the metric has none)."""
    out = np.full(P.shape[1:], 0.5)
    for j in range(P.shape[1]):
        t = thresholds.evaluate(spec.metric, y, P[:, j].astype(float), spec.task)[1]
        if t is not None:
            out[j] = np.broadcast_to(np.asarray(t, dtype=float), out[j].shape)
    return out


def _votes(t: np.ndarray | None, P: np.ndarray) -> np.ndarray:
    """Vote share per column: of labels at thresholds ``t`` (m, k), or (``t`` None: multiclass)
    of each input's argmax class.

    >>> _votes(np.array([[0.5], [0.5], [0.3]]), np.array([[[0.6], [0.4], [0.35]]]))
    array([[0.66666667]])
    """
    if t is None:  # one-hot of each input's argmax; the mean probability breaks ties
        votes = np.eye(P.shape[2])[P.argmax(axis=2)].mean(axis=1) + EPS * P.mean(axis=1)
        return votes / votes.sum(axis=1, keepdims=True)
    return (P >= t[None]).mean(axis=1)


def _ranks(P: np.ndarray) -> np.ndarray:
    """Mean over inputs of each column's ranks scaled to 0..1.

    >>> _ranks(np.array([[[0.1], [0.9]], [[0.2], [0.8]], [[0.3], [0.7]]]))
    array([[0.5],
           [0.5],
           [0.5]])
    """
    # scipy (~1 s): loaded where used
    from scipy.stats import rankdata

    return ((rankdata(P, axis=0) - 1) / max(len(P) - 1, 1)).mean(axis=1)


def _hill_climb(P, y, spec, init: int = 3, max_steps: int = 100) -> np.ndarray:
    """Caruana's greedy selection with replacement; returns how often each input was chosen / total."""
    def score(pred):
        return thresholds.evaluate(spec.metric, y, pred, spec.task)[0]

    m = P.shape[1]
    single = [score(predictions.column(P, j)) for j in range(m)]
    order = sorted(range(m), key=lambda j: single[j], reverse=metrics.greater_is_better(spec.metric))
    counts = np.zeros(m)
    total, current = predictions.column(P, order[0]), single[order[0]]
    counts[order[0]] = 1
    for j in order[1:init]:  # sorted initialisation, while it helps
        trial = score((total + predictions.column(P, j)) / (counts.sum() + 1))
        if not metrics.is_better(spec.metric, trial, current):
            break
        total, current, counts[j] = total + predictions.column(P, j), trial, counts[j] + 1
    for _ in range(max_steps):
        trials = [score((total + predictions.column(P, j)) / (counts.sum() + 1)) for j in range(m)]
        j = max(range(m), key=lambda i: trials[i]) if metrics.greater_is_better(spec.metric) \
            else min(range(m), key=lambda i: trials[i])
        if not metrics.is_better(spec.metric, trials[j], current):
            break
        total, current, counts[j] = total + predictions.column(P, j), trials[j], counts[j] + 1
    return counts / counts.sum()


def _fit(method, P, y, Z, spec):
    m = P.shape[1]
    if method in STATELESS:
        return np.full(m, 1.0 / m)
    if method == "weighted":
        # scipy (~1 s): loaded where used
        from scipy.special import softmax

        return softmax(_fit_gate(P, y, _ones(len(P)), spec.task)[0])
    if method == "hill-climb":
        return _hill_climb(P, y, spec)
    if method == "vote-hard":
        return None if spec.task == "multiclass" else _thresholds(P, y, spec)
    mu, sd = Z.mean(axis=0), Z.std(axis=0) + EPS   # moe
    return {"mu": mu, "sd": sd, "theta": _fit_gate(P, y, _gate_design(Z, mu, sd), spec.task)}


def _apply(method, params, P, Z):
    if method == "rank":
        return _ranks(P)
    if method == "vote-hard":
        return _votes(params, P)
    if method == "moe":
        return _mix(_gate_weights(params, Z), P)
    return _mix(np.asarray(params), P)


def _gate_design(Z, mu, sd):
    return np.hstack([_ones(len(Z)), (Z - mu) / sd])


def _gate_weights(params, Z) -> np.ndarray:
    # scipy (~1 s): loaded where used
    from scipy.special import softmax

    return softmax(_gate_design(Z, params["mu"], params["sd"]) @ params["theta"], axis=1)


def gate_features(P: np.ndarray, frame: pd.DataFrame, spec) -> np.ndarray:
    """The gate's row features: log text length and word count, and the inputs' predictions
    (logits for classification) -- which expert to trust may depend on how sure each one is."""
    n, m, k = P.shape
    preds = P.reshape(n, m * k).astype(np.float64)
    if spec.task != "regression":
        q = np.clip(preds, EPS, 1 - EPS)
        preds = np.log(q / (1 - q))
    if not spec.text:
        return preds
    text = feature_matrix(frame, spec, ["text_len", "n_words"])[0]
    return np.hstack([np.log1p(text), preds])


# -- the stage --------------------------------------------------------------------------------

@dataclass
class BlendResult:
    """What :func:`blend` reports; ``gain`` > 0 means the blend beat its best input."""

    name: str
    run_dir: Path
    metric: str
    method: str
    oof_score: float
    threshold: Any
    fold_scores: dict[int, float]
    in_sample_score: float
    weights: dict[str, float]
    input_scores: dict[str, float]
    best_input: str
    best_input_score: float
    warnings: list[str]
    versus_best: Any = None          # bootstrap.Comparison: the blend minus its best input
    same_as: str | None = None       # the blend is this one input (all weight on it): nothing written

    @property
    def gain(self) -> float:
        return gain(self.metric, self.oof_score, self.best_input_score)


def blend(ws: Workspace, *, inputs: list[str] | None = None, method: str = "hill-climb",
          name: str | None = None, seed: int = 42, force: bool = False, data=None) -> BlendResult:
    """Blend runs' predictions with ``method``, fold-honestly, and write the blend as a run.

    Args:
        ws: the workspace.
        inputs: run names (experiments, stacks, blends); None takes every complete experiment on
            the current folds and data.
        method: one of :data:`METHODS`.
        name: the blend's run name (default: the next free ``b01``, ``b02``, ...).
        seed: recorded; every method here is deterministic.
        force: replace an existing blend of that name.
        data: a loaded dataset (loaded from the spec when None).
    """
    if method not in METHODS:
        raise InputError(f"{{method}} {method!r}: choose one of {', '.join(METHODS)}", method="method")
    check_name(name)
    src = load_inputs(ws, inputs, data=data, exclude=name)
    spec, data = src.spec, src.data
    if method in TASKS and spec.task not in TASKS[method]:
        raise InputError(f"{{method}} {method} does not fit task {spec.task} (it suits {', '.join(TASKS[method])}); "
                         "use mean, weighted or hill-climb", method="method")
    require_two(src, "blend")
    name = claim_name(ws, name, "b", "blend", force)
    P, y, fold = src.oof, data.y, src.fold
    Z = Z_test = None
    if method == "moe":
        Z = gate_features(P, data.train, spec)
        Z_test = None if src.test is None else gate_features(src.test, data.test, spec)

    n_splits = int(fold.max()) + 1
    final = _fit(method, P, y, Z, spec)
    if method in STATELESS:
        oof = _apply(method, final, P, Z)
    else:
        oof = np.empty(len(P), dtype=object) if P.dtype == object else np.zeros((len(P), P.shape[2]))
        for k in range(n_splits):
            tr, va = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            params = _fit(method, P[tr], y[tr], None if Z is None else Z[tr], spec)
            oof[va] = _apply(method, params, P[va], None if Z is None else Z[va])
    in_sample = float(thresholds.evaluate(spec.metric, y, _apply(method, final, P, Z), spec.task)[0])
    if method == "moe":  # the mean of the per-row weights
        weights = _gate_weights(final, Z).mean(axis=0)
    elif method == "vote-hard":  # params are thresholds; every input has one vote
        weights = np.full(len(src.runs), 1.0 / len(src.runs))
    else:
        weights = final
    weights = {r: round(float(w), 6) for r, w in zip(src.names, weights)}

    scores = src.scores()
    best = best_of(scores, spec.metric)
    only = [r for r, w in weights.items() if w >= 1 - 1e-6]
    if only and method not in STATELESS:   # all the weight on one input: the blend *is* that run
        single = thresholds.cv(spec.metric, y, predictions.column(P, src.names.index(only[0])), spec.task, fold)
        return BlendResult(only[0], ws.run_dir(only[0]), spec.metric, method, single.score, single.threshold,
                           single.folds, in_sample, weights, scores, best[0], best[1], list(src.notes),
                           same_as=only[0])
    cols = spec.pred_columns
    frame = predictions.frame(oof, cols)
    frame.insert(0, "fold", fold)
    frame.insert(0, "id", data.train[spec.id_column].to_numpy())
    test = None
    if src.test is not None:
        test = predictions.frame(_apply(method, final, src.test, Z_test), cols)
        test.insert(0, "id", data.test[spec.id_column].to_numpy())
    artifacts.write_json(ws.run_dir(name) / BLEND, {"method": method, "inputs": src.names,
                                                       "columns": cols, "params": _to_json(final)})
    warnings = list(src.notes)
    if method == "rank" and spec.metric in ("log_loss",):
        warnings.append("rank blend values are not probabilities: log_loss scores them poorly")
    run = runs.write_run(ws, name, spec=spec, data=data, oof=frame, test=test,
                         manifest={"kind": "blend", "family": f"{method}-blend", "method": method,
                                   "inputs": src.names, "input_hashes": src.versions, "weights": weights,
                                   "seed": seed, **src.hashes,
                                   "n_splits": n_splits, "folds_done": list(range(n_splits)),
                                   "in_sample_score": in_sample, "warnings": warnings,
                                   "files": {BLEND: artifacts.file_hash(ws.run_dir(name) / BLEND)}})
    return BlendResult(name, run.dir, spec.metric, method, run.score, run.threshold, run.metrics["folds"], in_sample,
                       weights, scores, best[0], best[1], warnings, versus_best(src, oof, best[0]))


# -- replaying a blend on new rows -------------------------------------------------------------

def _to_json(params):
    """The final parameters as JSON: arrays become nested lists (the gate's dict keeps its keys)."""
    if isinstance(params, dict):
        return {k: np.asarray(v).tolist() for k, v in params.items()}
    return None if params is None else np.asarray(params).tolist()


def _from_json(params):
    if isinstance(params, dict):
        return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    return None if params is None else np.asarray(params, dtype=np.float64)


def replay(run_dir: Path, preds: dict[str, np.ndarray], frame: pd.DataFrame, spec) -> np.ndarray:
    """A saved blend applied to new rows: ``preds`` maps each input run to its (n, k) predictions of
    ``frame``'s rows (the gate of ``moe`` also reads the rows' text). No refitting; ``rank`` ranks
    within these rows, as the blend did within the test set."""
    path = Path(run_dir) / BLEND
    if not path.is_file():
        raise InputError(f"{path}: this blend keeps no parameters (made before `comp predict` existed); "
                         f"rebuild it: `comp blend --exp <inputs> --name {Path(run_dir).name} --force`")
    recorded = (artifacts.read_json(Path(run_dir) / MANIFEST).get("files") or {}).get(BLEND)
    artifacts.verify_files(run_dir, {BLEND: recorded} if recorded else {})
    saved = artifacts.read_json(path)
    missing = [r for r in saved["inputs"] if r not in preds]
    if missing:
        raise InputError(f"{path}: blend {Path(run_dir).name} needs predictions of {missing} too")
    if predictions.is_ragged(preds[saved["inputs"][0]]):        # (n, m) cells of (units, k)
        P = np.empty((len(preds[saved["inputs"][0]]), len(saved["inputs"])), dtype=object)
        for j, r in enumerate(saved["inputs"]):
            P[:, j] = preds[r]
    else:
        P = np.stack([np.asarray(preds[r], dtype=np.float32) for r in saved["inputs"]], axis=1)   # (n, m, k)
    method = saved["method"]
    Z = gate_features(P, frame, spec) if method == "moe" else None
    return _apply(method, _from_json(saved["params"]), P, Z)
