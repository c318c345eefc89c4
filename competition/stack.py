"""The stack stage: a meta-model over earlier runs' out-of-fold predictions, fit on the same folds.

``comp stack`` calls :func:`stack`. What it writes (a stack is a run like any other, so it can
be blended, stacked again, leaderboarded and submitted)::

    experiments/s01/
        manifest.json      kind stack, family lgbm-stack, inputs and their OOF hashes, features, meta params,
                           hashes, warnings
        metrics.json       the stack's own CV: score per fold, OOF score, threshold
        oof.parquet        id, fold, prediction column(s); fold k predicted by the meta-model fit on the others
        test.parquet       id, prediction column(s) = mean of the fold meta-models, <col>__fold<k>
        importance.json    feature -> share of importance (gain for lgbm, |coef| for linear metas), per fold
        fold0/meta/        fold 0's meta-model: meta.json (the recipe of its level-2 matrix, see
                           :func:`replay`, and its heads) + LightGBM text / skops model files

Why its CV is honest: the level-2 matrix holds OOF predictions only, and the meta-model for fold k
is fit on the other folds' rows of that matrix -- the folds every input was trained on -- so no
row's own label reaches the model that predicts it. LightGBM's number of rounds is chosen by early
stopping on an inner 10% of the *training* folds, never on fold k.

What it cannot see: an input whose OOF predictions leaked the target. Its OOF looks excellent and
the stack trusts it, inflating the stack's CV exactly as much as the input's. The leak is absent
at test time, though, so such an input's test predictions look unlike its OOF predictions;
:func:`drift_warnings` compares the two distributions (KS statistic) and warns, in the result,
the manifest and the CLI output.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition import artifacts, metrics, runs
from competition.errors import InputError
from competition.workspace import Workspace

COMBINED_KINDS = ("stack", "blend")   # left out of the default inputs: name them to use them
DERIVED = ("text_len", "n_words")     # features computed from the spec's text columns
DRIFT_KS = 0.25                       # OOF-vs-test KS statistic above which an input is suspicious
LGBM_DEFAULTS: dict[str, Any] = {
    # few shallow trees on a few strong columns: a meta-model should combine, not memorise
    "learning_rate": 0.05, "num_leaves": 7, "max_depth": 3, "min_child_samples": 100,
    "lambda_l2": 10.0, "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1,
    "num_boost_round": 1000, "early_stopping_rounds": 50, "inner_valid": 0.1,
    # one thread: on a busy 2-core machine two OpenMP threads ran 3.6x *slower* per round
    # (spin-waiting on each other); give params={"num_threads": N} on a dedicated machine
    "num_threads": 1,
}
LINEAR_DEFAULTS = {"logistic": {"C": 0.1, "max_iter": 1000}, "ridge": {"alpha": 10.0}}
META = "meta"


# -- the level-2 inputs (shared with blend) --------------------------------------------------

@dataclass
class Inputs:
    """Chosen runs' predictions aligned to the train / test file order.

    ``oof`` is (n_train, m, k) float32 and ``test`` (n_test, m, k) float32 or None, for m runs
    and k = ``len(spec.pred_columns)``; ``fold`` is each train row's fold number.
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
        """Each input's CV, recomputed from its OOF as :func:`metrics.cv` scores a run (nested
        thresholds), so a run written before that rule compares on the same terms."""
        spec = self.spec
        return {run.name: float(metrics.cv(spec.metric, self.data.y, self.oof[:, j].astype(float), spec.task,
                                           self.fold).score)
                for j, run in enumerate(self.runs)}


def _fold_vector(ws: Workspace, data) -> np.ndarray:
    """Each train row's fold, in train order (read_folds checks hashes and ids)."""
    from competition import folds as folds_mod

    return folds_mod.read_folds(ws, data)["fold"].to_numpy(dtype=np.int64)


def choose_runs(ws: Workspace, names: list[str] | None, hashes: dict, exclude: str | None = None
                ) -> tuple[list[runs.Run], list[str]]:
    """The named runs (refused when made on other folds / data), or by default every complete
    experiment on the current folds and data. Returns the runs and notes on what was left out."""
    notes: list[str] = []
    if names:
        chosen = [runs.load_run(ws, n) for n in dict.fromkeys(names)]
        runs.check_compatible(chosen, hashes["folds_hash"], hashes["data_hash"])
    else:
        chosen = []
        for run in runs.all_runs(ws):
            if run.name == exclude:
                continue
            why = _left_out(run, hashes)
            if why:
                notes.append(f"left out {run.name}: {why}")
            else:
                chosen.append(run)
        if not chosen:
            raise InputError(f"{ws.experiments_dir}: no complete experiment on the current folds and data "
                             "to combine. Train some first: `comp train exp=<id> --fold all`.")
    if exclude in [r.name for r in chosen]:
        raise InputError(f"run {exclude!r} cannot be its own input; pick another --name")
    return chosen, notes


def _left_out(run: runs.Run, hashes: dict) -> str | None:
    """Why the default selection skips a run, or None."""
    if not run.complete:
        return "not complete"
    if run.manifest.get("kind") in COMBINED_KINDS:
        return f"a {run.manifest.get('kind')} (name it to use it)"
    stale = [what for key, what in (("folds_hash", "folds"), ("data_hash", "train data"),
                                    ("test_hash", "test data")) if run.manifest.get(key) != hashes[key]]
    if stale:
        return f"made on other {' and '.join(stale)}"
    return f"{run.trivial} (name it to use it)" if run.trivial else None


def _aligned(frame: pd.DataFrame, ids: pd.Series, what: str) -> np.ndarray | None:
    """Row positions putting ``frame`` in ``ids`` order (None when it already is)."""
    mine = frame["id"]
    if len(mine) == len(ids) and (mine.to_numpy() == ids.to_numpy()).all():
        return None
    pos = pd.Index(mine.astype(str)).get_indexer(ids.astype(str))
    if len(mine) != len(ids) or (pos < 0).any():
        raise InputError(f"{what}: its ids do not match the current data ({len(mine)} rows, "
                         f"{int((pos < 0).sum())} current id(s) missing). Retrain it: "
                         "`comp train exp=<id> --force`.")
    return pos


def load_inputs(ws: Workspace, names: list[str] | None = None, *, data=None, exclude: str | None = None
                ) -> Inputs:
    """Load spec, data, folds and the chosen runs' OOF/test predictions as float32 arrays."""
    from competition import data as data_mod
    from competition.spec import load_spec

    spec = load_spec(ws.spec_file) if data is None else data.spec
    data = data if data is not None else data_mod.load(spec)
    fold = _fold_vector(ws, data)
    hashes = {"folds_hash": artifacts.file_hash(ws.folds_file), "data_hash": data.train_hash,
              "test_hash": data.test_hash}
    chosen, notes = choose_runs(ws, names, hashes, exclude)
    cols = spec.pred_columns
    n, m, k = len(data.train), len(chosen), len(cols)
    oof = np.empty((n, m, k), dtype=np.float32)
    test = None if data.test is None else np.empty((len(data.test), m, k), dtype=np.float32)
    train_ids = data.train[spec.id_column]
    versions: dict[str, str] = {}
    for j, run in enumerate(chosen):
        if run.pred_columns != cols:
            raise InputError(f"{run.dir}: run {run.name} predicts {run.pred_columns}, this competition "
                             f"needs {cols}; it belongs to another competition or task.")
        remake = runs.remake_command(run.name, run.manifest)
        frame, versions[run.name] = runs.read_hashed(run.dir / "oof.parquet", remake, ["id", *cols])
        pos = _aligned(frame, train_ids, f"{run.dir / 'oof.parquet'}")
        values = frame[cols].to_numpy(dtype=np.float32)
        oof[:, j] = values if pos is None else values[pos]
        if test is None:
            continue
        if run.manifest.get("test_hash") != hashes["test_hash"]:
            raise InputError(f"{run.dir}: run {run.name} predicted another test file (test_hash "
                             f"{run.manifest.get('test_hash')} != current {hashes['test_hash']}). "
                             f"Retrain it: `comp train exp={run.name} --force`, or leave it out.")
        path = run.dir / "test.parquet"
        if not path.is_file():
            raise InputError(f"{path}: run {run.name} has no test predictions; retrain it with the test set.")
        frame = runs.read_predictions(path, remake, ["id", *cols])
        pos = _aligned(frame, data.test[spec.id_column], str(path))
        values = frame[cols].to_numpy(dtype=np.float32)
        test[:, j] = values if pos is None else values[pos]
    inputs = Inputs(spec, data, fold, hashes, chosen, oof, test, notes, versions)
    inputs.notes += drift_warnings(inputs)
    return inputs


def drift_warnings(inputs: Inputs, limit: float = DRIFT_KS, sample: int = 20_000, seed: int = 0) -> list[str]:
    """Inputs whose OOF and test predictions are differently distributed (max KS over columns).

    An honest model predicts train and test rows alike; a target leak in the OOF, or a shift
    between train and test, shows up here. A warning, not an error: only the user can tell which.
    """
    if inputs.test is None:
        return []
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(seed)
    a = rng.choice(len(inputs.oof), min(sample, len(inputs.oof)), replace=False)
    b = rng.choice(len(inputs.test), min(sample, len(inputs.test)), replace=False)
    out = []
    for j, name in enumerate(inputs.names):
        ks = max(ks_2samp(inputs.oof[a, j, c], inputs.test[b, j, c]).statistic for c in range(inputs.oof.shape[2]))
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


def claim_name(ws: Workspace, name: str | None, prefix: str, kind: str, force: bool) -> str:
    """The output run's name; refuses to overwrite another run unless ``force`` and of the same kind."""
    if name is None:
        return next_name(ws, prefix)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise InputError(f"--name {name!r}: use letters, digits, '_', '.', '-' (it names a folder)")
    manifest = ws.run_dir(name) / "manifest.json"
    if ws.experiment_file(name).is_file():
        raise InputError(f"--name {name!r}: {ws.experiment_file(name)} is an experiment; pick another name")
    if manifest.is_file():
        old = artifacts.read_json(manifest).get("kind")
        if not force or old != kind:
            raise InputError(f"{ws.run_dir(name)} already holds a run ({old}). Pick another --name, "
                             f"or --force to replace it{'' if old == kind else ' (only a ' + kind + ')'}.")
    if ws.run_dir(name).exists():
        shutil.rmtree(ws.run_dir(name))
    return name


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
    from competition import bootstrap

    spec, y = src.spec, src.data.y
    j = src.names.index(best)
    mine = metrics.decisions(spec.metric, y, np.asarray(oof, dtype=float), spec.task, src.fold)[0]
    theirs = metrics.decisions(spec.metric, y, src.oof[:, j].astype(float), spec.task, src.fold)[0]
    return bootstrap.compare(spec.metric, y, mine, theirs, spec.task)


def require_two(src: Inputs, what: str) -> None:
    """A stack or blend of a single run is that run again: refused, saying what to do."""
    if len(src.runs) < 2:
        left = "; ".join(src.notes) or "no other run on the current folds and data"
        raise InputError(f"a {what} needs at least two runs, got {src.names}; {left}. "
                         f"Train another experiment, or name two or more with --exp; to submit "
                         f"{src.names[0]} as it is: `comp submit {src.names[0]}`.")


def gain(metric: str, score: float, reference: float) -> float:
    """How much better ``score`` is than ``reference`` (positive = better, whatever the direction).

    >>> round(gain("rmse", 0.45, 0.50), 4), round(gain("roc_auc", 0.80, 0.85), 4)
    (0.05, -0.05)
    """
    return (score - reference) if metrics.greater_is_better(metric) else (reference - score)


# -- level-2 features -------------------------------------------------------------------------

def feature_matrix(frame: pd.DataFrame, spec, names: list[str], categories: dict | None = None
                   ) -> tuple[np.ndarray, list[int], dict[str, list]]:
    """Row features as float32 (n, f): derived ones (``text_len``, ``n_words``) or raw columns.

    Numeric columns are cast to float; text/categorical ones become category codes (NaN for
    missing or unseen), using ``categories`` learnt on train. Returns the matrix, the indices of
    categorical columns and the categories.
    """
    from competition.data import strings

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
            raise InputError(f"--with-features {name!r}: not a feature. Valid: {', '.join([*DERIVED, *valid])} "
                             "(targets and the id are never features).")
        elif pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name]):
            out[:, i] = frame[name].to_numpy(dtype=np.float32, na_value=np.nan)
        else:  # pandas 3 strings: LightGBM takes them as category codes
            values = strings(frame[name], missing="\0")
            known = categories.setdefault(name, sorted(set(values.unique()) - {"\0"}))
            codes = pd.Categorical(values, categories=known).codes.astype(np.float32)
            codes[codes < 0] = np.nan
            out[:, i], cat_idx = codes, [*cat_idx, i]
    return out, cat_idx, categories


def level2(preds: np.ndarray, rows: np.ndarray | None, recipe: dict) -> tuple[np.ndarray, list[int]]:
    """The meta-model's matrix: (n, m*k) input predictions (logits for linear metas), then features.

    >>> p = np.array([[[0.5], [0.9]]], dtype=np.float32)       # 1 row, 2 inputs, 1 column
    >>> level2(p, None, {"logit": True})[0].round(3)
    array([[0.   , 2.197]], dtype=float32)
    >>> level2(p, np.array([[7.0]], dtype=np.float32), {"logit": False, "cat_idx": [0]})
    (array([[0.5, 0.9, 7. ]], dtype=float32), [2])
    """
    n, m, k = preds.shape
    x = preds.reshape(n, m * k)
    if recipe["logit"]:
        p = np.clip(x, 1e-6, 1 - 1e-6)
        x = np.log(p / (1 - p)).astype(np.float32)
    if rows is None:
        return x, []
    return np.hstack([x, rows]), [m * k + i for i in recipe["cat_idx"]]


# -- meta-models ------------------------------------------------------------------------------

def _heads(task: str, y: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(objective, target) of each meta-model head: one for binary/multiclass, one per column else."""
    if task in ("binary", "multiclass"):
        return [(task, y)]
    y2 = y.reshape(len(y), -1)
    return [("binary" if task == "multilabel" else "regression", y2[:, j]) for j in range(y2.shape[1])]


def _fit_lgbm(x, y, objective, n_class, cat_idx, params, seed, metric):
    import lightgbm as lgb

    p = {**LGBM_DEFAULTS, **params}
    rounds, patience, inner = p.pop("num_boost_round"), p.pop("early_stopping_rounds"), p.pop("inner_valid")
    p.update({"objective": objective, "seed": seed, "verbose": -1})
    if objective == "multiclass":
        p["num_class"] = n_class
    if objective == "regression" and metric == "mae":
        p["objective"] = "regression_l1"
    # early stopping on an inner slice of the training folds: the validation fold stays unseen
    order = np.random.default_rng(seed).permutation(len(y))
    stop, fit = order[: max(1, int(len(y) * inner))], order[max(1, int(len(y) * inner)):]
    p["min_child_samples"] = min(p["min_child_samples"], max(5, len(fit) // 20))
    cats = cat_idx or "auto"
    train_set = lgb.Dataset(x[fit], y[fit], categorical_feature=cats, free_raw_data=True)
    valid_set = lgb.Dataset(x[stop], y[stop], categorical_feature=cats, reference=train_set)
    return lgb.train(p, train_set, rounds, valid_sets=[valid_set],
                     callbacks=[lgb.early_stopping(patience, verbose=False)])


def _fit_linear(x, y, objective, n_class, meta, params):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kwargs = {**LINEAR_DEFAULTS[meta], **params}
    try:
        model = LogisticRegression(**kwargs) if meta == "logistic" else Ridge(**kwargs)
    except TypeError as err:
        raise InputError(f"meta {meta}: bad params {params}: {err}") from None
    target = y
    if meta == "ridge" and objective == "multiclass":  # linear regression onto the one-hot classes
        target = np.eye(n_class, dtype=np.float32)[y]
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), model
                         ).fit(x, target)


def _predict_head(model, x, objective, n_class) -> np.ndarray:
    """(n, n_class) for multiclass, else (n, 1)."""
    if hasattr(model, "best_iteration"):  # a LightGBM booster
        out = model.predict(x, num_iteration=model.best_iteration or None)
    elif objective == "regression":
        out = model.predict(x)
    elif hasattr(model, "predict_proba"):
        proba, classes = model.predict_proba(x), model[-1].classes_
        out = np.zeros((len(x), n_class)) if objective == "multiclass" else np.zeros(len(x))
        for c, cls in enumerate(classes):  # a class absent from the training folds keeps 0
            if objective == "multiclass":
                out[:, int(cls)] = proba[:, c]
            elif cls == 1:
                out = proba[:, c]
    else:  # ridge on 0/1 or one-hot targets: clip into probabilities
        out = np.clip(model.predict(x), 1e-6, 1 - 1e-6)
        if objective == "multiclass":
            out = out / out.sum(axis=1, keepdims=True)
    out = np.asarray(out, dtype=np.float32)
    return out if out.ndim == 2 else out[:, None]


def _importance(model) -> np.ndarray:
    if hasattr(model, "feature_importance"):
        return model.feature_importance("gain").astype(float)
    return np.abs(np.atleast_2d(model[-1].coef_)).sum(axis=0)


def _predict(heads: list[tuple[str, Any]], x: np.ndarray, n_class: int) -> np.ndarray:
    """(n, k) predictions of a fold's meta-model heads, side by side."""
    return np.hstack([_predict_head(model, x, objective, n_class) for objective, model in heads])


# -- the stage --------------------------------------------------------------------------------

@dataclass
class StackResult:
    """What :func:`stack` reports; ``gain`` > 0 means the stack beat its best input."""

    name: str
    run_dir: Path
    metric: str
    meta: str
    oof_score: float
    threshold: Any
    fold_scores: dict[int, float]
    input_scores: dict[str, float]
    best_input: str
    best_input_score: float
    mean_blend_score: float
    features: list[str]
    importance: dict[str, float]
    warnings: list[str]
    versus_best: Any = None          # bootstrap.Comparison: the stack minus its best input
    holdout: Any = None              # holdout.HoldoutResult with --holdout

    @property
    def gain(self) -> float:
        return gain(self.metric, self.oof_score, self.best_input_score)


def stack(ws: Workspace, *, inputs: list[str] | None = None, features: list[str] | None = None,
          meta: str = "lgbm", name: str | None = None, params: dict | None = None, seed: int = 42,
          force: bool = False, data=None, holdout: float | None = None) -> StackResult:
    """Fit a meta-model over the inputs' OOF predictions on the same folds; write it as a run.

    Args:
        ws: the workspace.
        inputs: run names; None takes every complete experiment on the current folds and data
            (stacks and blends only when named).
        features: extra row features: ``text_len``, ``n_words`` or raw train columns.
        meta: ``lgbm`` (default), ``logistic`` (classification) or ``ridge``.
        name: the stack's run name (default: the next free ``s01``, ``s02``, ...).
        params: overrides of the meta-model's defaults (:data:`LGBM_DEFAULTS`, :data:`LINEAR_DEFAULTS`).
        seed: seed of the meta-model and its inner early-stopping split.
        force: replace an existing stack of that name.
        data: a loaded dataset (loaded from the spec when None).
        holdout: keep this share of rows out, retrain the inputs and the stack without it and
            record whether the stack beats its best input and their mean there
            (:mod:`competition.holdout`); a stack that does not is marked not preferred.
    """
    if meta not in ("lgbm", "logistic", "ridge"):
        raise InputError(f"--meta {meta!r}: choose lgbm, logistic or ridge")
    features, params = list(features or []), dict(params or {})
    src = load_inputs(ws, inputs, data=data, exclude=name)
    spec, data, task = src.spec, src.data, src.spec.task
    if not features:   # one run plus row features is a new model; one run alone is that run
        require_two(src, "stack")
    if meta == "logistic" and task == "regression":
        raise InputError("--meta logistic fits classes, but this task is regression: use --meta ridge or lgbm")
    cols, n_class = spec.pred_columns, len(spec.pred_columns)
    recipe = {"inputs": src.names, "columns": cols, "features": features, "task": task, "meta": meta,
              "logit": meta != "lgbm" and task != "regression", "cat_idx": [], "categories": {}}
    rows = rows_test = None
    if features:
        rows, recipe["cat_idx"], recipe["categories"] = feature_matrix(data.train, spec, features)
        if recipe["cat_idx"] and meta != "lgbm":
            raise InputError(f"--with-features: {[features[i] for i in recipe['cat_idx']]} are categorical; "
                             "only --meta lgbm takes them (or drop them)")
        if data.test is not None:
            rows_test = feature_matrix(data.test, spec, features, recipe["categories"])[0]
    guard = None
    if holdout is not None:   # before anything is written: a refusal there leaves no stack behind
        from competition import holdout as holdout_mod

        guard = holdout_mod.check(ws, data, src.fold, src.names, fraction=holdout, seed=seed,
                                  stack_args={"features": features, "meta": meta, "params": params, "seed": seed})
    x, cat_idx = level2(src.oof, rows, recipe)
    x_test = None if src.test is None else level2(src.test, rows_test, recipe)[0]
    feature_names = [r if len(cols) == 1 else f"{r}:{c}" for r in src.names for c in cols] + features
    name = claim_name(ws, name, "s", "stack", force)

    y, n_splits = data.y, int(src.fold.max()) + 1
    oof = np.zeros((len(x), n_class), dtype=np.float32)
    test_parts, importance = [], []
    for k in range(n_splits):
        tr, va = np.flatnonzero(src.fold != k), np.flatnonzero(src.fold == k)
        x_tr = x[tr]
        heads = [(objective, _fit_lgbm(x_tr, target, objective, n_class, cat_idx, params, seed + k, spec.metric)
                  if meta == "lgbm" else _fit_linear(x_tr, target, objective, n_class, meta, params))
                 for objective, target in _heads(task, y[tr])]
        del x_tr
        oof[va] = _predict(heads, x[va], n_class)
        gains = sum(_importance(model) for _, model in heads)
        importance.append(gains / gains.sum() if gains.sum() > 0 else gains)
        if x_test is not None:
            part = pd.DataFrame(_predict(heads, x_test, n_class), columns=cols)
            part.insert(0, "id", data.test[spec.id_column].to_numpy())
            test_parts.append(part)
        _save_meta(ws.fold_dir(name, k) / META, heads, recipe)

    shares = np.mean(importance, axis=0)
    artifacts.write_json(ws.run_dir(name) / "importance.json", {
        "kind": "gain" if meta == "lgbm" else "abs_coef", "features": dict(zip(feature_names, shares.tolist())),
        "folds": {k: dict(zip(feature_names, imp.tolist())) for k, imp in enumerate(importance)}})
    frame = pd.DataFrame(oof, columns=cols)
    frame.insert(0, "fold", src.fold)
    frame.insert(0, "id", data.train[spec.id_column].to_numpy())
    warnings = src.notes
    run = runs.write_run(
        ws, name, spec=spec, data=data, oof=frame,
        test=runs.average_folds(test_parts, cols) if test_parts else None,
        manifest={"kind": "stack", "family": f"{meta}-stack", "inputs": src.names, "input_hashes": src.versions,
                  "features": features, "meta": meta, "params": params, "seed": seed, **src.hashes, "n_splits": n_splits,
                  "folds_done": list(range(n_splits)), "warnings": warnings,
                  **({"holdout": guard.to_json()} if guard else {})})
    scores = src.scores()
    best = best_of(scores, spec.metric)
    mean_score = metrics.cv(spec.metric, y, src.oof.mean(axis=1, dtype=np.float64), task, src.fold).score
    return StackResult(name, run.dir, spec.metric, meta, run.score, run.threshold, run.metrics["folds"], scores,
                       best[0], best[1], float(mean_score), features,
                       dict(zip(feature_names, shares.tolist())), warnings, versus_best(src, oof, best[0]), guard)


def _save_meta(folder: Path, heads: list[tuple[str, Any]], recipe: dict) -> None:
    """A fold's meta-model in formats that cannot run code when loaded (heads.save_model)."""
    from competition.models.heads import save_model

    entries = [{"objective": objective, **save_model(folder, f"head{i}", model)}
               for i, (objective, model) in enumerate(heads)]
    artifacts.write_json(folder / "meta.json", {"recipe": recipe, "heads": entries})


def _load_meta(folder: Path, manifest: dict) -> tuple[list[tuple[str, Any]], dict]:
    from competition.models.heads import load_model

    path = folder / "meta.json"
    if not path.is_file():
        old = " (it holds meta.joblib, a pickle comp no longer loads)" if (folder.parent / "meta.joblib").is_file() else ""
        raise InputError(f"{path}: fold {folder.parent.name[4:]}'s meta-model is missing{old}; rebuild the stack "
                         f"(`{runs.remake_command(folder.parent.parent.name, manifest)}`)")
    saved = artifacts.read_json(path)
    return [(e["objective"], load_model(folder, e)) for e in saved["heads"]], saved["recipe"]


def replay(run_dir: Path, preds: dict[str, np.ndarray], frame: pd.DataFrame | None, spec) -> np.ndarray:
    """A saved stack applied to new rows, without refitting: every fold's meta-model on the inputs'
    predictions (``preds``: run name -> (n, k), rows in ``frame``'s order) and, when the stack used
    row features, on ``frame``; returns the (n, k) mean over the fold meta-models."""
    run_dir = Path(run_dir)
    manifest = artifacts.read_json(run_dir / "manifest.json")
    if manifest.get("kind") != "stack":
        raise InputError(f"{run_dir}: {run_dir.name} is a {manifest.get('kind')}, not a stack")
    out = []
    for k in range(manifest["n_splits"]):
        heads, recipe = _load_meta(run_dir / f"fold{k}" / META, manifest)
        missing = [r for r in recipe["inputs"] if r not in preds]
        if missing:
            raise InputError(f"stack {run_dir.name} needs predictions of {missing} too")
        p = np.stack([np.asarray(preds[r], dtype=np.float32) for r in recipe["inputs"]], axis=1)
        rows = None
        if recipe["features"]:
            if frame is None:
                raise InputError(f"stack {run_dir.name} uses row features {recipe['features']}: pass the raw rows")
            rows = feature_matrix(frame, spec, recipe["features"], recipe["categories"])[0]
        x, _ = level2(p, rows, recipe)
        out.append(_predict(heads, x, len(recipe["columns"])))
    return np.mean(out, axis=0)
