"""``comp score FILE``: score a submission CSV against the workspace's hidden solution.

The solution file (spec key ``solution``) holds the test ids and their true targets; ``comp
init --holdout 0.2`` writes one when it carves a test set out of train. The submission is
checked the way ``comp submit`` checks its output -- the sample submission's columns, one row
per solution id, no missing values -- and scored with the competition metric. A file holding
labels where the metric scores probabilities (or the reverse) is named as such. ``--solution
FILE`` scores against another solution CSV, checked the same way.

:func:`score_and_record` also appends the score to the source run's folder -- the run named by
the submission's ``.json`` manifest, which ``comp submit`` writes beside the CSV::

    experiments/042/scores.json    [{submission, submission_hash, solution, solution_hash, metric,
                                     score, cv, scored_at}, ...]   oldest first

``cv`` is the run's OOF CV when it was scored, so a score stays tied to the version of the run it
measured: :func:`latest_score` (the leaderboard's ``scored`` column, the report's CV-vs-scored
plot) skips entries of a run retrained since.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from competition import artifacts, metrics, runs, tables
from competition import data as data_mod
from competition.errors import InputError
from competition.spec import ReadOptions, load_spec
from competition.submission import (
    check_ids,
    check_sample_columns,
    check_values,
    examples,
    id_keys,
    output_kind,
)
from competition.workspace import MANIFEST, SCORES, Workspace


@dataclass(frozen=True)
class ScoreResult:
    """A submission's score. ``note`` warns of a usable-but-degraded file (hard labels where the
    metric ranks probabilities). :func:`score_and_record` fills in the rest: the source run, its
    CV (None when not comparable), and where the score was recorded or why not."""

    path: Path
    metric: str
    direction: str
    score: float
    rows: int
    output: str
    note: str | None = None
    solution: Path | None = None
    source: str | None = None
    cv: float | None = None
    recorded: Path | None = None
    not_recorded: str | None = None




def compare_text(score: float, cv: float, direction: str) -> str:
    """The score beside the run's CV, and which way CV erred.

    >>> compare_text(0.80, 0.83, "maximize")
    'CV 0.8300, scored 0.8000, difference -0.0300 (CV was optimistic)'
    >>> compare_text(0.50, 0.45, "minimize")
    'CV 0.4500, scored 0.5000, difference +0.0500 (CV was optimistic)'
    >>> compare_text(0.5, 0.5, "minimize")
    'CV 0.5000, scored 0.5000, difference +0.0000'
    """
    diff = score - cv
    worse = diff < 0 if direction == "maximize" else diff > 0
    verdict = "" if diff == 0 else " (CV was optimistic)" if worse else " (CV was pessimistic)"
    return f"CV {cv:.4f}, scored {score:.4f}, difference {diff:+.4f}{verdict}"


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
                         f"label set {artifacts.plain(labels)}; {fix}")
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
    fix_labels = f"metric {metric} scores labels {artifacts.plain(labels)}: submit labels (`comp submit` writes them)"
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
            column = next(c for c, h in zip(value_columns, held) if not h <= keys)
            numbers = _numbers(sub[column])
            if numbers is not None and np.all(numbers == np.round(numbers)):   # whole numbers: other labels
                outside = sorted(set(sub[column].map(label_key)) - keys)
                raise InputError(f"{where}: column {column!r} holds label(s) {examples(outside)} outside the "
                                 f"label set {artifacts.plain(allowed)}; {fix_labels}")
            sample = sub.loc[~sub[column].map(label_key).isin(keys), column].iloc[0]
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


def score_file(ws: Workspace, path: Path | str, *, solution: Path | str | None = None,
               data=None) -> ScoreResult:
    """Score the submission CSV at ``path`` with the competition metric against ``solution`` (a
    CSV of the test ids and their true targets), by default the spec's ``solution:`` file.

    Raises:
        InputError: no solution file; the solution lacks the id or target columns or repeats
            ids; the submission's columns, rows or ids differ from what the sample submission and
            the solution say; missing, non-numeric or out-of-range values; labels where the metric
            needs probabilities or the reverse.
    """
    spec = load_spec(ws.spec_file) if data is None else data.spec
    given = solution is not None
    if not given and not spec.solution:
        raise InputError(f"{ws.spec_file}: no `solution:` file with the test set's true targets, so "
                         "there is nothing to score against. Kaggle scores it for you; or carve a "
                         "holdout with `comp init --holdout 0.2`, which writes one; or name a solution "
                         "CSV: `comp score FILE --solution solution.csv`.")
    data = data if data is not None else data_mod.load(spec)
    path = Path(path)
    where = str(path)
    solution_file = Path(solution) if given else spec.file(spec.solution)
    # a solution file given is the user's to check; the spec's one was written by comp init
    reference = f"the solution {solution_file}" if given else f"the solution {solution_file.name}"
    fix_rows = (f"check that the solution {solution_file} you gave holds this competition's test ids" if given
                else "submit one row per test id")
    role = "solution you gave" if given else "solution"
    sol = tables.read_table(solution_file, ReadOptions(), role=role, dtype=str, given=given)
    sub = tables.read_table(path, ReadOptions(), role="submission", dtype=str, given=True)
    sample = data.sample_submission()
    check_sample_columns(sample, spec, output_kind(spec.task, spec.metric),
                          str(spec.file(spec.sample_submission) or "the sample submission"))
    expected = [str(c) for c in sample.columns]
    id_column, value_columns = expected[0], expected[1:]
    tables.require_columns(sol, [id_column], solution_file, role, "id")
    tables.require_columns(sol, list(spec.targets), solution_file, role, "targets")
    check_ids(sol[id_column], sol[id_column], where=str(solution_file), reference="itself",
              fix="a solution holds each test id once")
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
    if len(sub) != len(sol):     # the given solution is blamed only where it disagrees with the sample
        fix = fix_rows if given and len(sol) != len(sample) else (
            f"submit one row per test id, as the sample submission has {len(sample)} (`comp submit` writes them)")
        raise InputError(f"{where}: {len(sub)} rows, but {reference} has {len(sol)}; {fix}.")
    check_ids(sub[id_column], sol[id_column], where=where, reference=reference,
              fix=f"{fix_rows} (`comp submit` writes one row per test id)")
    # put the submission in the solution's row order
    position = pd.Series(np.arange(len(sub)), index=id_keys(sub[id_column]).to_numpy())
    sub = sub.iloc[position.loc[id_keys(sol[id_column]).to_numpy()].to_numpy()].reset_index(drop=True)

    output = output_kind(spec.task, spec.metric)
    if not (spec.task == "multiclass" and output == "probabilities"):
        value_columns = list(spec.targets)  # in the targets' order, as y_true
    y_true = _truth(sol, spec, data.labels, str(solution_file))
    y_pred, note = _predictions(sub, value_columns, spec, data.labels, output, where)
    threshold = 0.5 if output == "labels" and spec.task in ("binary", "multilabel") else None
    value = metrics.score(spec.metric, y_true, y_pred, spec.task, threshold=threshold)
    return ScoreResult(path, spec.metric, metrics.METRICS[spec.metric].direction, float(value), len(sub),
                       output, note, solution=solution_file)


# -- recording the score in the source run ---------------------------------------------------

def read_scores(run_dir: Path) -> list[dict]:
    """A run's recorded scores, oldest first ([] when none); InputError when the file is damaged."""
    path = Path(run_dir) / SCORES
    if not path.is_file():
        return []
    return artifacts.read_json(path, expect=list)


def latest_score(run) -> float | None:
    """The run's latest recorded score in its own metric, measured on the run as it is now (an
    entry whose ``cv`` differs from the run's CV scored a version retrained since); None if none."""
    try:
        entries = read_scores(run.dir)
    except InputError:
        return None   # the leaderboard and the report still show the run
    metric, cv = run.manifest.get("metric"), run.score
    for entry in reversed(entries):
        if not isinstance(entry, dict) or entry.get("metric") != metric:
            continue
        if isinstance(entry.get("score"), (int, float)) and (
                entry.get("cv") is None or cv is None or math.isclose(entry["cv"], cv, rel_tol=1e-9)):
            return float(entry["score"])
    return None


def _source_run(ws: Workspace, result: ScoreResult):
    """The run the submission came from (by its ``.json`` manifest), or the reason there is none."""
    manifest_file = result.path.with_suffix(".json")
    if not manifest_file.is_file():
        return None, (f"no manifest {manifest_file.name} beside it (`comp submit` writes one), so the run "
                      "it came from is unknown")
    try:
        manifest = artifacts.read_json(manifest_file)
    except (OSError, ValueError) as err:
        return None, f"its manifest {manifest_file} cannot be read ({err})"
    source = manifest.get("source") if isinstance(manifest, dict) else None
    if not isinstance(source, str):
        return None, f"its manifest {manifest_file} names no source run (not written by `comp submit`?)"
    try:
        run_dir = ws.run_dir(source)
    except InputError:
        return None, f"its manifest {manifest_file} names an invalid run {source!r}"
    if not (run_dir / MANIFEST).is_file():
        return None, f"its run {source!r} no longer exists ({run_dir})"
    if manifest.get("submission_hash") not in (None, artifacts.file_hash(result.path)):
        return None, (f"the file changed since `comp submit` wrote it (its hash differs from the one in "
                      f"{manifest_file.name}), so its score is not run {source!r}'s")
    try:
        run = runs.load_run(ws, source, complete=False)
    except (OSError, ValueError) as err:
        return None, f"run {source!r} cannot be read ({err})"
    then = manifest.get("cv")
    if then is not None and run.score is not None and not math.isclose(then, run.score, rel_tol=1e-9):
        return None, (f"run {source!r} was retrained since this submission (CV {then:.4f} then, "
                      f"{run.score:.4f} now); submit it again: `comp submit {source}`")
    return run, None


def record_score(ws: Workspace, result: ScoreResult) -> ScoreResult:
    """Append ``result`` to its source run's ``scores.json`` (read-modify-write under a file
    lock, written atomically); the result with ``recorded``, or ``not_recorded`` saying why not."""
    run, why = _source_run(ws, result)
    if run is None:
        return replace(result, not_recorded=why)
    same_metric = run.manifest.get("metric", result.metric) == result.metric
    result = replace(result, source=run.name, cv=run.score if same_metric else None)
    entry = {
        "submission": result.path.name, "submission_hash": artifacts.file_hash(result.path),
        "solution": str(Path(result.solution).resolve()), "solution_hash": artifacts.file_hash(result.solution),
        "metric": result.metric, "score": result.score, "cv": run.score,
        "scored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = run.dir / SCORES
    with FileLock(str(path) + ".lock"):
        try:
            entries = read_scores(run.dir)
        except InputError as err:
            return replace(result, not_recorded=str(err))
        artifacts.write_json(path, [*entries, entry])
    return replace(result, recorded=path)


def score_and_record(ws: Workspace, path: Path | str, *, solution: Path | str | None = None,
                     data=None) -> ScoreResult:
    """``comp score``: :func:`score_file`, then :func:`record_score` in the source run."""
    return record_score(ws, score_file(ws, path, solution=solution, data=data))
