"""comp stack --holdout: the inputs and the stack retrained without an outer holdout, and the stack
preferred only where it beats its best input and the inputs' mean on those rows."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from competition import data as data_mod
from competition import holdout, metrics, runs
from competition.config import load_config
from competition.errors import InputError
from competition.spec import load_spec
from competition.stack import stack
from competition.submit import best_run
from competition.train import train
from tests.workspaces import tweets_workspace


def workspace(tmp_path, experiments: dict[str, str]):
    ws = tweets_workspace(tmp_path / "ws", n_train=1200, n_test=100, experiments=experiments)
    text = ws.spec_file.read_text().replace("metric: f1", "metric: log_loss")
    ws.spec_file.write_text(text)
    data = data_mod.load(load_spec(ws.spec_file))
    for exp in experiments:
        train(ws, load_config(ws, exp), data=data)
    return ws, data


def test_the_holdout_rows_follow_the_fold_scheme_and_the_seed(tmp_path):
    ws = tweets_workspace(tmp_path / "ws", n_train=1000, n_test=50)
    data = data_mod.load(load_spec(ws.spec_file))
    mask = holdout.holdout_rows(data, 0.1, seed=3)
    assert mask.sum() == 100
    assert abs(data.y[mask].mean() - data.y.mean()) < 0.01                 # stratified
    assert (mask == holdout.holdout_rows(data, 0.1, seed=3)).all()
    assert (mask != holdout.holdout_rows(data, 0.1, seed=4)).any()
    with pytest.raises(InputError, match="between 0 and 0.5"):
        holdout.holdout_rows(data, 0.9, seed=0)


def test_a_genuine_stack_is_preferred_and_nothing_of_the_holdout_is_seen(tmp_path):
    # word n-grams, and under-confident char n-grams: the meta-model recalibrates and combines them
    ws, data = workspace(tmp_path, {"001": "template: tfidf\nmodel: {char_ngrams: null}\n",
                                    "002": "template: tfidf\nmodel: {word_ngrams: null, C: 0.1}\n"})
    result = stack(ws, inputs=["001", "002"], meta="logistic", holdout=0.2, data=data)
    h = result.holdout
    assert h.rows == 240 and set(h.scores) == {"001", "002", "stack", "mean"}
    mask = holdout.holdout_rows(data, 0.2, seed=42)
    held_ids = set(data.train.loc[mask, "id"].astype(str))
    sub = ws.root / "holdout" / "0.2-42"
    for run in ("001", "002", "stack"):                   # trained without the holdout rows, which it predicts
        oof = runs.load_run(holdout._workspace(sub, data.spec), run).oof()
        test = runs.load_run(holdout._workspace(sub, data.spec), run).test()
        assert not held_ids & set(oof["id"].astype(str)) and set(test["id"].astype(str)) == held_ids
    # the reported holdout scores are the metric of those predictions against the held-out labels
    sub_ws = holdout._workspace(sub, data.spec)
    for run in ("001", "002"):
        pred = runs.load_run(sub_ws, run).test()[["target"]].to_numpy()
        assert h.scores[run] == pytest.approx(metrics.score("log_loss", data.y[mask], pred, "binary"))
    assert h.preferred, h.scores
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["holdout"]["preferred"] is True
    assert not any("passed over" in n for n in best_run(ws, data)[1])     # preferred: never passed over


def test_a_stack_on_a_leaky_input_is_not_preferred_and_submit_passes_over_it(tmp_path, monkeypatch):
    """Input 'leak' predicts its validation rows with their labels mixed in (a leak in OOF only):
    its CV and the stack's CV look excellent; on the holdout, predicted as a test set, they do not."""
    from competition.models import tfidf

    honest = tfidf.fit_fold

    def leaky(prepared, fold, train_idx, valid_idx, out_dir, tracker=None):
        fit = honest(prepared, fold, train_idx, valid_idx, out_dir, tracker)
        if prepared.cfg.exp != "leak":
            return fit
        y = prepared.data.y[valid_idx][:, None]
        return dataclasses.replace(fit, oof=0.4 * fit.oof + 0.6 * y)

    monkeypatch.setattr(tfidf, "fit_fold", leaky)
    ws, data = workspace(tmp_path, {"001": "template: tfidf\n", "leak": "template: tfidf\nmodel: {C: 1.0}\n"})
    cvs = {r: runs.load_run(ws, r).score for r in ("001", "leak")}
    assert cvs["leak"] < cvs["001"] - 0.1                            # the leak makes it look far better
    result = stack(ws, inputs=["001", "leak"], meta="logistic", holdout=0.2, data=data)
    assert result.oof_score < cvs["001"] - 0.1                       # and the stack's CV trusts it
    h = result.holdout
    assert not h.preferred and h.scores["stack"] > h.scores["001"], h.scores
    assert json.loads((result.run_dir / "manifest.json").read_text())["holdout"]["preferred"] is False
    chosen, notes = best_run(ws, data)
    assert chosen != result.name and any(f"passed over {result.name}" in n for n in notes)


def test_holdout_refuses_inputs_it_cannot_retrain(tmp_path):
    ws, data = workspace(tmp_path, {"001": "template: tfidf\n", "002": "template: tfidf\nmodel: {C: 1.0}\n"})
    stack(ws, inputs=["001", "002"], name="s01", data=data)
    with pytest.raises(InputError, match="s01 is a stack, not an experiment"):
        stack(ws, inputs=["001", "s01"], holdout=0.1, data=data, name="s02")
    assert not ws.run_dir("s02").exists()
