"""``comp submit``: a run's test predictions as a submission file the competition accepts.

What :func:`submit` writes::

    <workspace>/submissions/
        20250101-120000_042_cv0.8312.csv    exactly the sample submission's layout: columns and
                                            their order, id order, line ends, labels or
                                            probabilities as the metric scores them
        20250101-120000_042_cv0.8312.json   source, kind, CV, threshold, the run's folds / data /
                                            test hashes, the sample's file hash, package versions

Everything is checked before anything is written -- prediction columns, row count, the id
set, NaN/inf, probabilities in [0, 1], labels in the known label set -- and the CSV appears
whole or not at all. A run trained on other test data is refused. :func:`format_submission`
is the pure part (predictions + sample -> the frame to write), separate from the I/O.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from competition import artifacts
from competition.errors import InputError
from competition.workspace import Workspace


@dataclass(frozen=True)
class SubmitResult:
    """What :func:`submit` wrote. ``output`` is labels, probabilities or values; ``kaggle`` says
    what happened to the optional hand-off to the kaggle CLI (None when not asked)."""

    path: Path
    manifest_path: Path
    source: str
    kind: str
    metric: str
    cv: float | None
    threshold: float | list[float] | None
    rows: int
    output: str
    kaggle: str | None = None
    notes: tuple[str, ...] = ()      # why the default source is the one it is (passed-over, tied runs)


# -- pure helpers ----------------------------------------------------------------------------

def output_kind(task: str, metric: str) -> str:
    """What the submission holds for this task and metric: labels, probabilities or values.

    >>> output_kind("binary", "f1"), output_kind("binary", "roc_auc"), output_kind("regression", "rmse")
    ('labels', 'probabilities', 'values')
    """
    from competition import metrics

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


def check_ids(have, want, *, where: str, reference: str, fix: str) -> None:
    """Refuse duplicated ids or an id set differing from ``want``: counts and examples of each.

    >>> check_ids([1, 2], ["1", "2"], where="x.csv", reference="the sample", fix="")
    >>> check_ids([1, 2, 2], ["1", "2"], where="x.csv", reference="the sample", fix="dedupe")
    Traceback (most recent call last):
    competition.errors.InputError: x.csv: 1 duplicated id(s), e.g. '2'; dedupe
    """
    have, want = id_keys(have), id_keys(want)
    dup = have[have.duplicated()].unique()
    if len(dup):
        raise InputError(f"{where}: {len(dup)} duplicated id(s), e.g. {examples(dup)}; {fix}")
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing or extra:
        raise InputError(f"{where}: its ids differ from {reference}: {len(missing)} id(s) missing "
                         f"({examples(missing)}), {len(extra)} id(s) not in {reference} "
                         f"({examples(extra)}); {fix}")


def check_values(frame: pd.DataFrame, columns: list[str], *, where: str, fix: str,
                 probabilities: bool = False, ids: pd.Series | None = None) -> None:
    """Refuse NaN/inf (and, for probabilities, values outside [0, 1]) naming the column and ids.

    >>> f = pd.DataFrame({"id": [1, 2], "p": [0.5, 1.5]})
    >>> check_values(f, ["p"], where="t.parquet", fix="retrain", probabilities=True, ids=f["id"])
    Traceback (most recent call last):
    competition.errors.InputError: t.parquet: column 'p' holds 1 value(s) outside [0, 1] (e.g. 1.5 at id '2'), but it should hold probabilities; retrain
    """
    ids = id_keys(ids if ids is not None else frame.index.to_series())
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
    if isinstance(threshold, dict):
        return float(list(threshold.values())[i])
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
                      labels: list | None = None, threshold=None) -> pd.DataFrame:
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
        if bool(keys.str.fullmatch(r"-?(0|[1-9]\d{0,17})").all()):
            ids = keys.astype(np.int64)
    out = pd.DataFrame({id_column: ids})
    pred_columns = [c for c in preds.columns if c != "id" and "__fold" not in str(c)]
    for column in sample.columns[1:]:
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


def _labels(labels: list, codes: np.ndarray) -> pd.Series:
    """Codes -> original label values, keeping their type (ints stay ints)."""
    plain = [v.item() if isinstance(v, np.generic) else v for v in labels]
    return pd.Series(np.asarray(plain, dtype=object)[codes]).infer_objects()


# -- choosing and checking the run -----------------------------------------------------------

SIMPLER = {"experiment": 0, "blend": 1, "stack": 2}   # fewer moving parts first


def best_run(ws: Workspace, data) -> tuple[str, list[str]]:
    """The best complete run by CV on the current folds, train and test data (the top of
    ``comp leaderboard``), passing over stacks that failed their ``--holdout`` check; and notes
    saying what was passed over and which simpler run is statistically tied with the one taken.
    InputError when there is none."""
    from competition.leaderboard import leaderboard
    from competition.runs import load_run

    entries = leaderboard(ws, data=data)
    usable = [e for e in entries if e.status == "complete" and e.cv is not None
              and not any("test data changed" in n for n in e.notes)]
    notes = []
    for e in list(usable):
        guard = load_run(ws, e.name, complete=False).manifest.get("holdout")
        if guard and not guard.get("preferred", True):
            usable.remove(e)
            notes.append(f"passed over {e.name}: it did not beat its best input and the inputs' mean on its "
                         f"--holdout rows (name it to submit it anyway)")
    if usable:
        chosen = usable[0]
        tied = [e for e in usable[1:] if e.vs_best and e.vs_best.get("tied")
                and (SIMPLER.get(e.kind, 3), e.seconds or 0.0) < (SIMPLER.get(chosen.kind, 3), chosen.seconds or 0.0)]
        if tied and chosen.rank == 1:
            simple = min(tied, key=lambda e: (SIMPLER.get(e.kind, 3), e.seconds or 0.0))
            v = simple.vs_best
            notes.append(f"{simple.name} ({simple.family or simple.kind}) is statistically tied with {chosen.name}: "
                         f"{v['diff']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}] (95% paired bootstrap) and is "
                         f"simpler; `comp submit {simple.name}` to submit it instead")
        return chosen.name, notes
    if not entries:
        raise InputError(f"{ws.experiments_dir}: no run to submit yet. Train one first "
                         "(`comp train exp=001 --fold all`), then `comp submit`.")
    states = ", ".join(f"{e.name} ({e.status}{': ' + e.notes[0] if e.notes else ''})" for e in entries[:5])
    raise InputError(f"{ws.experiments_dir}: no complete run on the current folds, train and test data "
                     f"({states}). Finish or retrain one, or name a run: `comp submit <run>`.")


def _retrain(run) -> str:
    """How to remake a run: retrain an experiment; rebuild a stack or blend."""
    from competition.runs import remake_command

    command = f"`{remake_command(run.name, run.manifest)}`"
    return command if run.manifest.get("kind", "experiment") == "experiment" else \
        f"{command} once its inputs are current"


def _check_fresh(ws: Workspace, run, data, allow_stale: bool) -> None:
    """A run trained on other folds or other train data: its CV no longer describes this data."""
    from competition.leaderboard import stale_reasons

    current = {"folds_hash": artifacts.file_hash(ws.folds_file) if ws.folds_file.is_file() else None,
               "data_hash": data.train_hash}
    stale = stale_reasons(run.manifest, current)
    if stale and not allow_stale:
        raise InputError(f"{run.dir / 'manifest.json'}: run {run.name!r} is stale: {'; '.join(stale)}; its CV "
                         f"describes other data. Remake it: {_retrain(run)}, or submit it anyway with --allow-stale.")


def _check_run(run, spec, data) -> pd.DataFrame:
    """The run's test predictions, after checking they belong to this competition's test data."""
    where = run.dir / "manifest.json"
    if run.manifest.get("metric", spec.metric) != spec.metric:
        raise InputError(f"{where}: run {run.name!r} was scored with {run.manifest['metric']!r} but "
                         f"competition.yaml says metric {spec.metric!r}; its CV and threshold do not "
                         f"apply. Remake it: {_retrain(run)}.")
    if run.manifest.get("test_hash") != data.test_hash:
        raise InputError(f"{where}: test data changed since {run.name} was trained (test_hash "
                         f"{run.manifest.get('test_hash')} != current {data.test_hash}); its "
                         f"predictions are for other rows. Remake it: {_retrain(run)}.")
    if run.pred_columns != spec.pred_columns:
        raise InputError(f"{where}: run {run.name!r} predicts columns {run.pred_columns} but "
                         f"competition.yaml now expects {spec.pred_columns}; remake it: {_retrain(run)}.")
    preds = run.test()
    test_file = run.dir / "test.parquet"
    if preds is None:
        raise InputError(f"{test_file}: run {run.name!r} has no test predictions; "
                         f"retrain it with the test set in competition.yaml (`test:`).")
    fix = f"the run's test predictions are broken; remake it: {_retrain(run)}"
    missing = [c for c in ["id", *run.pred_columns] if c not in preds.columns]
    if missing:
        raise InputError(f"{test_file}: prediction column(s) {missing} missing; it has "
                         f"{', '.join(map(repr, preds.columns))}; {fix}")
    check_values(preds, run.pred_columns, where=str(test_file), fix=fix,
                 probabilities=spec.task != "regression", ids=preds["id"])
    return preds


def _check_sample_rows(sample: pd.DataFrame, preds: pd.DataFrame, run, sample_name: str) -> None:
    where = run.dir / "test.parquet"
    fix = f"remake the run on the test file that matches the sample submission: {_retrain(run)}"
    if len(preds) != len(sample):
        raise InputError(f"{where}: {len(preds)} prediction rows but the sample submission "
                         f"{sample_name} has {len(sample)}; {fix}")
    check_ids(preds["id"], sample[sample.columns[0]], where=str(where),
              reference=f"the sample submission {sample_name}", fix=fix)


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
        if output == "labels":
            allowed = {"0", "1"} if task == "multilabel" else {str(v) for v in labels or [0, 1]}
            unknown = set(frame[column].astype(str)) - allowed
            if unknown:
                raise InputError(f"column {column!r}: label(s) {sorted(unknown)} are not in the label set "
                                 f"{labels}; set `labels:` in competition.yaml")


# -- writing ---------------------------------------------------------------------------------

def _target_path(ws: Workspace, out: Path | None, source: str, cv: float | None) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}_{source}_cv{cv:.4f}.csv" if cv is not None else f"{stamp}_{source}.csv"
    if out is not None and not Path(out).is_dir():
        path = Path(out)
        if path.exists():
            raise InputError(f"{path}: already exists; choose another --out (submissions are never overwritten)")
        return path
    folder = Path(out) if out is not None else ws.submissions_dir
    path, n = folder / name, 1
    while path.exists() or path.with_suffix(".json").exists():  # two submissions in one second
        path, n = folder / f"{Path(name).stem}-{n}.csv", n + 1
    return path


def submit(ws: Workspace, source: str | None = None, *, out: Path | None = None, kaggle: bool = False,
           message: str | None = None, competition: str | None = None, data=None,
           allow_stale: bool = False) -> SubmitResult:
    """Write a run's test predictions as a validated submission CSV plus its ``.json`` manifest.

    Args:
        ws: the workspace.
        source: a complete run (experiment, stack or blend); None takes the best one by CV.
        out: a file or folder to write to instead of ``submissions/``.
        kaggle: hand the file to ``kaggle competitions submit`` when that CLI is set up;
            never fails the submission.
        message: the Kaggle submission message (default: source and CV).
        competition: the Kaggle competition slug (default: the spec's name).
        data: a loaded :class:`~competition.data.Dataset` (loaded from the spec when None).
        allow_stale: submit a named run although its folds or train data changed since it was
            trained (its CV then describes other data); refused otherwise, as the default source is.

    Raises:
        InputError: naming the file, column and fix; nothing is written then.
    """
    from competition import data as data_mod
    from competition import runs
    from competition.spec import load_spec

    spec = load_spec(ws.spec_file) if data is None else data.spec
    if not spec.test:
        raise InputError(f"{ws.spec_file}: competition {spec.name!r} has no test set (`test:`), so there "
                         "is nothing to submit; score on CV, or carve one with `comp init --holdout 0.2`.")
    data = data if data is not None else data_mod.load(spec)
    source, notes = (source, []) if source else best_run(ws, data)
    run = runs.load_run(ws, source)
    _check_fresh(ws, run, data, allow_stale)
    preds = _check_run(run, spec, data)
    sample = data.sample_submission()
    sample_file = spec.file(spec.sample_submission)
    sample_name = sample_file.name if sample_file else "(built from the test ids)"
    _check_sample_rows(sample, preds, run, sample_name)
    output = output_kind(spec.task, spec.metric)
    check_sample_columns(sample, spec, output, str(sample_file or sample_name))
    frame = format_submission(sample, preds, task=spec.task, output=output, labels=data.labels,
                              threshold=run.threshold)
    check_output(frame, sample, output, spec.task, data.labels, sample_name)

    path = _target_path(ws, out, run.name, run.score)
    manifest_path = path.with_suffix(".json")
    encoding = "utf-8-sig" if has_bom(sample_file) else "utf-8"  # a BOM in the sample stays
    artifacts.write_csv(path, frame, lineterminator=line_terminator(sample_file), encoding=encoding)
    try:
        artifacts.write_json(manifest_path, {
            "file": path.name, "source": run.name, "kind": run.manifest.get("kind", "experiment"),
            "family": run.manifest.get("family"), "inputs": run.manifest.get("inputs"),
            "metric": spec.metric, "direction": run.metrics.get("direction"), "cv": run.score,
            "fold_mean": run.metrics.get("fold_mean"), "fold_std": run.metrics.get("fold_std"),
            "threshold": run.threshold if output == "labels" else None, "output": output,
            "rows": len(frame), "columns": list(frame.columns),
            **{k: run.manifest.get(k) for k in ("folds_hash", "data_hash", "test_hash")},
            "sample_submission": str(sample_file) if sample_file else None,
            "sample_submission_hash": artifacts.file_hash(sample_file) if sample_file else None,
            "submission_hash": artifacts.file_hash(path), **artifacts.environment(),
        })
    except BaseException:
        path.unlink(missing_ok=True)  # nothing half-written: no CSV without its manifest
        raise
    note = None
    if kaggle:
        cv = f" cv {run.score:.4f}" if run.score is not None else ""
        note = kaggle_submit(path, competition or spec.name, message or f"comp: {run.name}{cv}")
    return SubmitResult(path, manifest_path, run.name, run.manifest.get("kind", "experiment"), spec.metric,
                        run.score, run.threshold if output == "labels" else None, len(frame), output, note,
                        tuple(notes))


# -- the optional hand-off to Kaggle ---------------------------------------------------------

def kaggle_configured() -> bool:
    """The kaggle CLI finds credentials: $KAGGLE_USERNAME + $KAGGLE_KEY, or kaggle.json."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return (folder / "kaggle.json").is_file()


def kaggle_submit(path: Path, competition: str, message: str) -> str:
    """Run ``kaggle competitions submit``; a sentence saying what happened, never an exception."""
    exe = shutil.which("kaggle")
    if exe is None:
        return (f"kaggle CLI not found: `pip install kaggle`, then `kaggle competitions submit -c "
                f"{competition} -f {path} -m \"{message}\"`. The submission file is written.")
    if not kaggle_configured():
        return ("kaggle CLI not configured: put your API token in ~/.kaggle/kaggle.json (Kaggle > "
                "Settings > Create New Token) or set KAGGLE_USERNAME and KAGGLE_KEY, then run "
                f"`kaggle competitions submit -c {competition} -f {path} -m \"{message}\"`.")
    cmd = [exe, "competitions", "submit", "-c", competition, "-f", str(path), "-m", message]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as err:
        return f"kaggle submit failed ({err}); the file is written, submit it by hand: {' '.join(cmd)}"
    said = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        return (f"kaggle submit failed (exit {done.returncode}): {said}. Check the competition slug "
                f"(--competition, now {competition!r}) and that you joined it; the file is written.")
    return f"submitted to kaggle competition {competition!r}: {said}"
