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
whole or not at all. A run trained on other test data is refused. The format itself and the
checks of a submission (:func:`~competition.submission.format_submission` and its neighbours) live
in :mod:`competition.submission`; this module chooses the run, checks it is fresh and whole,
writes the file and its manifest, and hands it to Kaggle when asked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from competition import artifacts, runs
from competition import data as data_mod
from competition.errors import InputError
from competition.inputs import gain
from competition.leaderboard import leaderboard
from competition.spec import load_spec
from competition.status import Statuses
from competition.submission import (
    check_ids,
    check_output,
    check_sample_columns,
    check_values,
    csv_options,
    format_submission,
    has_bom,
    line_terminator,
    output_kind,
    texts_of,
)
from competition.workspace import DONE, MANIFEST, TEST, Workspace


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


# -- choosing and checking the run -----------------------------------------------------------

SIMPLER = {"experiment": 0, "blend": 1, "stack": 2}   # fewer moving parts first


def best_run(ws: Workspace, data) -> tuple[str, list[str]]:
    """The best complete run by CV on the current folds, train and test data (the top of
    ``comp leaderboard``), passing over stacks that failed their holdout check; and notes
    saying what was passed over and which simpler run is statistically tied with the one taken.
    InputError when there is none."""
    entries = leaderboard(ws, data=data)
    usable = [e for e in entries if e.status == "complete" and e.cv is not None
              and not any("test data changed" in n for n in e.notes)]
    notes = []
    for e in list(usable):
        guard = runs.load_run(ws, e.name, complete=False).manifest.get("holdout")
        if guard and not guard.get("preferred", True):
            usable.remove(e)
            notes.append(f"passed over {e.name}: it did not beat its best input and the inputs' mean on its "
                         f"holdout rows (name it to submit it anyway)")
    if usable:
        chosen = usable[0]
        for e in entries:   # what a user would expect to be taken: damaged runs, better runs left out
            if e in usable or (e.status != "damaged" and (e.cv is None or chosen.cv is None or
                                                          gain(chosen.metric, e.cv, chosen.cv) <= 0)):
                continue
            why = f"{e.status}{': ' + e.notes[0] if e.notes else ''}"
            notes.append(f"passed over {e.name} ({why})")
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
    command = f"`{runs.remake_command(run.name, run.manifest)}`"
    return command if run.manifest.get("kind", "experiment") == "experiment" else \
        f"{command} once its inputs are current"


def _check_status(ws: Workspace, run, data, allow_stale: bool) -> None:
    """The run's status (:mod:`competition.status`, what the leaderboard shows): a damaged run is never
    submitted; a stale one (its CV describes other folds, train data or inputs) only with ``allow_stale``."""
    verdict = Statuses(ws, data, data.spec.metric).of(run)
    if verdict.state == "damaged":
        raise InputError(verdict.refusal())
    if verdict.state == "stale" and not allow_stale:
        said = "; ".join(r.removeprefix(f"{verdict.where}: ") for r in verdict.reasons)
        raise InputError(f"{verdict.where}: run {run.name!r} is stale: {said}; its CV describes "
                         f"other data. {verdict.fix}, or submit it anyway with {{allow_stale}}.",
                         allow_stale="allow_stale=True")


def _check_run(run, spec, data) -> pd.DataFrame:
    """The run's test predictions, after checking they belong to this competition's test data."""
    where = run.dir / MANIFEST
    if run.manifest.get("metric", spec.metric) != spec.metric:
        raise InputError(f"{where}: run {run.name!r} was scored with {run.manifest['metric']!r} but "
                         f"competition.yaml says metric {spec.metric!r}; its CV and threshold do not "
                         f"apply. Remake it: {_retrain(run)}.")
    moved = runs.changes(run.manifest, {"test_hash": data.test_hash})
    if moved:
        raise InputError(f"{where}: test data changed since {run.name} was trained (test_hash "
                         f"{moved[0].then} != current {moved[0].now}); its "
                         f"predictions are for other rows. Remake it: {_retrain(run)}.")
    if run.pred_columns != spec.pred_columns:
        raise InputError(f"{where}: run {run.name!r} predicts columns {run.pred_columns} but "
                         f"competition.yaml now expects {spec.pred_columns}; remake it: {_retrain(run)}.")
    preds = run.test()
    test_file = run.dir / TEST
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
    where = run.dir / TEST
    fix = f"remake the run on the test file that matches the sample submission: {_retrain(run)}"
    if len(preds) != len(sample):
        raise InputError(f"{where}: {len(preds)} prediction rows but the sample submission "
                         f"{sample_name} has {len(sample)}; {fix}")
    check_ids(preds["id"], sample[sample.columns[0]], where=str(where),
              reference=f"the sample submission {sample_name}", fix=fix)


# -- writing ---------------------------------------------------------------------------------

def _target_path(ws: Workspace, out: Path | None, source: str, cv: float | None) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}_{source}_cv{cv:.4f}.csv" if cv is not None else f"{stamp}_{source}.csv"
    if out is not None and not Path(out).is_dir():
        path = Path(out)
        if path.exists():
            raise InputError(f"{path}: already exists; choose another {{out}} (submissions are never overwritten)",
                             out="out")
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
    spec = load_spec(ws.spec_file) if data is None else data.spec
    if not spec.test:
        raise InputError(f"{ws.spec_file}: competition {spec.name!r} has no test set (`test:`), so there "
                         "is nothing to submit; score on CV, or carve one with `comp init --holdout 0.2`.")
    data = data if data is not None else data_mod.load(spec)
    source, notes = (source, []) if source else best_run(ws, data)
    run = runs.load_run(ws, source)
    _check_status(ws, run, data, allow_stale)
    preds = _check_run(run, spec, data)
    sample = data.sample_submission()
    sample_file = spec.file(spec.sample_submission)
    sample_name = sample_file.name if sample_file else "(built from the test ids)"
    _check_sample_rows(sample, preds, run, sample_name)
    output = output_kind(spec.task, spec.metric, spec.tokens.unit)
    check_sample_columns(sample, spec, output, str(sample_file or sample_name))
    frame = format_submission(sample, preds, task=spec.task, output=output, labels=data.labels,
                              threshold=run.threshold, texts=texts_of(spec, data.test), metric=spec.metric)
    check_output(frame, sample, output, spec.task, data.labels, sample_name)

    path = _target_path(ws, out, run.name, run.score)
    manifest_path = path.with_suffix(".json")
    encoding = "utf-8-sig" if has_bom(sample_file) else "utf-8"  # a BOM in the sample stays
    artifacts.write_csv(path, frame, lineterminator=line_terminator(sample_file), encoding=encoding,
                        **csv_options(output))
    try:
        artifacts.write_json(manifest_path, {
            "file": path.name, "source": run.name, "kind": run.manifest.get("kind", "experiment"),
            "family": run.manifest.get("family"), "inputs": run.manifest.get("inputs"),
            "metric": spec.metric, "direction": run.metrics.get("direction"), "cv": run.score,
            "fold_mean": run.metrics.get("fold_mean"), "fold_std": run.metrics.get("fold_std"),
            "threshold": run.threshold if output == "labels" else None, "output": output,
            "rows": len(frame), "columns": list(frame.columns),
            **{k: run.manifest.get(k) for k in runs.HASHES},
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
