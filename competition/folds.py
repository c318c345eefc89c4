"""The fold stage: assign every train row to one fold, once, and write it down as data.

``comp folds`` calls :func:`write_folds`; every later stage calls :func:`read_folds`::

    folds/
        folds.csv       id, fold       (train-file order; every train row exactly once)
        manifest.json   scheme, n_splits, seed, group, time, bins, n_rows, fold sizes,
                        data_hash (the train ids + targets), folds_hash (of folds.csv), versions

The fold schemes and the splitters that make the assignment: :mod:`competition.splitters`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition import artifacts
from competition.errors import InputError
from competition.splitters import GROUPED, make_folds
from competition.tables import ids_as_read, positions
from competition.workspace import DONE, MANIFEST, Workspace

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
        "group": group if scheme in GROUPED else None, "time": time if scheme == "time-ordered" else None,
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
    folds["id"] = ids_as_read(folds["id"])          # ids as data.load reads them
    if dataset is None:
        return folds
    if manifest.get("data_hash") != dataset.train_hash:
        raise InputError(f"{ws.folds_manifest}: train data changed since folds were made: run `comp folds "
                         f"--force` (data_hash {manifest.get('data_hash')} then, {dataset.train_hash} now)")
    ids = dataset.train[dataset.spec.id_column]
    position = positions(ids, folds["id"])
    if len(folds) != len(ids) or (position < 0).any():
        raise InputError(f"{ws.folds_file}: its ids differ from the train ids of {dataset.spec.train}; "
                         "run `comp folds --force`")
    return pd.DataFrame({"id": ids.to_numpy(), "fold": folds["fold"].to_numpy()[position]})


def summary(folds: pd.DataFrame, y, task: str, labels: list | None = None, top: int = 6) -> pd.DataFrame:
    """Rows and target balance of every fold, plus an ``all`` row: the positive rate (binary),
    the shares of the ``top`` largest classes (multiclass), mean labels per row (multilabel),
    target mean and std (regression).

    >>> f = pd.DataFrame({"id": range(4), "fold": [0, 1, 0, 1]})
    >>> table = summary(f, np.array([1, 0, 0, 0]), "binary")
    >>> table.index.tolist(), table["rows"].tolist(), table["positive rate"].tolist()
    (['0', '1', 'all'], [2, 2, 4], [0.5, 0.0, 0.25])
    """
    y = y if task in ("tokens", "span") else np.asarray(y)
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
        elif task == "tokens":     # y: one array of tag codes per row (B- codes are odd)
            row["units per row"] = float(np.mean([len(r) for r in part]))
            row["entities per row"] = float(np.mean([int((np.asarray(r) % 2 == 1).sum()) for r in part]))
        elif task == "span":       # y: one Answer per row
            row["text characters"] = float(np.mean([len(a.text) for a in part]))
            row["answer share"] = float(np.mean([(a.end - a.start) / len(a.text) for a in part]))
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

