"""Run artifacts as every later stage sees them: an experiment, a stack or a blend alike.

A *run* is a folder ``experiments/<name>/`` with::

    manifest.json   kind (experiment | stack | blend), family, task, metric, pred_columns,
                    folds_hash, data_hash, test_hash, n_splits, status (complete | partial),
                    inputs (stacks and blends), package versions, git commit
    metrics.json    metric, direction, oof_score, threshold, folds {k: score}, fold_mean, fold_std;
                    threshold metrics also in_sample_score and fold_thresholds (see thresholds.cv);
                    baseline_score (thresholds.baseline) and trivial (why it learnt nothing, or null)
    oof.parquet     id, fold, prediction columns: every train row once, train-file order
    test.parquet    id, prediction columns (fold average), <col>__fold<k> (when there is a test set)

The file names are :mod:`competition.workspace`'s (``MANIFEST``, ``OOF``, ...), the module that owns
every path. :func:`write_run` is the one writer of a complete run (train, stack and blend call it)
and :func:`write_partial` of an experiment's unfinished one, so whatever reads a run never needs to
know what produced it. A run records the hashes of the inputs it was made on (:func:`input_hashes`);
:func:`changes` says which of them changed since, and :meth:`Run.input_changes` which of a stack's
or blend's input runs were retrained or removed: the one staleness rule, for every stage to phrase
its own consequence.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from competition import artifacts, metrics, predictions, thresholds
from competition.data import unit_data
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.tables import positions
from competition.artifacts import remake_command, rewrite_command  # noqa: F401 - where callers find them
from competition.workspace import CONFIG, MANIFEST, METRICS, OOF, TEST, Workspace

RUN_FILES = (OOF, TEST, METRICS)   # a complete run's predictions and scores
HASHES = {"folds_hash": "folds", "data_hash": "train data", "test_hash": "test data",   # what each fingerprints
          "sources_hash": "pseudo-label / teacher runs"}                                # (pseudo, distill)


def read_config(path: Path) -> dict:
    """A run's or a fold's saved ``config.yaml`` as a dict: the one reader of that file.

    Raises:
        InputError: it is not YAML (a damaged file, named with the command that rebuilds it).
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise artifacts.damaged(path, f"not a valid config: {str(err).splitlines()[0][:100]}") from None


@dataclass(frozen=True)
class Run:
    name: str
    dir: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"

    def config(self):
        """The resolved :class:`~competition.config.ExperimentConfig` an experiment run was trained with
        (its ``config.yaml``), the one reader of it for every stage that replays or retrains a run.

        Raises:
            InputError: the run is a stack or blend, or its config is missing or damaged.
        """
        path = self.dir / CONFIG
        if self.manifest.get("kind", "experiment") != "experiment":
            raise InputError(f"{self.dir}: {self.name} is a {self.manifest.get('kind')}, not an experiment: it has "
                             "no experiment config")
        if not path.is_file():
            raise InputError(f"{path}: missing; experiment {self.name} cannot be rebuilt without its resolved "
                             f"config. Retrain it: `comp train exp={self.name} --fold all --force`")
        try:
            return ExperimentConfig.model_validate(read_config(path))
        except ValueError as err:
            raise artifacts.damaged(path, f"not a valid config: {str(err).splitlines()[0][:100]}") from None

    @property
    def score(self) -> float | None:
        return self.metrics.get("oof_score")

    @property
    def in_sample_score(self) -> float | None:
        """The OOF score at the threshold chosen on all OOF (optimistic); None without a threshold."""
        return self.metrics.get("in_sample_score")

    @property
    def threshold(self):
        return self.metrics.get("threshold")

    @property
    def pred_columns(self) -> list[str]:
        return list(self.manifest["pred_columns"])

    def oof(self) -> pd.DataFrame:
        return self._verified(OOF)

    def test(self) -> pd.DataFrame | None:
        return self._verified(TEST) if (self.dir / TEST).is_file() else None

    def _verified(self, name: str) -> pd.DataFrame:
        """A predictions file, checked against the hash the manifest recorded for it (another run's file
        copied over it was read as this run's: `comp submit 001` submitted 002's predictions)."""
        remake = rewrite_command(self.name, self.manifest)
        frame, digest = read_hashed(self.dir / name, remake)
        recorded = (self.manifest.get("files") or {}).get(name)
        if recorded is not None and digest != recorded:
            raise InputError(f"{self._differs(name)}; remake it: `{remake}`")
        return frame

    def _differs(self, name: str) -> str:
        """What a predictions file that is not the one the manifest recorded is called, in every message."""
        return (f"{self.dir / name}: damaged (its bytes differ from those run {self.name} recorded in its manifest: "
                "replaced, or being rewritten by a command running now)")

    def cv(self, data) -> tuple[thresholds.CV, np.ndarray]:
        """The run's CV recomputed from its OOF (:func:`thresholds.cv`, the rule every run is scored
        by, also for runs written before it) and its nested decisions, for paired comparisons."""
        oof = self.oof()
        metric, task = self.manifest["metric"], self.manifest["task"]
        pred, fold = predictions.matrix(oof, self.pred_columns), oof["fold"].to_numpy()
        return (thresholds.cv(metric, data.y, pred, task, fold),
                thresholds.decisions(metric, data.y, pred, task, fold)[0])

    @property
    def trivial(self) -> str | None:
        """Why it learnt nothing usable (constant predictions, CV at the baseline), or None."""
        return self.metrics.get("trivial")

    def input_changes(self, ws: Workspace, file_hash=None) -> list[Change]:
        """For a stack or blend: each input retrained (its OOF hash differs from the recorded one) or
        gone since it was built (``now`` None). ``file_hash`` may be a memoised
        :func:`competition.artifacts.file_hash`, so an input several stacks share is read once."""
        file_hash = file_hash or artifacts.file_hash
        out = []
        for source, recorded in (self.manifest.get("input_hashes") or {}).items():
            oof = ws.run_dir(source) / OOF
            now = file_hash(oof) if oof.is_file() else None
            if now != recorded:
                out.append(Change(f"input:{source}", recorded, now))
        return out

    def damage(self) -> str | None:
        """The first of its predictions files that does not open or is not the one its manifest recorded
        (deleted, truncated, replaced), said with the file and why; None when both are as written. A
        complete run with damage is ``damaged`` for the leaderboard, submit, stack and blend alike."""
        # pyarrow: only parquet files
        import pyarrow.parquet as pq

        recorded = self.manifest.get("files") or {}
        for name in (OOF, TEST):
            path = self.dir / name
            if name == TEST and not path.exists():
                continue
            try:
                pq.read_metadata(path)
            except (OSError, ValueError) as err:
                return f"{path}: damaged (cannot be read: {str(err).splitlines()[0][:80]})"
            if recorded.get(name) is not None and artifacts.damaged_file(self.dir, {name: recorded[name]}):
                return self._differs(name)          # hashed once per process, as every verified file
        return None

    def readable(self) -> bool:
        """Its predictions files open and are the ones its manifest recorded (:meth:`damage`)."""
        return self.damage() is None


def read_predictions(path: Path, remake: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A predictions parquet; a missing, truncated or unreadable one is an InputError naming the
    file and the command that remakes it (not pyarrow's traceback)."""
    return read_hashed(path, remake, columns)[0]


def read_hashed(path: Path, remake: str, columns: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """:func:`read_predictions` plus the hash (as :func:`artifacts.file_hash`) of the very bytes read,
    so a stack records what it used even if a concurrent ``--force`` rewrites the file meanwhile."""
    try:
        raw = Path(path).read_bytes()
        return pd.read_parquet(io.BytesIO(raw), columns=columns), hashlib.sha256(raw).hexdigest()[:16]
    except FileNotFoundError:
        raise InputError(f"{path}: missing; remake it: `{remake}`") from None
    except (OSError, ValueError) as err:   # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"{path}: cannot be read ({str(err).splitlines()[0][:120]}); the file is damaged. "
                         f"Remake it: `{remake}`") from None


READ_TRIES = 6


def read_version(ws: Workspace, name: str, columns: list[str] | None = None, *, test: bool = True
                 ) -> tuple[Run, pd.DataFrame, pd.DataFrame | None, str]:
    """Run ``name`` with its OOF (and test) predictions read as one version: the hashes of the bytes
    read equal those its manifest recorded (``files``), else the run is being rewritten (a retrain
    renames oof, test, metrics, then the manifest) and it is read again, a little later, up to
    ``READ_TRIES`` times. Returns the run, both frames and the OOF hash.

    Without this, a stack read while an input was retrained could take the new OOF with the old
    test predictions. Runs written before manifests recorded ``files`` are read as they are.

    Raises:
        InputError: the run kept changing while it was read, or a file is missing or damaged.
    """
    for attempt in range(READ_TRIES):
        run = load_run(ws, name)
        remake = rewrite_command(name, run.manifest)
        oof, oof_hash = read_hashed(run.dir / OOF, remake, columns)
        test_frame, test_hash = read_hashed(run.dir / TEST, remake, columns) if test else (None, None)
        recorded = run.manifest.get("files")
        if recorded is None or (recorded.get(OOF) == oof_hash and (not test or recorded.get(TEST) == test_hash)):
            return run, oof, test_frame, oof_hash
        time.sleep(0.2 * 2 ** attempt)
    differ = [run.dir / n for n, h in ((OOF, oof_hash), (TEST, test_hash)) if h is not None and recorded.get(n) != h]
    raise InputError(f"{', '.join(map(str, differ))}: damaged (its bytes differ from those run {name} recorded in its "
                     f"manifest, read {READ_TRIES} times: replaced, or being rewritten by a command running now). "
                     f"If another command is retraining {name}, let it finish and run this one again; else remake it: "
                     f"`{remake}`.")


def load_run(ws: Workspace, name: str, *, complete: bool = True) -> Run:
    """Read one run; InputError when it does not exist or (with ``complete``) is unfinished."""
    run_dir = ws.run_dir(name)
    manifest_file = run_dir / MANIFEST
    if not manifest_file.is_file():
        known = ", ".join(ws.run_ids()) or "none yet"
        raise InputError(f"{run_dir}: no run named {name!r} (no {MANIFEST}). Runs here: {known}. "
                         f"Train it first: `comp train exp={name} --fold all`.")
    manifest = artifacts.read_json(manifest_file)
    metrics_file = run_dir / METRICS
    run = Run(name, run_dir, manifest, artifacts.read_json(metrics_file) if metrics_file.is_file() else {})
    if complete and not run.complete:
        missing = sorted(set(range(manifest.get("n_splits", 0))) - set(manifest.get("folds_done", [])))
        raise InputError(f"{run_dir}: run {name!r} is not complete (folds {missing} missing). "
                         f"Finish it: `comp train exp={name} --fold all`.")
    return run


def all_runs(ws: Workspace) -> list[Run]:
    """Every run folder of the workspace, complete or not."""
    return [load_run(ws, name, complete=False) for name in ws.run_ids()]


def input_hashes(ws: Workspace, data=None) -> dict[str, str | None]:
    """The hashes of the inputs a run made now records: the folds file, the train data and the
    test data (:data:`HASHES`); None where unknown (no folds file yet, no data loaded) or absent
    (no test set)."""
    return {"folds_hash": artifacts.file_hash(ws.folds_file) if ws.folds_file.is_file() else None,
            "data_hash": None if data is None else data.train_hash,
            "test_hash": None if data is None else data.test_hash}


@dataclass(frozen=True)
class Change:
    """One input that changed since a run (or a fold) was made: its hash then and now."""

    key: str                 # folds_hash | data_hash | test_hash | sources_hash | input:<run>
    then: str | None
    now: str | None          # None: a stack's or blend's input run is gone

    @property
    def what(self) -> str:
        """The input in words: folds, train data, test data, input <run>."""
        return f"input {self.key.removeprefix('input:')}" if self.key.startswith("input:") else HASHES[self.key]

    def __str__(self) -> str:
        if self.key.startswith("input:"):
            return f"{self.what} {'is gone' if self.now is None else 'changed since'}"
        return f"{self.what} changed ({self.key} {self.then} != {self.now})"


def changes(recorded: dict, current: dict) -> list[Change]:
    """What changed since a run or fold recorded ``recorded`` (its manifest, a fold's ``done.json``):
    each input hash of ``current`` that differs from the recorded one, in :data:`HASHES` order.
    A caller leaves out the hashes it does not know. Each stage phrases the consequence.

    >>> [str(c) for c in changes({"folds_hash": "a", "data_hash": "b"}, {"folds_hash": "a", "data_hash": "c"})]
    ['train data changed (data_hash b != c)']
    """
    return [Change(k, recorded.get(k), current[k]) for k in HASHES if k in current and recorded.get(k) != current[k]]


def check_compatible(runs: list[Run], current: dict) -> None:
    """Refuse to combine runs made on other folds or other train data than the current ones."""
    problems = []
    for run in runs:
        problems += [f"{run.name} was trained on other {c.what} ({c.key} {c.then} != current {c.now})"
                     for c in changes(run.manifest, {k: current[k] for k in ("folds_hash", "data_hash")})]
    if problems:
        raise InputError("cannot combine these runs:\n  - " + "\n  - ".join(problems)
                         + "\nRetrain them on the current folds (`comp train exp=<id> --force`) or leave them out.")


def fold_stats(folds: dict[int, float]) -> dict[str, float]:
    scores = np.array(list(folds.values()), dtype=float)
    return {"fold_mean": float(scores.mean()), "fold_std": float(scores.std())}


def write_run(ws: Workspace, name: str, *, spec, data, oof: pd.DataFrame, test: pd.DataFrame | None,
              manifest: dict[str, Any]) -> Run:
    """Score the OOF (:func:`thresholds.cv`: nested thresholds, per fold and overall) and write a
    complete run (metrics, oof, test, then manifest last).

    ``oof`` must hold id, fold and ``spec.pred_columns`` for every train row; it is put in
    train-file order. The manifest is written last, so a run with a manifest saying
    ``complete`` has all its files.
    """
    cols = spec.pred_columns
    order = positions(data.train[spec.id_column], oof["id"])
    if len(oof) != len(order) or (order < 0).any():
        raise RuntimeError(f"run {name}: OOF predictions do not cover every train row exactly once")
    if (order != np.arange(len(order))).any():
        oof = oof.iloc[order].reset_index(drop=True)
    pred = predictions.matrix(oof, cols)
    if not predictions.finite(pred):
        raise RuntimeError(f"run {name}: OOF predictions hold NaN or inf")
    if spec.per_unit:    # every row's units, as the data has them
        wrong = predictions.problem(pred, len(pred), len(cols), unit_data(spec).units_of(spec, data.train))
        if wrong:
            raise RuntimeError(f"run {name}: OOF predictions: {wrong}")
    result = thresholds.cv(spec.metric, data.y, pred, spec.task, oof["fold"].to_numpy())
    run_dir = ws.run_dir(name)
    artifacts.write_parquet(run_dir / OOF, oof)
    if test is not None:
        artifacts.write_parquet(run_dir / TEST, test)
    run_metrics = {
        "metric": spec.metric, "direction": metrics.METRICS[spec.metric].direction,
        "oof_score": result.score, "threshold": result.threshold,
        "folds": result.folds, **fold_stats(result.folds),
    }
    if result.in_sample is not None:
        run_metrics.update(in_sample_score=result.in_sample,
                           fold_thresholds={k: v for k, v in result.fold_thresholds.items()})
    base = thresholds.baseline(spec.metric, data.y, spec.task, oof["fold"].to_numpy())
    run_metrics.update(baseline_score=base, trivial=trivial_reason(spec.metric, pred, result.score, base))
    artifacts.write_json(run_dir / METRICS, run_metrics)
    files = {**(manifest.get("files") or {}), OOF: artifacts.file_hash(run_dir / OOF),    # + what the caller recorded
             **({TEST: artifacts.file_hash(run_dir / TEST)} if test is not None else {})}
    full = {**_header(name, spec, "complete"), "labels": artifacts.plain(data.labels), **manifest, "files": files,
            **artifacts.environment()}
    artifacts.write_json(run_dir / MANIFEST, full)
    return Run(name, run_dir, full, run_metrics)


def write_partial(ws: Workspace, name: str, *, spec, manifest: dict[str, Any]) -> Run:
    """Write the manifest of a run not complete yet (some folds missing, or trained with another
    config) and remove its run-level predictions and scores: those of a model that no longer exists
    as a whole. A partial run is listed (``comp leaderboard``) but never combined or submitted."""
    run_dir = ws.run_dir(name)
    partial = {**_header(name, spec, "partial"), **manifest}
    artifacts.write_json(run_dir / MANIFEST, partial)
    for file in RUN_FILES:
        (run_dir / file).unlink(missing_ok=True)
    return Run(name, run_dir, partial, {})


def _header(name: str, spec, status: str) -> dict[str, Any]:
    """What every run's manifest starts with: its name, the competition and how it is scored."""
    return {"name": name, "competition": spec.name, "task": spec.task, "metric": spec.metric,
            "pred_columns": spec.pred_columns, "status": status}


def trivial_reason(metric: str, pred: np.ndarray, score: float, base: float) -> str | None:
    """Why a run has learnt nothing usable -- constant OOF predictions, or a CV no better than the
    trivial baseline (:func:`thresholds.baseline`) -- or None.

    >>> trivial_reason("f1", np.full((4, 1), 0.3), 0.5, 0.5)
    'its OOF predictions are constant (one value per column)'
    >>> trivial_reason("rmse", np.array([[1.0], [2.0]]), 0.9, 1.0) is None
    True
    >>> trivial_reason("rmse", np.array([[1.0], [2.0]]), 1.0, 1.0)[:56]
    'its CV 1.0000 is no better than the trivial baseline 1.0'
    """
    pred = predictions.flat(pred)
    if np.ptp(pred, axis=0).max() <= 1e-9 * max(1.0, float(np.abs(pred).max())):
        return "its OOF predictions are constant (one value per column)"
    if not metrics.is_better(metric, score, base + (1e-12 if metrics.greater_is_better(metric) else -1e-12)):
        return (f"its CV {score:.4f} is no better than the trivial baseline {base:.4f} "
                "(predicting the training folds' mean or class shares)")
    return None


def average_folds(parts: list[pd.DataFrame], cols: list[str]) -> pd.DataFrame:
    """Mean of per-fold test predictions (same id order), per-fold columns kept as ``<col>__fold<k>``."""
    first = predictions.matrix(parts[0], cols)
    if predictions.is_ragged(first):     # per-unit predictions: list columns
        each = [first] + [predictions.matrix(p, cols) for p in parts[1:]]
        per_fold = {f"{c}__fold{k}": parts[k][c].to_numpy() for k in range(len(parts)) for c in cols}
        return pd.concat([parts[0][["id"]].reset_index(drop=True), predictions.frame(predictions.mean(each), cols),
                          pd.DataFrame(per_fold)], axis=1)
    stacked = np.stack([p[cols].to_numpy(dtype=float) for p in parts])  # (folds, n_test, k)
    per_fold = {f"{c}__fold{k}": stacked[k, :, j] for k in range(len(parts)) for j, c in enumerate(cols)}
    return pd.concat([parts[0][["id"]].reset_index(drop=True),
                      pd.DataFrame(stacked.mean(axis=0), columns=cols),
                      pd.DataFrame(per_fold)], axis=1)
