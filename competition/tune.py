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
mean after each fold and, for the torch families, after each validation inside a fold
(:mod:`competition.tune_objective` runs a trial and says which step is which).

``--trials N`` is the study's total: N finished (complete + pruned) trials. Every worker
on the study stops there, however many run at once (the count and the ask for a new trial
happen under one lock, :class:`~competition.tune_storage.AskLock`), so running the command
again resumes a study and raising N extends it. A worker killed mid-trial stops sending
heartbeats; after the grace period the next worker marks its trial failed and runs it
again with the same parameters. What it writes::

    tuning.db                          the SQLite storage (default; --storage URL otherwise)
    experiments/.tune/<study>/         trial artifacts while a trial runs (removed after it),
                                       offline wandb runs of the trials
    experiments/043.yaml               the best trial as a new experiment (next free id), with
                                       ``tuned_on``: the folds the study scored, whose labels
                                       chose its settings (train records them as selected_on;
                                       written by :mod:`competition.tune_export`)
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from competition import data as data_mod
from competition import folds as folds_mod
from competition import metrics
from competition.config import load_config
from competition.errors import InputError
from competition.search import Param, check_space, grid_size, parse_space
from competition.spec import load_spec
from competition.train import parse_folds
from competition.tune_export import best_trial, export_best
from competition.tune_objective import TrialContext, objective, validations_per_fold
from competition.tune_storage import AskLock, masked, open_storage, storage_url
from competition.workspace import Workspace

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "wilcoxon", "none")
DEFAULT_TRIALS = 20


# -- samplers and pruners ------------------------------------------------------------------

def make_sampler(kind: str, params: list[Param], seed: int, warn: bool = False):
    """The Optuna sampler for ``--sampler``; refuses spaces it cannot search (``warn``: say what it
    does not search well)."""
    # optuna: only tuning needs it
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
    # optuna: only tuning needs it
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
         on_trial: Callable | None = None, data=None) -> TuneResult:
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
        data: a loaded dataset (loaded from the spec when None; a Ray tuning worker gets it so).
    """
    # optuna: only tuning needs it
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)   # progress is ours to print
    overrides = list(overrides)
    base = load_config(ws, exp, overrides)
    params = parse_space(base.search, ws.experiment_file(exp))
    check_space(ws, exp, params, overrides, config=base)
    spec = load_spec(ws.spec_file) if data is None else data.spec
    data = data_mod.load(spec) if data is None else data
    n_splits = int(folds_mod.read_folds(ws, data)["fold"].max()) + 1
    chosen = parse_folds(folds if isinstance(folds, str) else ",".join(map(str, folds)), n_splits)
    seed = base.seed if seed is None else seed
    pruner_obj = make_pruner(pruner, len(chosen))
    make_sampler(sampler, params, seed, warn=True)  # refuse a space the sampler can't search, now
    direction = metrics.get(spec.metric).direction
    url = storage_url(ws, storage)
    name = study or exp
    storage_obj = open_storage(url, heartbeat)
    lock = AskLock(url, name)
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
        ctx = TrialContext(ws, exp, overrides, params, base.to_dict(), data, chosen,
                       validations_per_fold(base, params), pruner == "wilcoxon", name, tune_dir, lock, keep_trials)
        result = TuneResult(name, masked(url), spec.metric, direction, chosen, total)
        callbacks = [lambda _study, frozen: on_trial(frozen)] if on_trial else []
        result.ran = _run(st, ctx, sampler, seed, total, callbacks)
    finally:
        lock.close()
    result.states = _states(st)
    best = best_trial(st)
    if best is not None:
        result.best_number, result.best_value = best.number, best.value
        result.best_params = _trial_params(best, params)
        # the last worker out exports: while others still run trials, the best may change
        if export and not result.states.get("RUNNING") and not result.states.get("WAITING"):
            result.exported = export_best(ws, exp, st, url)
    return result


def _run(st, ctx: TrialContext, sampler: str, seed: int, total: int, callbacks: list) -> int:
    """The worker loop: under the lock, count the live trials and ask for one more if needed."""
    # optuna: only tuning needs it
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
                st.optimize(lambda trial: objective(trial, ctx), n_trials=1, callbacks=callbacks,
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


def _trial_params(trial, params: list[Param]) -> dict[str, Any]:
    """A trial's parameters as config values (decoded from how Optuna stores them)."""
    by_key = {p.key: p for p in params}
    return {k: by_key[k].decode(v) if k in by_key else v for k, v in trial.params.items()}


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
    # optuna: only tuning needs it
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
    # optuna: only tuning needs it
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
