"""The fold stage: assign every train row to one fold, once, and write it down as data.

``comp folds`` calls :func:`write_folds`; every later stage calls :func:`read_folds`::

    folds/
        folds.csv       id, fold       (train-file order; every train row exactly once)
        manifest.json   scheme, n_splits, seed, group, time, bins, n_rows, fold sizes,
                        data_hash (the train ids + targets), folds_hash (of folds.csv), versions

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from competition import artifacts
from competition.errors import InputError
from competition.spec import SCHEMES
from competition.workspace import DONE, MANIFEST, Workspace

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
_GROUPED = ("group", "stratified-group")


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
    if scheme in _GROUPED:
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


def _time_order(time) -> np.ndarray:
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
    order = _time_order(time) if scheme == "time-ordered" and time is not None else np.arange(n)
    group_values = None if groups is None else pd.factorize(np.asarray(groups, dtype=object))[0][order]
    splitter = make_splitter(scheme, n_splits, seed, bins)
    fold = np.full(n, -1, dtype=np.int64)
    for k, (_, valid) in enumerate(splitter.split(np.zeros((n, 1)), y[order],
                                                  group_values if scheme in _GROUPED else None)):
        fold[order[valid]] = k
    if (fold < 0).any():  # a splitter broke its contract
        raise RuntimeError(f"scheme {scheme}: {int((fold < 0).sum())} rows were given no fold")
    if scheme in _GROUPED:
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


# -- the folds files -------------------------------------------------------------------------

@dataclass
class FoldsResult:
    """What :func:`write_folds` did.

    Attributes:
        folds: id, fold of every train row.
        status: ``written`` (no folds before), ``replaced`` (other folds before) or
            ``unchanged`` (the same folds were already there; folds.csv left untouched).
        manifest: the manifest as written.
        files: the files written.
        replaced_runs: runs trained on the replaced folds (``force``): they must be retrained.
    """

    folds: pd.DataFrame
    status: str
    manifest: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    replaced_runs: list[str] = field(default_factory=list)


def runs_using(ws: Workspace, folds_hashes: set[str]) -> list[str]:
    """Runs (experiments, stacks, blends) with a manifest or a finished fold made on these folds."""
    users = []
    for run_dir in sorted(p for p in ws.experiments_dir.glob("*") if p.is_dir()):
        records = [run_dir / MANIFEST, *sorted(run_dir.glob(f"fold[0-9]*/{DONE}"))]
        for record in (r for r in records if r.is_file()):
            try:
                used = artifacts.read_json(record).get("folds_hash")
            except (OSError, ValueError):
                used = None
            if used is None or used in folds_hashes:  # unreadable: assume it does
                users.append(run_dir.name)
                break
    return users


def write_folds(ws: Workspace, dataset, *, scheme: str | None = None, n_splits: int | None = None,
                seed: int | None = None, force: bool = False) -> FoldsResult:
    """Make the folds of ``dataset`` and write ``folds/folds.csv`` then ``folds/manifest.json``.

    Settings default to the spec's ``folds:`` block (``scheme`` to :attr:`Spec.scheme`).
    folds.csv is written first (temp file + rename), the manifest last: a crash in
    between leaves a manifest whose ``folds_hash`` does not match, which :func:`read_folds`
    refuses. Identical folds are kept as they are (runs made on them stay valid).

    Raises:
        InputError: bad settings for this data, or other folds already used by a run (unless
            ``force``).
    """
    spec = dataset.spec
    scheme = scheme or spec.scheme
    n_splits = n_splits or spec.folds.n_splits
    seed = spec.folds.seed if seed is None else seed
    group, time = spec.folds.group, spec.folds.time
    for key, column in (("group", group), ("time", time)):
        if column is not None and column not in dataset.train.columns:
            raise InputError(f"folds.{key}: column {column!r} is not in {spec.train}; columns are "
                             f"{', '.join(map(str, dataset.train.columns))}")
    folds = make_folds(dataset.train[spec.id_column].to_numpy(), dataset.y, task=spec.task, scheme=scheme,
                       n_splits=n_splits, seed=seed, bins=spec.folds.bins,
                       groups=dataset.train[group] if group else None,
                       time=dataset.train[time] if time else None, labels=dataset.labels)
    return write_assignment(ws, dataset, folds, scheme=scheme, seed=seed, force=force)


def write_assignment(ws: Workspace, dataset, folds: pd.DataFrame, *, scheme: str, seed: int,
                     force: bool = False) -> FoldsResult:
    """Write a given fold assignment (``id``, ``fold`` in train order) as :func:`write_folds` writes
    the folds it makes (also used for the current folds restricted to some rows: ``comp stack
    --holdout``)."""
    spec = dataset.spec
    group, time = spec.folds.group, spec.folds.time
    n_splits = int(folds["fold"].max()) + 1
    text = folds.to_csv(index=False, lineterminator="\n")
    manifest = {
        "competition": spec.name, "task": spec.task, "scheme": scheme, "n_splits": n_splits, "seed": seed,
        "group": group if scheme in _GROUPED else None, "time": time if scheme == "time-ordered" else None,
        "bins": spec.folds.bins if scheme == "binned-stratified" else None, "n_rows": len(folds),
        "fold_sizes": np.bincount(folds["fold"], minlength=n_splits).tolist(),
        "data_hash": dataset.train_hash, "folds_hash": artifacts.text_hash(text),
    }
    old = _current(ws)
    same_settings = old["manifest"] is not None and all(
        old["manifest"].get(k) == v for k, v in manifest.items())
    if old["text"] == text:
        if same_settings:
            return FoldsResult(folds, "unchanged", old["manifest"])
        _write_manifest(ws, manifest)  # same folds, new data hash or settings: folds.csv stays
        return FoldsResult(folds, "unchanged", manifest, [ws.folds_manifest])
    users = runs_using(ws, old["hashes"]) if old["text"] is not None else []
    if users and not force:
        raise InputError(f"{ws.folds_file}: run(s) {', '.join(users)} were trained on the current folds; new "
                         "folds would make their out-of-fold predictions incomparable. Pass {force} to "
                         "replace the folds (then retrain those runs), or keep the current folds.", force="force=True")
    with artifacts.atomic_path(ws.folds_file) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
    manifest["folds_hash"] = artifacts.file_hash(ws.folds_file)
    _write_manifest(ws, manifest)
    status = "written" if old["text"] is None else "replaced"
    return FoldsResult(folds, status, manifest, [ws.folds_file, ws.folds_manifest], users)


def _write_manifest(ws: Workspace, manifest: dict) -> None:
    env = artifacts.environment()
    artifacts.write_json(ws.folds_manifest, {**manifest, "written_at": env["written_at"],
                                             "packages": env["packages"], "git_commit": env["git_commit"]})


def _current(ws: Workspace) -> dict:
    """The folds on disk: text, manifest and every hash a run may have recorded for them."""
    text = ws.folds_file.read_bytes().decode("utf-8", errors="replace") if ws.folds_file.is_file() else None
    manifest = artifacts.read_json(ws.folds_manifest) if ws.folds_manifest.is_file() else None
    hashes = {artifacts.file_hash(ws.folds_file)} if text is not None else set()
    if manifest and manifest.get("folds_hash"):
        hashes.add(manifest["folds_hash"])
    return {"text": text, "manifest": manifest, "hashes": hashes}


def read_folds(ws: Workspace, dataset=None) -> pd.DataFrame:
    """The folds every stage uses: ``id``, ``fold``, validated against their manifest (and the data).

    With ``dataset``: the train data must be the one the folds were made on, and the ids the
    same; the frame comes back in train order with the ids' dtype. Without: in file order,
    ids as integers when every one is a plain integer, else as written.

    Raises:
        InputError: no folds yet, a changed or half-written folds.csv, other train data.
    """
    if not ws.folds_file.is_file():
        make = " (or `make folds`)" if (ws.root / "Makefile").is_file() else ""   # only beside a Makefile
        raise InputError(f"{ws.folds_file}: no folds yet. Run `comp folds`{make} first.")
    if not ws.folds_manifest.is_file():
        raise InputError(f"{ws.folds_manifest} is missing: writing the folds was interrupted. "
                         "Run `comp folds` again.")
    manifest = artifacts.read_json(ws.folds_manifest)
    actual = artifacts.file_hash(ws.folds_file)
    if manifest.get("folds_hash") != actual:
        raise InputError(f"{ws.folds_file} changed since its manifest was written (hash {actual}, manifest "
                         f"says {manifest.get('folds_hash')}): edited by hand or half-written. "
                         "Run `comp folds --force` to write them again.")
    folds = pd.read_csv(ws.folds_file, dtype={"id": str}, keep_default_na=False)
    if list(folds.columns) != ["id", "fold"] or not pd.api.types.is_integer_dtype(folds["fold"]):
        raise InputError(f"{ws.folds_file}: expected integer columns id, fold; got "
                         f"{', '.join(folds.columns)}. Run `comp folds --force`.")
    if dataset is None:
        if folds["id"].str.fullmatch(r"-?(0|[1-9]\d{0,17})").all():  # ids as data.load reads them
            folds["id"] = folds["id"].astype(np.int64)
        return folds
    if manifest.get("data_hash") != dataset.train_hash:
        raise InputError(f"{ws.folds_manifest}: train data changed since folds were made: run `comp folds "
                         f"--force` (data_hash {manifest.get('data_hash')} then, {dataset.train_hash} now)")
    ids = dataset.train[dataset.spec.id_column]
    position = pd.Series(np.arange(len(folds)), index=folds["id"])
    key = ids.astype(str)
    if len(folds) != len(ids) or not key.isin(position.index).all() or not position.index.is_unique:
        raise InputError(f"{ws.folds_file}: its ids differ from the train ids of {dataset.spec.train}; "
                         "run `comp folds --force`")
    return pd.DataFrame({"id": ids.to_numpy(),
                         "fold": folds["fold"].to_numpy()[position.loc[key].to_numpy()]})


def summary(folds: pd.DataFrame, y, task: str, labels: list | None = None, top: int = 6) -> pd.DataFrame:
    """Rows and target balance of every fold, plus an ``all`` row: the positive rate (binary),
    the shares of the ``top`` largest classes (multiclass), mean labels per row (multilabel),
    target mean and std (regression).

    >>> f = pd.DataFrame({"id": range(4), "fold": [0, 1, 0, 1]})
    >>> table = summary(f, np.array([1, 0, 0, 0]), "binary")
    >>> table.index.tolist(), table["rows"].tolist(), table["positive rate"].tolist()
    (['0', '1', 'all'], [2, 2, 4], [0.5, 0.0, 0.25])
    """
    y = np.asarray(y)
    fold = folds["fold"].to_numpy()
    parts = [(str(k), fold == k) for k in range(int(fold.max()) + 1)] + [("all", np.ones(len(fold), bool))]
    rows = []
    for name, mask in parts:
        part, row = y[mask], {"fold": name, "rows": int(mask.sum())}
        if task == "binary":
            row["positive rate"] = float(part.mean())
        elif task == "multiclass":
            shown = np.argsort(-np.bincount(y))[:top]
            counts = np.bincount(part, minlength=int(y.max()) + 1)
            row.update({f"share {labels[c] if labels else c}": counts[c] / len(part) for c in shown})
        elif task == "multilabel":
            row["labels per row"] = float(part.sum(axis=1).mean())
        else:
            values = part if part.ndim == 1 else part[:, 0]
            row.update({"target mean": float(values.mean()), "target std": float(values.std())})
        rows.append(row)
    return pd.DataFrame(rows).set_index("fold")


def row_weights(ws: Workspace, dataset, clip: float = 20.0) -> np.ndarray | None:
    """Importance weights of the train rows (train order) from ``folds.weights``: a row's odds of
    being a test row, ``p / (1 - p)`` of its test-likeness -- the density ratio test/train up to a
    constant -- clipped to ``clip`` times the median and scaled to mean 1; None when unset.

    >>> _odds(np.array([0.5, 0.75, 0.2]), clip=20.0).round(3).tolist()
    [0.706, 2.118, 0.176]
    """
    spec = dataset.spec
    if not spec.folds.weights:
        return None
    path = ws.root / spec.folds.weights
    fix = "write it with `comp check --adversarial`, or unset folds.weights in competition.yaml"
    if not path.is_file():
        raise InputError(f"{path}: missing (folds.weights in {ws.spec_file.name}); {fix}")
    frame = pd.read_csv(path, dtype={"id": str})
    if not {"id", "test_likeness"} <= set(frame.columns):
        raise InputError(f"{path}: needs columns id and test_likeness, has {', '.join(frame.columns)}; {fix}")
    if "set" in frame.columns:
        frame = frame[frame["set"] == "train"]
    likeness = frame.drop_duplicates("id").set_index("id")["test_likeness"]
    ids = dataset.train[spec.id_column].astype(str)
    missing = ~ids.isin(likeness.index)
    if missing.any():
        raise InputError(f"{path}: {int(missing.sum()):,} train id(s) have no test_likeness (e.g. "
                         f"{ids[missing].iloc[0]!r}); the file was made on other data: {fix}")
    return _odds(likeness.loc[ids].to_numpy(dtype=float), clip)


def _odds(p: np.ndarray, clip: float) -> np.ndarray:
    odds = np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6))
    odds = np.minimum(odds, clip * np.median(odds))
    return odds / odds.mean()

