"""Family ``lgbm``: LightGBM on tabular feature columns (Titanic's Pclass, Sex, Age, Fare, ...).

Numeric and boolean columns go in as floats (missing stays NaN, which LightGBM
routes on its own). Every other column -- object, pandas 3 ``str``, category --
becomes a pandas ``category`` whose categories are fixed from the fold's training
rows, so the valid rows, the test set and a later hidden test set get the same
codes; a value the training rows never held becomes missing. (LightGBM refuses
pandas string columns outright, hence the cast.)

Objective per task: binary, multiclass (``num_class``), one booster per label for
multilabel, regression. Boosting stops early (``model.early_stopping_rounds``) on an inner
``model.inner_valid`` share of the fold's *training* rows, never on the rows it predicts as
OOF; the fold's ``best_epoch`` is the best iteration.
Seeded, ``deterministic=True``; ``num_threads`` from ``train.threads`` (default: one thread
below 20k training rows, where more threads only add overhead, else every core). What a fold saves::

    fold0/
        head/          the boosters as LightGBM text models (saving.save_head)
        lgbm.json      columns, categories (the code book), best iterations, gain importance
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition import artifacts
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models import FoldResult, classical, estimators


@dataclass
class Prepared:
    cfg: ExperimentConfig
    data: object                      # competition.data.Dataset
    columns: list[str]                # feature columns, in order
    categorical: list[str]            # the ones cast to category per fold


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def feature_columns(cfg: ExperimentConfig, data) -> list[str]:
    """``model.features`` when set, else the spec's ``features``; checked against the frames."""
    spec = data.spec
    columns = list(cfg.model.features or spec.features)
    if not columns:
        raise InputError("model.family lgbm needs feature columns: list them under `features:` in "
                         "competition.yaml or set model.features=[col1,col2]")
    leaks = [c for c in columns if c in spec.targets]
    if leaks:
        raise InputError(f"model.features: {leaks} are target column(s); remove them from the features")
    for role, frame in (("train", data.train), ("test", data.test)):
        if frame is None:
            continue
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InputError(f"{spec.file(getattr(spec, role))} ({role}): feature column(s) {missing} "
                             f"are missing; the columns are: {', '.join(map(str, frame.columns))}. "
                             "Fix `features:` in competition.yaml or model.features.")
    return columns


def prepare(cfg: ExperimentConfig, data) -> Prepared:
    """Choose the feature columns and which of them are categorical."""
    columns = feature_columns(cfg, data)
    categorical = [c for c in columns if not _is_numeric(data.train[c])]
    return Prepared(cfg, data, columns, categorical)


def fit_categories(frame: pd.DataFrame, categorical: list[str]) -> dict[str, list[str]]:
    """Sorted distinct values (as text) of each categorical column in ``frame``: the code book."""
    return {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}


def encode(frame: pd.DataFrame, columns: list[str], categories: dict[str, list[str]]) -> pd.DataFrame:
    """The feature frame LightGBM sees: floats, and categories with the code book's codes.

    >>> f = pd.DataFrame({"Sex": ["male", "female", None, "other"], "Age": [22, None, 30, 4]})
    >>> X = encode(f, ["Sex", "Age"], {"Sex": ["female", "male"]})
    >>> X["Sex"].cat.codes.tolist(), X["Age"].isna().tolist()
    ([1, 0, -1, -1], [False, True, False, False])
    """
    out = {}
    for c in columns:
        values = frame[c]
        if c in categories:
            known = categories[c]
            text = values.astype(object).map(lambda v: None if pd.isna(v) else str(v))
            # unseen values become missing first: pandas 4 will refuse them in pd.Categorical
            out[c] = pd.Categorical(text.where(text.isin(known), None), categories=known)
        else:
            numbers = pd.to_numeric(values, errors="coerce")
            bad = values[numbers.isna() & values.notna()]
            if len(bad):
                raise InputError(f"column {c!r}: numeric in the training rows but holds non-numbers here "
                                 f"(e.g. {bad.iloc[0]!r}); fix those values or list the column's values as text")
            out[c] = numbers.astype(np.float64)
    return pd.DataFrame(out, index=frame.index)


def fit_fold(prepared: Prepared, fold: int, train_idx: np.ndarray, valid_idx: np.ndarray,
             out_dir: Path, tracker=None) -> FoldResult:
    """Fit on ``train_idx`` (early stopping on an inner split of those rows); predict ``valid_idx`` (OOF)
    and the test set."""
    cfg, data = prepared.cfg, prepared.data
    m = cfg.model
    train_rows = data.train.iloc[train_idx]
    categories = fit_categories(train_rows, prepared.categorical)
    test = None if data.test is None else encode(data.test, prepared.columns, categories)
    features = classical.Features(encode(train_rows, prepared.columns, categories),
                                  encode(data.train.iloc[valid_idx], prepared.columns, categories), test)
    head, result = classical.fit_fold(prepared, train_idx, features, out_dir, tracker, "lgbm", lgbm=m.params,
                                      num_boost_round=m.num_boost_round, early_stopping_rounds=m.early_stopping_rounds,
                                      inner_valid=m.inner_valid, key="model.params")
    importance = _importance(head, prepared.columns)
    artifacts.write_json(Path(out_dir) / "lgbm.json", {
        "family": "lgbm", "task": head.task, "columns": prepared.columns, "categories": categories,
        "best_iterations": head.best_iterations, "importance": importance,
    })
    result.extra = {"importance": importance, "best_iterations": head.best_iterations,
                    "categorical": prepared.categorical}
    return result


def _importance(head, columns: list[str]) -> dict[str, float]:
    """Total gain per feature, summed over the head's boosters, largest first."""
    gain = sum((g for g in map(estimators.importance, head.models) if g is not None), np.zeros(len(columns)))
    order = np.argsort(-gain, kind="stable")
    return {columns[i]: round(float(gain[i]), 3) for i in order}


def predict(fold_dir: Path, cfg: ExperimentConfig, data, frame: pd.DataFrame) -> np.ndarray:
    """Predict ``frame`` with fold ``fold_dir``'s boosters and code book."""
    head = classical.load(fold_dir, "lgbm")
    saved = artifacts.read_json(Path(fold_dir) / "lgbm.json")
    missing = [c for c in saved["columns"] if c not in frame.columns]
    if missing:
        raise InputError(f"the frame to predict lacks feature column(s) {missing} that fold "
                         f"{Path(fold_dir).name} was trained on; columns are: {', '.join(map(str, frame.columns))}")
    return head.predict(encode(frame, saved["columns"], saved["categories"]))
