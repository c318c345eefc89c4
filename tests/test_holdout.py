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
from competition.splitters import make_folds
from competition.holdout import stack_with_holdout
from competition.stack import stack
from competition.submit import best_run
from competition.train import train
from tests.workspaces import tweets_workspace


def workspace(tmp_path, experiments: dict[str, str], n_splits: int = 3):
    ws = tweets_workspace(tmp_path / "ws", n_train=1200, n_test=100, experiments=experiments, n_splits=n_splits)
    text = ws.spec_file.read_text().replace("metric: f1", "metric: log_loss")
    ws.spec_file.write_text(text)
    data = data_mod.load(load_spec(ws.spec_file))
    for exp in experiments:
        train(ws, load_config(ws, exp), data=data)
    return ws, data


def _folds(ws) -> np.ndarray:
    import pandas as pd

    return pd.read_csv(ws.root / "folds" / "folds.csv")["fold"].to_numpy()


def test_the_holdout_rows_follow_the_fold_scheme_and_the_seed(tmp_path):
    ws = tweets_workspace(tmp_path / "ws", n_train=1000, n_test=50)
    data = data_mod.load(load_spec(ws.spec_file))
    fold = _folds(ws)
    mask = holdout.holdout_rows(data, fold, 0.1, seed=3)
    assert abs(mask.sum() - 100) <= 3
    assert abs(data.y[mask].mean() - data.y.mean()) < 0.01                 # stratified
    assert (mask == holdout.holdout_rows(data, fold, 0.1, seed=3)).all()
    assert (mask != holdout.holdout_rows(data, fold, 0.1, seed=4)).any()
    with pytest.raises(InputError, match="between 0 and 0.5"):
        holdout.holdout_rows(data, fold, 0.9, seed=0)


@pytest.mark.parametrize("n_splits", [3, 5])
def test_every_fraction_takes_its_share_of_every_fold(tmp_path, n_splits):
    """Issue 24 #7: the holdout was one part of a split made with the folds' own splitter and seed,
    which nests in the folds: 0.2 with 5 folds, and 0.3-0.5 with 3, took all of fold 0."""
    ws = tweets_workspace(tmp_path / "ws", n_train=1200, n_test=50, n_splits=n_splits)
    data = data_mod.load(load_spec(ws.spec_file))
    fold = _folds(ws)
    for fraction in np.arange(0.05, 0.51, 0.05):
        mask = holdout.holdout_rows(data, fold, float(fraction), seed=42)
        assert abs(mask.sum() - fraction * 1200) <= n_splits * 2, (fraction, mask.sum())
        for k in range(n_splits):
            in_fold = fold == k
            assert abs(mask[in_fold].mean() - fraction) < 0.02, (fraction, k)          # its share of each fold
            kept = data.y[in_fold & ~mask]
            assert abs(kept.mean() - data.y[in_fold].mean()) < 0.03, (fraction, k)     # both classes kept


@pytest.mark.parametrize("fraction, says", [(1e-9, "holds out 0 of 1,200 train rows"),
                                             (0.001, "holds out 1 of 1,200 train rows"),
                                             (1, "between 0 and 0.5"), (-0.1, "between 0 and 0.5")])
def test_tiny_or_huge_fractions_are_refused_about_the_fraction(tmp_path, fraction, says):
    from typer.testing import CliRunner

    from competition.cli import app

    ws, _ = workspace(tmp_path, {"001": "template: tfidf\n", "002": "template: tfidf\nmodel: {C: 1.0}\n"})
    before = sorted(p.relative_to(ws.root) for p in ws.root.rglob("*"))
    result = CliRunner().invoke(app, ["stack", "--exp", "001,002", "--holdout", str(fraction), "-w", str(ws.root)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"--holdout {fraction:g}" in text and says in text and "n_splits" not in text, text
    assert sorted(p.relative_to(ws.root) for p in ws.root.rglob("*")) == before        # nothing written


def test_group_holdouts_take_whole_groups_and_time_holdouts_the_latest_rows(tmp_path):
    ws = tweets_workspace(tmp_path / "ws", n_train=1200, n_test=50)
    data = data_mod.load(load_spec(ws.spec_file))
    fold = _folds(ws)
    keyword = data.train["keyword"].fillna("none").astype(str)
    grouped = dataclasses.replace(data, spec=data.spec.model_copy(update={
        "folds": data.spec.folds.model_copy(update={"scheme": "group", "group": "keyword"})}))
    g_fold = make_folds(data.train["id"], data.y, task="binary", scheme="group", n_splits=3, seed=42,
                        groups=keyword)["fold"].to_numpy()
    mask = holdout.holdout_rows(grouped, g_fold, 0.2, seed=1)
    for name in keyword.unique():                                   # a group is held out whole or not at all
        assert len(set(mask[(keyword == name).to_numpy()])) == 1, name
    for k in range(3):
        assert 0.1 < mask[g_fold == k].mean() < 0.3
    timed = dataclasses.replace(data, spec=data.spec.model_copy(update={
        "folds": data.spec.folds.model_copy(update={"scheme": "time-ordered", "time": "id"})}))
    t_fold = np.repeat([0, 1, 2], 400)                             # ids are sorted: blocks in id order
    mask = holdout.holdout_rows(timed, t_fold, 0.25, seed=0)
    assert mask.sum() == 300 and mask[-300:].all()                 # the latest rows
    with pytest.raises(InputError, match="leaves fold 2 with 0 rows.*Hold out 0.332 or less"):
        holdout.holdout_rows(timed, t_fold, 0.4, seed=0)


def test_a_genuine_stack_is_preferred_and_nothing_of_the_holdout_is_seen(tmp_path):
    # word n-grams, and under-confident char n-grams: the meta-model recalibrates and combines them
    ws, data = workspace(tmp_path, {"001": "template: tfidf\nmodel: {char_ngrams: null}\n",
                                    "002": "template: tfidf\nmodel: {word_ngrams: null, C: 0.1}\n"})
    result = stack_with_holdout(ws, inputs=["001", "002"], meta="logistic", holdout=0.2, data=data)
    h = result.holdout
    assert h.rows == 240 and set(h.scores) == {"001", "002", "stack", "mean"}
    mask = holdout.holdout_rows(data, _folds(ws), 0.2, seed=42)
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
    result = stack_with_holdout(ws, inputs=["001", "leak"], meta="logistic", holdout=0.2, data=data)
    assert result.oof_score < cvs["001"] - 0.1                       # and the stack's CV trusts it
    h = result.holdout
    assert not h.preferred and h.scores["stack"] > h.scores["001"], h.scores
    assert json.loads((result.run_dir / "manifest.json").read_text())["holdout"]["preferred"] is False
    chosen, notes = best_run(ws, data)
    assert chosen != result.name and any(f"passed over {result.name}" in n for n in notes)


@pytest.mark.parametrize("n_splits", [3, 5])
def test_the_stack_holdout_runs_at_every_fraction(tmp_path, n_splits):
    """The crash of issue 24 #7 end to end: every fraction from 0.05 to 0.5 retrains and scores."""
    ws, data = workspace(tmp_path, {"001": "template: tfidf\nmodel: {char_ngrams: null}\n",
                                    "002": "template: tfidf\nmodel: {word_ngrams: null}\n"}, n_splits=n_splits)
    for fraction in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5):
        result = stack_with_holdout(ws, inputs=["001", "002"], meta="logistic", holdout=fraction, data=data,
                       name=f"h{n_splits}", force=True)
        h = result.holdout
        assert abs(h.rows - fraction * 1200) <= 2 * n_splits and set(h.scores) == {"001", "002", "stack", "mean"}
        assert all(0 < v < 1 for v in h.scores.values()), h.scores


def test_holdout_refuses_inputs_it_cannot_retrain(tmp_path):
    ws, data = workspace(tmp_path, {"001": "template: tfidf\n", "002": "template: tfidf\nmodel: {C: 1.0}\n"})
    stack(ws, inputs=["001", "002"], name="s01", data=data)
    with pytest.raises(InputError, match="s01 is a stack, not an experiment"):
        stack_with_holdout(ws, inputs=["001", "s01"], holdout=0.1, data=data, name="s02")
    assert not ws.run_dir("s02").exists()


def test_a_holdout_folder_from_another_split_is_retrained_not_refused(tmp_path):
    """The holdout's own workspace is kept so a rerun resumes. One left by another split (an earlier
    comp drew the holdout differently, or its folds were rewritten) has folds whose rows no longer
    match: the rerun retrains there and scores as a fresh one does, instead of refusing stale folds."""
    ws, data = workspace(tmp_path, {"001": "template: tfidf\nmodel: {char_ngrams: null}\n",
                                    "002": "template: tfidf\nmodel: {word_ngrams: null}\n"})
    first = stack_with_holdout(ws, inputs=["001", "002"], meta="logistic", holdout=0.2, data=data, name="h1").holdout
    for done in (ws.root / "holdout" / "0.2-42" / "experiments").glob("*/fold*/done.json"):
        info = json.loads(done.read_text())                         # trained on the folds of another split
        done.write_text(json.dumps({**info, "folds_hash": "0" * len(info["folds_hash"])}))
    again = stack_with_holdout(ws, inputs=["001", "002"], meta="logistic", holdout=0.2, data=data, name="h1", force=True).holdout
    assert again.scores == pytest.approx(first.scores) and again.rows == first.rows
