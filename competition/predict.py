"""The predict stage: replay a finished run on new rows, offline, without retraining.

``comp predict RUN --test FILE`` calls :func:`predict`. RUN is any complete run: an experiment
of any family, a stack (also over stacks) or a blend. Its inputs are walked recursively; every
base experiment predicts FILE once with each saved fold model (the same text building,
tokenisation, sorted dynamic padding, seeds and TTA as training), its folds averaged as training
averaged them; then each stack applies its fold meta-models and each blend its saved parameters.
On the workspace's own test file this reproduces the run's ``test.parquet``. What it writes::

    submissions/<UTC time>_<run>_predict/     (or --out DIR), whole or not at all
        predictions.parquet   id + prediction column(s) of RUN (probabilities or values)
        submission.csv        in the sample submission's format, with RUN's decision threshold,
                              validated as ``comp submit`` validates (when a sample is known)
        manifest.json         run, its kind and inputs, FILE and its hash, rows, package versions

Needs no training data, folds or network: a workspace exported by ``comp export`` predicts too.
"""

from __future__ import annotations

import os
import shutil
import time
import types
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from competition import artifacts, blend, bundle, predictions, runs, stack, submission, tables
from competition import data as data_mod
from competition.errors import InputError
from competition.families import family_of
from competition.models import PRECISION, check_precision, family
from competition.spec import ReadOptions, load_spec
from competition.status import Statuses
from competition.submission import id_keys
from competition.workspace import BUNDLE, DONE, MANIFEST, Workspace

CHECKED_PACKAGES = ("torch", "transformers", "tokenizers", "scikit-learn", "lightgbm", "numpy")


@dataclass
class PredictResult:
    run: str
    out_dir: Path
    predictions: pd.DataFrame                 # id + prediction columns
    submission: Path | None
    rows: int
    seconds: dict[str, float] = field(default_factory=dict)   # run -> wall seconds of its own step


class _Replay:
    """Predicts runs on one frame, each run once (a base experiment shared by two stacks too)."""

    def __init__(self, ws: Workspace, spec, frame: pd.DataFrame):
        self.ws, self.spec, self.frame = ws, spec, frame
        self.done: dict[str, np.ndarray] = {}
        self.seconds: dict[str, float] = {}
        self.tokens: dict = {}                # token ids per tokenizer and text settings, shared by folds
        self.judge = Statuses(ws, None, spec.metric)

    def run(self, name: str) -> np.ndarray:
        if name not in self.done:
            run = runs.load_run(self.ws, name)
            check_not_damaged(self.ws, run, self.judge)
            _warn_versions(run)
            kind = run.manifest.get("kind", "experiment")
            inputs = {r: self.run(r) for r in run.manifest.get("inputs", [])} if kind != "experiment" else {}
            started = time.perf_counter()
            if kind == "experiment":
                out = self._experiment(run)
            elif kind == "stack":
                out = stack.replay(run.dir, inputs, self.frame, self.spec)
            else:
                out = blend.replay(run.dir, inputs, self.frame, self.spec)
            self.seconds[name] = round(time.perf_counter() - started, 2)
            self.done[name] = out if predictions.is_ragged(out) else np.asarray(out, dtype=np.float64)
        return self.done[name]

    def _experiment(self, run: runs.Run) -> np.ndarray:
        cfg = run.config()
        return predictions.mean([predict_fold(self.ws, self.spec, run, cfg, k, self.frame, self.tokens)
                                 for k in range(int(run.manifest["n_splits"]))])


def check_not_damaged(ws: Workspace, run: runs.Run, judge: Statuses) -> None:
    """Refuse a run the leaderboard calls damaged (:mod:`competition.status`), with the same words as
    submit and stack: its models may be intact, but what it recorded of itself is not. A bundle has no
    predictions files to judge: its own check is :func:`competition.bundle.verify`."""
    if (ws.root / BUNDLE).is_file():
        return
    verdict = judge.of(run)
    if verdict.state == "damaged":
        raise InputError(verdict.refusal())


def predict_fold(ws: Workspace, spec, run: runs.Run, cfg, k: int, frame: pd.DataFrame, tokens: dict) -> np.ndarray:
    """Fold ``k``'s saved model of an experiment run, predicting ``frame``. ``tokens``: token ids per
    tokenizer and text settings, shared by the calls on the same frame."""
    fold_dir = ws.fold_dir(run.name, k)
    if not (fold_dir / DONE).is_file():
        raise InputError(f"{fold_dir}: fold {k} of {run.name} is missing (no {DONE}); retrain it: "
                         f"`comp train exp={run.name} --fold {k} --force`")
    artifacts.verify_files(fold_dir, artifacts.read_json(fold_dir / DONE).get("files") or {})
    data = types.SimpleNamespace(spec=spec)    # predicting needs the spec, never the train rows
    kwargs = {"cache": tokens} if cfg.is_torch else {}
    out = family(cfg.model.family).predict(fold_dir, cfg, data, frame, **kwargs)
    return out if predictions.is_ragged(out) else np.asarray(out, dtype=np.float64)


def _warn_versions(run: runs.Run) -> None:
    """Models saved under other versions of the libraries that load them: a warning naming them."""
    saved = run.manifest.get("packages") or {}
    differ = []
    for package in CHECKED_PACKAGES:
        try:
            now = version(package)
        except PackageNotFoundError:
            continue
        if saved.get(package) and saved[package] != now:
            differ.append(f"{package} {saved[package]} (now {now})")
    if differ:
        warnings.warn(f"run {run.name} was saved with {', '.join(differ)}: its models load, but check "
                      "that the predictions match", UserWarning, stacklevel=3)


def run_labels(ws: Workspace, spec, run: runs.Run) -> list | None:
    """Class labels in code order: from the run (recorded since comp predict), else the spec, else
    the training data (only in a workspace that has it)."""
    if run.manifest.get("labels") is not None or spec.task in ("regression", "multilabel"):
        return run.manifest.get("labels")
    if spec.labels:
        return list(spec.labels)

    return data_mod.load(spec, with_test=False).labels


def _sample(spec, frame: pd.DataFrame, given: Path | None, labels) -> tuple[pd.DataFrame, Path | None]:
    """The submission's format: the given sample, else the spec's when it lists these rows' ids,
    else one built from the rows' ids in the spec's format."""
    ids = frame[spec.id_column]
    if given is not None:
        return tables.read_table(given, ReadOptions(), role="sample submission", dtype=str,
                                 given=True), Path(given)
    path = spec.file(spec.sample_submission) if spec.sample_submission else None
    if path is not None and path.is_file():
        sample = tables.read_sample_submission(spec)
        if set(id_keys(sample[sample.columns[0]])) == set(id_keys(ids)):
            return sample, path
    built = pd.DataFrame({spec.id_column: ids.astype(str).to_numpy()})
    for column, value in data_mod.placeholder(spec, labels).items():
        built[column] = str(value)
    return built, None


REHEARSAL_ROWS = 16


def rehearse(ws: Workspace, name: str, rows: int = REHEARSAL_ROWS) -> int:
    """Replay run ``name`` as :func:`predict` does on the first ``rows`` rows of the workspace's test
    file: every run it reads is complete and every fold model it needs loads and predicts finite
    values. What ``comp export`` checks before it writes a bundle; returns the rows replayed (0 when
    the workspace has no test file, as a bundle has not: then only the runs are checked).

    Raises:
        InputError: as :func:`predict` raises for an incomplete or damaged run.
    """
    spec = load_spec(ws.spec_file)
    run = runs.load_run(ws, name)
    path = spec.file(spec.test) if spec.test else None
    if path is None or not path.is_file():
        judge = Statuses(ws, None, spec.metric)
        for needed in needed_runs(ws, name):
            check_not_damaged(ws, runs.load_run(ws, needed), judge)
        _check_columns(run, spec)
        return 0
    frame, _ = data_mod.read_inputs(spec, path)
    _replayed(ws, spec, run, frame.head(rows).reset_index(drop=True))
    return min(rows, len(frame))


def _check_columns(run: runs.Run, spec) -> None:
    if run.pred_columns != spec.pred_columns:
        raise InputError(f"{run.dir / MANIFEST}: run {run.name} predicts {run.pred_columns}, competition.yaml "
                         f"expects {spec.pred_columns}; remake it: `{runs.remake_command(run.name, run.manifest)}`")


def needed_runs(ws: Workspace, name: str) -> list[str]:
    """``name`` and every run it reads, inputs first (each once): what a replay reads, what a bundle holds."""
    order: list[str] = []

    def visit(run_name: str) -> None:
        if run_name in order:
            return
        run = runs.load_run(ws, run_name)
        for source in run.manifest.get("inputs", []) if run.manifest.get("kind") != "experiment" else []:
            visit(source)
        order.append(run_name)

    visit(name)
    return order


def _families(ws: Workspace, run: runs.Run) -> set[str]:
    """The model families a run's predictions come from (a stack's or blend's: its inputs')."""
    if run.manifest.get("kind", "experiment") == "experiment":
        return {run.config().model.family}
    return set().union(*(_families(ws, runs.load_run(ws, n)) for n in run.manifest.get("inputs", [])))


def check_precision_applies(ws: Workspace, run: runs.Run, precision: str) -> None:
    """A precision other than fp32 for a run without an encoder is refused: it would change nothing
    (and was recorded in the prediction's manifest as if it had)."""
    check_precision(precision)
    if precision == "fp32":
        return
    found = _families(ws, run)
    if not any(family_of(f).precision for f in found):
        raise InputError(f"{{precision}} {precision}: it sets what encoders compute in, and run {run.name} has "
                         f"none (family {', '.join(sorted(found))}): it predicts the same in fp32; drop "
                         "{precision}", precision="precision")


def _replayed(ws: Workspace, spec, run: runs.Run, frame: pd.DataFrame,
              precision: str = "fp32") -> tuple[pd.DataFrame, _Replay]:
    """id + the run's prediction columns for ``frame``, checked finite (and probabilities in [0, 1]).
    ``precision``: what the encoders compute in (:data:`competition.models.PRECISION`)."""
    _check_columns(run, spec)
    replay = _Replay(ws, spec, frame)
    check_precision_applies(ws, run, precision)
    token = PRECISION.set(precision)
    try:
        values = replay.run(run.name)
    finally:
        PRECISION.reset(token)
    preds = predictions.frame(values, spec.pred_columns)
    preds.insert(0, "id", frame[spec.id_column].to_numpy())
    submission.check_values(preds, spec.pred_columns, where=f"predictions of {run.name}",
                            fix="the run's models are damaged; retrain it",
                            probabilities=spec.task != "regression", ids=preds["id"])
    return preds, replay


def check_bundle(ws: Workspace, expect: str | None = None) -> None:
    """A bundle (or any folder when ``expect`` is given): every file checked before any is loaded."""
    if expect is not None or (ws.root / BUNDLE).is_file():
        bundle.verify(ws.root, expect)


def predict_frame(ws: Workspace, name: str, frame: pd.DataFrame, *, precision: str = "fp32") -> pd.DataFrame:
    """Run ``name`` replayed on the rows of ``frame`` (the test file's columns): id + its prediction
    columns (probabilities or values), as :func:`predict` computes them, nothing written.
    ``precision``: as :func:`predict`."""
    check_bundle(ws)
    spec = load_spec(ws.spec_file)
    return _replayed(ws, spec, runs.load_run(ws, name), data_mod.frame_inputs(spec, frame), precision)[0]


def _out_dir(ws: Workspace, out: Path | None, name: str) -> Path:
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: is a file; {{out}} names a folder to write (new or empty): choose another",
                             out="out")
        if out.exists() and any(out.iterdir()):
            raise InputError(f"{out}: exists and is not empty; choose another {{out}} (predictions are never "
                             "overwritten)", out="out")
        return out
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path, n = ws.submissions_dir / f"{stamp}_{name}_predict", 1
    while path.exists():
        path, n = ws.submissions_dir / f"{stamp}_{name}_predict-{n}", n + 1
    return path


def predict(ws: Workspace, name: str, test_file: Path | str, *, out: Path | None = None,
            sample_submission: Path | None = None, expect: str | None = None, precision: str = "fp32") -> PredictResult:
    """Predict ``test_file`` with run ``name`` and write predictions, a submission and a manifest.
    ``precision``: what the encoders of the torch and embedding families compute in: ``fp32``
    (default: the run's own predictions, exactly), ``bf16`` (autocast; ~2x faster on a CPU with bf16
    instructions, probabilities within ~1e-3), ``int8`` (linear layers quantized; ~2x faster on any
    CPU, probabilities within a few 1e-2) or ``onnx-int8`` (the fine-tuned encoders as int8 graphs run
    by ONNX Runtime: faster than int8 and a little closer to fp32). Figures: BENCHMARKS.md.

    Raises:
        InputError: a bad file (missing columns, ids, encoding, empty), an incomplete or damaged
            run; nothing is written then.
    """
    check_bundle(ws, expect)
    spec = load_spec(ws.spec_file)
    run = runs.load_run(ws, name)
    test_file = Path(test_file)
    frame, frame_hash = data_mod.read_inputs(spec, test_file)
    preds, replay = _replayed(ws, spec, run, frame, precision)
    cols = spec.pred_columns

    output = submission.output_kind(spec.task, spec.metric, spec.tokens.unit)
    labels = run_labels(ws, spec, run)
    sample, sample_path = _sample(spec, frame, sample_submission, labels)
    sample_name = str(sample_path) if sample_path else "(built from the rows' ids)"
    submission.check_sample_columns(sample, spec, output, sample_name)
    submission.check_ids(preds["id"], sample[sample.columns[0]], where=str(test_file),
                         reference=f"the sample submission {sample_name}",
                         fix="give the sample submission that belongs to this file ({sample_submission})",
                         words={"sample_submission": "sample_submission=PATH"})
    table = submission.format_submission(sample, preds, task=spec.task, output=output, labels=labels,
                                         threshold=run.threshold, texts=submission.texts_of(spec, frame),
                                         metric=spec.metric)
    submission.check_output(table, sample, output, spec.task, labels, sample_name)

    target = _out_dir(ws, out, name)
    tmp = artifacts.temp_folder(target, "write elsewhere with {out}", out="out=DIR")
    try:
        artifacts.write_parquet(tmp / "predictions.parquet", preds)
        artifacts.write_csv(tmp / "submission.csv", table,
                            lineterminator=submission.line_terminator(sample_path),
                            encoding="utf-8-sig" if submission.has_bom(sample_path) else "utf-8",
                            **submission.csv_options(output))
        artifacts.write_json(tmp / MANIFEST, {
            "run": name, "kind": run.manifest.get("kind", "experiment"), "inputs": run.manifest.get("inputs"),
            "file": str(test_file.resolve()), "file_hash": artifacts.file_hash(test_file), "rows_hash": frame_hash,
            "rows": len(preds), "columns": cols, "output": output, "precision": precision,
            "threshold": run.threshold if output == "labels" else None,
            "same_rows_as_training_test": frame_hash == run.manifest.get("test_hash"),
            "sample_submission": str(sample_path) if sample_path else None,
            "seconds": replay.seconds, **artifacts.environment()})
        if target.exists():
            target.rmdir()          # an empty --out folder
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PredictResult(name, target, preds, target / "submission.csv", len(preds), replay.seconds)
