"""An independent re-computation of the CV a run must report (nested thresholds), for tests."""

from __future__ import annotations

import numpy as np

from competition import metrics, thresholds


def nested_cv(name: str, y, pred, task: str, folds) -> float:
    """The OOF score with each fold's rows cut at the threshold that maximises the metric on the
    *other* folds' rows (plain score where the metric takes no threshold)."""
    y, pred, folds = np.asarray(y), np.asarray(pred, dtype=float), np.asarray(folds)
    if not thresholds.takes_threshold(name, task):
        return metrics.score(name, y, pred, task)
    labels = np.zeros(pred.shape, dtype=np.int64)
    for k in np.unique(folds):
        rest, here = folds != k, folds == k
        cut = np.atleast_1d(thresholds.best_threshold(name, y[rest], pred[rest], task))
        labels[here] = pred[here] >= cut
    return metrics.METRICS[name].fn(y, labels[:, 0] if task == "binary" else labels)
