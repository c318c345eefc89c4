"""The prediction format every stage passes around, whatever the task.

Row-level tasks predict a float matrix ``(rows, k)``, one column per ``spec.pred_columns``. Token-level
tasks (:mod:`competition.tokens`) predict, for every row, a float array ``(units, k)``: the probability
of each tag at each unit of the row; in memory a 1-D object array of those arrays (*ragged*), in
``oof.parquet`` / ``test.parquet`` one list column per pred column, keyed by id as always. Folds,
seeds and models combine both shapes the same way, by averaging, and the functions here are the only
place that knows the two apart.

>>> import numpy as np
>>> ragged = rows([np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.5, 0.5]])])
>>> table = frame(ragged, ["O", "B"])
>>> table["B"].tolist()
[[0.1, 0.8], [0.5]]
>>> [m.tolist() for m in matrix(table, ["O", "B"])]
[[[0.9, 0.1], [0.2, 0.8]], [[0.5, 0.5]]]
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def rows(values) -> np.ndarray:
    """Per-row arrays as a 1-D object array (numpy would stack rows of equal length into 3-D)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def is_ragged(pred) -> bool:
    return isinstance(pred, np.ndarray) and pred.dtype == object


def frame(pred, cols: list[str]) -> pd.DataFrame:
    """Predictions as a frame of ``cols``: float columns, or list columns for ragged predictions."""
    if not is_ragged(pred):
        return pd.DataFrame(np.asarray(pred, dtype=float), columns=cols)
    return pd.DataFrame({c: [np.asarray(p[:, j], dtype=float).tolist() for p in pred] for j, c in enumerate(cols)})


def matrix(table: pd.DataFrame, cols: list[str]):
    """The ``cols`` of a predictions frame in memory: ``(rows, k)`` floats, or ragged ``(units, k)``
    arrays when the columns hold lists.

    Raises:
        ValueError: a row whose list columns differ in length.
    """
    if not len(table) or not isinstance(table[cols[0]].iloc[0], (list, np.ndarray)):
        return table[cols].to_numpy(dtype=float)
    lengths = np.array([len(v) for v in table[cols[0]]])
    flat = np.empty((int(lengths.sum()), len(cols)), dtype=float)
    for j, c in enumerate(cols):
        if not np.array_equal([len(v) for v in table[c]], lengths):
            raise ValueError(f"prediction column {c!r} has rows of other lengths than {cols[0]!r}")
        flat[:, j] = np.concatenate([np.asarray(v, dtype=float) for v in table[c]]) if len(flat) else []
    return rows(np.split(flat, np.cumsum(lengths)[:-1]))


def lengths(pred) -> np.ndarray | None:
    """Units per row of ragged predictions; None for a matrix."""
    return np.array([len(p) for p in pred]) if is_ragged(pred) else None


def flat(pred) -> np.ndarray:
    """Every unit's (or row's) prediction as one ``(n, k)`` matrix."""
    if not is_ragged(pred):
        return np.asarray(pred, dtype=float)
    return np.concatenate(list(pred)) if len(pred) else np.zeros((0, 0))


def finite(pred) -> bool:
    return bool(np.isfinite(flat(pred)).all())


def problem(pred, n_rows: int, k: int, units: list[int] | np.ndarray | None = None) -> str | None:
    """What is wrong with predictions for ``n_rows`` rows of ``k`` columns (and ``units`` per row,
    token tasks), or None.

    >>> problem(rows([np.zeros((2, 3))]), 1, 3, [3])
    'row 0 has 2 units of predictions for 3 units'
    """
    if units is None:
        shape = np.shape(pred)
        return None if shape == (n_rows, k) else f"shape {shape} (expected {(n_rows, k)})"
    if not is_ragged(pred) or len(pred) != n_rows:
        return f"{len(pred)} rows of per-unit predictions for {n_rows} rows"
    for i, (p, n) in enumerate(zip(pred, units)):
        if np.ndim(p) != 2 or np.shape(p) != (n, k):
            got = f"{len(p)} units" if np.ndim(p) == 2 and np.shape(p)[1] == k else f"shape {np.shape(p)}"
            return f"row {i} has {got} of predictions for {n} units"
    return None


def mean(parts: list, weights=None):
    """The (weighted) mean of predictions of the same rows, matrices or ragged alike."""
    w = np.ones(len(parts)) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    if not is_ragged(parts[0]):
        return sum(wi * np.asarray(p, dtype=float) for wi, p in zip(w, parts))
    return rows([sum(wi * np.asarray(p[i], dtype=float) for wi, p in zip(w, parts)) for i in range(len(parts[0]))])


def column(P: np.ndarray, j: int):
    """Input ``j`` of several inputs' predictions side by side -- ``(n, m, k)`` floats, or ``(n, m)`` cells
    of per-unit arrays -- in the prediction format: ``(n, k)`` floats or ragged rows."""
    return rows(list(P[:, j])) if P.dtype == object else P[:, j].astype(float)
