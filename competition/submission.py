"""The submission format, and its checks, shared by submit, score and predict.

What a submission holds for a task and metric (:func:`output_kind`: labels, probabilities or
values), how predictions become the sample submission's layout (:func:`format_submission`, the
pure part: columns and their order, id order, labels mapped back), and the checks every writer
and reader of a submission runs: ids (:func:`check_ids`), values (:func:`check_values`), the
sample's columns (:func:`check_sample_columns`), the formatted frame (:func:`check_output`) and
the sample file's line ends and BOM (:func:`line_terminator`, :func:`has_bom`).
"""

from __future__ import annotations

import json
import csv
from pathlib import Path

import numpy as np
import pandas as pd

from competition import artifacts, metrics, predictions, spans, tokens
from competition.errors import InputError
from competition.tables import INTEGER_ID

# -- the format, ids and values ---------------------------------------------------------------

def output_kind(task: str, metric: str, unit: str = "token") -> str:
    """What the submission holds for this task and metric: labels, probabilities or values; token
    tasks: a JSON list of tags per row (``tags``), or of character spans ``[start, end, type]``
    (``spans``, ``tokens.unit: char``); span tasks: the answer cut from the text (``answers``).

    >>> output_kind("binary", "f1"), output_kind("binary", "roc_auc"), output_kind("regression", "rmse")
    ('labels', 'probabilities', 'values')
    """
    if task == "tokens":
        return "spans" if unit == "char" else "tags"
    if task == "span":
        return "answers"
    if task == "regression":
        return "values"
    return "labels" if getattr(metrics.METRICS[metric], "needs", None) == "labels" else "probabilities"


def examples(values, k: int = 5) -> str:
    """A few values for an error message.

    >>> examples([3, 1, 4, 1, 5, 9, 2])
    "'3', '1', '4', '1', '5', ..."
    """
    values = list(values)
    return ", ".join(repr(str(v)) for v in values[:k]) + (", ..." if len(values) > k else "")


def id_keys(values) -> pd.Series:
    """Ids as the strings a CSV holds (ints without ``.0``), so file ids and parquet ids compare.

    >>> id_keys(pd.Series([1, 22])).tolist(), id_keys(pd.Series(["a7", "007"])).tolist()
    (['1', '22'], ['a7', '007'])
    """
    values = pd.Series(values)
    if pd.api.types.is_float_dtype(values) and np.all(np.mod(values.dropna(), 1) == 0):
        values = values.astype("Int64")
    return values.astype(object).where(values.notna(), "").astype(str).reset_index(drop=True)


def check_ids(have, want, *, where: str, reference: str, fix: str, words: dict[str, str] | None = None) -> None:
    """Refuse duplicated ids or an id set differing from ``want``: counts and examples of each.
    ``words``: the caller's arguments ``fix`` names (:class:`~competition.errors.InputError`).

    >>> check_ids([1, 2], ["1", "2"], where="x.csv", reference="the sample", fix="")
    >>> check_ids([1, 2, 2], ["1", "2"], where="x.csv", reference="the sample", fix="dedupe")
    Traceback (most recent call last):
    competition.errors.InputError: x.csv: 1 duplicated id(s), e.g. '2'; dedupe
    """
    have, want = id_keys(have), id_keys(want)
    dup = have[have.duplicated()].unique()
    if len(dup):
        raise InputError(f"{where}: {len(dup)} duplicated id(s), e.g. {examples(dup)}; {fix}", **(words or {}))
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing or extra:
        raise InputError(f"{where}: its ids differ from {reference}: {len(missing)} id(s) missing "
                         f"({examples(missing)}), {len(extra)} id(s) not in {reference} "
                         f"({examples(extra)}); {fix}", **(words or {}))


def check_values(frame: pd.DataFrame, columns: list[str], *, where: str, fix: str,
                 probabilities: bool = False, ids: pd.Series | None = None) -> None:
    """Refuse NaN/inf (and, for probabilities, values outside [0, 1]) naming the column and ids.

    >>> f = pd.DataFrame({"id": [1, 2], "p": [0.5, 1.5]})
    >>> check_values(f, ["p"], where="t.parquet", fix="retrain", probabilities=True, ids=f["id"])
    Traceback (most recent call last):
    competition.errors.InputError: t.parquet: column 'p' holds 1 value(s) outside [0, 1] (e.g. 1.5 at id '2'), but it should hold probabilities; retrain
    """
    ids = id_keys(ids if ids is not None else frame.index.to_series())
    if len(frame) and columns and isinstance(frame[columns[0]].iloc[0], (list, np.ndarray)):
        # per-unit predictions (token tasks): every unit's value, under its row's id
        units = [len(v) for v in frame[columns[0]]]
        ids = pd.Series(np.repeat(ids.to_numpy(), units))
        frame = pd.DataFrame({c: np.concatenate([np.asarray(v, dtype=float) for v in frame[c]]) if sum(units)
                              else np.zeros(0) for c in columns})
    for column in columns:
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputError(f"{where}: column {column!r} has {int(bad.sum())} missing, non-numeric or "
                             f"infinite value(s) (e.g. {raw[bad].iloc[0]!r}), at id(s) "
                             f"{examples(ids[bad])}; {fix}")
        if probabilities:
            out = (values < 0) | (values > 1)
            if out.any():
                first = int(np.flatnonzero(out)[0])
                raise InputError(f"{where}: column {column!r} holds {int(out.sum())} value(s) outside "
                                 f"[0, 1] (e.g. {values[first]:g} at id {ids[first]!r}), but it should "
                                 f"hold probabilities; {fix}")


def texts_of(spec, frame: pd.DataFrame) -> pd.Series | None:
    """A span task's texts of ``frame``'s rows, indexed by :func:`id_keys` (what
    :func:`format_submission` cuts answers from); None for other tasks."""
    if spec.task != "span":
        return None
    return pd.Series(frame[spec.text[0]].to_numpy(), index=id_keys(frame[spec.id_column]).to_numpy())


def csv_options(output: str) -> dict:
    """How ``to_csv`` writes a submission of this output: span answers quoted whole, so their leading
    and trailing spaces and commas survive any reader."""
    return {"quoting": csv.QUOTE_NONNUMERIC} if output == "answers" else {}


def line_terminator(path: Path | None) -> str:
    r"""The line end a file uses (``\r\n`` or ``\n``), judged by its first line.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.csv"
    >>> _ = p.write_bytes(b"PassengerId,Survived\r\n892,0\r\n")
    >>> line_terminator(p), line_terminator(None)
    ('\r\n', '\n')
    """
    if path is None or not Path(path).is_file():
        return "\n"
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    end = head.find(b"\n")
    return "\r\n" if end > 0 and head[end - 1:end] == b"\r" else "\n"


def has_bom(path: Path | None) -> bool:
    if path is None or not Path(path).is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(3) == b"\xef\xbb\xbf"


def _threshold_of(threshold, i: int) -> float:
    """Threshold of label ``i``: one for all, a per-label list, or the default 0.5."""
    if threshold is None:
        return 0.5
    if isinstance(threshold, (list, tuple, np.ndarray)):
        return float(threshold[i])
    return float(threshold)


def _prob_column(preds: pd.DataFrame, column: str) -> str:
    """The prediction column for a sample column: the same name, else ``<target>_<column>`` (the
    multiclass naming of runs, when the sample names classes bare)."""
    if column in preds.columns:
        return column
    match = [c for c in preds.columns if str(c).endswith(f"_{column}") and "__fold" not in str(c)]
    if len(match) == 1:
        return match[0]
    raise InputError(f"the run has no prediction column for sample submission column {column!r}; "
                     f"it has {', '.join(map(repr, preds.columns))}")


def format_submission(sample: pd.DataFrame, preds: pd.DataFrame, *, task: str, output: str,
                      labels: list | None = None, threshold=None, texts: pd.Series | None = None,
                      metric: str | None = None) -> pd.DataFrame:
    """The frame to write: the sample's columns, column order and id order, filled from ``preds``.

    Args:
        sample: the sample submission (cells as written); its first column is the id.
        preds: ``id`` plus prediction columns named as runs name them (``spec.pred_columns``):
            probabilities (binary: of the positive class; multiclass: ``<target>_<label>``) or values.
        task: binary, multiclass, multilabel or regression.
        output: ``labels`` (threshold / argmax, codes mapped back to ``labels``), ``probabilities``
            or ``values``.
        labels: class labels in code order (binary: positive last).
        threshold: decision threshold (binary), or one per label in the order of ``preds``'
            prediction columns (multilabel); None means 0.5.
        texts: span tasks: each row's text (the answers are cut from), indexed by :func:`id_keys`.
        metric: span tasks: the metric, whose decoding rule cuts the answers (:func:`spans.rule_of`).

    Ids keep the sample's text (canonical integers become ints, which write back the same).

    >>> sample = pd.DataFrame({"id": ["7", "3"], "target": ["0", "0"]})
    >>> preds = pd.DataFrame({"id": [3, 7], "target": [0.9, 0.2]})
    >>> format_submission(sample, preds, task="binary", output="labels", labels=[0, 1], threshold=0.4)
       id  target
    0   7       0
    1   3       1
    >>> format_submission(sample, preds, task="binary", output="probabilities")
       id  target
    0   7     0.2
    1   3     0.9
    >>> mc = pd.DataFrame({"id": ["a", "b"], "y_cat": [0.7, 0.1], "y_dog": [0.3, 0.9]})
    >>> format_submission(pd.DataFrame({"id": ["b", "a"], "y": ["", ""]}), mc, task="multiclass",
    ...                   output="labels", labels=["cat", "dog"])
      id    y
    0  b  dog
    1  a  cat
    """
    id_column = sample.columns[0]
    keys = id_keys(sample[id_column])
    position = pd.Series(np.arange(len(preds)), index=id_keys(preds["id"]).to_numpy())
    order = position.loc[keys.to_numpy()].to_numpy()
    rows = preds.iloc[order].reset_index(drop=True)
    ids = sample[id_column].reset_index(drop=True)
    if pd.api.types.is_string_dtype(ids) or ids.dtype == object:
        if bool(keys.str.fullmatch(INTEGER_ID).all()):
            ids = keys.astype(np.int64)
    out = pd.DataFrame({id_column: ids})
    pred_columns = [c for c in preds.columns if c != "id" and "__fold" not in str(c)]
    for column in sample.columns[1:]:
        if output == "answers":     # the threshold: the span decoder's length bias
            if texts is None:
                raise InputError("a span submission needs the texts its answers are cut from")
            found = texts.reindex(keys.to_numpy())
            spans_ = spans.decode(predictions.matrix(rows, pred_columns), 0.0 if threshold is None else float(threshold),
                                  spans.rule_of(metric or "word_jaccard"))
            out[column] = spans.cut(found.to_numpy(), spans_)
            continue
        if output in ("tags", "spans"):     # labels: the tag list; the threshold: the decoder's O bias
            out[column] = _decoded(rows, pred_columns, labels, threshold, output)
            continue
        if output == "labels" and task == "multiclass":
            names = [f"{column}_{label}" for label in labels]
            if not set(names) <= set(rows.columns):
                raise InputError(f"sample submission column {column!r}: the run has no class columns "
                                 f"{names}; it has {', '.join(map(repr, preds.columns))}")
            probs = rows[names].to_numpy(dtype=float)
            out[column] = _labels(labels, probs.argmax(axis=1))
        elif output == "labels" and task == "binary":
            codes = (rows[_prob_column(rows, column)].to_numpy(dtype=float) >= _threshold_of(threshold, 0))
            out[column] = _labels(labels or [0, 1], codes.astype(np.int64))
        elif output == "labels":  # multilabel: 0/1 per label, thresholds in preds' column order
            name = _prob_column(rows, column)
            p = rows[name].to_numpy(dtype=float)
            out[column] = (p >= _threshold_of(threshold, pred_columns.index(name))).astype(np.int64)
        else:
            out[column] = rows[_prob_column(rows, column)].to_numpy(dtype=float)
    return out


def _decoded(rows: pd.DataFrame, pred_columns: list[str], tags: list[str], o_bias, output: str) -> list[str]:
    """Per-unit tag probabilities decoded (valid IOB2, :func:`competition.tokens.decode`) and written
    as each row's JSON list of tags, or of character spans ``[start, end, type]``."""
    codes = tokens.decode(predictions.matrix(rows, pred_columns), 0.0 if o_bias is None else float(o_bias))
    if output == "spans":
        types = [t[2:] for t in tags[1::2]]
        return [json.dumps(tokens.spans_of(c, types)) for c in codes]
    return [json.dumps(row) for row in tokens.tags_of(codes, tags)]


def _labels(labels: list, codes: np.ndarray) -> pd.Series:
    """Codes -> original label values, keeping their type (ints stay ints)."""
    plain = [v.item() if isinstance(v, np.generic) else v for v in labels]
    return pd.Series(np.asarray(plain, dtype=object)[codes]).infer_objects()


# -- the sample and the formatted frame, checked ----------------------------------------------

def check_sample_columns(sample: pd.DataFrame, spec, output: str, sample_name: str) -> None:
    """The sample's value columns are what the run predicts: the targets, or (multiclass
    probabilities) one column per class, named ``<target>_<label>`` or ``<label>``."""
    have = [str(c) for c in sample.columns[1:]]
    if spec.task == "multiclass" and output == "probabilities":
        want = spec.pred_columns
        named = {c if c in want else f"{spec.targets[0]}_{c}" for c in have}
    else:
        want, named = spec.targets, set(have)
    if str(sample.columns[0]) != spec.id_column or named != set(want):
        raise InputError(f"{sample_name}: the sample submission's columns {list(map(str, sample.columns))} "
                         f"do not match competition.yaml: id {spec.id_column!r} then {want}. Fix `id:` / "
                         "`targets:` (or `labels:`) in competition.yaml to the sample's columns.")


def check_output(frame: pd.DataFrame, sample: pd.DataFrame, output: str, task: str, labels,
                  sample_name: str) -> None:
    """The formatted frame, checked once more: columns, rows, no NaN, labels known."""
    if list(frame.columns) != list(sample.columns) or len(frame) != len(sample):
        raise InputError(f"{sample_name}: the submission came out with columns {list(frame.columns)} "
                         f"x {len(frame)} rows instead of {list(sample.columns)} x {len(sample)}")
    for column in frame.columns[1:]:
        if frame[column].isna().any():
            raise InputError(f"{sample_name}: column {column!r} came out with missing values")
        if output == "tags":
            unknown = {t for cell in frame[column] for t in json.loads(cell)} - set(labels)
            if unknown:
                raise InputError(f"column {column!r}: tag(s) {sorted(unknown)} are not in the tag list {labels}")
        if output == "labels":
            allowed = {"0", "1"} if task == "multilabel" else {str(v) for v in labels or [0, 1]}
            unknown = set(frame[column].astype(str)) - allowed
            if unknown:
                raise InputError(f"column {column!r}: label(s) {sorted(unknown)} are not in the label set "
                                 f"{artifacts.plain(labels)}; set `labels:` in competition.yaml")
