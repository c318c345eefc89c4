"""``comp score FILE``: score a submission CSV against the workspace's hidden solution.

The solution file (spec key ``solution``) holds the test ids and their true targets; ``comp
init --holdout 0.2`` writes one when it carves a test set out of train. The submission is
checked the way ``comp submit`` checks its output -- the sample submission's columns, one row
per solution id, no missing values -- and scored with the competition metric. A file holding
labels where the metric scores probabilities (or the reverse) is named as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.submit import check_sample_columns, check_ids, check_values, examples, id_keys, output_kind
from competition.workspace import Workspace


@dataclass(frozen=True)
class ScoreResult:
    """A submission's score. ``note`` warns of a usable-but-degraded file (hard labels where the
    metric ranks probabilities)."""

    path: Path
    metric: str
    direction: str
    score: float
    rows: int
    output: str
    note: str | None = None


def label_key(value) -> str:
    """A label as comparable text: ``1``, ``1.0`` and ``"1"`` are the same label.

    >>> label_key(1), label_key("1.0"), label_key(" spam"), label_key(True)
    ('1', '1', 'spam', 'True')
    """
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    text = str(value.item() if isinstance(value, np.generic) else value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if np.isfinite(number) and number == int(number) else text


def _numbers(values: pd.Series) -> np.ndarray | None:
    """The column as floats when every value is a number, else None."""
    parsed = pd.to_numeric(values, errors="coerce")
    return None if parsed.isna().any() else parsed.to_numpy(dtype=float)


def _codes(values: pd.Series, labels: list, where: str, column: str, fix: str) -> np.ndarray:
    """Labels -> codes into ``labels``; unknown labels are an InputError."""
    code_of = {label_key(v): i for i, v in enumerate(labels)}
    keys = values.map(label_key)
    unknown = sorted(set(keys) - set(code_of))
    if unknown:
        raise InputError(f"{where}: column {column!r} holds label(s) {examples(unknown)} outside the "
                         f"label set {labels}; {fix}")
    return keys.map(code_of).to_numpy(dtype=np.int64)


def _truth(solution: pd.DataFrame, spec, labels, where: str) -> np.ndarray:
    """The solution's targets in the form ``metrics.score`` takes (as ``Dataset.y``)."""
    fix = "the solution must hold the labels train holds"
    if spec.task in ("binary", "multiclass"):
        return _codes(solution[spec.targets[0]], labels, where, spec.targets[0], fix)
    check_values(solution, spec.targets, where=where, fix="fill in every target", ids=solution.iloc[:, 0])
    values = solution[spec.targets].apply(pd.to_numeric).to_numpy()
    if spec.task == "multilabel":
        return values.astype(np.int64)
    return values[:, 0].astype(float) if len(spec.targets) == 1 else values.astype(float)


def _class_columns(columns: list[str], target: str, labels: list, where: str) -> list[str]:
    """The per-class probability columns in label order (named ``<target>_<label>`` or ``<label>``).

    >>> _class_columns(["dog", "cat"], "y", ["cat", "dog"], "s.csv")
    ['cat', 'dog']
    """
    ordered = []
    for label in labels:
        found = [c for c in (f"{target}_{label}", str(label)) if c in columns]
        if not found:
            raise InputError(f"{where}: no probability column for class {label!r} (expected "
                             f"{f'{target}_{label}'!r} or {str(label)!r}); the columns are {columns}")
        ordered.append(found[0])
    return ordered


def _predictions(sub: pd.DataFrame, value_columns: list[str], spec, labels, output: str,
                 where: str) -> tuple[np.ndarray, str | None]:
    """The submission as the 2-D ``y_pred`` of ``metrics.score`` (labels as one-hot / codes), and a
    note when it holds labels though the metric scores probabilities."""
    metric = spec.metric
    fix_labels = f"metric {metric} scores labels {labels}: submit labels (`comp submit` writes them)"
    fix_probs = f"metric {metric} scores probabilities: submit probabilities (`comp submit` writes them)"
    ids = sub.iloc[:, 0]
    for column in value_columns:
        blank = sub[column].isna() | (sub[column].astype(str).str.strip() == "")
        if blank.any():
            raise InputError(f"{where}: column {column!r} is empty in {int(blank.sum())} row(s), at id(s) "
                             f"{examples(id_keys(ids)[blank.to_numpy()])}; every row needs a prediction.")
    if spec.task == "regression":
        check_values(sub, value_columns, where=where, fix="submit numbers", ids=ids)
        return sub[value_columns].apply(pd.to_numeric).to_numpy(dtype=float), None

    if spec.task == "multiclass" and output == "probabilities":
        ordered = _class_columns(value_columns, spec.targets[0], labels, where)
        check_values(sub, ordered, where=where, fix=fix_probs, probabilities=True, ids=ids)
        return sub[ordered].apply(pd.to_numeric).to_numpy(dtype=float), None
    if spec.task == "multiclass":
        column = value_columns[0]
        if _numbers(sub[column]) is not None and not set(sub[column].map(label_key)) <= {label_key(v) for v in labels}:
            raise InputError(f"{where}: column {column!r} holds numbers such as {sub[column].iloc[0]!r}, "
                             f"not class labels; {fix_labels}")
        codes = _codes(sub[column], labels, where, column, fix_labels)
        return np.eye(len(labels))[codes], None

    # binary (one column) and multilabel (0/1 per label)
    allowed = [0, 1] if spec.task == "multilabel" else labels
    keys = {label_key(v) for v in allowed}
    held = [set(sub[c].map(label_key)) for c in value_columns]
    as_labels = all(h <= keys for h in held)
    if output == "labels":
        if not as_labels:
            sample = next(sub[c].iloc[0] for c, h in zip(value_columns, held) if not h <= keys)
            raise InputError(f"{where}: the file holds values such as {sample!r} (probabilities?), but "
                             f"{fix_labels}")
        y = np.column_stack([_codes(sub[c], allowed, where, c, fix_labels) for c in value_columns])
        return y.astype(float), None
    numeric = all(_numbers(sub[c]) is not None for c in value_columns)
    if not numeric:
        raise InputError(f"{where}: the file holds class labels ({examples(sorted(set().union(*held)))}), "
                         f"but {fix_probs}")
    check_values(sub, value_columns, where=where, fix=fix_probs, probabilities=True, ids=ids)
    y = sub[value_columns].apply(pd.to_numeric).to_numpy(dtype=float)
    note = None
    if np.isin(y, (0.0, 1.0)).all():
        note = (f"{where} holds hard 0/1 labels, but {metric} ranks probabilities: the score is lower "
                "than the same model's probabilities would get")
    return y, note


def score_file(ws: Workspace, path: Path | str, *, data=None) -> ScoreResult:
    """Score the submission CSV at ``path`` against the spec's solution file with its metric.

    Raises:
        InputError: no solution file; the submission's columns, rows or ids differ from what
            the sample submission and the solution say; missing, non-numeric or out-of-range
            values; labels where the metric needs probabilities or the reverse.
    """
    from competition import data as data_mod
    from competition import metrics
    from competition.spec import ReadOptions, load_spec

    spec = load_spec(ws.spec_file) if data is None else data.spec
    if not spec.solution:
        raise InputError(f"{ws.spec_file}: no `solution:` file with the test set's true targets, so "
                         "there is nothing to score against. Kaggle scores it for you; or carve a "
                         "holdout with `comp init --holdout 0.2`, which writes one.")
    data = data if data is not None else data_mod.load(spec)
    path = Path(path)
    where = str(path)
    solution_file = spec.file(spec.solution)
    solution = data_mod.read_table(solution_file, ReadOptions(), role="solution", dtype=str)
    sub = data_mod.read_table(path, ReadOptions(), role="submission", dtype=str, given=True)
    sample = data.sample_submission()
    check_sample_columns(sample, spec, output_kind(spec.task, spec.metric),
                          str(spec.file(spec.sample_submission) or "the sample submission"))
    expected = [str(c) for c in sample.columns]
    id_column, value_columns = expected[0], expected[1:]
    data_mod.require_columns(solution, [id_column, *spec.targets], solution_file, "solution", "targets")
    missing = [c for c in expected if c not in sub.columns]
    extra = [c for c in sub.columns if c not in expected]
    if missing or extra:
        hint = ""
        if spec.task == "multiclass":
            hint = (f" Metric {spec.metric} scores one probability column per class, not labels."
                    if len(expected) > 2 else f" Metric {spec.metric} scores one column of labels, not "
                    "per-class probabilities.")
        raise InputError(f"{where}: columns {list(sub.columns)} differ from the sample submission's "
                         f"{expected} (missing {missing}, unexpected {extra}); the file must hold "
                         f"exactly those columns (`comp submit` writes them).{hint}")
    if len(sub) != len(solution):
        raise InputError(f"{where}: {len(sub)} rows, but the solution {solution_file.name} has "
                         f"{len(solution)}; submit one row per test id.")
    check_ids(sub[id_column], solution[id_column], where=where, reference=f"the solution {solution_file.name}",
              fix="submit one row per test id (`comp submit` writes them)")
    # put the submission in the solution's row order
    position = pd.Series(np.arange(len(sub)), index=id_keys(sub[id_column]).to_numpy())
    sub = sub.iloc[position.loc[id_keys(solution[id_column]).to_numpy()].to_numpy()].reset_index(drop=True)

    output = output_kind(spec.task, spec.metric)
    if not (spec.task == "multiclass" and output == "probabilities"):
        value_columns = list(spec.targets)  # in the targets' order, as y_true
    y_true = _truth(solution, spec, data.labels, str(solution_file))
    y_pred, note = _predictions(sub, value_columns, spec, data.labels, output, where)
    threshold = 0.5 if output == "labels" and spec.task in ("binary", "multilabel") else None
    value = metrics.score(spec.metric, y_true, y_pred, spec.task, threshold=threshold)
    return ScoreResult(path, spec.metric, metrics.METRICS[spec.metric].direction, float(value), len(sub),
                       output, note)
