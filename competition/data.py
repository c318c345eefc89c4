"""Loading a competition's data and checking it against its spec, before any stage uses it.

:func:`load` reads train (and test) through :func:`~competition.tables.read_table`,
the one CSV reader, and returns a :class:`Dataset`: frames, the encoded target ``y``, the
class labels and the hashes that folds and runs record. Everything that would
make a later stage wrong -- a missing column, a NaN target, duplicate ids, test
ids that differ from the sample submission, an unknown label, a file in another
encoding -- is an :class:`~competition.errors.InputError` naming the file, the
column, the bad value and the fix. Input that is usable but worth knowing
about (texts repeated with conflicting labels, mojibake, ...) is a
:class:`DataWarning` and is kept in ``Dataset.warnings``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition import metrics, span_data, token_data
from competition.artifacts import text_hash
from competition.errors import InputError
from competition.quality import data_warnings, examples, first_ids, main_text
from competition.spec import Spec
from competition.tables import DataWarning, read_sample_submission, read_with_notes, require_columns, strings


@dataclass(frozen=True)
class Dataset:
    """A competition's data, validated against its spec.

    Attributes:
        spec: the spec it was loaded with.
        train: train rows, index 0..n-1, with the id column (numbered 0..n-1 as ``id`` when
            ``spec.id`` is None) and the target column(s); a ``label_list`` column is expanded
            into one 0/1 int column per name in ``spec.targets``.
        test: test rows (index 0..m-1, id column) or None.
        y: binary/multiclass (n,) int64 codes into ``labels``; multilabel (n, L) int64 0/1;
            regression (n,) float64 for one target, else (n, T).
        labels: class labels in code order (binary: positive class last); multilabel: the
            targets; regression: None.
        train_hash: hash of the train ids and targets (folds and runs record it).
        test_hash: hash of the test ids and input columns, or None.
        warnings: what :class:`DataWarning` said while loading.
    """

    spec: Spec
    train: pd.DataFrame
    test: pd.DataFrame | None
    y: np.ndarray
    labels: list | None
    train_hash: str
    test_hash: str | None
    warnings: tuple[str, ...] = ()

    def sample_submission(self) -> pd.DataFrame:
        """The spec's sample submission as written (every cell a string, so it writes back the same);
        without one, the test ids plus placeholder target column(s)."""
        spec = self.spec
        if spec.sample_submission:
            return read_sample_submission(spec)
        test = self.test
        if test is None:
            if not spec.test:
                raise InputError(f"competition {spec.name!r} has no test file and no sample submission, "
                                 "so there is nothing to submit; set `test:` in competition.yaml")
            test = load(spec).test
        frame = pd.DataFrame({spec.id_column: test[spec.id_column].to_numpy()})
        for column, value in placeholder(spec, self.labels).items():
            frame[column] = value
        return frame


def placeholder(spec: Spec, labels: list | None) -> dict:
    """Submission column(s) and a neutral value, in the form the metric scores.

    >>> from competition.spec import Spec
    >>> s = Spec(name="x", train="t.csv", targets=["y"], task="regression", metric="rmse")
    >>> placeholder(s, None)
    {'y': 0.0}
    """
    wants_labels = metrics.METRICS[spec.metric].needs == "labels"
    if spec.task == "regression":
        return {t: 0.0 for t in spec.targets}
    if spec.task == "multilabel":
        return {t: (0 if wants_labels else 0.0) for t in spec.targets}
    labels = labels or spec.labels or [0, 1]
    if wants_labels:
        return {spec.targets[0]: labels[0]}
    if spec.task == "binary":
        return {spec.targets[0]: 0.5}
    return {f"{spec.targets[0]}_{label}": 1 / len(labels) for label in labels}


# -- checks ----------------------------------------------------------------------------------

def _check_ids(frame: pd.DataFrame, column: str, path: Path, role: str) -> None:
    ids = frame[column]
    if ids.isna().any():
        rows = np.flatnonzero(ids.isna().to_numpy())
        raise InputError(f"{path} ({role}): column {column!r} (id) is empty in {len(rows)} row(s), "
                         f"first at row(s) {examples(rows + 1)}; every row needs an id.")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        raise InputError(f"{path} ({role}): column {column!r} (id) has {dup.nunique()} duplicated id(s) "
                         f"in {len(dup)} rows, e.g. {examples(dup.unique())}. Ids must be unique; "
                         "if the column is not an id, set `id: null` to number the rows.")


def _with_id(frame: pd.DataFrame, spec: Spec, path: Path, role: str, given: bool = False) -> pd.DataFrame:
    if spec.id is None:
        if "id" in frame.columns:
            raise InputError(f"{path} ({role}): the spec says `id: null` (number the rows) but the file "
                             "already has a column 'id'; set `id: id` in competition.yaml.")
        frame.insert(0, "id", np.arange(len(frame), dtype=np.int64))
    else:
        require_columns(frame, [spec.id], path, role, "id", spec.read.sep, given)
    _check_ids(frame, spec.id_column, path, role)
    return frame


def expand_label_list(frame: pd.DataFrame, spec: Spec, path: Path) -> pd.DataFrame:
    """``labels = "3,27"`` -> one 0/1 column per name in ``spec.targets`` (ids are positions)."""
    ll = spec.label_list
    require_columns(frame, [ll.column], path, "train", "label_list.column")
    clash = [t for t in spec.targets if t in frame.columns]
    if clash:
        raise InputError(f"{path} (train): columns {clash} already exist, but label_list expands "
                         f"{ll.column!r} into columns named by `targets`; rename the targets.")
    raw = frame[ll.column]
    if pd.api.types.is_float_dtype(raw) and np.all(np.mod(raw.dropna(), 1) == 0):
        raw = raw.astype("Int64")  # one id per row and some rows empty: pandas read 27 as 27.0
    parts = strings(raw).str.split(ll.sep).explode().str.strip()
    parts = parts[parts != ""]
    code_of = {name: i for i, name in enumerate(spec.targets)}
    code_of.update({str(i): i for i in range(len(spec.targets))})
    codes = parts.map(code_of)
    bad = codes.isna()
    if bad.any():
        raise InputError(f"{path} (train): column {ll.column!r} (label_list) holds label(s) "
                         f"{examples(parts[bad].unique())} in {bad.sum()} row(s), first at id(s) "
                         f"{first_ids(frame, spec, frame.index.isin(parts.index[bad]))}; ids must be "
                         f"0..{len(spec.targets) - 1} (positions in `targets`, {len(spec.targets)} "
                         "names) or target names. Add the missing names to `targets`.")
    onehot = np.zeros((len(frame), len(spec.targets)), dtype=np.int64)
    onehot[parts.index.to_numpy(), codes.to_numpy(dtype=np.int64)] = 1
    return pd.concat([frame, pd.DataFrame(onehot, columns=spec.targets, index=frame.index)], axis=1)


def _finite(frame: pd.DataFrame, spec: Spec, column: str, values: pd.Series, path: Path) -> None:
    bad = values.isna()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        bad |= np.isinf(values.astype(float))
    if bad.any():
        raise InputError(f"{path} (train): target column {column!r} is missing or infinite in "
                         f"{int(bad.sum())} row(s), first at {spec.id_column} {first_ids(frame, spec, bad)}. "
                         "Fill or drop those rows.")


def _key(value) -> str:
    """Labels compare by their text, with 1.0 == 1 (YAML labels vs CSV values)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def _targets(frame: pd.DataFrame, spec: Spec, path: Path) -> tuple[np.ndarray, list | None]:
    """The encoded target ``y`` and the labels, with NaN/inf and unknown labels refused."""
    if spec.task == "regression":
        ys = []
        for column in spec.targets:
            values = pd.to_numeric(frame[column], errors="coerce")
            text = frame[column].notna() & values.isna()
            if text.any():
                raise InputError(f"{path} (train): regression target {column!r} holds non-numbers "
                                 f"{examples(frame.loc[text, column].unique())}; fix them or set the task.")
            _finite(frame, spec, column, values, path)
            ys.append(values.to_numpy(dtype=np.float64))
        return (ys[0] if len(ys) == 1 else np.stack(ys, axis=1)), None
    if spec.task == "multilabel":
        for column in spec.targets:
            _finite(frame, spec, column, frame[column], path)
            odd = ~pd.to_numeric(frame[column], errors="coerce").isin([0, 1])
            if odd.any():
                raise InputError(f"{path} (train): multilabel target {column!r} must be 0/1, got "
                                 f"{examples(frame.loc[odd, column].unique())}")
        return frame[spec.targets].astype(float).to_numpy().astype(np.int64), list(spec.targets)
    column = spec.targets[0]
    values = frame[column]
    _finite(frame, spec, column, values, path)
    uniques = pd.unique(values)
    labels = list(spec.labels) if spec.labels is not None else sorted(v.item() if isinstance(v, np.generic)
                                                                     else v for v in uniques)
    code_of = {_key(label): i for i, label in enumerate(labels)}
    unknown = [u for u in uniques if _key(u) not in code_of]
    if unknown:
        raise InputError(f"{path} (train): target {column!r} holds value(s) {examples(unknown)} that are "
                         f"not in `labels: {labels}`; add them to labels in competition.yaml or fix the rows.")
    present = {_key(u) for u in uniques}
    if len(present) < 2:
        raise InputError(f"{path} (train): target {column!r} has a single value {examples(uniques)}; "
                         "a classifier needs at least two classes.")
    if spec.task == "binary" and len(labels) != 2:
        raise InputError(f"{path} (train): task binary, but target {column!r} has {len(labels)} values "
                         f"{examples(labels)}; set `task: multiclass` or fix the target.")
    lookup = np.array([code_of[_key(u)] for u in uniques], dtype=np.int64)
    y = lookup[pd.Categorical(values, categories=uniques).codes]
    return y, labels


def _hash(frame: pd.DataFrame, columns: list[str]) -> str:
    """Hash of the columns' CSV text: the same data always gives the same hash."""
    return text_hash(frame[columns].to_csv(index=False, lineterminator="\n"))


def _check_test_ids(test: pd.DataFrame, spec: Spec) -> None:
    sample = read_sample_submission(spec)
    path = spec.file(spec.sample_submission)
    require_columns(sample, [spec.id_column], path, "sample submission", "id")
    values = [str(c) for c in sample.columns if c != spec.id_column]
    per_class = spec.task == "multiclass" and spec.targets[0] not in values and len(values) >= 2
    if not per_class and set(values) != set(spec.targets):
        raise InputError(f"{path} (sample submission): its columns {[str(c) for c in sample.columns]} do not "
                         f"hold the targets {spec.targets} after the id {spec.id_column!r}; a submission "
                         "copies this layout. Fix `targets:` in competition.yaml (at `comp init`: --targets) "
                         "or use the competition's own sample submission.")
    want = set(sample[spec.id_column])
    have = set(test[spec.id_column].astype(str))
    if want != have:
        missing, extra = sorted(want - have), sorted(have - want)
        raise InputError(f"{spec.file(spec.test)} (test): its ids differ from the sample submission "
                         f"{path.name}: {len(missing)} sample id(s) missing from test "
                         f"({examples(missing)}), {len(extra)} test id(s) not in the sample "
                         f"({examples(extra)}). Use the test file and sample submission of one release.")


# -- loading ---------------------------------------------------------------------------------

def unit_data(spec: Spec):
    """The module that reads a per-unit task's rows: :mod:`competition.token_data` (tokens) or
    :mod:`competition.span_data` (span); each has ``read_units``, ``read_targets`` and ``units_of``."""
    return span_data if spec.task == "span" else token_data


def _read_inputs(spec: Spec, path: Path, role: str) -> tuple[pd.DataFrame, str, list[str]]:
    """A file of rows to predict, read and checked as the test file is: the spec's read options,
    the id column, every text and feature column. Returns the frame, its hash, the notes."""
    frame, notes = _read(spec, path, role, given=role != "test")
    frame = _with_id(frame, spec, path, role, given=role != "test")
    _require_inputs(frame, spec, path, role, given=role != "test")
    # as runs have recorded it (a column both text and feature counted twice), so their hashes still match
    digest = _hash(frame, [spec.id_column, *spec.text, *spec.span.condition, *spec.features])
    if spec.per_unit:
        frame = unit_data(spec).read_units(spec, frame, f"{path} ({role})")
    return frame, digest, notes


def _read(spec: Spec, path: Path, role: str, given: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """A data file: CSV by the spec's read options, or a CoNLL file (``.conll``) of a tokens task."""
    if spec.task == "tokens" and path.suffix == ".conll":
        return token_data.conll_frame(path, spec.id_column, spec.text[0], spec.targets[0]), []
    return read_with_notes(path, spec.read, role, spec.id, None, given=given)


def frame_inputs(spec: Spec, frame: pd.DataFrame, where: str = "frame") -> pd.DataFrame:
    """Rows to predict given as a DataFrame (Python callers): checked as a file of them is -- the id
    column (numbered when the spec says ``id: null``), every text and feature column. A copy."""
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise InputError(f"{where}: give a non-empty pandas DataFrame of the rows to predict, with the columns "
                         f"of the test file ({', '.join([spec.id or '(no id)', *spec.inputs])})")
    frame = _with_id(frame.reset_index(drop=True).copy(), spec, Path(where), "rows to predict")
    _require_inputs(frame, spec, Path(where), "rows to predict")
    if spec.per_unit:       # token lists as lists or JSON text, texts as strings
        frame = unit_data(spec).read_units(spec, frame, where)
    return frame


def _require_inputs(frame: pd.DataFrame, spec: Spec, path: Path, role: str, given: bool = False) -> None:
    """Every column a model reads: the text pair's two sides, the texts, the features. ``given``: a file
    named on the command line (its fix is re-saving it, not the spec)."""
    for columns, key in ((spec.text_pair or [], "text_pair"), (spec.text, "text"),
                         (spec.span.condition, "span.condition"), (spec.features, "features")):
        require_columns(frame, columns, path, role, key, spec.read.sep, given)


def read_inputs(spec: Spec, path: Path | str, role: str = "rows to predict") -> tuple[pd.DataFrame, str]:
    """New rows to predict (``comp predict --test FILE``): checked like the training test file;
    returns the frame and the hash a run's ``test_hash`` would have on them."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; give the CSV of the rows to predict ({{test}})", test="test=PATH")
    frame, digest, notes = _read_inputs(spec, path, role)
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return frame, digest


def load(spec: Spec, *, with_test: bool = True) -> Dataset:
    """Read and validate the spec's train (and test) data.

    Raises:
        InputError: naming the file, column and fix, for anything a later stage would get wrong.
    """
    spec.check_data_folder()
    train_path = spec.file(spec.train)
    train, notes = _read(spec, train_path, "train")
    train = _with_id(train, spec, train_path, "train")
    if spec.label_list is not None:
        train = expand_label_list(train, spec, train_path)
    require_columns(train, spec.targets, train_path, "train", "targets")
    if spec.span.start:
        require_columns(train, [spec.span.start], train_path, "train", "span.start")
    _require_inputs(train, spec, train_path, "train")
    for key in ("group", "time"):
        if getattr(spec.folds, key):
            require_columns(train, [getattr(spec.folds, key)], train_path, "train", f"folds.{key}")
    train_hash = _hash(train, [spec.id_column, *spec.targets, *([spec.span.start] if spec.span.start else [])])
    if spec.per_unit:     # a tag per unit, an answer per text: parsed and checked by the task's module
        train = unit_data(spec).read_units(spec, train, f"{train_path} (train)")
        y, labels, token_notes = unit_data(spec).read_targets(spec, train, f"{train_path} (train)")
        notes = notes + token_notes
    else:
        y, labels = _targets(train, spec, train_path)

    test, test_hash = None, None
    if with_test and spec.test:
        test, test_hash, test_notes = _read_inputs(spec, spec.file(spec.test), "test")
        notes += test_notes
        if spec.sample_submission:
            _check_test_ids(test, spec)

    notes = tuple(notes + (data_warnings(spec, train, test, y, labels) if not spec.per_unit else []))
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return Dataset(spec, train, test, y, labels, train_hash, test_hash, notes)


def split(ds: Dataset, inner, outer) -> Dataset:
    """``ds`` with its train rows cut in two: train = the ``inner`` rows, test = the ``outer`` rows
    without their targets (what ``comp stack --holdout`` trains on and predicts). Row positions or
    boolean masks; hashes recomputed so runs made on the split record what they saw."""
    spec = ds.spec
    train = ds.train.iloc[np.asarray(inner)].reset_index(drop=True)
    test = ds.train.iloc[np.asarray(outer)].drop(columns=spec.targets).reset_index(drop=True)
    inputs = [c for c in [spec.id_column, *spec.text, *spec.features] if c in test.columns]
    return Dataset(spec, train, test, ds.y[np.asarray(inner)], ds.labels,
                   _hash(train, [spec.id_column, *spec.targets]), _hash(test, inputs), ds.warnings)


# -- conflicting duplicates ------------------------------------------------------------------

def resolve_conflicts(data: Dataset, rows: np.ndarray, rule: str) -> np.ndarray:
    """Training ``rows`` under ``data.conflicts``: a text (the main text column) that repeats among
    these rows with different targets is one input with two answers. ``keep``: as they are;
    ``drop``: every copy goes; ``majority``: only the copies with the text's most frequent target
    stay (a tie drops them all). Only ``rows`` are looked at, so a fold's validation rows neither
    change nor inform the rule.

    >>> spec = Spec(name="x", train="t.csv", targets=["y"], text=["text"], task="binary", metric="f1")
    >>> train = pd.DataFrame({"text": ["a", "a", "a", "b", "b", "c"]})
    >>> ds = Dataset(spec, train, None, np.array([1, 1, 0, 0, 1, 1]), [0, 1], "h", None)
    >>> resolve_conflicts(ds, np.arange(6), "majority").tolist(), resolve_conflicts(ds, np.arange(6), "drop").tolist()
    ([0, 1, 5], [5])
    >>> resolve_conflicts(ds, np.array([0, 1, 3, 5]), "drop").tolist()     # row 2 is not among them
    [0, 1, 3, 5]
    """
    rows = np.asarray(rows)
    if rule == "keep" or not data.spec.text:
        return rows
    if data.spec.task == "regression":
        raise InputError("data.conflicts: a regression target has no 'different label' to resolve; use keep")
    text = strings(data.train[main_text(data.spec, data.train)]).to_numpy()[rows]
    y = data.y[rows]
    key = np.array([r.tobytes() for r in y]) if y.ndim == 2 else y
    frame = pd.DataFrame({"text": text, "key": key})
    counts = frame[frame["text"] != ""].groupby(["text", "key"]).size()
    kinds = counts.groupby(level=0).size()
    conflicted = set(kinds.index[kinds > 1])
    keep = ~frame["text"].isin(conflicted)
    if rule == "majority":
        top = counts[counts.index.get_level_values(0).isin(conflicted)].groupby(level=0)
        winners = {t: k for t, group in top for (_, k), n in group.items() if n == group.max()
                   and (group == group.max()).sum() == 1}
        keep |= np.array([winners.get(t, object()) == k for t, k in zip(frame["text"], frame["key"])], dtype=bool)
    return rows[keep.to_numpy()]
