"""Decision thresholds and the CV a run reports, on top of :mod:`competition.metrics`.

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

import numpy as np

from competition import spans, tokens
from competition.metrics import Threshold, check_predictions, get, score, to_needed

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
    return get(name).needs == "labels" and task in ("binary", "multilabel", "tokens", "span")


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
    y_true, y_pred = check_predictions(get(name), y_true, y_pred, task)
    if not takes_threshold(name, task):
        return None
    if task == "binary":
        return _best_cut(_FROM_COUNTS[name], y_true.astype(float), y_pred[:, 0])[0]
    if task == "tokens":    # the decoder's O bias (competition.tokens.decode)
        return tokens.best_bias(y_true, y_pred)
    if task == "span":      # the span decoder's length bias (competition.spans.decode)
        return spans.best_bias(name, y_true, y_pred)
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
    y_true, y_pred = check_predictions(get(name), y_true, y_pred, task)
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
    y_true, y_pred = check_predictions(metric, y_true, y_pred, task)
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
    if task == "tokens":
        return 0.0          # O at every unit finds no entity
    if task == "span":      # the whole text as every answer
        return float(spans.row_scores(name, y_true, [[0, len(a.text)] for a in y_true]).mean())
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
