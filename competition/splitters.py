"""Fold schemes: the seeded splitters and :func:`make_folds`, which assigns every train row to one fold.

Writing the assignment down, and reading it back, is :mod:`competition.folds`.
Schemes (``folds.scheme`` in competition.yaml), each a seeded scikit-learn splitter:

=====================  ===================================================================
kfold                  ``KFold(shuffle=True)``: any task
stratified             ``StratifiedKFold``: each fold keeps the class shares (binary, multiclass)
group                  ``GroupKFold(shuffle=True)``: equal ``folds.group`` values share a fold
stratified-group       ``StratifiedGroupKFold``: both of the above (binary, multiclass)
multilabel-stratified  iterative stratification (``iterstrat``): each label's count per fold
binned-stratified      regression: stratify on ``folds.bins`` quantile bins of the target
time-ordered           rows sorted by ``folds.time`` (file order when unset), cut into
                       ``n_splits`` contiguous blocks; see :class:`TimeOrderedKFold`
=====================  ===================================================================
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from competition.errors import InputError
from competition.spec import SCHEMES

# the tasks each scheme can split, and what to use instead
_FITS = {
    "stratified": (("binary", "multiclass"), {"regression": "binned-stratified",
                                              "multilabel": "multilabel-stratified"}),
    "stratified-group": (("binary", "multiclass"), {"regression": "group", "multilabel": "group"}),
    "multilabel-stratified": (("multilabel",), {"binary": "stratified", "multiclass": "stratified",
                                                "regression": "binned-stratified"}),
    "binned-stratified": (("regression",), {"binary": "stratified", "multiclass": "stratified",
                                            "multilabel": "multilabel-stratified"}),
}
GROUPED = ("group", "stratified-group")  # the schemes that keep equal folds.group values together


class FoldWarning(UserWarning):
    """Usable but degraded folds: a rare label, uneven group folds, merged bins, no time column."""


# -- splitters (scikit-learn's contract: split(X, y, groups) -> (train_idx, valid_idx)) ---------

def quantile_bins(y, bins: int) -> np.ndarray:
    """Bin a continuous target into ``bins`` quantile bins (codes 0..); a multi-column target is
    binned on its first column. Tied quantile edges are merged, so there may be fewer bins.

    >>> quantile_bins([0.1, 0.5, 0.2, 0.9, 0.7, 0.3], 3).tolist()
    [0, 1, 0, 2, 2, 1]
    """
    y = np.asarray(y, dtype=float)
    if y.ndim == 2:
        y = y[:, 0]
    return pd.qcut(y, q=bins, labels=False, duplicates="drop").astype(np.int64)


class BinnedStratifiedKFold(StratifiedKFold):
    """Stratified k-fold for a continuous target: StratifiedKFold on its quantile bins, so every
    fold spans the whole target range and the fold means agree.

    >>> y = np.arange(20, dtype=float)
    >>> cv = BinnedStratifiedKFold(n_splits=2, bins=5, shuffle=True, random_state=0)
    >>> [float(y[valid].mean()) for _, valid in cv.split(np.zeros(20), y)]
    [9.5, 9.5]
    """

    def __init__(self, n_splits: int = 5, *, bins: int = 10, shuffle: bool = False, random_state=None):
        super().__init__(n_splits=n_splits, shuffle=shuffle, random_state=random_state)
        self.bins = bins

    def split(self, X, y, groups=None):
        return super().split(X, quantile_bins(y, self.bins), groups)


class TimeOrderedKFold(KFold):
    """Contiguous blocks of rows that come in time order: fold k is the k-th block.

    ``X`` must be sorted by time (like scikit-learn's ``TimeSeriesSplit``);
    :func:`make_folds` sorts by the ``folds.time`` column first. Each block is predicted
    by a model trained on every *other* block, earlier and later ones alike: this is
    blocked cross-validation, chosen over forward chaining because every stage here
    relies on each train row having exactly one fold and one out-of-fold prediction,
    and forward chaining can never predict the first block. What it buys is that rows
    close in time stay together, so near-duplicates in time do not leak across folds.
    The last block is trained on the past only: its fold score is the honest
    forward-in-time estimate. Deterministic: there is nothing to seed.

    >>> [valid.tolist() for _, valid in TimeOrderedKFold(3).split(np.zeros(7))]
    [[0, 1, 2], [3, 4], [5, 6]]
    """

    def __init__(self, n_splits: int = 5):
        super().__init__(n_splits=n_splits, shuffle=False)


def _unknown_scheme(scheme: str) -> InputError:
    return InputError(f"unknown fold scheme {scheme!r} (folds.scheme / {{scheme}}); valid: {', '.join(SCHEMES)}",
                      scheme="scheme")


def make_splitter(scheme: str, n_splits: int, seed: int, bins: int = 10):
    """The seeded scikit-learn-style splitter of a scheme."""
    # iterative-stratification: only multilabel folds
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    kw = {"n_splits": n_splits, "shuffle": True, "random_state": seed}
    splitters = {
        "kfold": lambda: KFold(**kw),
        "stratified": lambda: StratifiedKFold(**kw),
        "group": lambda: GroupKFold(**kw),
        "stratified-group": lambda: StratifiedGroupKFold(**kw),
        "multilabel-stratified": lambda: MultilabelStratifiedKFold(**kw),
        "binned-stratified": lambda: BinnedStratifiedKFold(bins=bins, **kw),
        "time-ordered": lambda: TimeOrderedKFold(n_splits),
    }
    if scheme not in splitters:
        raise _unknown_scheme(scheme)
    return splitters[scheme]()


# -- building folds --------------------------------------------------------------------------

def _column(values, default: str) -> str:
    name = getattr(values, "name", None)
    return f"column {name!r}" if name is not None else default


def _check_scheme(task: str, scheme: str, n_splits: int, n_rows: int) -> None:
    if scheme not in SCHEMES:
        raise _unknown_scheme(scheme)
    fits, instead = _FITS.get(scheme, ((task,), {}))
    if task not in fits:
        raise InputError(f"folds.scheme {scheme!r} does not fit task {task!r} (it splits "
                         f"{', '.join(fits)}); use scheme {instead[task]!r} (comp folds --scheme "
                         f"{instead[task]}) or kfold")
    if not 2 <= n_splits <= n_rows:
        raise InputError(f"folds.n_splits={n_splits}: needs 2 <= n_splits <= the {n_rows:,} train rows")


def _check_columns(scheme: str, n_splits: int, groups, time) -> None:
    """The group / time column: present when the scheme needs it, complete, enough groups."""
    if scheme in GROUPED:
        if groups is None:
            raise InputError(f"folds.scheme {scheme!r} needs a group column: set `folds.group` in "
                             "competition.yaml to the column whose equal values must share a fold")
        values = pd.Series(np.asarray(groups, dtype=object))
        missing = int(values.isna().sum())
        if missing:
            raise InputError(f"folds.group {_column(groups, 'groups')} is empty in {missing:,} row(s); "
                             "every row needs a group: fill them (e.g. with the row id) or pick another column")
        if (n_groups := values.nunique()) < n_splits:
            lower = f"lower n_splits to at most {n_groups} or " if n_groups >= 2 else ""
            raise InputError(f"folds.n_splits={n_splits} is more than the {n_groups} distinct groups in "
                             f"folds.group {_column(groups, 'groups')}; {lower}group by a finer column")
    elif groups is not None:
        warnings.warn(f"folds.group {_column(groups, 'groups')} is ignored by scheme {scheme!r}; "
                      "use scheme group or stratified-group to keep groups together", FoldWarning, stacklevel=3)
    if scheme != "time-ordered" and time is not None:
        warnings.warn(f"folds.time {_column(time, 'time')} is ignored by scheme {scheme!r}; use scheme "
                      "time-ordered to keep rows close in time together", FoldWarning, stacklevel=3)
    if scheme == "time-ordered" and time is None:
        warnings.warn("scheme time-ordered without `folds.time`: rows are taken in file order; set "
                      "folds.time to the column that orders them in time", FoldWarning, stacklevel=3)


def _check_balance(y: np.ndarray, scheme: str, n_splits: int, labels) -> None:
    """Every class in every stratified fold (else an error); rare multilabel labels warned about."""
    if scheme in ("stratified", "stratified-group"):
        counts = np.bincount(y.astype(np.int64))
        rarest = int(np.argmin(np.where(counts > 0, counts, np.inf)))
        if counts[rarest] < n_splits:
            name = labels[rarest] if labels is not None else rarest
            fix = (f"lower n_splits to at most {counts[rarest]}, merge or drop that class, or use scheme kfold"
                   if counts[rarest] >= 2 else "merge or drop that class (k-fold needs n_splits >= 2), or "
                   "use scheme kfold")
            raise InputError(f"folds.n_splits={n_splits} is more than the {counts[rarest]} row(s) of class "
                             f"{name!r}, so some folds could not hold it; {fix}")
    if scheme == "multilabel-stratified":
        counts = y.sum(axis=0)
        rare = [(labels[j] if labels is not None else j, int(c)) for j, c in enumerate(counts) if c < n_splits]
        if rare:
            warnings.warn(f"{len(rare)} label(s) have fewer positive rows than the {n_splits} folds "
                          f"({', '.join(f'{n!r}: {c}' for n, c in rare[:5])}); some folds will lack them",
                          FoldWarning, stacklevel=3)


def time_order(time) -> np.ndarray:
    """Stable order of rows by their time values (numbers, datetimes, or date strings)."""
    values = pd.Series(np.asarray(time, dtype=object) if not hasattr(time, "dtype") else time)
    missing = int(values.isna().sum())
    if missing:
        raise InputError(f"folds.time {_column(time, 'time')} is empty in {missing:,} row(s); "
                         "every row needs a time to be ordered")
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)):
        try:
            values = pd.to_datetime(values, format="mixed")
        except (ValueError, TypeError) as err:
            raise InputError(f"folds.time {_column(time, 'time')} holds values that are neither numbers "
                             f"nor dates ({err}); write ISO dates such as 2021-07-31 or numbers") from None
    return np.argsort(values.to_numpy(), kind="stable")


def make_folds(ids, y, *, task: str, scheme: str, n_splits: int = 5, seed: int = 42, bins: int = 10,
               groups=None, time=None, labels: list | None = None) -> pd.DataFrame:
    """Assign every row to one fold.

    Args:
        ids: row ids, in train order.
        y: the encoded target (see :class:`~competition.data.Dataset`).
        task: binary, multiclass, multilabel or regression.
        scheme: one of :data:`competition.spec.SCHEMES`.
        n_splits, seed, bins: the splitter's settings (``bins``: binned-stratified only).
        groups: group value of every row (group schemes); a Series' name appears in errors.
        time: time value of every row (time-ordered; None: file order).
        labels: class / label names, for messages.

    Returns:
        A frame with columns ``id`` and ``fold`` (0..n_splits-1), in the order of ``ids``.

    Raises:
        InputError: the scheme does not fit the task or the data (naming the fix).

    >>> make_folds([10, 11, 12, 13], np.array([0, 1, 0, 1]), task="binary", scheme="stratified",
    ...            n_splits=2, seed=0).fold.tolist()
    [1, 0, 0, 1]
    """
    y = np.asarray(y)
    _check_scheme(task, scheme, n_splits, len(y))
    _check_columns(scheme, n_splits, groups, time)
    _check_balance(y, scheme, n_splits, labels)
    n = len(y)
    order = time_order(time) if scheme == "time-ordered" and time is not None else np.arange(n)
    group_values = None if groups is None else pd.factorize(np.asarray(groups, dtype=object))[0][order]
    splitter = make_splitter(scheme, n_splits, seed, bins)
    fold = np.full(n, -1, dtype=np.int64)
    for k, (_, valid) in enumerate(splitter.split(np.zeros((n, 1)), y[order],
                                                  group_values if scheme in GROUPED else None)):
        fold[order[valid]] = k
    if (fold < 0).any():  # a splitter broke its contract
        raise RuntimeError(f"scheme {scheme}: {int((fold < 0).sum())} rows were given no fold")
    if scheme in GROUPED:
        sizes = np.bincount(fold, minlength=n_splits)
        if sizes.max() > 1.5 * sizes.min():
            biggest = int(np.bincount(group_values).max())
            warnings.warn(f"group folds are uneven ({sizes.min():,} to {sizes.max():,} rows; the largest "
                          f"group has {biggest:,} rows): per-fold scores will vary more", FoldWarning,
                          stacklevel=2)
    if scheme == "binned-stratified" and (got := quantile_bins(y, bins).max() + 1) < bins:
        warnings.warn(f"folds.bins={bins}: the target has tied quantiles, so only {got} bins were used",
                      FoldWarning, stacklevel=2)
    return pd.DataFrame({"id": np.asarray(ids), "fold": fold})


def stratified_sample(strata: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded sample taking ``fraction`` of every stratum
    (scikit-learn's ``train_test_split(stratify=)``; strata of one row are pooled, as no split
    can put a single row on both sides).

    >>> idx = stratified_sample(np.array([0] * 80 + [1] * 20), 0.25, seed=0)
    >>> len(idx), int((idx >= 80).sum())
    (25, 5)
    """
    # scikit-learn submodules take ~1 s each: loaded where used
    from sklearn.model_selection import train_test_split

    values, counts = np.unique(strata.astype(str), return_counts=True)
    lone = set(values[counts < 2])
    pooled = np.where(np.isin(strata.astype(str), list(lone)), "\x00rare", strata.astype(str))
    if lone and (pooled == "\x00rare").sum() < 2:      # a single rare row joins the largest stratum
        pooled[pooled == "\x00rare"] = values[counts.argmax()]
    _, hold = train_test_split(np.arange(len(strata)), test_size=fraction, random_state=seed, stratify=pooled)
    return np.sort(hold)
