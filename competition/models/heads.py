"""One estimator per task, fitted the same way for every classical family (tfidf, embed, lgbm).

:func:`fit_head` turns a feature matrix (sparse TF-IDF, dense embeddings or a tabular
frame) and the encoded target into a fitted :class:`Head`, whose ``predict`` returns
the 2-D array every family must return: one column per ``spec.pred_columns``,
probabilities for classification (binary: P(positive class, code 1)), values for
regression.

Estimators:

``logistic``
    ``LogisticRegression`` (L2, inverse strength ``C``); binary (liblinear's dual solver when
    there are more features than rows, else lbfgs) and multiclass (multinomial, lbfgs).
    Not for regression: use ``ridge``.
``ridge``
    ``Ridge`` (strength ``alpha``). Regression: the value. Classification: least squares
    on the 0/1 (one-hot) targets -- the classic "ridge on TF-IDF" baseline -- with the
    output clipped into [1e-4, 1 - 1e-4] (multiclass rows renormalised to sum to 1). The
    scores rank well (AUC, F1 after threshold search) but are not calibrated
    probabilities; prefer ``logistic`` when the metric is log loss.
``lgbm``
    ``lightgbm.train`` with the task's objective, seeded and deterministic. The number of
    rounds is chosen by early stopping on an inner split of the *training* rows
    (``inner_valid``, 10% by default, stratified for classification): the fold whose
    predictions become OOF is never looked at, so the CV is not optimistic.

Multilabel targets and several regression targets get one model per column; a label
that is constant in the training rows predicts its training rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from competition import artifacts
from competition.errors import InputError

ESTIMATORS = ("logistic", "ridge", "lgbm")
_EPS = 1e-4
SMALL_ROWS = 20_000  # LightGBM runs single-threaded below this many training rows (unless train.threads)
_LGBM_OBJECTIVE = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}


@dataclass
class _Constant:
    """Predicts a constant: the training rate of a label the fold never saw change."""

    value: float


@dataclass
class Head:
    """A fitted estimator for one task; ``predict(X) -> (n, k)`` in ``pred_columns`` order.

    ``models`` holds one model per output column for multilabel and multi-target
    regression, otherwise a single model.
    """

    estimator: str
    task: str
    n_outputs: int                                   # k, the number of prediction columns
    models: list[Any]
    best_iterations: list[int] = field(default_factory=list)   # lgbm only

    def predict(self, X) -> np.ndarray:
        kind = _single_kind(self.task)
        columns = [_predict_one(m, X, kind, self.n_outputs) for m in self.models]
        return np.column_stack(columns).astype(np.float64)


def _single_kind(task: str) -> str:
    """What one model of the head predicts: multilabel heads are several binary models."""
    return "binary" if task == "multilabel" else task


def n_outputs(data) -> int:
    """k, the number of prediction columns: classes (multiclass, from the data's labels, since the
    spec may not list them), labels (multilabel), targets (regression), 1 (binary)."""
    task = data.spec.task
    if task == "multiclass":
        return len(data.labels)
    return 1 if task == "binary" else len(data.spec.targets)


def fit_head(estimator: str, task: str, X, y: np.ndarray, *, n_outputs: int, seed: int,
             C: float = 1.0, alpha: float = 1.0, lgbm: dict | None = None, scale: bool = False,
             threads: int | None = None, num_boost_round: int = 1000, early_stopping_rounds: int = 50,
             inner_valid: float = 0.1, key: str = "model.estimator") -> tuple[Head, list[dict]]:
    """Fit ``estimator`` for ``task`` on ``X`` (n rows) and ``y``.

    Args:
        estimator: logistic, ridge or lgbm.
        task: binary, multiclass, multilabel or regression.
        X: features: scipy sparse, a dense array or (lgbm) a frame with category columns.
        y: binary/multiclass (n,) int codes; multilabel (n, L) 0/1; regression (n,) or (n, T).
        n_outputs: k, the number of prediction columns (multiclass: the number of classes).
        seed: random seed (liblinear/ridge solvers, LightGBM).
        C, alpha: logistic / ridge regularisation.
        lgbm: LightGBM parameters laid over the defaults; may hold ``num_boost_round``,
            ``early_stopping_rounds`` and ``inner_valid``.
        scale: standardise dense features first (linear heads on embeddings).
        threads: LightGBM threads (None: one below ``SMALL_ROWS`` training rows, else every core).
        inner_valid: share of the training rows LightGBM holds out for early stopping (and its
            learning curve); never rows of the fold being predicted.
        key: the config key naming the estimator, for error messages.

    Returns:
        The fitted head and, for lgbm, the learning curve on the inner held-out rows
        (``[{"epoch": i, "val/loss": ...}, ...]``, at most ~50 points).
    """
    if estimator not in ESTIMATORS:
        raise InputError(f"{key}: unknown estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    if estimator == "logistic" and task == "regression":
        raise InputError(f"{key}: logistic regression cannot predict a regression target; "
                         f"set {key}=ridge (or lgbm)")
    y = np.asarray(y)
    kind = _single_kind(task)
    per_column = task == "multilabel" or (task == "regression" and y.ndim == 2)
    targets = [y[:, j] for j in range(y.shape[1])] if per_column else [y]
    params = dict(lgbm or {})
    rounds = int(params.pop("num_boost_round", params.pop("n_estimators", num_boost_round)))
    patience = int(params.pop("early_stopping_rounds", early_stopping_rounds))
    inner = float(params.pop("inner_valid", inner_valid))
    if estimator == "lgbm" and not 0 < inner < 0.5:
        raise InputError(f"{key}: inner_valid={inner} must be in (0, 0.5): the share of the training rows "
                         "held out for early stopping")

    models, curves, best = [], [], []
    for target in targets:
        if kind == "binary" and np.unique(target).size < 2:
            models.append(_Constant(float(np.mean(target))))
            continue
        if estimator == "lgbm":
            k = n_outputs if kind == "multiclass" else 1
            fit_rows, stop_rows = inner_split(target, kind, inner, seed)
            booster, curve = _fit_lgbm(kind, _rows(X, fit_rows), target[fit_rows], k, params, rounds, patience,
                                       seed, threads, (_rows(X, stop_rows), target[stop_rows]))
            models.append(booster)
            curves.append(curve)
            best.append(booster.best_iteration or booster.current_iteration())
        else:
            models.append(_fit_linear(estimator, kind, X, target, n_outputs, C=C, alpha=alpha, seed=seed,
                                      scale=scale))
    return Head(estimator, task, n_outputs, models, best), _mean_curve(curves)


def inner_split(y: np.ndarray, kind: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, early-stopping rows) of the training rows: a seeded ``fraction`` held out,
    stratified by class for classification when every class can give a row to both sides.

    >>> fit, stop = inner_split(np.array([0] * 80 + [1] * 20), "binary", 0.1, 0)
    >>> len(fit), len(stop), int(np.array([0] * 80 + [1] * 20)[stop].sum())
    (90, 10, 2)
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    stratify = None
    if kind in ("binary", "multiclass"):
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and round(fraction * len(y)) >= len(counts):
            stratify = y
    fit, stop = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(fit), np.sort(stop)


def _rows(X, rows: np.ndarray):
    """Rows of a feature matrix: a frame (lgbm family), a sparse matrix or an array."""
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]


def _fit_linear(estimator: str, kind: str, X, y: np.ndarray, k: int, *, C: float, alpha: float,
                seed: int, scale: bool):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if estimator == "logistic":
        # Binary with more features than rows (TF-IDF): liblinear's dual solver reaches the same
        # optimum 5-7x faster than lbfgs (GoEmotions, 125k n-grams: 1.5 s vs 10 s a label).
        # Multiclass stays multinomial lbfgs, which liblinear cannot do.
        wide = kind == "binary" and X.shape[1] > X.shape[0]
        model = LogisticRegression(C=C, max_iter=3000, random_state=seed,
                                   **({"solver": "liblinear", "dual": True} if wide else {}))
        target = y
    else:
        model = Ridge(alpha=alpha, random_state=seed)
        # classification by least squares on the 0/1 indicator(s) of each class
        target = np.eye(k)[y] if kind == "multiclass" else y.astype(np.float64)
    if scale:
        model = make_pipeline(StandardScaler(), model)
    return model.fit(X, target)


def _lgbm_params(kind: str, k: int, params: dict, seed: int, threads: int | None, n_rows: int) -> dict:
    # Below ~20k rows OpenMP's start-up and synchronisation cost more than the work: one thread
    # is fastest (Titanic: 0.3 s a fold vs 1-3 s on two busy cores). ``train.threads`` overrides.
    threads = threads or (1 if n_rows < SMALL_ROWS else 0)
    base = {"objective": _LGBM_OBJECTIVE[kind], "verbosity": -1, "seed": seed, "deterministic": True,
            "force_row_wise": True, "num_threads": threads}
    if kind == "multiclass":
        base["num_class"] = k
    return {**base, **params}


def _fit_lgbm(kind: str, X, y: np.ndarray, k: int, params: dict, rounds: int, patience: int, seed: int,
              threads: int | None, stop: tuple):
    """A booster whose rounds stop early on ``stop`` = (X, y) of held-out training rows."""
    import lightgbm as lgb

    train_set = lgb.Dataset(X, label=y, free_raw_data=True)
    record: dict = {}
    booster = lgb.train(_lgbm_params(kind, k, params, seed, threads, X.shape[0]), train_set, num_boost_round=rounds,
                        valid_sets=[lgb.Dataset(stop[0], label=stop[1], reference=train_set)],
                        valid_names=["inner"],
                        callbacks=[lgb.early_stopping(patience, verbose=False), lgb.record_evaluation(record)])
    return booster, list(next(iter(record["inner"].values())))


def _mean_curve(curves: list[list[float]], points: int = 50) -> list[dict]:
    """Mean valid loss per boosting round over the boosters (shorter ones hold their last value)."""
    curves = [c for c in curves if c]
    if not curves:
        return []
    n = max(len(c) for c in curves)
    padded = np.array([c + [c[-1]] * (n - len(c)) for c in curves])
    mean = padded.mean(axis=0)
    step = max(1, n // points)
    rounds = sorted(set(range(step - 1, n, step)) | {n - 1})
    return [{"epoch": i + 1, "val/loss": float(mean[i])} for i in rounds]


def _predict_one(model, X, kind: str, k: int) -> np.ndarray:
    """(n,) for binary/regression, (n, k) for multiclass (k is ignored otherwise)."""
    n = X.shape[0]
    if isinstance(model, _Constant):
        return np.full(n, model.value)
    if _is_booster(model):
        out = model.predict(X, num_iteration=model.best_iteration or None)
        return out.reshape(n, k) if kind == "multiclass" else out
    estimator = model[-1] if hasattr(model, "steps") else model
    if kind == "regression":
        return model.predict(X)
    if hasattr(estimator, "predict_proba"):      # logistic
        proba = model.predict_proba(X)
        if kind == "binary":
            return proba[:, list(estimator.classes_).index(1)]
        full = np.zeros((n, k))                  # classes missing from the training rows get 0
        full[:, estimator.classes_.astype(int)] = proba
        return full
    scores = np.clip(model.predict(X), _EPS, 1 - _EPS)   # ridge on 0/1 indicators
    if kind == "binary":
        return scores
    return scores / scores.sum(axis=1, keepdims=True)


# -- saving: formats that cannot run code when they load ---------------------------------------
# A fold's estimators are written as LightGBM's own text model, scikit-learn objects through
# skops (which refuses any type not on its trusted list instead of running it) and constants
# in JSON. Pickle -- which runs whatever a crafted file tells it to -- is never loaded.

SKOPS_TRUSTED = ["numpy.dtype"]     # besides scikit-learn's own estimators, which skops trusts


def save_model(folder: Path, stem: str, model) -> dict:
    """Write one fitted estimator as ``folder/<stem>.txt|.skops`` (or inline); returns its entry."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, _Constant):
        return {"kind": "constant", "value": model.value}
    if _is_booster(model):
        artifacts.write_text(folder / f"{stem}.txt", model.model_to_string())   # up to its best iteration
        return {"kind": "lightgbm", "file": f"{stem}.txt"}
    import skops.io as sio

    with artifacts.atomic_path(folder / f"{stem}.skops") as tmp:
        sio.dump(model, tmp)
    return {"kind": "sklearn", "file": f"{stem}.skops"}


def load_model(folder: Path, entry: dict):
    """The estimator of an entry written by :func:`save_model`; InputError for a missing file or a
    scikit-learn file holding types outside skops' trusted list."""
    path = Path(folder) / entry.get("file", "")
    if entry["kind"] == "constant":
        return _Constant(float(entry["value"]))
    if not path.is_file():
        raise InputError(f"{path}: missing; retrain this fold (comp train ... --force)")
    if entry["kind"] == "lightgbm":
        import lightgbm as lgb

        return lgb.Booster(model_str=path.read_text())
    import skops.io as sio

    untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in SKOPS_TRUSTED]
    if untrusted:
        raise InputError(f"{path}: holds types comp does not load ({', '.join(untrusted)}); it was not "
                         "written by comp. Retrain this fold.")
    return sio.load(path, trusted=SKOPS_TRUSTED)


def save_head(folder: Path, head: Head) -> None:
    """A head as ``folder/head.json`` plus one model file per output column."""
    entries = [save_model(folder, f"model{i}", m) for i, m in enumerate(head.models)]
    artifacts.write_json(Path(folder) / "head.json", {
        "estimator": head.estimator, "task": head.task, "n_outputs": head.n_outputs,
        "best_iterations": head.best_iterations, "models": entries})


def load_head(folder: Path, family: str) -> Head:
    """A head saved by :func:`save_head`."""
    folder = Path(folder)
    saved = folder / "head.json"
    if not saved.is_file():
        old = [p.name for p in folder.parent.glob("*.pkl")]
        why = (f"it holds {old[0]}, the pickle format comp used before, which can run code when loaded and "
               "is no longer read") if old else "it holds no fitted model"
        raise InputError(f"{saved}: missing: {why}. Retrain this {family} fold: "
                         "`comp train exp=<id> --fold <k> --force`.")
    info = artifacts.read_json(saved)
    return Head(info["estimator"], info["task"], int(info["n_outputs"]),
                [load_model(folder, e) for e in info["models"]], list(info.get("best_iterations") or []))


def _is_booster(model) -> bool:
    return type(model).__name__ == "Booster"
