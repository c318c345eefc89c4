"""The tune stage: an Optuna search over the ``search:`` block of an experiment file.

``comp tune exp=042 --trials 30`` calls :func:`tune`. The search space lives in the
experiment file, one dotted config key per entry (parsed and checked by
:mod:`competition.search`)::

    search:
      model.C: {type: float, low: 0.1, high: 30, log: true}
      model.min_df: {type: int, low: 1, high: 4}
      model.estimator: {type: categorical, choices: [logistic, ridge]}
      model.char_ngrams: {type: grid, values: [[2, 4], [2, 5]]}
      model.family: {type: categorical, choices: [encoder, scratch]}
      model.name: {type: categorical, choices: [prajjwal1/bert-mini], when: {model.family: encoder}}

A trial is the experiment with the sampled values applied as ``key=value`` overrides,
trained on the chosen folds (default: fold 0); its value is the mean of the fold scores of
the competition metric (the direction comes from the metric). Pruning reports the running
mean after each fold (Wilcoxon: each fold's score, step = fold number) and, for the torch
families, after each validation inside a fold: fold ``i`` (its position among the chosen
folds) reports its validations at steps ``i*(V+1) .. i*(V+1)+V-1`` and its fold score at
``i*(V+1)+V``, V being the most validations a fold can make.

``--trials N`` is the study's total: N finished (complete + pruned) trials. Every worker
on the study stops there, however many run at once (the count and the ask for a new trial
happen under one lock: a file lock for SQLite, an advisory lock for PostgreSQL and MySQL),
so running the command again resumes a study and raising N extends it. A worker killed
mid-trial stops sending heartbeats; after the grace period the next worker marks its trial
failed and runs it again with the same parameters. What it writes::

    tuning.db                          the SQLite storage (default; --storage URL otherwise)
    experiments/.tune/<study>/         trial artifacts while a trial runs (removed after it),
                                       offline wandb runs of the trials
    experiments/043.yaml               the best trial as a new experiment (next free id), with
                                       ``tuned_on``: the folds the study scored, whose labels
                                       chose its settings (train records them as selected_on)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from competition import metrics, track
from competition.config import ExperimentConfig, load_config, parse_overrides
from competition.errors import InputError
from competition.search import (
    Param,
    as_override,
    check_space,
    grid_size,
    parse_space,
    sample,
)
from competition.train import parse_folds, train
from competition.workspace import Workspace

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "wilcoxon", "none")
DEFAULT_TRIALS = 20


# -- samplers, pruners, storage ------------------------------------------------------------

def make_sampler(kind: str, params: list[Param], seed: int, warn: bool = False):
    """The Optuna sampler for ``--sampler``; refuses spaces it cannot search (``warn``: say what it
    does not search well)."""
    import optuna

    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        conditional = [p.key for p in params if p.when]
        if conditional:
            raise InputError(f"--sampler grid: search keys {', '.join(conditional)} have `when:` conditions; "
                             "a grid has none. Drop them or use --sampler tpe / random")
        return optuna.samplers.GridSampler({p.key: p.grid() for p in params}, seed=seed)
    if kind == "cmaes":
        numeric = [p for p in params if p.type in ("float", "int")]
        if len(numeric) < 2:
            raise InputError("--sampler cmaes searches two or more float/int keys at once; this space has "
                             f"{len(numeric)}. Use --sampler tpe")
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise InputError("--sampler cmaes needs the `cmaes` package: pip install cmaes") from None
        if warn and len(numeric) < len(params):
            warnings.warn("--sampler cmaes: categorical keys are sampled at random, beside CMA-ES", stacklevel=2)
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise InputError(f"--sampler {kind!r}: valid samplers are {', '.join(SAMPLERS)}")


def make_pruner(kind, n_folds: int):
    """The Optuna pruner for ``--pruner`` (an Optuna pruner object passes through)."""
    import optuna

    if not isinstance(kind, str):
        return kind
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if kind == "wilcoxon":
        if n_folds < 2:
            raise InputError("--pruner wilcoxon compares trials fold by fold: give it several folds, "
                             "e.g. --folds all")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.WilcoxonPruner(p_threshold=0.1)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise InputError(f"--pruner {kind!r}: valid pruners are {', '.join(PRUNERS)}")


def storage_url(ws: Workspace, storage: str | None = None) -> str:
    """``--storage`` (any Optuna RDB URL), else the workspace's SQLite file.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3; where only psycopg2 is
    installed (comp's dependency) the URL names it.
    """
    if not storage:
        return f"sqlite:///{ws.tuning_db}"
    from sqlalchemy.engine import make_url

    try:
        url = make_url(storage)
    except Exception:  # noqa: BLE001 - open_storage says what is wrong with it
        return storage
    if url.drivername == "postgresql":
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return storage


def masked(url: str) -> str:
    """The URL without its password, for messages and files."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a message must not fail
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def open_storage(url: str, heartbeat: int = 60):
    """RDB storage with heartbeats: a trial whose worker died is failed after 2 * heartbeat
    seconds and queued again with the same parameters (up to 3 times)."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                     grace_period=2 * heartbeat,
                                     heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
            break
        except Exception as err:  # noqa: BLE001 - sqlalchemy's connection errors have many types
            # workers starting together on an empty database race to create Optuna's tables:
            # the loser finds them made on its next try
            if attempt < 2 and not isinstance(err, ImportError):
                time.sleep(1 + attempt)
                continue
            raise InputError(f"cannot open the tuning storage {masked(url)}: {err}. Write an Optuna RDB URL, e.g. "
                             "sqlite:///tuning.db or postgresql://user:password@host:5432/db, with the server "
                             "running and the database created") from None
    if url.startswith("sqlite"):
        _fast_sqlite(storage.engine)
    return storage


def _fast_sqlite(engine) -> None:
    """A trial writes ~20 small transactions; with SQLite's default journal each one waits
    for an fsync (~15 ms here). The write-ahead log without a sync per commit keeps the
    file consistent (a power cut may lose the last trials, never corrupt it) and stays safe
    for several processes on one machine (not on a network file system: use PostgreSQL)."""
    from sqlalchemy import event

    def pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()         # connections made before the listener reconnect with it


class _AskLock:
    """Serialises 'count the study's trials, then ask for one' across workers, so that the
    study stops at exactly ``--trials``: a lock file beside a SQLite file, an advisory lock
    for PostgreSQL / MySQL (released by the server when a worker dies)."""

    def __init__(self, url: str, study: str):
        from sqlalchemy.engine import make_url

        self._url, self._study = url, study
        self._file = self._engine = self._conn = None
        backend = make_url(url).get_backend_name()
        database = make_url(url).database
        if backend == "sqlite" and database and database != ":memory:":
            from filelock import FileLock

            self._file = FileLock(database + ".lock")
        elif backend in ("postgresql", "mysql", "mariadb"):
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            self._engine, self._backend = create_engine(url, poolclass=NullPool), backend
        elif backend != "sqlite":
            warnings.warn(f"storage {backend}: no lock between workers; parallel workers may run a few "
                          "trials more than --trials", stacklevel=2)

    def acquire(self) -> None:
        from sqlalchemy import text

        if self._file is not None:
            self._file.acquire()
        elif self._engine is not None:
            self._conn = self._engine.connect()
            if self._backend == "postgresql":
                key = int.from_bytes(hashlib.sha1(f"comp-tune:{self._study}".encode()).digest()[:8], "big", signed=True)
                self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            else:
                self._conn.execute(text("SELECT GET_LOCK(:k, -1)"), {"k": f"comp-tune:{self._study}"[:64]})
            self._conn.commit()

    def release(self) -> None:
        """Idempotent: the objective releases it as soon as its trial exists, the loop again after."""
        if self._file is not None and self._file.is_locked:
            self._file.release()
        elif self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()    # closing the session ends its advisory lock

    def close(self) -> None:
        self.release()
        if self._engine is not None:
            self._engine.dispose()


# -- one trial -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _TrialWorkspace(Workspace):
    """The workspace as a trial sees it: its run folder lives in the tuning scratch area,
    never in the experiment's own folder (whose artifacts a trial must not touch)."""

    scratch: Path = Path(".")

    def run_dir(self, exp: str) -> Path:
        return self.scratch / exp


class _Reporter:
    """Reports a trial's progress to its pruner (see the module docstring for the steps)."""

    def __init__(self, trial, folds: list[int], per_fold: int, wilcoxon: bool, tracker):
        self.trial, self.folds, self.per_fold, self.wilcoxon, self.tracker = trial, folds, per_fold, wilcoxon, tracker
        self.scores: dict[int, float] = {}
        self._validations = 0

    @property
    def value(self) -> float:
        return float(sum(self.scores.values()) / len(self.scores))

    def _report(self, step: int, value: float, last: bool = False) -> None:
        import optuna

        self.trial.report(value, step)
        self.tracker.log({"tune/value": value}, step=step)
        if not last and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} (value {value:.6g})")

    def validation(self, score: float) -> None:
        """After each validation of a torch fold: the running mean with this fold at ``score``."""
        if self.wilcoxon or self._validations >= self.per_fold or not math.isfinite(score):
            return
        position = len(self.scores)
        step = position * (self.per_fold + 1) + self._validations
        self._validations += 1
        self._report(step, (sum(self.scores.values()) + score) / (position + 1))

    def fold(self, row) -> None:
        """After each fold (``train``'s ``on_fold``): its score, the running mean."""
        position = len(self.scores)
        self.scores[row.fold] = float(row.score)
        self._validations = 0
        last = position == len(self.folds) - 1
        self.tracker.log({f"fold{row.fold}/score": float(row.score)})
        if self.wilcoxon:
            self._report(row.fold, float(row.score), last)
        else:
            self._report(position * (self.per_fold + 1) + self.per_fold, self.value, last)


def _epoch_callback(reporter: _Reporter):
    """A Lightning callback handing each validation's score (computed by the fold's
    FoldMonitor) to the reporter. optuna-integration's PyTorchLightningPruningCallback is not
    used: it imports ``lightning.pytorch`` (we run ``pytorch_lightning``) and reports step =
    epoch, which repeats from one fold to the next."""
    import pytorch_lightning as pl

    from competition.models.textmodel import FoldMonitor

    class EpochPruning(pl.Callback):
        def on_validation_epoch_end(self, trainer, module) -> None:
            if trainer.sanity_checking:
                return
            monitor = next((c for c in trainer.callbacks if isinstance(c, FoldMonitor)), None)
            if monitor is not None and monitor.history:
                reporter.validation(monitor.history[-1]["val/score"])

    return EpochPruning()


def _validations_per_fold(base: ExperimentConfig, params: list[Param]) -> int:
    """The most validations one fold can make (0 for the classical families): epochs *
    validations per epoch * seeds, at the largest values the search space allows."""
    from competition.config import TORCH_FAMILIES

    def most(key: str, default):
        found = [p for p in params if p.key == key]
        if not found:
            return default
        values = found[0].samples()
        return max(len(v) if isinstance(v, list) else v for v in values)

    families = {base.model.family} | {c for p in params if p.key == "model.family" for c in p.choices}
    if not families & set(TORCH_FAMILIES):
        return 0
    return int(most("train.epochs", base.train.epochs) * most("train.val_per_epoch", base.train.val_per_epoch)
               * most("train.seeds", len(base.train.seeds)))


@dataclass
class _Context:
    """What every trial of one ``tune`` call shares."""

    ws: Workspace
    exp: str
    overrides: list[str]
    params: list[Param]
    base: dict
    data: Any
    folds: list[int]
    per_fold: int
    wilcoxon: bool
    study_name: str
    tune_dir: Path
    lock: _AskLock
    keep: bool = False
    current: int | None = None


def _objective(trial, ctx: _Context) -> float:
    ctx.lock.release()          # the trial exists: other workers may count it and ask for theirs
    ctx.current = trial.number
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    try:
        sampled = sample(trial, ctx.params, ctx.base)
    except ValueError as err:   # Optuna: a key's distribution differs from the one earlier trials used
        raise InputError(f"study {ctx.study_name!r}: {err}. The search block changed in a way this study "
                         "cannot follow; start another study with --study NAME") from None
    overrides = [*ctx.overrides, *(f"{k}={as_override(v)}" for k, v in sampled.items())]
    trial.set_user_attr("overrides", overrides)
    try:
        cfg = load_config(ctx.ws, ctx.exp, overrides)
    except InputError as err:    # a combination the config refuses (e.g. d_model % heads): a failed trial
        trial.set_user_attr("error", str(err))
        return float("nan")
    trial_cfg = cfg.model_copy(update={"exp": f"{ctx.exp}-trial{trial.number}",
                                       "track": cfg.track.model_copy(update={"wandb": False})})
    trial_ws = _TrialWorkspace(ctx.ws.root, ctx.tune_dir)
    tracker = track.start(enabled=cfg.track.wandb, project=cfg.track.project or ctx.data.spec.name,
                          group=f"tune-{ctx.study_name}", name=f"{ctx.study_name}-trial{trial.number}",
                          config={"trial": trial.number, "params": sampled, **cfg.to_dict()},
                          run_dir=ctx.tune_dir, job_type="tune")
    reporter = _Reporter(trial, ctx.folds, ctx.per_fold, ctx.wilcoxon, tracker)
    token = None
    if cfg.is_torch:
        from competition.models.torch_common import EXTRA_CALLBACKS

        token = EXTRA_CALLBACKS.set((_epoch_callback(reporter),))
    try:
        train(trial_ws, trial_cfg, folds=ctx.folds, force=True, data=ctx.data, on_fold=reporter.fold)
        tracker.summary({"tune/value": reporter.value, "state": "complete"})
        return reporter.value
    except InputError as err:    # e.g. tfidf with neither word nor char n-grams: a failed trial
        trial.set_user_attr("error", str(err))
        return float("nan")
    finally:
        trial.set_user_attr("fold_scores", {str(k): v for k, v in reporter.scores.items()})
        if token is not None:
            EXTRA_CALLBACKS.reset(token)
        tracker.finish()
        if not ctx.keep:
            shutil.rmtree(trial_ws.run_dir(trial_cfg.exp), ignore_errors=True)


# -- the study -----------------------------------------------------------------------------

@dataclass
class TuneResult:
    """What a ``tune`` call did and where the study stands."""

    study: str
    storage: str                      # the URL, password hidden
    metric: str
    direction: str
    folds: list[int]
    total: int                        # finished trials the study is to hold
    ran: int = 0                      # trials this call ran
    states: dict[str, int] = field(default_factory=dict)
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    exported: Path | None = None


LIVE = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")


def _states(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "study"


def _check_study(study, *, exp: str, folds: list[int], metric: str, direction: str, space: dict) -> None:
    """A study resumed by another call must be tuning the same objective."""
    attrs = study.user_attrs
    if study.direction.name.lower() != direction:
        raise InputError(f"study {study.study_name!r} {study.direction.name.lower()}s its objective, but the "
                         f"metric {metric} is to {direction}; name a new study with --study")
    if not attrs.get("exp"):
        return
    same = {"exp": exp, "folds": folds, "metric": metric}
    for key, want in same.items():
        if attrs.get(key) != want:
            raise InputError(f"study {study.study_name!r} was tuned with {key} {attrs.get(key)!r}; this call has "
                             f"{want!r}, whose scores would not compare. Repeat {key} as it was, or start "
                             f"another study with --study NAME")
    if attrs.get("space") != json.loads(json.dumps(space)):
        warnings.warn(f"study {study.study_name!r}: the search block changed since the study began; "
                      "earlier trials stay in the study (start another one with --study NAME)", stacklevel=3)


def tune(ws: Workspace, exp: str, *, overrides: list[str] = (), trials: int | None = None, sampler: str = "tpe",
         pruner="median", folds: str | list[int] = "0", storage: str | None = None, study: str | None = None,
         seed: int | None = None, heartbeat: int = 60, export: bool = True, keep_trials: bool = False,
         on_trial: Callable | None = None) -> TuneResult:
    """Run trials on the study until it holds ``trials`` finished ones; export the best.

    Args:
        ws: the workspace.
        exp: the experiment id; its ``search:`` block is the search space.
        overrides: ``key=value`` applied to every trial (and to the exported experiment).
        trials: the study's total of finished (complete + pruned) trials. None: the total
            the study was last given, else 20 (grid: the grid's size).
        sampler: tpe | random | grid | cmaes. pruner: median | hyperband | wilcoxon | none,
            or an Optuna pruner.
        folds: the folds each trial trains (``"0"``, ``"0,1"``, ``"all"``).
        storage: an Optuna RDB URL (default: ``sqlite:///<workspace>/tuning.db``).
        study: the study name (default: the experiment id).
        seed: seeds the sampler (default: the experiment's seed); trial n samples with
            ``seed + n``, so a rerun repeats and parallel workers differ.
        heartbeat: seconds between a running trial's heartbeats; a trial silent for twice
            that is failed and retried.
        export: write the best trial as a new experiment file.
        keep_trials: keep each trial's artifacts under ``experiments/.tune/<study>/``.
        on_trial: called with each finished FrozenTrial (progress printing).
    """
    import optuna

    from competition import data as data_mod
    from competition import folds as folds_mod
    from competition.spec import load_spec

    optuna.logging.set_verbosity(optuna.logging.ERROR)   # progress is ours to print
    overrides = list(overrides)
    base = load_config(ws, exp, overrides)
    params = parse_space(base.search, ws.experiment_file(exp))
    check_space(ws, exp, params, overrides)
    spec = load_spec(ws.spec_file)
    data = data_mod.load(spec)
    n_splits = int(folds_mod.read_folds(ws, data)["fold"].max()) + 1
    try:
        chosen = parse_folds(folds if isinstance(folds, str) else ",".join(map(str, folds)), n_splits)
    except InputError as err:
        raise InputError(str(err).replace("--fold ", "--folds ", 1)) from None
    seed = base.seed if seed is None else seed
    pruner_obj = make_pruner(pruner, len(chosen))
    make_sampler(sampler, params, seed, warn=True)  # refuse a space the sampler can't search, now
    direction = metrics.get(spec.metric).direction
    url = storage_url(ws, storage)
    name = study or exp
    storage_obj = open_storage(url, heartbeat)
    lock = _AskLock(url, name)
    try:
        lock.acquire()       # one worker at a time creates the study and records what it tunes
        try:
            st = optuna.create_study(storage=storage_obj, study_name=name, direction=direction, pruner=pruner_obj,
                                     sampler=make_sampler(sampler, params, seed), load_if_exists=True)
            _check_study(st, exp=exp, folds=chosen, metric=spec.metric, direction=direction, space=base.search)
            total = trials or st.user_attrs.get("n_trials") or (
                grid_size(params) if sampler == "grid" else DEFAULT_TRIALS)
            if sampler == "grid" and total > grid_size(params):
                warnings.warn(f"--trials {total}: the grid has {grid_size(params)} points; stopping there",
                              stacklevel=2)
                total = grid_size(params)
            for key, value in {"folds": chosen, "metric": spec.metric, "n_trials": total, "space": base.search,
                               "exp": exp}.items():
                if st.user_attrs.get(key) != json.loads(json.dumps(value)):
                    st.set_user_attr(key, value)
        finally:
            lock.release()
        tune_dir = ws.experiments_dir / ".tune" / _safe(name)
        tune_dir.mkdir(parents=True, exist_ok=True)
        ctx = _Context(ws, exp, overrides, params, base.to_dict(), data, chosen,
                       _validations_per_fold(base, params), pruner == "wilcoxon", name, tune_dir, lock, keep_trials)
        result = TuneResult(name, masked(url), spec.metric, direction, chosen, total)
        callbacks = [lambda _study, frozen: on_trial(frozen)] if on_trial else []
        result.ran = _run(st, ctx, sampler, seed, total, callbacks)
    finally:
        lock.close()
    result.states = _states(st)
    best = _best(st)
    if best is not None:
        result.best_number, result.best_value = best.number, best.value
        result.best_params = _trial_params(best, params)
        # the last worker out exports: while others still run trials, the best may change
        if export and not result.states.get("RUNNING") and not result.states.get("WAITING"):
            result.exported = export_best(ws, exp, st, url)
    return result


def _run(st, ctx: _Context, sampler: str, seed: int, total: int, callbacks: list) -> int:
    """The worker loop: under the lock, count the live trials and ask for one more if needed."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials

    grid = make_sampler("grid", ctx.params, seed) if sampler == "grid" else None
    ran = failed_in_a_row = 0
    while True:
        ctx.lock.acquire()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(st)
                retry = RetryHeartbeatStaleTrialCallback()
            trials = st.get_trials(deepcopy=False)
            live = sum(t.state.name in LIVE for t in trials)
            waiting = any(t.state.name == "WAITING" for t in trials)
            if not waiting and (live >= total or (grid is not None and grid.is_exhausted(st))):
                return ran
            # trial n samples with seed + n: a rerun repeats the sequence, parallel workers differ
            st.sampler = grid or make_sampler(sampler, ctx.params, seed + len(trials))
            ctx.current = None
            try:
                st.optimize(lambda trial: _objective(trial, ctx), n_trials=1, callbacks=callbacks,
                            catch=(), gc_after_trial=ctx.per_fold > 0)   # torch: free the last model
            except KeyboardInterrupt:
                _requeue(st, ctx.current, retry)
                raise
        finally:
            ctx.lock.release()
        ran += 1
        last = st.trials[-1] if ctx.current is None else _trial_by_number(st, ctx.current)
        failed_in_a_row = failed_in_a_row + 1 if last is not None and last.state.name == "FAIL" else 0
        if failed_in_a_row >= 3:
            error = last.user_attrs.get("error", "see the trials with --show")
            raise InputError(f"3 trials in a row failed; the last one: {error}")


def _trial_by_number(st, number: int | None):
    return next((t for t in st.get_trials(deepcopy=False) if t.number == number), None)


def _requeue(st, number: int | None, retry) -> None:
    """Ctrl-C: the interrupted trial (now failed) runs again, same parameters, on the next call."""
    trial = _trial_by_number(st, number)
    if trial is not None and trial.state.name == "FAIL":
        retry(st, trial)


def _best(st):
    try:
        return st.best_trial
    except ValueError:   # no complete trial yet
        return None


def _trial_params(trial, params: list[Param]) -> dict[str, Any]:
    """A trial's parameters as config values (decoded from how Optuna stores them)."""
    by_key = {p.key: p for p in params}
    return {k: by_key[k].decode(v) if k in by_key else v for k, v in trial.params.items()}


# -- the best trial as an experiment file ----------------------------------------------------

def _next_id(ws: Workspace) -> str:
    numeric = [i for i in ws.experiment_ids() if i.isdigit()]
    width = max([3, *(len(i) for i in numeric)])
    return str(max([0, *(int(i) for i in numeric)]) + 1).zfill(width)


def _deep_merge(into: dict, new: dict) -> dict:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
    return into


def export_best(ws: Workspace, exp: str, st, url: str) -> Path | None:
    """Write the study's best trial as ``experiments/<next id>.yaml``; None without a complete trial.

    The new file is ``<exp>.yaml`` without its ``search:`` block, with the trial's overrides
    merged in (a family switch restarts the model block, as in the config layers) and a
    comment saying where it came from. ``tuned_on`` lists the folds the study scored (with
    those ``<exp>.yaml`` was itself tuned on): their OOF is no longer an unseen estimate. It is
    checked to load into exactly the trial's config. A best trial exported before is not
    written twice.
    """
    import yaml
    from filelock import FileLock
    from omegaconf import OmegaConf

    (ws.experiments_dir / ".tune").mkdir(parents=True, exist_ok=True)
    with FileLock(str(ws.experiments_dir / ".tune" / "export.lock")):
        best = _best(st)
        if best is None:
            return None
        overrides = best.user_attrs.get("overrides", [])
        done = st.user_attrs.get("exported", {})
        if str(best.number) in done and ws.experiment_file(done[str(best.number)]).is_file():
            return ws.experiment_file(done[str(best.number)])
        own = OmegaConf.to_container(OmegaConf.load(ws.experiment_file(exp)), resolve=False) or {}
        own.pop("search", None)
        nested = parse_overrides(overrides)
        family = (nested.get("model") or {}).get("family")
        if family and family != load_config(ws, exp).model.family:
            own["model"] = {}            # as load_config does: keys of the old family don't carry over
        merged = _deep_merge(own, nested)
        tuned = f"tuned: study {st.study_name}, trial {best.number}"
        merged["description"] = f"{own['description']} ({tuned})" if own.get("description") else tuned
        new_id = _next_id(ws)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        params = ", ".join(o for o in overrides) or "(none)"
        folds = st.user_attrs.get("folds")
        header = (f"# Tuned from experiments/{exp}.yaml: best trial of Optuna study {st.study_name!r}\n"
                  f"# (trial {best.number}, {st.user_attrs.get('metric', 'value')} = {best.value:.6g} "
                  f"on folds {folds}), written by `comp tune` on {now}.\n"
                  f"# Storage: {masked(url)}\n# Overrides: {params}\n")
        tuned_on = sorted({int(k) for k in [*(merged.pop("tuned_on", None) or []), *(folds or [])]})
        path = ws.experiment_file(new_id)
        with open(path, "x", encoding="utf-8") as fh:   # "x": never over another experiment
            fh.write(header + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True)
                     + "# the folds whose labels chose these settings: their CV is optimistic; `comp leaderboard`\n"
                     + "# also gives the CV of the other folds\n"
                     + yaml.safe_dump({"tuned_on": tuned_on}, default_flow_style=None))
        def strip(cfg: ExperimentConfig) -> dict:
            return {k: v for k, v in cfg.to_dict().items() if k not in ("exp", "search", "description", "tuned_on")}

        try:
            exported = load_config(ws, new_id)
            same = strip(exported) == strip(load_config(ws, exp, overrides)) and exported.tuned_on == tuned_on
        except BaseException:
            path.unlink()
            raise
        if not same:
            path.unlink()
            raise RuntimeError(f"{path}: the exported experiment does not load into trial {best.number}'s "
                               "config; it was removed")
        st.set_user_attr("exported", {**done, str(best.number): new_id})
    return path


# -- --show ----------------------------------------------------------------------------------

@dataclass
class StudySummary:
    study: str
    storage: str
    metric: str
    direction: str
    folds: list[int] | None
    total: int | None
    states: dict[str, int]
    best: list[dict[str, Any]]                     # number, value, state, params, seconds
    importances: dict[str, float] | None
    importance_note: str | None = None


def load_study(ws: Workspace, exp: str, storage: str | None = None, study: str | None = None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(ws, storage)
    storage_obj = open_storage(url)
    name = study or exp
    try:
        return optuna.load_study(study_name=name, storage=storage_obj), url
    except KeyError:
        names = optuna.get_all_study_names(storage_obj)
        raise InputError(f"no study {name!r} in {masked(url)} (studies there: {', '.join(names) or 'none'}). "
                         f"Start it with `comp tune exp={exp}`") from None


def summarize(ws: Workspace, exp: str, *, storage: str | None = None, study: str | None = None,
              top: int = 10) -> StudySummary:
    """The best trials, parameter importances (fANOVA) and the count of trials per state."""
    import optuna

    st, url = load_study(ws, exp, storage, study)
    complete = [t for t in st.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    reverse = st.direction.name == "MAXIMIZE"
    rows = [{"number": t.number, "value": t.value, "state": t.state.name.lower(), "params": t.params,
             "seconds": t.duration.total_seconds() if t.duration else None}
            for t in sorted(complete, key=lambda t: t.value, reverse=reverse)[:top]]
    importances, note = None, None
    if len(complete) < 3:
        note = f"parameter importances need 3 or more complete trials (the study has {len(complete)})"
    else:
        try:
            importances = optuna.importance.get_param_importances(st)
        except (RuntimeError, ValueError) as err:
            note = f"parameter importances unavailable: {err}"
    return StudySummary(st.study_name, masked(url), st.user_attrs.get("metric", "value"),
                        st.direction.name.lower(), st.user_attrs.get("folds"), st.user_attrs.get("n_trials"),
                        _states(st), rows, importances, note)
