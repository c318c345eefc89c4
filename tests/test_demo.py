"""``make demo``: the BBC News reader and the whole pipeline, with cheap experiments standing in
for the MiniLM ones (the real demo runs them; its time is measured, not tested)."""

from __future__ import annotations

import pandas as pd
import pytest

from competition import demo


def test_bbc_frame_reads_every_article_of_the_installed_corpus():
    frame = demo.bbc_frame()
    assert len(frame) == 2225 and frame["id"].is_unique
    assert sorted(frame["category"].unique()) == ["business", "entertainment", "politics", "sports", "tech"]
    assert frame["text"].str.len().min() > 100 and not frame["text"].str.contains("\n").any()


def test_demo_runs_every_stage_and_scores_the_holdout(tmp_path, monkeypatch, capsys):
    cheap = "template: tfidf\ntrain:\n  limit_rows: 300\nmodel:\n  char_ngrams: null\n  word_ngrams: [1, 1]\n"
    monkeypatch.setattr(demo, "EXPERIMENTS", {"001": cheap, "002": cheap + "  C: 1.0\n",
                                              "003": cheap + "  estimator: ridge\n"})
    monkeypatch.setenv("WANDB_MODE", "disabled")
    summary = demo.run(tmp_path / "demo")
    shown = " ".join(capsys.readouterr().out.split())
    assert "folds ─" in shown and "stratified, 5 folds of" in shown, shown[:2000]    # no empty section
    assert set(summary["cv"]) == {"001", "002", "003"} and min(summary["cv"].values()) > 0.9
    # a re-run resumes: every fold is kept, the same stack and CVs come back
    done = {p: p.stat().st_mtime_ns for p in (tmp_path / "demo" / "experiments").glob("00*/fold*/done.json")}
    again = demo.run(tmp_path / "demo")
    assert again["cv"] == summary["cv"] and again["stack"] == summary["stack"]
    assert {p: p.stat().st_mtime_ns for p in done} == done and len(done) == 15
    assert summary["holdout"] > 0.9 and 0.9 < summary["stack"] <= 1.0
    submission = pd.read_csv(summary["submission"])
    solution = pd.read_csv(tmp_path / "demo" / "data" / "solution.csv")
    assert len(submission) == len(solution) and set(submission["id"]) == set(solution["id"])
    assert set(submission["category"]) <= set(demo.bbc_frame()["category"])
    # the holdout score is recorded in the submitted run, as `comp score` records it: the leaderboard has it
    from competition.leaderboard import leaderboard
    from competition.workspace import Workspace

    rows = {e.name: e for e in leaderboard(Workspace(tmp_path / "demo"))}
    assert rows[summary["source"]].scored == pytest.approx(summary["holdout"])


def test_warnings_reach_the_user_once_each_in_one_line(capsys):
    import warnings

    from competition.commands._common import user_warnings
    from competition.data import DataWarning

    with user_warnings():
        for _ in range(3):      # e.g. the data loaded again by stack, submit and score
            warnings.warn("test.csv: 32 text(s) also appear in train", DataWarning, stacklevel=1)
        warnings.warn("another one", DataWarning, stacklevel=1)
        warnings.warn("for developers", DeprecationWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.count("warning: test.csv: 32 text(s) also appear in train") == 1
    assert "warning: another one" in err and "developers" not in err and ".py:" not in err


def test_ctrl_c_in_the_demo_says_how_to_resume_and_exits_130(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the demo fine-tunes (Lightning would exit 1 with no word)."""
    import pytest
    import pytorch_lightning as pl

    from competition.models import torch_common

    scratch = ("model: {family: scratch, d_model: 32, heads: 2, layers: 1, vocab_size: 300, max_length: 32}\n"
               "train: {epochs: 1, limit_rows: 100}\n")
    monkeypatch.setattr(demo, "EXPERIMENTS", {"001": scratch})
    monkeypatch.setenv("WANDB_MODE", "disabled")
    real_run = demo.run
    monkeypatch.setattr(demo, "run", lambda fresh=False: real_run(tmp_path / "demo", fresh=fresh))

    class CtrlC(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            raise KeyboardInterrupt

    token = torch_common.EXTRA_CALLBACKS.set((CtrlC(),))
    try:
        with pytest.raises(SystemExit) as exit_:
            demo.main()
    finally:
        torch_common.EXTRA_CALLBACKS.reset(token)
    assert exit_.value.code == 130
    assert "interrupted: finished artifacts are kept; run the command again to resume" in capsys.readouterr().out
