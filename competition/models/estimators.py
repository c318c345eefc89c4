"""The estimator layer: fitting and predicting the classical models and the stack's meta-models.

The classical families (tfidf, embed, lgbm) call :func:`fit_head`: a feature matrix (sparse TF-IDF,
dense embeddings or a tabular frame) and the encoded target become a fitted :class:`Head` whose
``predict`` returns one column per ``spec.pred_columns``: probabilities for classification (binary:
P(class code 1)), values for regression. The stack's meta-models use the same parts with their own
defaults: :func:`split_targets`, :func:`fit_booster`, :func:`fit_linear`, :func:`predict_model`,
:func:`importance`; :mod:`competition.models.saving` writes and reads them.

Estimators:

``logistic``
    ``LogisticRegression`` (L2, inverse strength ``C``); binary (liblinear's dual solver when
    there are more features than rows, else lbfgs) and multiclass (multinomial, lbfgs).
    Not for regression: use ``ridge``.
``ridge``
    ``Ridge`` (strength ``alpha``). Regression: the value. Classification: least squares
    on the 0/1 (one-hot) targets -- the classic "ridge on TF-IDF" baseline -- with the
    output clipped into [eps, 1 - eps] (multiclass rows renormalised to sum to 1). The
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
from typing import Any

import numpy as np

from competition.errors import InputError

ESTIMATORS = ("logistic", "ridge", "lgbm")
EPS = 1e-4           # ridge scores are clipped into [EPS, 1 - EPS] to read as probabilities
SMALL_ROWS = 20_000  # LightGBM runs single-threaded below this many training rows (unless train.threads)
_LGBM_OBJECTIVE = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}


@dataclass
class Constant:
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
        columns = [predict_model(m, X, kind, self.n_outputs) for m in self.models]
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


def split_targets(task: str, y: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(kind, target) of each model a task needs: one per column for multilabel (binary each) and for
    several regression targets, else one.

    >>> [(kind, t.tolist()) for kind, t in split_targets("multilabel", np.array([[1, 0], [0, 0]]))]
    [('binary', [1, 0]), ('binary', [0, 0])]
    >>> [(kind, t.tolist()) for kind, t in split_targets("multiclass", np.array([2, 0]))]
    [('multiclass', [2, 0])]
    """
    y = np.asarray(y)
    if task in ("binary", "multiclass") or (task == "regression" and y.ndim == 1):
        return [(task, y)]
    y2 = y.reshape(len(y), -1)
    return [(_single_kind(task), y2[:, j]) for j in range(y2.shape[1])]


def fit_head(estimator: str, task: str, X, y: np.ndarray, *, n_outputs: int, seed: int,
             C: float | str = 1.0, alpha: float = 1.0, lgbm: dict | None = None, scale: bool = False,
             threads: int | None = None, num_boost_round: int = 1000, early_stopping_rounds: int = 50,
             inner_valid: float = 0.1, key: str = "model.estimator") -> tuple[Head, list[dict]]:
    """Fit ``estimator`` for ``task`` on ``X`` (n rows) and ``y``: a classical family's model.

    Args:
        estimator: logistic, ridge or lgbm.
        task: binary, multiclass, multilabel or regression.
        X: features: scipy sparse, a dense array or (lgbm) a frame with category columns.
        y: binary/multiclass (n,) int codes; multilabel (n, L) 0/1; regression (n,) or (n, T).
        n_outputs: k, the number of prediction columns (multiclass: the number of classes).
        seed: random seed (liblinear/ridge solvers, LightGBM, the inner split).
        C, alpha: logistic / ridge regularisation. ``C="auto"``: chosen from :data:`AUTO_C` by
            3-fold CV (log loss) of these rows alone, then refit on all of them (:func:`fit_linear`).
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
    params = dict(lgbm or {})
    rounds = int(params.pop("num_boost_round", params.pop("n_estimators", num_boost_round)))
    patience = int(params.pop("early_stopping_rounds", early_stopping_rounds))
    inner = float(params.pop("inner_valid", inner_valid))
    if estimator == "lgbm" and not 0 < inner < 0.5:
        raise InputError(f"{key}: inner_valid={inner} must be in (0, 0.5): the share of the training rows "
                         "held out for early stopping")

    models, curves, best = [], [], []
    for kind, target in split_targets(task, y):
        if kind == "binary" and np.unique(target).size < 2:
            models.append(Constant(float(np.mean(target))))
            continue
        if estimator == "lgbm":
            fit_rows, stop_rows = inner_split(target, kind, inner, seed)
            k = n_outputs if kind == "multiclass" else 1
            booster, curve = fit_booster(lgbm_params(kind, k, params, seed, threads, len(fit_rows)), X, target,
                                         fit_rows, stop_rows, rounds=rounds, patience=patience)
            models.append(booster)
            curves.append(curve)
            best.append(booster.best_iteration or booster.current_iteration())
        else:
            models.append(fit_linear(estimator, kind, X, target, n_outputs, scale=scale,
                                     defaults=_linear_defaults(estimator, kind, X, seed, C=C, alpha=alpha)))
    return Head(estimator, task, n_outputs, models, best), _mean_curve(curves)


def inner_split(y: np.ndarray, kind: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, early-stopping rows) of the training rows: a seeded ``fraction`` held out,
    stratified by class for classification when every class can give a row to both sides.
    The classical families' split (and the torch families' ``train.select: inner``).

    >>> fit, stop = inner_split(np.array([0] * 80 + [1] * 20), "binary", 0.1, 0)
    >>> len(fit), len(stop), int(np.array([0] * 80 + [1] * 20)[stop].sum())
    (90, 10, 2)
    """
    # scikit-learn submodules take ~1 s each: loaded where used
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    stratify = None
    if kind in ("binary", "multiclass"):
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and round(fraction * len(y)) >= len(counts):
            stratify = y
    fit, stop = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(fit), np.sort(stop)


def permuted_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, early-stopping rows) of ``n`` training rows, the stack's meta-model split: a seeded
    permutation whose first ``max(1, int(n * fraction))`` rows stop early; both in permuted order.

    >>> fit, stop = permuted_split(10, 0.25, 0)
    >>> len(fit), len(stop), sorted(np.r_[fit, stop].tolist()) == list(range(10))
    (8, 2, True)
    """
    order = np.random.default_rng(seed).permutation(n)
    cut = max(1, int(n * fraction))
    return order[cut:], order[:cut]


def _rows(X, rows: np.ndarray):
    """Rows of a feature matrix: a frame (lgbm family), a sparse matrix or an array."""
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]


def _linear_defaults(estimator: str, kind: str, X, seed: int, *, C: float | str, alpha: float) -> dict:
    """The classical families' settings of a linear estimator."""
    if estimator == "ridge":
        return {"alpha": alpha, "random_state": seed}
    # Binary with more features than rows (TF-IDF): liblinear's dual solver reaches the same
    # optimum 5-7x faster than lbfgs (GoEmotions, 125k n-grams: 1.5 s vs 10 s a label).
    # Multiclass stays multinomial lbfgs, which liblinear cannot do.
    wide = kind == "binary" and X.shape[1] > X.shape[0]
    return {"C": C, "max_iter": 3000, "random_state": seed, **({"solver": "liblinear", "dual": True} if wide else {})}


def fit_linear(estimator: str, kind: str, X, y: np.ndarray, n_outputs: int, *, defaults: dict,
               params: dict | None = None, scale: bool = False, impute: bool = False, key: str = "model.estimator"):
    """A fitted ``LogisticRegression`` (logistic) or ``Ridge`` (ridge) of one target of ``kind`` (binary,
    multiclass, regression): ``y`` holds class codes or values; ridge on classes fits their 0/1 indicators
    (``n_outputs`` columns for multiclass) by least squares. ``defaults`` are the caller's keyword
    arguments of the estimator, ``params`` the user's overrides of them (named, with ``key``, when the
    estimator refuses them). ``impute`` (medians) then ``scale`` (standardise) the features first,
    both fitted on these rows."""
    # scikit-learn submodules take ~1 s each: loaded where used
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    params = dict(params or {})
    kind_of = LogisticRegression if estimator == "logistic" else Ridge
    if estimator == "logistic" and {**defaults, **params}.get("C") == "auto":
        kind_of, defaults = _auto_c(kind, y, {**defaults, **params})
        params = {}
    try:
        model = kind_of(**{**defaults, **params})
    except TypeError as err:
        raise InputError(f"{key}: bad params {params}: {err}") from None
    target = y
    if estimator == "ridge":   # classification by least squares on the 0/1 indicator(s) of each class
        target = np.eye(n_outputs)[y] if kind == "multiclass" else y.astype(np.float64)
    steps = ([SimpleImputer(strategy="median", keep_empty_features=True)] if impute else []) + (
        [StandardScaler()] if scale else [])
    if steps:
        model = make_pipeline(*steps, model)
    return model.fit(X, target)


AUTO_C = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)   # C "auto": the grid searched


def _auto_c(kind: str, y: np.ndarray, settings: dict) -> tuple[type, dict]:
    """LogisticRegressionCV over :data:`AUTO_C` with the other ``settings``: L2, 3-fold stratified CV of
    the fit rows (never the rows the head will predict), log loss, refit at the best C (its ``C_``).
    Fewer than 3 rows in some class: no CV, C 1.0."""
    # scikit-learn submodules take ~1 s each: loaded where used
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    settings = {key: value for key, value in settings.items() if key != "C"}
    if kind != "regression" and np.unique(y, return_counts=True)[1].min() < 3:
        return LogisticRegression, {**settings, "C": 1.0}
    return LogisticRegressionCV, {**settings, "Cs": list(AUTO_C), "cv": 3, "l1_ratios": (0.0,),
                                  "scoring": "neg_log_loss", "use_legacy_attributes": False}


def chosen_c(model) -> float | None:
    """The C a ``C: auto`` logistic head chose (None for any other model)."""
    last = model.steps[-1][1] if hasattr(model, "steps") else model
    return float(np.ravel(last.C_)[0]) if hasattr(last, "C_") else None


def lgbm_objective(kind: str, metric: str | None = None) -> str:
    """LightGBM's objective for one model: the kind's own, or L1 for a regression scored by MAE.

    >>> lgbm_objective("regression", "mae"), lgbm_objective("regression"), lgbm_objective("multiclass")
    ('regression_l1', 'regression', 'multiclass')
    """
    return "regression_l1" if kind == "regression" and metric == "mae" else _LGBM_OBJECTIVE[kind]


def lgbm_params(kind: str, k: int, params: dict, seed: int, threads: int | None, n_rows: int) -> dict:
    # Below ~20k rows OpenMP's start-up and synchronisation cost more than the work: one thread
    # is fastest (Titanic: 0.3 s a fold vs 1-3 s on two busy cores). ``train.threads`` overrides.
    threads = threads or (1 if n_rows < SMALL_ROWS else 0)
    base = {"objective": lgbm_objective(kind), "verbosity": -1, "seed": seed, "deterministic": True,
            "force_row_wise": True, "num_threads": threads}
    if kind == "multiclass":
        base["num_class"] = k
    return {**base, **params}


def fit_booster(params: dict, X, y: np.ndarray, fit_rows: np.ndarray, stop_rows: np.ndarray | None, *,
                rounds: int, patience: int = 0, categorical: list[int] | str = "auto", halt=None):
    """(booster, its loss on ``stop_rows`` after each round): LightGBM with ``params`` (complete: objective,
    seed, ...) fit on ``fit_rows`` of (X, y), at most ``rounds`` rounds, stopped after ``patience`` rounds
    without improvement on ``stop_rows``. Both are training rows, never rows the booster will predict as
    OOF (:func:`inner_split`, :func:`permuted_split`). ``stop_rows`` None: exactly ``rounds`` rounds, no
    loss recorded. ``categorical``: column indices LightGBM treats as categories ("auto": a frame's
    category columns). ``halt``: a :class:`threading.Event` that, once set, stops the fit at its next
    round with KeyboardInterrupt (a fit in a thread cannot receive Ctrl-C itself)."""
    # lightgbm (~1 s): only the LightGBM fits
    import lightgbm as lgb

    train_set = lgb.Dataset(_rows(X, fit_rows), label=y[fit_rows], categorical_feature=categorical,
                            free_raw_data=True)
    if stop_rows is None:
        return lgb.train(params, train_set, num_boost_round=rounds), []
    stop_set = lgb.Dataset(_rows(X, stop_rows), label=y[stop_rows], categorical_feature=categorical,
                           reference=train_set)
    record: dict = {}
    booster = lgb.train(params, train_set, num_boost_round=rounds, valid_sets=[stop_set], valid_names=["inner"],
                        callbacks=[lgb.early_stopping(patience, verbose=False), lgb.record_evaluation(record),
                                   *([_halted(halt)] if halt is not None else [])])
    return booster, list(next(iter(record["inner"].values())))


def _halted(halt):
    def check(env) -> None:
        if halt.is_set():
            raise KeyboardInterrupt
    return check


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


def predict_model(model, X, kind: str, k: int, *, eps: float = EPS) -> np.ndarray:
    """One fitted model's predictions: (n,) for binary/regression, (n, k) for multiclass (k is ignored
    otherwise); ridge scores of classes are clipped into [eps, 1 - eps] (multiclass rows sum to 1)."""
    n = X.shape[0]
    if isinstance(model, Constant):
        return np.full(n, model.value)
    if is_booster(model):
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
    scores = np.clip(model.predict(X), eps, 1 - eps)   # ridge on 0/1 indicators
    if kind == "binary":
        return scores
    return scores / scores.sum(axis=1, keepdims=True)


def importance(model) -> np.ndarray | None:
    """Per feature: a booster's total gain, or a linear model's |coefficient| summed over classes;
    None for a constant."""
    if isinstance(model, Constant):
        return None
    if is_booster(model):
        return model.feature_importance(importance_type="gain").astype(float)
    estimator = model[-1] if hasattr(model, "steps") else model
    return np.abs(np.atleast_2d(estimator.coef_)).sum(axis=0)


def is_booster(model) -> bool:
    return type(model).__name__ == "Booster"
