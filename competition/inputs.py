"""The inputs of a stack or blend: choosing runs, loading and aligning their predictions.

:func:`load_inputs` picks the runs -- the named ones, refused when made on other folds or data,
or by default every complete experiment on the current folds and data (:func:`choose_runs`) --
and reads their ``oof.parquet`` / ``test.parquet`` into arrays in the train / test file order,
keeping the hash of the bytes read. :func:`drift_warnings` flags an input whose OOF and test
predictions are distributed differently (a target leak in its OOF, or a train/test shift).

Also here, shared by every stage that writes a combined run: its name (:func:`claim_name`),
the best input and the gain over it (:func:`best_of`, :func:`gain`, :func:`versus_best`), and
row features (:func:`feature_matrix`: derived text lengths or raw columns).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from competition import artifacts, bootstrap, metrics, predictions, runs, thresholds
from competition import data as data_mod
from competition import folds as folds_mod
from competition.errors import InputError
from competition.spec import load_spec
from competition.status import Statuses
from competition.tables import positions, strings
from competition.workspace import MANIFEST, MAX_NAME, OOF, TEST, Workspace

COMBINED_KINDS = ("stack", "blend")   # left out of the default inputs: name them to use them
DERIVED = ("text_len", "n_words")     # features computed from the spec's text columns
DRIFT_KS = 0.25                       # OOF-vs-test KS statistic above which an input is suspicious


# -- the runs and their predictions -----------------------------------------------------------

@dataclass
class Inputs:
    """Chosen runs' predictions aligned to the train / test file order.

    ``oof`` is (n_train, m, k) float32 and ``test`` (n_test, m, k) float32 or None, for m runs
    and k = ``len(spec.pred_columns)``; token tasks: (n, m) cells of (units, k) float32 arrays.
    ``fold`` is each train row's fold number.
    """

    spec: Any
    data: Any
    fold: np.ndarray
    hashes: dict[str, str | None]
    runs: list[runs.Run]
    oof: np.ndarray
    test: np.ndarray | None
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.runs]

    versions: dict[str, str] = field(default_factory=dict)   # each input's oof.parquet hash, of the bytes read:
    #                                                           kept in the manifest, the leaderboard names
    #                                                           inputs retrained since

    def scores(self) -> dict[str, float]:
        """Each input's CV (:meth:`score`)."""
        return {run.name: self.score(j) for j, run in enumerate(self.runs)}

    def score(self, j: int) -> float:
        """Input ``j``'s CV, recomputed from its OOF as :func:`thresholds.cv` scores a run (nested
        thresholds), so a run written before that rule compares on the same terms."""
        spec = self.spec
        return float(thresholds.cv(spec.metric, self.data.y, self.input_oof(j), spec.task, self.fold).score)

    def input_oof(self, j: int):
        """Input ``j``'s OOF predictions in the prediction format (:mod:`competition.predictions`)."""
        return predictions.column(self.oof, j)

    def input_test(self, j: int):
        return predictions.column(self.test, j)

    def mean_oof(self):
        """The plain mean of the inputs' OOF predictions."""
        return predictions.mean([self.input_oof(j) for j in range(len(self.runs))])


def _fold_vector(ws: Workspace, data) -> np.ndarray:
    """Each train row's fold, in train order (read_folds checks hashes and ids)."""
    return folds_mod.read_folds(ws, data)["fold"].to_numpy(dtype=np.int64)


def choose_runs(ws: Workspace, names: list[str] | None, judge: Statuses, exclude: str | None = None
                ) -> tuple[list[runs.Run], list[str]]:
    """The named runs (refused unless complete by :mod:`competition.status`: the leaderboard's verdict), or by
    default every complete experiment. Returns the runs and notes on what was left out."""
    notes: list[str] = []
    if names:
        chosen = [runs.load_run(ws, n) for n in dict.fromkeys(names)]
        for run in chosen:
            verdict = judge.of(run)
            if verdict.state == "damaged":       # the same words as submit and predict
                raise InputError(verdict.refusal())
            if not verdict.complete:
                said = "; ".join(r.removeprefix(f"{verdict.where}: ") for r in verdict.reasons)
                raise InputError(f"{verdict.where}: input {run.name} is {verdict.state}: {said}. "
                                 f"{verdict.fix}, or leave it out.")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            others = [n for n in ws.run_ids() if n not in names and n != exclude and _complete(ws, n)]
            notes.append(f"{', '.join(twice)} named twice counts once"
                         + (f" (other complete runs here: {', '.join(others)})" if others else ""))
    else:
        chosen = []
        for run in runs.all_runs(ws):
            if run.name == exclude:
                continue
            why = _left_out(run, judge)
            if why:
                notes.append(f"left out {run.name}: {why}")
            else:
                chosen.append(run)
        if not chosen:
            raise InputError(f"{ws.experiments_dir}: no complete experiment on the current folds and data "
                             "to combine. Train some first: `comp train exp=<id> --fold all`.")
    if exclude in [r.name for r in chosen]:
        raise InputError(f"run {exclude!r} cannot be its own input; pick another {{name}}", name="name")
    return chosen, notes


def _complete(ws: Workspace, name: str) -> bool:
    try:
        return runs.load_run(ws, name, complete=False).complete
    except InputError:
        return False      # a damaged run is reported where it is read


def _left_out(run: runs.Run, judge: Statuses) -> str | None:
    """Why the default selection skips a run, or None."""
    if not run.complete:
        return "not complete"
    if run.manifest.get("kind") in COMBINED_KINDS:
        return f"a {run.manifest.get('kind')} (name it to use it)"
    verdict = judge.of(run)
    if not verdict.complete:
        return f"{verdict.state}: {verdict.reasons[0]}"
    return f"{run.trivial} (name it to use it)" if run.trivial else None


def _aligned(frame: pd.DataFrame, ids: pd.Series, what: str) -> np.ndarray | None:
    """Row positions putting ``frame`` in ``ids`` order (None when it already is)."""
    mine = frame["id"]
    pos = positions(ids, mine)
    if len(mine) == len(ids) and (pos == np.arange(len(pos))).all():
        return None
    if len(mine) != len(ids) or (pos < 0).any():
        raise InputError(f"{what}: its ids do not match the current data ({len(mine)} rows, "
                         f"{int((pos < 0).sum())} current id(s) missing). Retrain it: "
                         "`comp train exp=<id> --force`.")
    return pos


def load_inputs(ws: Workspace, names: list[str] | None = None, *, data=None, exclude: str | None = None
                ) -> Inputs:
    """Load spec, data, folds and the chosen runs' OOF/test predictions as float32 arrays."""
    spec = load_spec(ws.spec_file) if data is None else data.spec
    data = data if data is not None else data_mod.load(spec)
    fold = _fold_vector(ws, data)
    hashes = runs.input_hashes(ws, data)
    chosen, notes = choose_runs(ws, names, Statuses(ws, data, spec.metric), exclude)
    cols = spec.pred_columns
    n, m, k = len(data.train), len(chosen), len(cols)
    # per-unit predictions (token tasks): (rows, inputs) cells of (units, k) arrays
    shape, dtype = ((m,), object) if spec.per_unit else ((m, k), np.float32)
    oof = np.empty((n, *shape), dtype=dtype)
    test = None if data.test is None else np.empty((len(data.test), *shape), dtype=dtype)
    train_ids = data.train[spec.id_column]
    versions: dict[str, str] = {}
    for j, name in enumerate(run.name for run in chosen):
        # the OOF and test predictions of one version: a retrain running meanwhile could swap one of them
        wants_test = test is not None and (ws.run_dir(name) / TEST).is_file()
        run, frame, test_frame, versions[name] = runs.read_version(ws, name, ["id", *cols], test=wants_test)
        chosen[j] = run
        if run.pred_columns != cols:
            raise InputError(f"{run.dir}: run {run.name} predicts {run.pred_columns}, this competition "
                             f"needs {cols}; it belongs to another competition or task.")
        pos = _aligned(frame, train_ids, str(run.dir / OOF))
        values = _values(frame, cols)
        oof[:, j] = values if pos is None else values[pos]
        if test is None:
            continue
        moved = runs.changes(run.manifest, {"test_hash": hashes["test_hash"]})
        if moved:
            raise InputError(f"{run.dir}: run {run.name} predicted another test file (test_hash "
                             f"{moved[0].then} != current {moved[0].now}). "
                             f"Retrain it: `comp train exp={run.name} --force`, or leave it out.")
        if test_frame is None:
            raise InputError(f"{run.dir / TEST}: run {run.name} has no test predictions; retrain it with the "
                             "test set.")
        pos = _aligned(test_frame, data.test[spec.id_column], str(run.dir / TEST))
        values = _values(test_frame, cols)
        test[:, j] = values if pos is None else values[pos]
    inputs = Inputs(spec, data, fold, hashes, chosen, oof, test, notes, versions)
    inputs.notes += drift_warnings(inputs)
    return inputs


def _values(frame: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """A run's prediction columns as float32: a matrix, or per-unit arrays (token tasks)."""
    values = predictions.matrix(frame, cols)
    if predictions.is_ragged(values):
        return predictions.rows([v.astype(np.float32) for v in values])
    return values.astype(np.float32)


def drift_warnings(inputs: Inputs, limit: float = DRIFT_KS, sample: int = 20_000, seed: int = 0) -> list[str]:
    """Inputs whose OOF and test predictions are differently distributed (max KS over columns).

    An honest model predicts train and test rows alike; a target leak in the OOF, or a shift
    between train and test, shows up here. A warning, not an error: only the user can tell which.
    """
    if inputs.test is None:
        return []
    # scipy (~1 s): loaded where used
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(seed)
    oof, test = inputs.oof, inputs.test
    if inputs.spec.per_unit:     # units as rows: (units, inputs, k)
        oof, test = (np.stack([predictions.flat(p[:, j]) for j in range(p.shape[1])], axis=1) for p in (oof, test))
    a = rng.choice(len(oof), min(sample, len(oof)), replace=False)
    b = rng.choice(len(test), min(sample, len(test)), replace=False)
    out = []
    for j, name in enumerate(inputs.names):
        ks = max(ks_2samp(oof[a, j, c], test[b, j, c]).statistic for c in range(oof.shape[2]))
        if ks > limit:
            out.append(f"{name}: its OOF and test predictions are distributed differently (KS {ks:.2f} > "
                       f"{limit}): a target leak in its OOF or a train/test shift; its CV, and that of "
                       "anything built on it, may not hold on the test set")
    return out


def next_name(ws: Workspace, prefix: str) -> str:
    """First free ``<prefix>NN`` among run folders and experiment files (``s01``, ``s02``, ...)."""
    taken = set(ws.experiment_ids()) | ({p.name for p in ws.experiments_dir.iterdir()}
                                        if ws.experiments_dir.is_dir() else set())
    return next(f"{prefix}{i:02d}" for i in range(1, 10_000) if f"{prefix}{i:02d}" not in taken)


def check_name(name: str | None) -> None:
    """Refuse an output run name that is not a plain folder name (checked before any work is done)."""
    if name is not None and (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or ".." in name
                             or len(name) > MAX_NAME):
        raise InputError(f"{{name}} {name[:40]!r}: use letters, digits, '_', '.', '-' (it names a folder), at most "
                         f"{MAX_NAME} characters", name="name")


def claim_name(ws: Workspace, name: str | None, prefix: str, kind: str, force: bool) -> str:
    """The output run's name; refuses to overwrite another run unless ``force`` and of the same kind."""
    if name is None:
        return next_name(ws, prefix)
    check_name(name)
    manifest = ws.run_dir(name) / MANIFEST
    if ws.experiment_file(name).is_file():
        raise InputError(f"{{name}} {name!r}: {ws.experiment_file(name)} is an experiment; pick another name",
                         name="name")
    if manifest.is_file():
        old = artifacts.read_json(manifest).get("kind")
        if not force or old != kind:
            raise InputError(f"{ws.run_dir(name)} already holds a run ({old}). Pick another {{name}}, "
                             f"or {{force}} to replace it{'' if old == kind else ' (only a ' + kind + ')'}.",
                             name="name", force="force=True")
    if ws.run_dir(name).exists():
        shutil.rmtree(ws.run_dir(name))
    return name


def twin_of(ws: Workspace, kind: str, recipe: dict, exclude: str | None = None) -> str | None:
    """An existing run of ``kind`` whose manifest records this ``recipe`` (every key equal): fitting it
    again would write a copy that doubles on the leaderboard and in the report."""
    for name in ws.run_ids():
        if name == exclude or not (ws.run_dir(name) / MANIFEST).is_file():
            continue
        try:
            manifest = artifacts.read_json(ws.run_dir(name) / MANIFEST)
        except InputError:
            continue                  # a damaged run is reported where it is read, not here
        if manifest.get("kind") == kind and "holdout" not in manifest and all(
                manifest.get(key) == value for key, value in recipe.items()):
            return name
    return None


def best_of(scores: dict[str, float], metric: str) -> tuple[str, float]:
    """The best (name, score) under the metric's direction.

    >>> best_of({"a": 0.50, "b": 0.45}, "rmse")
    ('b', 0.45)
    """
    best = None
    for name, score in scores.items():
        if best is None or metrics.is_better(metric, score, best[1]):
            best = (name, score)
    return best


def versus_best(src: Inputs, oof: np.ndarray, best: str):
    """A combined run's OOF ``oof`` against its best input's, on the same rows: the difference
    in CV with its 95% paired-bootstrap interval (:func:`bootstrap.compare`)."""
    spec, y = src.spec, src.data.y
    j = src.names.index(best)
    mine = oof if predictions.is_ragged(oof) else np.asarray(oof, dtype=float)
    mine = thresholds.decisions(spec.metric, y, mine, spec.task, src.fold)[0]
    theirs = thresholds.decisions(spec.metric, y, src.input_oof(j), spec.task, src.fold)[0]
    return bootstrap.compare(spec.metric, y, mine, theirs, spec.task)


def require_two(src: Inputs, what: str) -> None:
    """A stack or blend of a single run is that run again: refused, saying what to do."""
    if len(src.runs) < 2:
        left = "; ".join(src.notes) or "no other run on the current folds and data"
        raise InputError(f"a {what} needs at least two runs, got {src.names}; {left}. "
                         f"Train another experiment, or name two or more with {{inputs}}; to submit "
                         f"{src.names[0]} as it is: `comp submit {src.names[0]}`.", inputs="inputs=[...]")


def gain(metric: str, score: float, reference: float) -> float:
    """How much better ``score`` is than ``reference`` (positive = better, whatever the direction).

    >>> round(gain("rmse", 0.45, 0.50), 4), round(gain("roc_auc", 0.80, 0.85), 4)
    (0.05, -0.05)
    """
    return (score - reference) if metrics.greater_is_better(metric) else (reference - score)


# -- row features (a stack's features, a blend's gate) ---------------------------------------

def feature_matrix(frame: pd.DataFrame, spec, names: list[str], categories: dict | None = None
                   ) -> tuple[np.ndarray, list[int], dict[str, list]]:
    """Row features as float32 (n, f): derived ones (``text_len``, ``n_words``) or raw columns.

    Numeric columns are cast to float; text/categorical ones become category codes (NaN for
    missing or unseen), using ``categories`` learnt on train. Returns the matrix, the indices of
    categorical columns and the categories.
    """
    categories = {} if categories is None else categories
    out, cat_idx = np.empty((len(frame), len(names)), dtype=np.float32), []
    for i, name in enumerate(names):
        if name in DERIVED:
            if not spec.text:
                raise InputError(f"feature {name!r} needs text columns: set `text:` in competition.yaml")
            texts = [strings(frame[c]) for c in spec.text]
            count = (lambda s: s.str.len()) if name == "text_len" else (lambda s: s.str.count(r"\S+"))
            out[:, i] = sum(count(s).to_numpy(dtype=np.float32) for s in texts)
        elif name not in frame.columns or name in (spec.id_column, *spec.targets):
            valid = [c for c in frame.columns if c not in (spec.id_column, *spec.targets)]
            raise InputError(f"{{features}} {name!r}: not a feature. Valid: {', '.join([*DERIVED, *valid])} "
                             "(targets and the id are never features).", features="features")
        elif pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name]):
            out[:, i] = frame[name].to_numpy(dtype=np.float32, na_value=np.nan)
        else:  # pandas 3 strings: LightGBM takes them as category codes
            values = strings(frame[name], missing="\0")
            known = categories.setdefault(name, sorted(set(values.unique()) - {"\0"}))
            codes = pd.Categorical(values, categories=known).codes.astype(np.float32)
            codes[codes < 0] = np.nan
            out[:, i], cat_idx = codes, [*cat_idx, i]
    return out, cat_idx, categories
