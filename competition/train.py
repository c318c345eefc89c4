"""The train stage: fit one experiment on each fold, predict its own rows (OOF) and the test set.

``comp train exp=042 --fold all`` calls :func:`train`. What it writes::

    experiments/042/
        config.yaml          the resolved config (refused if a re-run's config differs)
        manifest.json        family, folds/data/test hashes, status, wall time per fold, versions,
                             select and selected_on (the union of the folds')
        oof.parquet          id, fold, prediction column(s): every train row once, no NaN
        test.parquet         id, prediction column(s) averaged over folds, plus <col>__fold<k>
        metrics.json         score per fold, overall OOF score, decision threshold
        fold0/               one folder per fold, written whole (temp folder, then rename):
            done.json        score, threshold, best epoch, seconds, hashes, learning curve, select,
                             selected_on: {kind: folds} whose own labels made a choice behind this
                             model: best_epoch [k] (select: fold), tuning [0] (tuned_on); {} if none
            oof.parquet      this fold's own rows
            test.parquet     this fold's test predictions
            config.yaml      the config again, beside the model it produced
            ...              the fitted model: weights + tokenizer, or the estimator
        fold0.lock           held while a process trains fold 0

Resume: a fold whose ``done.json`` matches the current folds and data, and whose
``config.yaml`` matches the current config, is skipped; ``force`` retrains it. A run is
complete only when every fold is done under one config: after ``--force --fold 0`` with a
changed config the run is partial, its manifest names the folds trained with another config
(``folds_other_config``) and the run-level predictions of the old model are removed. Nothing
of a run changes until a fold finishes: a run that fails before (a refused setting, a model
that cannot load) leaves ``config.yaml`` and every other file as they were. Two processes may train different folds of one
experiment at once: each fold has its own lock, and the run-level files are
assembled under another lock once every fold is complete.

Selection: ``select`` says how a fold's stopping point was chosen -- ``fold`` (the best
validation of the fold itself), ``inner`` (held-out training rows: torch ``train.select:
inner`` and every LightGBM model), ``last`` (fixed epochs) or null (nothing chosen by
validation). ``selected_on`` names the folds whose own labels chose something: those folds'
OOF scores are optimistic, and ``comp leaderboard`` scores the untouched folds beside them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from filelock import FileLock, Timeout

from competition import artifacts, predictions, runs, thresholds, track
from competition import data as data_mod
from competition import folds as folds_mod
from competition.config import ExperimentConfig
from competition.data import resolve_conflicts
from competition.errors import InputError
from competition.models import FoldResult, family
from competition.resume import check_previous_run, fold_config_diff, fold_done
from competition.spec import load_spec
from competition.teach import Teacher
from competition.workspace import CONFIG, DONE, OOF, PREDICTION_FILES, TEST, Workspace


@dataclass
class FoldRow:
    fold: int
    status: str                      # trained | skipped (done before) | busy (another process holds it)
                                     # | trained on Ray (comp train --ray)
    score: float | None = None
    best_epoch: int | None = None
    seconds: float | None = None


@dataclass
class TrainResult:
    exp: str
    run_dir: Path
    metric: str
    folds: list[FoldRow] = field(default_factory=list)
    oof_score: float | None = None   # None until every fold is complete
    threshold: float | list[float] | None = None
    in_sample: float | None = None   # threshold metrics: the OOF score at a threshold chosen on all OOF
    trivial: str | None = None       # why the run learnt nothing usable (runs.trivial_reason), or None
    other_config: dict[int, list[str]] = field(default_factory=dict)  # fold -> keys that differ from cfg

    @property
    def complete(self) -> bool:
        return self.oof_score is not None


def parse_folds(text: str, n_splits: int) -> list[int]:
    """``'all'`` -> every fold; ``'0,2'`` -> [0, 2]; validated against ``n_splits``.

    >>> parse_folds("all", 3), parse_folds("2,0", 5)
    ([0, 1, 2], [0, 2])
    """
    if text.strip().lower() == "all":
        return list(range(n_splits))
    try:
        chosen = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InputError(f"{{folds}} {text!r}: write 'all' or fold numbers like 0,2", folds="folds") from None
    bad = [f for f in chosen if not 0 <= f < n_splits]
    if bad or not chosen:
        raise InputError(f"{{folds}} {text!r}: folds are 0..{n_splits - 1} (the folds file has {n_splits})",
                         folds="folds")
    return chosen


# the families that predict a per-unit task's units (the others predict one row at a time)
UNIT_FAMILIES = {"tokens": ("encoder", "crf"), "span": ("encoder", "words")}


def _limit(train_idx: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Smoke runs: fit on a seeded subset of the fold's training rows (OOF still covers every row)."""
    if limit is None or len(train_idx) <= limit:
        return train_idx
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train_idx, size=limit, replace=False))


TRACKING_FILES = ("wandb", ".wandb-cache")     # what wandb writes in a run folder before any fold finishes


def train(ws: Workspace, cfg: ExperimentConfig, *, folds: list[int] | str = "all", force: bool = False,
          data=None, on_fold=None) -> TrainResult:
    """Train ``cfg`` on the chosen folds; assemble the run's files once every fold is complete.

    Args:
        ws: the workspace.
        cfg: the validated experiment config.
        folds: fold numbers or ``"all"``.
        force: retrain folds that are already complete (and accept a changed config).
        data: a loaded :class:`~competition.data.Dataset` (loaded from the spec when None).
        on_fold: called with each :class:`FoldRow` as it finishes (progress printing).
    """
    spec = load_spec(ws.spec_file) if data is None else data.spec
    data = data if data is not None else data_mod.load(spec)
    fold_table = folds_mod.read_folds(ws, data)
    fold_of = _fold_vector(fold_table, data)
    n_splits = int(fold_of.max()) + 1
    chosen = parse_folds(folds, n_splits) if isinstance(folds, str) else parse_folds(
        ",".join(map(str, folds)), n_splits)
    if spec.per_unit and cfg.model.family not in UNIT_FAMILIES[spec.task]:
        raise InputError(f"model.family {cfg.model.family} predicts rows; a {spec.task} task is trained by "
                         f"{' or '.join(UNIT_FAMILIES[spec.task])}: set model.family in experiments/{cfg.exp}.yaml")
    hashes = runs.input_hashes(ws, data)
    teacher = Teacher(ws, cfg, data, hashes) if cfg.pseudo or cfg.distill else None   # sources checked first
    if teacher is not None:
        hashes = {**hashes, "sources_hash": teacher.version()}
    if follower_rank() > 0:
        return _follow(ws, cfg, data, fold_of, chosen, hashes, force, teacher)

    run_dir = ws.run_dir(cfg.exp)
    check_previous_run(run_dir, cfg, hashes, force)
    new_run = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    config = cfg.to_dict()
    config_text = yaml.safe_dump(config, sort_keys=False)

    result = TrainResult(cfg.exp, run_dir, spec.metric)
    impl = family(cfg.model.family)
    prepared, prepare_seconds = None, 0.0
    try:
        for k in chosen:
            fold_dir = ws.fold_dir(cfg.exp, k)
            lock = FileLock(str(run_dir / f"fold{k}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                row = FoldRow(k, "busy")
            else:
                try:
                    info = None if force else fold_done(fold_dir, hashes, config)
                    if info is not None:
                        row = FoldRow(k, "skipped", info["score"], info.get("best_epoch"), info["seconds"])
                    else:
                        if prepared is None:  # tokenise / build inputs once per run, only if a fold needs it
                            started = time.perf_counter()
                            prepared = impl.prepare(cfg, data)
                            prepare_seconds = time.perf_counter() - started
                        row = _train_fold(ws, cfg, spec, data, impl, prepared, fold_of, k, hashes, config_text,
                                          prepare_seconds, teacher)
                        prepare_seconds = 0.0   # charged to the first fold this process trains
                        # the run's config is the one its newest fold was trained with
                        artifacts.write_text(run_dir / CONFIG, config_text)
                finally:
                    lock.release()
            result.folds.append(row)
            if on_fold is not None:
                on_fold(row)
    except BaseException:
        # a new run that never finished a fold leaves nothing behind (only its locks and tracking logs are there)
        if new_run and all(p.suffix == ".lock" or p.name in TRACKING_FILES for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if not (run_dir / CONFIG).is_file():
        return result          # no fold finished yet: the others are busy in another process
    _assemble(ws, cfg, spec, data, fold_of, hashes, config, result)
    return result


def follower_rank() -> int:
    """This process's rank in a ``train.strategy: ddp`` run that Lightning (or torchrun) started by
    running the same command again: 0 for the process that writes, > 0 for the others."""
    env = os.environ
    return int(env.get("RANK") or 0) or int(env.get("NODE_RANK") or 0) or int(env.get("LOCAL_RANK") or 0)


def _follow(ws, cfg, data, fold_of, chosen, hashes, force, teacher) -> TrainResult:
    """A ddp rank other than 0: fit the folds rank 0 fits, in step with it (each fit is a collective
    operation of all ranks), in scratch folders; take no lock and write nothing. Rank 0 predicts
    every fold once and writes the run."""
    impl, config, prepared = family(cfg.model.family), cfg.to_dict(), None
    for k in chosen:
        if not force and fold_done(ws.fold_dir(cfg.exp, k), hashes, config) is not None:
            continue                      # rank 0 skips it too: it was done before the command started
        prepared = prepared if prepared is not None else impl.prepare(cfg, data)
        train_idx = _training_rows(cfg, data, fold_of, k)
        with tempfile.TemporaryDirectory(prefix=f"comp-rank{follower_rank()}-") as tmp:
            impl.fit_fold(prepared, k, train_idx, np.flatnonzero(fold_of == k), Path(tmp), track.Tracker(),
                          **_taught(teacher, k))
    return TrainResult(cfg.exp, ws.run_dir(cfg.exp), data.spec.metric)


def _training_rows(cfg: ExperimentConfig, data, fold_of: np.ndarray, k: int) -> np.ndarray:
    """Fold k's training rows: the other folds' (``train.limit_rows`` of them), conflicting
    duplicates resolved among them alone (``data.conflicts``)."""
    rows = _limit(np.flatnonzero(fold_of != k), cfg.train.limit_rows, cfg.seed + k)
    return resolve_conflicts(data, rows, cfg.data.conflicts)


def _taught(teacher: Teacher | None, k: int) -> dict:
    """``fit_fold``'s lesson argument for fold k (none without pseudo/distill: every family's
    ``fit_fold`` takes the call without it)."""
    return {} if teacher is None else {"lesson": teacher.lesson(k)}


def _fold_vector(fold_table: pd.DataFrame, data) -> np.ndarray:
    """Fold number of every train row, in the train file's order."""
    ids = data.train[data.spec.id_column].astype(str)
    fold_by_id = dict(zip(fold_table["id"].astype(str), fold_table["fold"].astype(int)))
    return np.array([fold_by_id[i] for i in ids], dtype=np.int64)


def _train_fold(ws, cfg, spec, data, impl, prepared, fold_of, k, hashes, config_text,
                prepare_seconds: float, teacher: Teacher | None = None) -> FoldRow:
    run_dir = ws.run_dir(cfg.exp)
    fold_dir = ws.fold_dir(cfg.exp, k)
    for stale in run_dir.glob(f"fold{k}.tmp-*"):  # left by a killed process; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    tmp_dir = run_dir / f"fold{k}.tmp-{os.getpid()}"
    tmp_dir.mkdir(parents=True)
    train_idx = _training_rows(cfg, data, fold_of, k)
    valid_idx = np.flatnonzero(fold_of == k)
    tracker = track.start(enabled=cfg.track.wandb, project=cfg.track.project or spec.name,
                          group=cfg.exp, name=f"{cfg.exp}-fold{k}", config=cfg.to_dict(), run_dir=run_dir)
    started = time.perf_counter()
    try:
        fit: FoldResult = impl.fit_fold(prepared, k, train_idx, valid_idx, tmp_dir, tracker, **_taught(teacher, k))
        seconds = time.perf_counter() - started
        _check_predictions(fit, valid_idx, data, spec, cfg.exp, k)
        score, threshold = thresholds.evaluate(spec.metric, data.y[valid_idx], fit.oof, spec.task)
        ids = data.train[spec.id_column].iloc[valid_idx].to_numpy()
        oof = predictions.frame(fit.oof, spec.pred_columns)
        oof.insert(0, "fold", k)
        oof.insert(0, "id", ids)
        artifacts.write_parquet(tmp_dir / OOF, oof)
        if fit.test is not None:
            test = predictions.frame(fit.test, spec.pred_columns)
            test.insert(0, "id", data.test[spec.id_column].to_numpy())
            artifacts.write_parquet(tmp_dir / TEST, test)
        artifacts.write_text(tmp_dir / CONFIG, config_text)
        extra = dict(fit.extra)
        chosen = {**extra.pop("selected_on", {}), **({"tuning": list(cfg.tuned_on)} if cfg.tuned_on else {})}
        artifacts.write_json(tmp_dir / DONE, {
            "fold": k, "score": score, "threshold": threshold, "best_epoch": fit.best_epoch,
            "seconds": round(seconds, 2), "prepare_seconds": round(prepare_seconds, 2),
            "n_train": len(train_idx), "n_valid": len(valid_idx),
            "select": select_of(cfg), "selected_on": chosen,
            **hashes, "history": fit.history, "extra": extra,
            # the fold's model files, verified before a fold is used (here, in a bundle)
            "files": artifacts.folder_hashes(tmp_dir, skip=(DONE, *PREDICTION_FILES)),
        })
        # not val/score: wandb's summary keeps the last logged value of a history key, the last
        # validation, while the fold's score comes from the kept (best or averaged) weights
        tracker.summary({track.SCORE: score, "fold": k})
        # the fold appears whole or not at all
        if fold_dir.exists():
            shutil.rmtree(fold_dir)
        os.replace(tmp_dir, fold_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    finally:
        tracker.finish()
    return FoldRow(k, "trained", score, fit.best_epoch, round(seconds, 2))


def select_of(cfg: ExperimentConfig) -> str | None:
    """How a fold's stopping point is chosen: ``train.select`` for the torch families, ``inner``
    for every LightGBM model (early stopping on held-out training rows, see
    :mod:`competition.models.estimators`), None where nothing is chosen by validation."""
    if cfg.is_torch:
        return cfg.train.select
    return "inner" if cfg.model.early_stopped else None


def _fold_selected(info: dict, k: int, cfg: ExperimentConfig) -> dict[str, list[int]]:
    """A done fold's ``selected_on``, with the run's ``tuned_on`` (declared in the experiment file,
    possibly after the fold was trained). A fold trained before selection was recorded is read as
    the torch families worked then: the best of its validations on the fold itself (without SWA)."""
    if "selected_on" in info:
        chosen = dict(info["selected_on"] or {})
    else:
        validations = len(info.get("history") or [])
        chosen = {"best_epoch": [k]} if cfg.is_torch and not cfg.train.swa and validations > len(cfg.train.seeds) else {}
    if cfg.tuned_on:
        chosen["tuning"] = list(cfg.tuned_on)
    return chosen


def _union(selections: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    """Kind -> sorted folds, over the folds' ``selected_on``.

    >>> _union([{"best_epoch": [0], "tuning": [0]}, {"best_epoch": [1], "tuning": [0]}, {}])
    {'best_epoch': [0, 1], 'tuning': [0]}
    """
    out: dict[str, set[int]] = {}
    for chosen in selections:
        for kind, folds in chosen.items():
            out.setdefault(kind, set()).update(int(f) for f in folds)
    return {kind: sorted(folds) for kind, folds in sorted(out.items()) if folds}


def _total(seconds: list[float | None]) -> float | None:
    """Sum of the folds' preparation seconds; unknown (None) when a fold did not record it."""
    return None if None in seconds else round(sum(seconds), 2)


def _check_predictions(fit: FoldResult, valid_idx: np.ndarray, data, spec, exp: str, k: int) -> None:
    k_cols, token = len(spec.pred_columns), spec.per_unit
    units = np.asarray(data_mod.unit_data(spec).units_of(spec, data.train))[valid_idx] if token else None
    wrong = predictions.problem(fit.oof, len(valid_idx), k_cols, units)
    if wrong or not predictions.finite(fit.oof):
        raise RuntimeError(f"experiment {exp} fold {k}: OOF predictions: {wrong or 'NaN or inf'}")
    if data.test is not None:
        wrong = "missing" if fit.test is None else predictions.problem(
            fit.test, len(data.test), k_cols, data_mod.unit_data(spec).units_of(spec, data.test) if token else None)
        if wrong:
            raise RuntimeError(f"experiment {exp} fold {k}: test predictions: {wrong}")


def _assemble(ws, cfg, spec, data, fold_of, hashes, config: dict, result: TrainResult) -> None:
    """Write the run-level files: the full run once every fold is complete under ``config``, else a
    partial manifest (naming the folds trained with another config) and no run-level predictions."""
    run_dir = ws.run_dir(cfg.exp)
    n_splits = int(fold_of.max()) + 1
    with FileLock(str(run_dir / "assemble.lock")):
        done = {k: fold_done(ws.fold_dir(cfg.exp, k), hashes, config) for k in range(n_splits)}
        result.other_config = {
            k: fold_config_diff(ws.fold_dir(cfg.exp, k), config) for k in range(n_splits)
            if not done[k] and (ws.fold_dir(cfg.exp, k) / DONE).is_file()
            and fold_config_diff(ws.fold_dir(cfg.exp, k), config)}
        manifest = {
            "exp": cfg.exp, "kind": "experiment", "family": cfg.model.family, **hashes,
            "n_splits": n_splits, "folds_done": [k for k, v in done.items() if v],
            "seconds_per_fold": {k: v["seconds"] for k, v in done.items() if v},
            # inputs built once per process (tokenising, embedding), charged to its first fold
            "prepare_seconds": _total([v.get("prepare_seconds") for v in done.values() if v]),
            "select": select_of(cfg),
            "selected_on": _union([_fold_selected(v, k, cfg) for k, v in done.items() if v]),
        }
        if not all(done.values()):
            runs.write_partial(ws, cfg.exp, spec=spec, manifest={
                **manifest, "folds_other_config": {str(k): v for k, v in result.other_config.items()}})
            return
        folds = [ws.fold_dir(cfg.exp, k) for k in range(n_splits)]
        def fold_file(k: int, name: str) -> pd.DataFrame:
            return runs.read_predictions(folds[k] / name, f"comp train exp={cfg.exp} --fold {k} --force")

        oof = pd.concat([fold_file(k, OOF) for k in range(n_splits)])
        test = (runs.average_folds([fold_file(k, TEST) for k in range(n_splits)], spec.pred_columns)
                if data.test is not None else None)
        run = runs.write_run(ws, cfg.exp, spec=spec, data=data, oof=oof, test=test, manifest=manifest)
        result.oof_score, result.threshold, result.in_sample = run.score, run.threshold, run.in_sample_score
        result.trivial = run.trivial
        for row in result.folds:   # as the run reports them: thresholds chosen on the other folds
            row.score = run.metrics["folds"][row.fold]
