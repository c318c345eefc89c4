"""Competition metrics: one table of :class:`Metric` and the functions every stage scores with.

Predictions travel through ``comp`` in one shape, ``spec.pred_columns``: a 2-D float
array ``(n, k)`` -- binary ``(n, 1)`` P(positive), multiclass ``(n, K)`` class
probabilities, multilabel ``(n, L)`` label probabilities, regression ``(n, T)`` values.
:func:`score` turns that into what a metric needs (hard labels through a threshold or
argmax, probabilities, values) and scores it against the encoded target.

Label-taking metrics on binary and multilabel tasks depend on a decision threshold;
:func:`best_threshold` finds the one that maximises the metric on out-of-fold
predictions (one sort per label, so it runs on millions of rows), and
:func:`evaluate` scores at it. The threshold is saved with the run and reused at
submission time.

Multilabel F1 comes in three flavours. ``f1``, ``macro_f1`` and ``mean_f1`` are one metric
there, the mean of the per-label F1 (macro over labels; three names because workspaces use
all three), with each label's threshold chosen on its own. ``micro_f1`` pools every (row,
label) pair into one F1, and ``jaccard`` is the sample-wise Jaccard of SemEval-2018 Task 1
E-c (per row |true & predicted| / |true | predicted|, averaged over rows); both get one
threshold shared by every label, chosen exactly in one sort of the flattened predictions.

A threshold chosen on the rows it scores flatters them. :func:`cv` is what a run reports:
fold k is cut at the threshold chosen on the *other* folds' OOF (nested), and the CV is the
score of those nested decisions over every row; the in-sample figure is kept beside it, marked
optimistic, and the threshold chosen on all OOF is the one submissions use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn import metrics as skm

from competition.errors import InputError

Threshold = float | list[float] | None


@dataclass(frozen=True)
class Metric:
    """One metric.

    Attributes:
        name: the name used in ``competition.yaml`` (``metric: f1``).
        direction: ``maximize`` or ``minimize``.
        needs: what ``fn`` takes as predictions: hard ``labels``, ``probs`` or ``values``.
        tasks: the tasks it can score.
        fn: ``fn(y_true, y_pred) -> float`` with ``y_pred`` in the form ``needs`` says:
            labels are ``(n,)`` codes (``(n, L)`` 0/1 for multilabel); probs are ``(n,)``
            P(positive) for binary, ``(n, K)`` / ``(n, L)`` otherwise; values are ``(n, T)``.
    """

    name: str
    direction: Literal["maximize", "minimize"]
    needs: Literal["labels", "probs", "values"]
    tasks: tuple[str, ...]
    fn: Callable[[np.ndarray, np.ndarray], float]


# -- metric functions ------------------------------------------------------------------------

def _per_label(fn: Callable, y: np.ndarray, p: np.ndarray) -> float:
    """Mean of ``fn`` over the columns of a 0/1 matrix ``y`` where it is defined (both classes
    present); multiclass ``y`` (n,) is one-hot encoded first (one-vs-rest)."""
    if y.ndim == 1:
        y = np.eye(p.shape[1], dtype=np.int64)[y]
    scores = [fn(y[:, j], p[:, j]) for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    return float(np.mean(scores)) if scores else float("nan")


def _f1(y: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of the positive class; multilabel: mean per-label F1."""
    average = "binary" if y.ndim == 1 else "macro"
    return float(skm.f1_score(y, labels, average=average, zero_division=0))


def _macro_f1(y: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of the per-class (multiclass, binary) or per-label (multilabel) F1."""
    return float(skm.f1_score(y, labels, average="macro", zero_division=0))


def _micro_f1(y: np.ndarray, labels: np.ndarray) -> float:
    """F1 of every (row, label) pair pooled into one confusion count (multilabel)."""
    return float(skm.f1_score(y, labels, average="micro", zero_division=0))


def _jaccard(y: np.ndarray, labels: np.ndarray) -> float:
    """Sample-wise Jaccard (multilabel): per row |true & predicted| / |true | predicted|,
    averaged over rows. A row with no true and no predicted label scores 1 (it is right),
    as sklearn's ``jaccard_score(average="samples", zero_division=1.0)``.

    >>> _jaccard(np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0]]), np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]]))
    0.4444444444444444
    """
    truth, predicted = np.asarray(y) > 0, np.asarray(labels) > 0
    inter, union = (truth & predicted).sum(axis=1), (truth | predicted).sum(axis=1)
    return float(np.mean(np.divide(inter, union, out=np.ones(len(truth)), where=union > 0)))


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    if p.ndim == 1:
        return float(skm.roc_auc_score(y, p))
    return _per_label(skm.roc_auc_score, y, p)


def _average_precision(y: np.ndarray, p: np.ndarray) -> float:
    if p.ndim == 1:
        return float(skm.average_precision_score(y, p))
    return _per_label(skm.average_precision_score, y, p)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    if p.ndim == 1:
        return float(skm.log_loss(y, p, labels=[0, 1]))
    if y.ndim == 1:  # multiclass: rows rescaled to sum to 1, as Kaggle scores it (float32 rounding)
        p = np.asarray(p, dtype=np.float64)
        return float(skm.log_loss(y, p / p.sum(axis=1, keepdims=True), labels=list(range(p.shape[1]))))
    return float(np.mean([skm.log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(y.shape[1])]))


def _rmse(y: np.ndarray, v: np.ndarray) -> float:
    return float(skm.root_mean_squared_error(y, v))


def _mae(y: np.ndarray, v: np.ndarray) -> float:
    return float(skm.mean_absolute_error(y, v))


_CLS = ("binary", "multiclass")
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", "maximize", "labels", _CLS, lambda y, p: float(skm.accuracy_score(y, p))),
    Metric("f1", "maximize", "labels", ("binary", "multilabel"), _f1),
    Metric("macro_f1", "maximize", "labels", ("binary", "multiclass", "multilabel"), _macro_f1),
    Metric("mean_f1", "maximize", "labels", ("multilabel",), _macro_f1),
    Metric("micro_f1", "maximize", "labels", ("multilabel",), _micro_f1),
    Metric("jaccard", "maximize", "labels", ("multilabel",), _jaccard),
    Metric("roc_auc", "maximize", "probs", ("binary", "multiclass", "multilabel"), _roc_auc),
    Metric("mean_auc", "maximize", "probs", ("multilabel",), _roc_auc),
    Metric("average_precision", "maximize", "probs", ("binary", "multiclass", "multilabel"),
           _average_precision),
    Metric("log_loss", "minimize", "probs", ("binary", "multiclass", "multilabel"), _log_loss),
    Metric("rmse", "minimize", "values", ("regression",), _rmse),
    Metric("mae", "minimize", "values", ("regression",), _mae),
)}

# Label metrics as functions of the confusion counts at every threshold (vectorised search).
_FROM_COUNTS: dict[str, Callable] = {
    "accuracy": lambda tp, fp, pos, neg: (tp + neg - fp) / (pos + neg),
    "f1": lambda tp, fp, pos, neg: _safe(2 * tp, tp + fp + pos),
    "macro_f1": lambda tp, fp, pos, neg: (_safe(2 * tp, tp + fp + pos)
                                          + _safe(2 * (neg - fp), 2 * neg - fp + (pos - tp))) / 2,
}
# on one label of a multilabel task, every F1 flavour is that label's F1
_FROM_COUNTS_PER_LABEL = {"f1": _FROM_COUNTS["f1"], "macro_f1": _FROM_COUNTS["f1"],
                          "mean_f1": _FROM_COUNTS["f1"]}


def _safe(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (sklearn's ``zero_division=0``)."""
    return np.divide(num, den, out=np.zeros(np.shape(num), dtype=float), where=np.asarray(den) > 0)


# -- public API ------------------------------------------------------------------------------

def get(name: str) -> Metric:
    """The metric called ``name``; an InputError listing the valid names otherwise.

    >>> get("rmse").direction
    'minimize'
    """
    try:
        return METRICS[name]
    except KeyError:
        raise InputError(f"unknown metric {name!r}; valid metrics: {', '.join(sorted(METRICS))}") from None


def greater_is_better(name: str) -> bool:
    """True when a higher score is better.

    >>> greater_is_better("f1"), greater_is_better("log_loss")
    (True, False)
    """
    return get(name).direction == "maximize"


def is_better(name: str, a: float, b: float) -> bool:
    """True when score ``a`` is strictly better than ``b`` under metric ``name``.

    >>> is_better("rmse", 0.45, 0.50), is_better("roc_auc", 0.80, 0.90)
    (True, False)
    """
    return a > b if greater_is_better(name) else a < b


def _check(metric: Metric, y_true, y_pred, task: str) -> tuple[np.ndarray, np.ndarray]:
    if task not in metric.tasks:
        raise InputError(f"metric {metric.name!r} does not score task {task!r}; it scores "
                         f"{', '.join(metric.tasks)}")
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred, dtype=float)
    if y_pred.ndim != 2 or len(y_pred) != len(y_true):
        raise InputError(f"metric {metric.name!r}: predictions must be a 2-D array (rows, pred_columns) "
                         f"with one row per target row ({len(y_true)}), got shape {y_pred.shape}")
    if task == "binary" and y_pred.shape[1] != 1:
        raise InputError(f"metric {metric.name!r}: binary predictions are one column P(positive), "
                         f"got {y_pred.shape[1]} columns")
    if task == "multilabel" and (y_true.ndim != 2 or y_true.shape[1] != y_pred.shape[1]):
        raise InputError(f"metric {metric.name!r}: multilabel targets {y_true.shape} and predictions "
                         f"{y_pred.shape} must have the same number of label columns")
    return y_true, y_pred


def _thresholds(threshold: Threshold, n_labels: int) -> np.ndarray:
    if threshold is None:
        return np.full(n_labels, 0.5)
    values = np.atleast_1d(np.asarray(threshold, dtype=float))
    if values.size == 1:
        return np.full(n_labels, values.item())
    if values.size != n_labels:
        raise InputError(f"threshold: got {values.size} values for {n_labels} labels; "
                         "give one float, or one per label")
    return values


def to_needed(name: str, y_pred, task: str, threshold: Threshold = None) -> np.ndarray:
    """Predictions ``(n, k)`` in the form metric ``name`` takes: labels (``p >= threshold``,
    argmax for multiclass), probabilities (binary: the one column) or values.

    >>> to_needed("f1", np.array([[0.2], [0.7]]), "binary")
    array([0, 1])
    >>> to_needed("macro_f1", np.array([[0.2, 0.8], [0.5, 0.3]]), "multilabel", threshold=[0.25, 0.4])
    array([[0, 1],
           [1, 0]])
    """
    metric = get(name)
    y_pred = np.asarray(y_pred, dtype=float)
    if metric.needs == "values":
        return y_pred
    if metric.needs == "probs":
        return y_pred[:, 0] if task == "binary" else y_pred
    if task == "multiclass":
        return y_pred.argmax(axis=1)
    labels = (y_pred >= _thresholds(threshold, y_pred.shape[1])).astype(np.int64)
    return labels[:, 0] if task == "binary" else labels


def score(name: str, y_true, y_pred, task: str, threshold: Threshold = None) -> float:
    """Score predictions ``y_pred`` (n, k) against the encoded target ``y_true``.

    Args:
        name: metric name (a key of :data:`METRICS`).
        y_true: binary/multiclass (n,) int codes; multilabel (n, L) 0/1; regression (n,) or (n, T).
        y_pred: (n, k) floats as in ``spec.pred_columns``.
        task: binary, multiclass, multilabel or regression.
        threshold: for label metrics on binary/multilabel: P >= threshold is positive
            (default 0.5); a list gives one threshold per label.

    >>> y = np.array([0, 1, 1, 0])
    >>> p = np.array([[0.1], [0.4], [0.8], [0.3]])
    >>> score("f1", y, p, "binary"), score("f1", y, p, "binary", threshold=0.2)
    (0.6666666666666666, 0.8)
    >>> score("accuracy", np.array([2, 0]), np.array([[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]]), "multiclass")
    1.0
    >>> score("rmse", np.array([1.0, 3.0]), np.array([[1.0], [1.0]]), "regression")
    1.4142135623730951
    """
    metric = get(name)
    y_true, y_pred = _check(metric, y_true, y_pred, task)
    if task == "regression" and y_true.ndim == 1:
        y_true = y_true[:, None]
    return metric.fn(y_true, to_needed(name, y_pred, task, threshold))


def _best_cut(fn: Callable, y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(threshold, score) maximising ``fn(tp, fp, pos, neg)`` over every cut ``p >= t`` of one column.

    One sort: the cuts are the distinct scores plus "no positive at all"; the returned
    threshold sits halfway to the next lower score, so it generalises to new rows.
    """
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p) - 1]  # last row of each distinct score
    tp = np.r_[0, np.cumsum(y_sorted)[last]].astype(float)
    fp = np.r_[0, last + 1 - tp[1:]]
    pos = float(y_sorted.sum())
    return _pick(p_sorted[last], fn(tp, fp, pos, len(p) - pos))


def _pick(distinct: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(threshold, score) of the best cut: ``distinct`` are the scores in descending order,
    ``values[0]`` the metric predicting no positive, ``values[g]`` the metric at ``p >= distinct[g - 1]``."""
    best = int(np.argmax(values))
    if best == 0:  # predict no positive
        return float(np.nextafter(distinct[0], np.inf)), float(values[0])
    here = distinct[best - 1]
    below = distinct[best] if best < len(distinct) else here
    mid = (here + below) / 2
    return float(mid if below < mid <= here else here), float(values[best])


def _best_jaccard_cut(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(threshold, score) maximising the sample-wise Jaccard over every cut ``p >= t`` shared by
    all labels of ``p`` (n, L). Exact, in one sort of the n * L scores.

    Lowering the cut adds entries one at a time; an entry changes only its own row's Jaccard,
    and by an amount fixed by the entries of that row above it. So each entry's gain is found
    within its row (rows sorted once), and the score at every cut is a running sum of gains in
    the global order. Tied scores in a row enter at the same cut, so their gains telescope.
    """
    n = len(p)
    within = np.argsort(-p, axis=1, kind="stable")               # (n, L) each row, highest first
    ys = np.take_along_axis(y.astype(float), within, axis=1)
    inter = np.cumsum(ys, axis=1)                                # true among the row's top k + 1
    union = ys.sum(axis=1, keepdims=True) + np.cumsum(1 - ys, axis=1)   # >= 1: one is predicted
    empty = np.where(ys.sum(axis=1) > 0, 0.0, 1.0)                # each row's score predicting none
    gains = np.diff(np.c_[empty, inter / union], axis=1).ravel()
    ps = np.take_along_axis(p, within, axis=1).ravel()
    order = np.argsort(-ps, kind="stable")
    p_sorted = ps[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]
    values = (empty.sum() + np.r_[0.0, np.cumsum(gains[order])[last]]) / n
    return _pick(p_sorted[last], values)


# Multilabel metrics of every (row, label) entry at once: one threshold shared by every label.
_SHARED_CUT: dict[str, Callable] = {
    "micro_f1": lambda y, p: _best_cut(_FROM_COUNTS["f1"], y.ravel().astype(float), p.ravel()),
    "jaccard": _best_jaccard_cut,
}


def takes_threshold(name: str, task: str) -> bool:
    """True when metric ``name`` on ``task`` scores labels cut at a decision threshold.

    >>> takes_threshold("f1", "binary"), takes_threshold("accuracy", "multiclass"), takes_threshold("roc_auc", "binary")
    (True, False, False)
    """
    return get(name).needs == "labels" and task in ("binary", "multilabel")


def best_threshold(name: str, y_true, y_pred, task: str) -> Threshold:
    """The threshold(s) maximising a label metric on these predictions, or None where the metric
    takes no threshold (probability / value metrics, multiclass argmax).

    Binary: one float; multilabel: one float per label. Per-label F1 means (``f1``,
    ``macro_f1``, ``mean_f1``): each label's F1 maximised on its own, which maximises their
    mean. ``micro_f1`` and ``jaccard``: the one threshold, shared by every label (repeated per
    label), that maximises the metric over all entries; exact, not a grid.

    >>> y = np.array([0, 1, 1, 0, 1])
    >>> p = np.array([[0.1], [0.5], [0.75], [0.25], [0.625]])
    >>> best_threshold("f1", y, p, "binary")
    0.375
    >>> best_threshold("roc_auc", y, p, "binary") is None
    True
    >>> y2, p2 = np.array([[1, 0], [0, 1]]), np.array([[0.6, 0.3], [0.2, 0.4]])
    >>> best_threshold("jaccard", y2, p2, "multilabel")      # one cut for every label
    [0.35, 0.35]
    """
    y_true, y_pred = _check(get(name), y_true, y_pred, task)
    if not takes_threshold(name, task):
        return None
    if task == "binary":
        return _best_cut(_FROM_COUNTS[name], y_true.astype(float), y_pred[:, 0])[0]
    if name in _SHARED_CUT:
        return [_SHARED_CUT[name](y_true, y_pred)[0]] * y_pred.shape[1]
    fn = _FROM_COUNTS_PER_LABEL[name]
    return [_best_cut(fn, y_true[:, j].astype(float), y_pred[:, j])[0] for j in range(y_pred.shape[1])]


def evaluate(name: str, y_true, y_pred, task: str) -> tuple[float, Threshold]:
    """(score, threshold): the score at the best threshold where the metric takes one, else the
    plain score and None. What a run reports as its CV.

    >>> y = np.array([0, 1, 1, 0, 1])
    >>> evaluate("f1", y, np.array([[0.1], [0.5], [0.75], [0.25], [0.625]]), "binary")
    (1.0, 0.375)
    """
    threshold = best_threshold(name, y_true, y_pred, task)
    return score(name, y_true, y_pred, task, threshold=threshold), threshold


@dataclass(frozen=True)
class CV:
    """What a run reports (:func:`cv`).

    Attributes:
        score: the OOF score; for threshold metrics each fold cut at a threshold chosen on the
            other folds (nested), so no fold's decisions saw its own labels.
        folds: each fold's score, the same way.
        threshold: chosen on all OOF rows: what a submission uses (None without one).
        in_sample: the OOF score at ``threshold``, chosen on the rows it scores (optimistic);
            None where the metric takes no threshold (it would equal ``score``).
        fold_thresholds: the threshold each fold was cut at (None without one).
    """

    score: float
    folds: dict[int, float]
    threshold: Threshold
    in_sample: float | None = None
    fold_thresholds: dict[int, Threshold] | None = None


def decisions(name: str, y_true, y_pred, task: str, folds) -> tuple[np.ndarray, dict[int, Threshold] | None]:
    """OOF predictions in the form metric ``name`` takes, each fold's rows cut at the threshold
    chosen on the other folds' rows (nested), and those thresholds (None: no threshold).

    >>> y = np.array([0, 1, 0, 1])
    >>> p = np.array([[0.2], [0.6], [0.3], [0.4]])
    >>> decisions("f1", y, p, "binary", np.array([0, 0, 1, 1]))
    (array([0, 1, 0, 1]), {0: 0.35, 1: 0.4})
    """
    y_true, y_pred = _check(get(name), y_true, y_pred, task)
    folds = np.asarray(folds)
    if not takes_threshold(name, task):
        return to_needed(name, y_pred, task), None
    out = to_needed(name, y_pred, task, best_threshold(name, y_true, y_pred, task))
    chosen: dict[int, Threshold] = {}
    for k in np.unique(folds):
        rest, here = folds != k, folds == k
        chosen[int(k)] = best_threshold(name, y_true[rest], y_pred[rest], task)
        out[here] = to_needed(name, y_pred[here], task, chosen[int(k)])
    return out, chosen


def cv(name: str, y_true, y_pred, task: str, folds) -> CV:
    """A run's CV from its OOF predictions and their folds (see :class:`CV`).

    >>> y = np.array([0, 1, 0, 1, 1, 0])
    >>> p = np.array([[0.2], [0.6], [0.3], [0.4], [0.7], [0.45]])
    >>> r = cv("accuracy", y, p, "binary", np.array([0, 0, 1, 1, 2, 2]))
    >>> round(r.score, 4), round(r.in_sample, 4)        # nested vs chosen on the rows it scores
    (0.6667, 0.8333)
    >>> cv("rmse", np.array([1.0, 3.0]), np.array([[1.0], [1.0]]), "regression", np.array([0, 1])).folds
    {0: 0.0, 1: 2.0}
    """
    metric = get(name)
    y_true, y_pred = _check(metric, y_true, y_pred, task)
    folds = np.asarray(folds)
    if task == "regression" and y_true.ndim == 1:
        y_true = y_true[:, None]
    needed, chosen = decisions(name, y_true, y_pred, task, folds)
    fold_scores = {int(k): metric.fn(y_true[folds == k], needed[folds == k]) for k in np.unique(folds)}
    if chosen is None:
        return CV(metric.fn(y_true, needed), fold_scores, None)
    in_sample, threshold = evaluate(name, y_true, y_pred, task)
    return CV(metric.fn(y_true, needed), fold_scores, threshold, in_sample, chosen)


def baseline(name: str, y_true, task: str, folds) -> float:
    """The CV of the trivial model -- each fold predicts the other folds' class shares (the
    majority class, where the metric takes labels) or mean -- scored as :func:`cv` scores a run.
    A run at or below it has learnt nothing usable.

    >>> baseline("rmse", np.array([1.0, 3.0, 3.0, 1.0]), "regression", np.array([0, 0, 1, 1]))
    1.0
    >>> baseline("roc_auc", np.array([0, 1, 0, 1]), "binary", np.array([0, 0, 1, 1]))
    0.5
    """
    y_true, folds = np.asarray(y_true), np.asarray(folds)
    if task in ("binary", "multiclass"):
        k = int(y_true.max()) + 1
        target = np.eye(max(k, 2))[y_true][:, -1:] if task == "binary" else np.eye(k)[y_true]
    else:
        target = y_true.reshape(len(y_true), -1).astype(float)
    pred = np.zeros(target.shape)
    for f in np.unique(folds):
        pred[folds == f] = target[folds != f].mean(axis=0)
    return cv(name, y_true, pred, task, folds).score
