"""Competition metrics: one table of :class:`Metric` and the functions every stage scores with.

Predictions travel through ``comp`` in one shape, ``spec.pred_columns``: a 2-D float
array ``(n, k)`` -- binary ``(n, 1)`` P(positive), multiclass ``(n, K)`` class
probabilities, multilabel ``(n, L)`` label probabilities, regression ``(n, T)`` values.
:func:`score` turns that into what a metric needs (hard labels through a threshold or
argmax, probabilities, values) and scores it against the encoded target.

Label-taking metrics on binary and multilabel tasks cut probabilities at a decision
threshold (``threshold``, default 0.5); choosing it, and the CV a run reports, is
:mod:`competition.thresholds`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn import metrics as skm

from competition import spans, tokens
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
    Metric("entity_f1", "maximize", "labels", ("tokens",), lambda y, p: tokens.entity_f1(y, p)),
    Metric("word_jaccard", "maximize", "labels", ("span",), spans.metric("word_jaccard")),
    Metric("exact_match", "maximize", "labels", ("span",), spans.metric("exact_match")),
    Metric("span_f1", "maximize", "labels", ("span",), spans.metric("span_f1")),
)}

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


def check_predictions(metric: Metric, y_true, y_pred, task: str) -> tuple[np.ndarray, np.ndarray]:
    """``y_true``, ``y_pred`` as arrays, checked against the metric's tasks and the predictions' shape."""
    if task not in metric.tasks:
        raise InputError(f"metric {metric.name!r} does not score task {task!r}; it scores "
                         f"{', '.join(metric.tasks)}")
    if task == "tokens":
        return tokens.check_rows_predicted(y_true, y_pred)
    if task == "span":
        return spans.check_rows_predicted(y_true, y_pred)
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
    if task == "tokens":    # the decoder: valid IOB2 tags, the threshold its O bias
        return tokens.decode(y_pred, 0.0 if threshold is None else float(threshold))
    if task == "span":      # the span decoder (its rule the metric's), the threshold its length bias
        return spans.decode(y_pred, 0.0 if threshold is None else float(threshold), spans.rule_of(name))
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
    y_true, y_pred = check_predictions(metric, y_true, y_pred, task)
    if task == "regression" and y_true.ndim == 1:
        y_true = y_true[:, None]
    return metric.fn(y_true, to_needed(name, y_pred, task, threshold))
