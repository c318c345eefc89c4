"""Adding a model family is one module plus its registration: this module is such a family.

``keyword_rate`` predicts the rate of the positive class among the training rows that share the
row's keyword, shrunk towards the training rows' overall rate. Its settings (``KeywordRateModel``)
and its three verbs (``prepare``, ``fit_fold``, ``predict``) are all defined here; registering them
is the only step, and comp's own ``train`` then fits it on real tweets and writes a scored run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from pydantic import Field

from competition import artifacts
from competition.config import ExperimentConfig, load_config
from competition.families import FamilyConfig, family_names, register, torch_families, unregister
from competition.errors import InputError
from competition.models import FoldResult, family
from competition.train import train
from tests.scoring import nested_cv
from tests.workspaces import tweets_workspace


# -- the family: settings and the three verbs of competition.models.ModelFamily -----------------

class KeywordRateModel(FamilyConfig):
    """The positive rate of each value of one column, shrunk towards the prior."""

    family: Literal["keyword_rate"] = "keyword_rate"
    column: str = Field("keyword", description="the column whose values are rated")
    smoothing: float = Field(10.0, ge=0, description="pseudo-rows at the prior rate added to every value")


@dataclass
class Prepared:
    cfg: ExperimentConfig
    data: object


def prepare(cfg: ExperimentConfig, data) -> Prepared:
    if cfg.model.column not in data.train.columns:
        raise InputError(f"model.column: no column {cfg.model.column!r} in the train file")
    return Prepared(cfg, data)


def _values(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].fillna("").astype(str)


def _rate(rates: dict, frame: pd.DataFrame, column: str) -> np.ndarray:
    """(n, 1): each row's value's rate, the prior for a value the training rows never held."""
    by_value = rates["values"]
    return np.array([[by_value.get(v, rates["prior"])] for v in _values(frame, column)], dtype=np.float64)


def fit_fold(prepared: Prepared, fold: int, train_idx: np.ndarray, valid_idx: np.ndarray, out_dir: Path,
             tracker=None) -> FoldResult:
    m, data = prepared.cfg.model, prepared.data
    y = pd.Series(np.asarray(data.y)[train_idx], dtype=float)
    prior = float(y.mean())
    groups = y.groupby(_values(data.train.iloc[train_idx], m.column).to_numpy())
    rates = {"prior": prior, "values": ((groups.sum() + m.smoothing * prior) / (groups.count() + m.smoothing)).to_dict()}
    artifacts.write_json(Path(out_dir) / "rates.json", rates)
    test = _rate(rates, data.test, m.column) if data.test is not None else None
    return FoldResult(oof=_rate(rates, data.train.iloc[valid_idx], m.column), test=test,
                      extra={"values": len(rates["values"])})


def predict(fold_dir: Path, cfg: ExperimentConfig, data, frame: pd.DataFrame) -> np.ndarray:
    return _rate(artifacts.read_json(Path(fold_dir) / "rates.json"), frame, cfg.model.column)


# -- the tests ---------------------------------------------------------------------------------

@pytest.fixture
def keyword_rate():
    register(KeywordRateModel, __name__)     # the implementation: this module, imported by name
    yield
    unregister("keyword_rate")


def test_a_registered_family_trains_into_a_scored_run(keyword_rate, tmp_path):
    assert "keyword_rate" in family_names() and "keyword_rate" not in torch_families()
    assert family("keyword_rate").fit_fold is fit_fold
    ws = tweets_workspace(tmp_path / "ws", experiments={"001": "model:\n  family: keyword_rate\n  smoothing: 5\n"})
    cfg = load_config(ws, "001")
    assert isinstance(cfg.model, KeywordRateModel) and cfg.model.smoothing == 5 and not cfg.is_torch
    result = train(ws, cfg)
    assert result.complete and [r.status for r in result.folds] == ["trained"] * 3
    run = ws.run_dir("001")
    assert json.loads((run / "manifest.json").read_text())["family"] == "keyword_rate"

    # each OOF row is its keyword's shrunk rate in the *other* folds, computed here from the files
    rows = pd.read_csv(ws.root / "train.csv").merge(pd.read_csv(ws.folds_file), on="id")
    rows["keyword"] = rows["keyword"].fillna("")
    oof = pd.read_parquet(run / "oof.parquet").rename(columns={"target": "pred"}).merge(rows, on=["id", "fold"])
    assert len(oof) == len(rows)
    for k, here in oof.groupby("fold"):
        rest = rows[rows["fold"] != k]
        prior = rest["target"].mean()
        stats = rest.groupby("keyword")["target"].agg(["sum", "count"])
        rate = ((stats["sum"] + 5 * prior) / (stats["count"] + 5)).reindex(here["keyword"]).fillna(prior)
        np.testing.assert_allclose(here["pred"], rate.to_numpy(), rtol=0, atol=1e-12)

    # the run's score is the metric on those OOF rows; test.parquet is the folds' mean; a fold replays
    saved = json.loads((run / "metrics.json").read_text())
    pred = pd.read_parquet(run / "oof.parquet")
    y = rows.set_index("id").loc[pred["id"], "target"].to_numpy()
    assert saved["oof_score"] == pytest.approx(nested_cv("f1", y, pred[["target"]].to_numpy(), "binary", pred["fold"]))
    test = pd.read_parquet(run / "test.parquet")
    folds = test[[f"target__fold{k}" for k in range(3)]].to_numpy()
    np.testing.assert_allclose(test["target"], folds.mean(axis=1))
    frame = pd.read_csv(ws.root / "test.csv")
    np.testing.assert_array_equal(family("keyword_rate").predict(ws.fold_dir("001", 1), cfg, None, frame)[:, 0],
                                  folds[:, 1])


def test_the_registry_is_the_one_list_of_families(keyword_rate, tmp_path):
    ws = tweets_workspace(tmp_path / "ws", folds=False, experiments={
        "001": "model:\n  family: keyword_rate\n  smoothness: 5\n", "002": "model:\n  family: keyword_rat\n"})
    with pytest.raises(InputError) as err:              # its own keys are the valid ones
        load_config(ws, "001")
    assert "model.smoothness" in str(err.value) and "column, family, smoothing" in str(err.value)
    with pytest.raises(InputError) as err:              # an unknown family lists the registered ones
        load_config(ws, "002")
    assert "'keyword_rate'" in str(err.value) and "'tfidf'" in str(err.value)
    with pytest.raises(TypeError, match="family: Literal"):
        register(type("Nameless", (FamilyConfig,), {}), __name__)
    with pytest.raises(ValueError, match="registered already"):
        register(type("Again", (KeywordRateModel,), {}), __name__)
    unregister("keyword_rate")
    assert "keyword_rate" not in family_names()
    with pytest.raises(InputError, match="'keyword_rate' found using 'family' does not match"):
        load_config(ws, "001")
    with pytest.raises(InputError, match="unknown model family 'keyword_rate'; valid: encoder, scratch, tfidf"):
        family("keyword_rate")
