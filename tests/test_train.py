"""The train stage: artifacts, resume, locks, refusals — with the fast tfidf family on real tweets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from competition import thresholds
from competition.config import load_config
from competition.errors import InputError
from competition.train import train
from tests.scoring import nested_cv
from tests.workspaces import tweets_workspace


@pytest.fixture
def ws(tmp_path):
    return tweets_workspace(tmp_path / "ws")


def test_full_run_writes_every_artifact(ws):
    result = train(ws, load_config(ws, "001"))
    run = ws.run_dir("001")
    assert result.complete and [r.status for r in result.folds] == ["trained"] * 3
    for name in ("config.yaml", "manifest.json", "oof.parquet", "test.parquet", "metrics.json"):
        assert (run / name).is_file(), name
    oof = pd.read_parquet(run / "oof.parquet")
    train_ids = pd.read_csv(ws.root / "train.csv")["id"]
    assert sorted(oof["id"]) == sorted(train_ids) and oof["id"].is_unique
    assert not oof.isna().any().any()
    test = pd.read_parquet(run / "test.parquet")
    assert list(test.columns) == ["id", "target", "target__fold0", "target__fold1", "target__fold2"]
    assert np.allclose(test["target"], test[[f"target__fold{k}" for k in range(3)]].mean(axis=1))
    # the reported CV is what the saved OOF gives, each fold cut at a threshold from the other folds
    saved = json.loads((run / "metrics.json").read_text())
    y = pd.read_csv(ws.root / "train.csv").set_index("id").loc[oof["id"], "target"].to_numpy()
    again = nested_cv("f1", y, oof[["target"]].to_numpy(), "binary", oof["fold"])
    assert saved["oof_score"] == pytest.approx(again) == pytest.approx(result.oof_score)
    assert 0.55 < saved["oof_score"] <= 1.0
    in_sample, threshold = thresholds.evaluate("f1", y, oof[["target"]].to_numpy(), "binary")
    assert saved["in_sample_score"] == pytest.approx(in_sample) and in_sample >= saved["oof_score"]
    assert saved["threshold"] == threshold == result.threshold          # what submissions use
    assert [r.score for r in result.folds] == [saved["folds"][str(k)] for k in range(3)]


def test_resume_skips_complete_folds_and_force_retrains(ws):
    cfg = load_config(ws, "001")
    train(ws, cfg, folds="0,2")
    manifest = json.loads((ws.run_dir("001") / "manifest.json").read_text())
    assert manifest["status"] == "partial" and manifest["folds_done"] == [0, 2]
    assert not (ws.run_dir("001") / "oof.parquet").exists()
    again = train(ws, cfg, folds="all")
    assert [r.status for r in again.folds] == ["skipped", "trained", "skipped"] and again.complete
    forced = train(ws, cfg, folds="1", force=True)
    assert [r.status for r in forced.folds] == ["trained"]


def test_input_preparation_is_timed_once_per_process(ws, monkeypatch):
    import time

    from competition.models import tfidf

    real_prepare = tfidf.prepare

    def slow_prepare(*args, **kwargs):
        time.sleep(0.3)
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(tfidf, "prepare", slow_prepare)
    cfg = load_config(ws, "001")
    train(ws, cfg, folds="0,2")
    train(ws, cfg, folds="all")        # a second process-like call prepares again for fold 1
    done = {k: json.loads((ws.fold_dir("001", k) / "done.json").read_text()) for k in range(3)}
    assert done[0]["prepare_seconds"] >= 0.3 and done[1]["prepare_seconds"] >= 0.3
    assert done[2]["prepare_seconds"] == 0.0
    manifest = json.loads((ws.run_dir("001") / "manifest.json").read_text())
    assert manifest["prepare_seconds"] == pytest.approx(done[0]["prepare_seconds"] + done[1]["prepare_seconds"])
    # a fold from before the figure was recorded makes the total unknown, not zero
    old = {k: v for k, v in done[2].items() if k != "prepare_seconds"}
    (ws.fold_dir("001", 2) / "done.json").write_text(json.dumps(old))
    train(ws, cfg, folds="all")
    assert json.loads((ws.run_dir("001") / "manifest.json").read_text())["prepare_seconds"] is None


def test_interrupted_fold_resumes_to_the_same_oof(ws, tmp_path, monkeypatch):
    from competition.models import tfidf

    clean = tweets_workspace(tmp_path / "clean")
    reference = train(clean, load_config(clean, "001"))
    real_fit = tfidf.fit_fold

    def dies_on_fold_1(prepared, fold, *args, **kwargs):
        if fold == 1:
            raise KeyboardInterrupt
        return real_fit(prepared, fold, *args, **kwargs)

    monkeypatch.setattr(tfidf, "fit_fold", dies_on_fold_1)
    with pytest.raises(KeyboardInterrupt):
        train(ws, load_config(ws, "001"))
    run = ws.run_dir("001")
    assert (run / "fold0" / "done.json").is_file()
    assert not (run / "fold1").exists() and not list(run.glob("fold1.tmp-*"))
    monkeypatch.setattr(tfidf, "fit_fold", real_fit)
    resumed = train(ws, load_config(ws, "001"))
    assert [r.status for r in resumed.folds] == ["skipped", "trained", "trained"]
    a = pd.read_parquet(run / "oof.parquet")
    b = pd.read_parquet(clean.run_dir("001") / "oof.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert resumed.oof_score == reference.oof_score


def test_same_seed_same_oof(ws, tmp_path):
    other = tweets_workspace(tmp_path / "other")
    train(ws, load_config(ws, "001"))
    train(other, load_config(other, "001"))
    pd.testing.assert_frame_equal(pd.read_parquet(ws.run_dir("001") / "oof.parquet"),
                                  pd.read_parquet(other.run_dir("001") / "oof.parquet"))


def test_changed_config_is_refused_until_forced(ws):
    train(ws, load_config(ws, "001"), folds="0")
    with pytest.raises(InputError, match="model.C"):
        train(ws, load_config(ws, "001", ["model.C=1.0"]), folds="1")
    assert train(ws, load_config(ws, "001", ["model.C=1.0"]), folds="1", force=True).folds[0].status == "trained"


def test_tracking_settings_do_not_block_resume(ws):
    """Turning wandb on for the remaining folds changes no prediction: resume, not refusal."""
    train(ws, load_config(ws, "001", ["track.wandb=false"]), folds="0")
    rest = train(ws, load_config(ws, "001", ["track.wandb=true", "track.project=elsewhere"]), folds="all")
    assert [r.status for r in rest.folds] == ["skipped", "trained", "trained"] and rest.complete


def test_changed_folds_are_refused(ws):
    from competition import data, folds
    from competition.spec import load_spec

    train(ws, load_config(ws, "001"), folds="0")
    spec = load_spec(ws.spec_file)
    new = spec.model_copy(update={"folds": spec.folds.model_copy(update={"seed": 7})})
    object.__setattr__(new, "_root", spec.root)
    folds.write_folds(ws, data.load(new), force=True)
    with pytest.raises(InputError, match="folds changed"):
        train(ws, load_config(ws, "001"), folds="1")


def test_busy_fold_is_left_alone(ws):
    from filelock import FileLock

    run = ws.run_dir("001")
    run.mkdir(parents=True)
    with FileLock(str(run / "fold1.lock")):
        result = train(ws, load_config(ws, "001"))
    assert [r.status for r in result.folds] == ["trained", "busy", "trained"]
    assert not result.complete


def test_two_processes_train_different_folds_at_once(ws):
    env = {**os.environ, "COMP_WORKSPACE": str(ws.root), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "competition.cli", "train", "exp=001", "--fold"]
    procs = [subprocess.Popen([*cmd, f], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for f in ("0", "1,2")]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    for k in range(3):
        done = json.loads((ws.run_dir("001") / f"fold{k}" / "done.json").read_text())
        assert done["fold"] == k
    manifest = json.loads((ws.run_dir("001") / "manifest.json").read_text())
    assert manifest["status"] == "complete"


def test_bad_fold_selection(ws):
    with pytest.raises(InputError, match="folds are 0..2"):
        train(ws, load_config(ws, "001"), folds="5")


def test_limit_rows_keeps_the_oof_contract(ws):
    result = train(ws, load_config(ws, "001", ["train.limit_rows=100"]))
    oof = pd.read_parquet(ws.run_dir("001") / "oof.parquet")
    assert result.complete and len(oof) == 600
    done = json.loads((ws.run_dir("001") / "fold0" / "done.json").read_text())
    assert done["n_train"] == 100


# -- a run is one config, changed only by a finished fold ----------------------------------

def test_partial_force_with_a_new_config_leaves_a_partial_run_that_names_the_folds(ws):
    from competition.leaderboard import leaderboard

    train(ws, load_config(ws, "001"))
    changed = load_config(ws, "001", ["model.min_df=3", "model.C=1.0"])
    result = train(ws, changed, folds="0", force=True)
    run = ws.run_dir("001")
    manifest = json.loads((run / "manifest.json").read_text())
    assert not result.complete and manifest["status"] == "partial"
    assert manifest["folds_other_config"] == {"1": ["model.C", "model.min_df"], "2": ["model.C", "model.min_df"]}
    assert not (run / "oof.parquet").exists() and not (run / "metrics.json").exists()
    entry = next(e for e in leaderboard(ws) if e.name == "001")
    assert entry.status == "partial" and entry.cv is None and "folds 1,2 trained with another config" in entry.notes
    # the same command on the other folds retrains them (they are not "done" under this config)
    again = train(ws, changed, folds="all")
    assert [r.status for r in again.folds] == ["skipped", "trained", "trained"] and again.complete
    fresh = tweets_workspace(ws.root.parent / "fresh")
    pd.testing.assert_frame_equal(pd.read_parquet(run / "oof.parquet"),
                                  pd.read_parquet(train(fresh, load_config(fresh, "001", ["model.min_df=3", "model.C=1.0"])).run_dir / "oof.parquet"))


def test_cli_says_which_folds_differ_after_a_partial_force(ws):
    from typer.testing import CliRunner

    from competition.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["train", "exp=001", "-w", str(ws.root)]).exit_code == 0
    out = runner.invoke(app, ["train", "exp=001", "model.min_df=3", "--fold", "0", "--force", "-w", str(ws.root)])
    assert out.exit_code == 0
    text = " ".join(out.output.split())
    assert "folds 1,2 were trained with another config (changed: model.min_df)" in text
    assert "comp train exp=001 model.min_df=3 --fold 1,2" in text


@pytest.mark.parametrize("override,error", [
    (["model.estimator=lgbm", "model.lgbm.num_leaves=1"], "num_leaves"),    # refused by LightGBM in the fold
    (["model.word_ngrams=null", "model.char_ngrams=null"], "no features"),   # refused while preparing
])
def test_a_run_that_fails_before_a_fold_finishes_changes_nothing(ws, override, error):
    train(ws, load_config(ws, "001"))
    run = ws.run_dir("001")
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.suffix != ".lock"}
    with pytest.raises(Exception, match=error):
        train(ws, load_config(ws, "001", override), folds="0", force=True)
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.suffix != ".lock"}
    assert after == before
    # and the next plain run is not refused for a config change
    assert [r.status for r in train(ws, load_config(ws, "001")).folds] == ["skipped"] * 3


def test_a_new_run_that_fails_leaves_no_folder(ws):
    with pytest.raises(Exception):
        train(ws, load_config(ws, "001", ["model.word_ngrams=null", "model.char_ngrams=null"]))
    assert not ws.run_dir("001").exists()


def test_a_new_run_that_fails_in_its_fold_with_tracking_on_leaves_no_folder(ws, monkeypatch):
    """wandb's offline logs and cache (written before the fold fails) are no reason to keep the folder."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_CACHE_DIR", raising=False)
    cfg = load_config(ws, "001", ["track.wandb=true", "model.estimator=lgbm", "model.lgbm.num_leaves=1"])
    with pytest.raises(Exception, match="num_leaves"):
        train(ws, cfg)
    assert not ws.run_dir("001").exists()


def test_ctrl_c_in_a_torch_fold_keeps_finished_folds_says_so_and_exits_130(tmp_path):
    """Lightning turns Ctrl-C inside fit into sys.exit(1); the user must see what the classical
    families show: the interrupted message, exit 130, finished folds kept, a re-run resumes."""
    import pytorch_lightning as pl
    from typer.testing import CliRunner

    from competition.cli import app
    from competition.models import torch_common

    scratch = ("model: {family: scratch, d_model: 32, heads: 2, layers: 1, vocab_size: 300, max_length: 32}\n"
               "train: {epochs: 1, batch_size: 32}\n")
    ws = tweets_workspace(tmp_path / "ws", n_train=300, n_test=40, experiments={"010": scratch})
    fits = []

    class CtrlCInSecondFold(pl.Callback):
        def on_train_start(self, trainer, module):
            fits.append(1)

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if len(fits) == 2 and batch_idx == 1:
                raise KeyboardInterrupt

    token = torch_common.EXTRA_CALLBACKS.set((CtrlCInSecondFold(),))
    try:
        out = CliRunner().invoke(app, ["train", "exp=010", "-w", str(ws.root)])
    finally:
        torch_common.EXTRA_CALLBACKS.reset(token)
    assert out.exit_code == 130, out.output
    assert "interrupted: finished artifacts are kept; run the command again to resume" in " ".join(out.output.split())
    run = ws.run_dir("010")
    assert (run / "fold0" / "done.json").is_file() and not (run / "fold1").exists()
    assert not list(run.glob("fold1.tmp-*"))
    resumed = train(ws, load_config(ws, "010"))
    assert [r.status for r in resumed.folds] == ["skipped", "trained", "trained"] and resumed.complete


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_damaged_prediction_files_are_named_with_the_fix_not_a_traceback(ws, damage):
    """A deleted or truncated oof.parquet: the leaderboard says damaged, stack and submit name the
    file and the command that remakes it (exit 2), train --fold all names the fold to retrain."""
    from typer.testing import CliRunner

    from competition.cli import app
    from competition.leaderboard import leaderboard

    train(ws, load_config(ws, "001"))
    (ws.root / "experiments" / "002.yaml").write_text("template: tfidf\nmodel: {C: 1.0}\n")
    train(ws, load_config(ws, "002"))
    path = ws.run_dir("001") / "oof.parquet"
    path.unlink() if damage == "delete" else path.write_bytes(path.read_bytes()[:50])
    entry = next(e for e in leaderboard(ws) if e.name == "001")
    assert entry.status == "damaged" and entry.cv is None and "`comp train exp=001 --fold all`" in entry.notes[0]
    runner = CliRunner()
    out = runner.invoke(app, ["stack", "--exp", "001,002", "-w", str(ws.root)])
    assert out.exit_code == 2 and "oof.parquet" in out.output and "comp train exp=001" in out.output, out.output
    fold_file = ws.fold_dir("001", 1) / "oof.parquet"
    fold_file.unlink() if damage == "delete" else fold_file.write_bytes(b"PAR1 broken")
    out = runner.invoke(app, ["train", "exp=001", "-w", str(ws.root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "comp train exp=001 --fold 1 --force" in text, out.output


def test_data_warnings_in_full_at_check_and_one_line_elsewhere(ws):
    from typer.testing import CliRunner

    from competition.cli import app

    runner = CliRunner()
    check = " ".join(runner.invoke(app, ["check", "-w", str(ws.root)]).output.split())
    assert "mojibake" in check and "comp check` lists them" not in check
    out = runner.invoke(app, ["train", "exp=001", "--fold", "0", "-w", str(ws.root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 0 and "mojibake" not in text
    assert text.count("data warnings about the files (`comp check` lists them)") == 1


def test_a_torch_fold_shows_a_line_per_validation_when_output_is_not_a_terminal(tmp_path):
    from typer.testing import CliRunner

    from competition.cli import app

    scratch = ("model: {family: scratch, d_model: 32, heads: 2, layers: 1, vocab_size: 300, max_length: 32}\n"
               "train: {epochs: 2, batch_size: 32, val_per_epoch: 2}\n")
    ws = tweets_workspace(tmp_path / "ws", n_train=200, n_test=20, n_splits=2, experiments={"010": scratch})
    out = CliRunner().invoke(app, ["train", "exp=010", "--fold", "0", "-w", str(ws.root)])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if "val f1" in line and "s left" in line]
    assert len(lines) == 4 and "epoch 2/2" in lines[-1] and "~0s left" in lines[-1]


def test_the_cli_prints_the_nested_cv_and_the_submission_threshold_to_four_decimals(ws):
    import re

    from typer.testing import CliRunner

    from competition.cli import app

    out = CliRunner().invoke(app, ["train", "exp=001", "-w", str(ws.root)])
    found = re.search(r"OOF f1: (0\.\d{4}) \(thresholds chosen on the other folds; (0\.\d{4}) in-sample, "
                      r"optimistic; submissions use (0\.\d{4})\)", out.output)
    assert out.exit_code == 0 and found, out.output
    saved = json.loads((ws.run_dir("001") / "metrics.json").read_text())
    assert found.groups() == tuple(f"{saved[k]:.4f}" for k in ("oof_score", "in_sample_score", "threshold"))
    assert "fold 0: trained  score 0." in out.output and "at its own threshold" in out.output


def test_a_run_records_the_folds_whose_own_labels_chose_its_epochs(tmp_path):
    """select: fold chooses each fold's epoch on that fold (recorded per fold and in the manifest,
    marked on the leaderboard); select: inner chooses on held-out training rows (nothing recorded).
    A run trained before these were recorded resumes as it was and is read as select: fold."""
    import yaml
    from typer.testing import CliRunner

    from competition import artifacts
    from competition.cli import app
    from competition.leaderboard import leaderboard

    scratch = ("model: {family: scratch, d_model: 32, heads: 2, layers: 1, vocab_size: 300, max_length: 32}\n"
               "train: {epochs: 2, batch_size: 32}\n")
    ws = tweets_workspace(tmp_path / "ws", n_train=200, n_test=20, n_splits=2, experiments={"010": scratch})
    train(ws, load_config(ws, "010"))
    run = ws.run_dir("010")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["select"] == "fold" and manifest["selected_on"] == {"best_epoch": [0, 1]}
    for k in (0, 1):
        assert json.loads((ws.fold_dir("010", k) / "done.json").read_text())["selected_on"] == {"best_epoch": [k]}
    (entry,) = leaderboard(ws)
    assert entry.selected_on == {"best_epoch": [0, 1]} and entry.untouched_folds == () and entry.untouched_cv is None
    assert any("best epoch on folds 0,1 (each by its own validation); no fold untouched" in n for n in entry.notes)

    # as an older version wrote it: no select / inner_valid / tuned_on keys, no selected_on
    for path in [run / "config.yaml", *(ws.fold_dir("010", k) / "config.yaml" for k in (0, 1))]:
        saved = yaml.safe_load(path.read_text())
        del saved["train"]["select"], saved["train"]["inner_valid"], saved["tuned_on"]
        path.write_text(yaml.safe_dump(saved, sort_keys=False))
    for k in (0, 1):
        done = json.loads((ws.fold_dir("010", k) / "done.json").read_text())
        del done["select"], done["selected_on"], done["files"]
        artifacts.write_json(ws.fold_dir("010", k) / "done.json", done)
    (run / "manifest.json").unlink()
    again = train(ws, load_config(ws, "010"))
    assert [r.status for r in again.folds] == ["skipped", "skipped"]           # a new default is no change
    assert json.loads((run / "manifest.json").read_text())["selected_on"] == {"best_epoch": [0, 1]}

    out = CliRunner().invoke(app, ["train", "exp=010", "train.select=inner", "--force", "-w", str(ws.root)])
    assert out.exit_code == 0, out.output
    assert len([line for line in out.output.splitlines() if "inner f1" in line]) == 4   # 2 folds x 2 epochs
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["select"] == "inner" and manifest["selected_on"] == {}
    (entry,) = leaderboard(ws)
    assert entry.selected_on is None and not any("chosen on scored rows" in n for n in entry.notes)


def test_lightgbm_records_its_early_stopping_as_inner(ws):
    (ws.experiments_dir / "002.yaml").write_text(
        "template: tfidf\nmodel: {estimator: lgbm, lgbm: {num_boost_round: 20}}\n")
    train(ws, load_config(ws, "002"), folds="0")
    done = json.loads((ws.fold_dir("002", 0) / "done.json").read_text())
    assert done["select"] == "inner" and done["selected_on"] == {}


@pytest.mark.parametrize("rule", ["drop", "majority"])
def test_conflicting_duplicates_are_resolved_among_each_folds_training_rows_only(tmp_path, monkeypatch, rule):
    """Texts repeated with different labels: each fold's model trains on its training rows with
    the rule applied among those rows alone; every row is still predicted once as OOF."""
    from competition.models import tfidf

    ws = tweets_workspace(tmp_path / "ws", n_train=300, n_test=40, folds=False)
    frame = pd.read_csv(ws.root / "train.csv")
    twins = frame.head(30).copy()
    twins["id"] += 1_000_000
    twins["target"] = 1 - twins["target"]                       # the same texts, the other label
    triplets = frame.head(10).copy()
    triplets["id"] += 2_000_000                                  # a third copy of 10 of them: 2 votes to 1
    pd.concat([frame, twins, triplets]).to_csv(ws.root / "train.csv", index=False)
    from competition import data as data_mod
    from competition import folds as folds_mod
    from competition.spec import load_spec

    ds = data_mod.load(load_spec(ws.spec_file))
    folds_mod.write_folds(ws, ds)
    seen = {}
    honest = tfidf.fit_fold

    def recording(prepared, fold, train_idx, valid_idx, out_dir, tracker=None):
        seen[fold] = (np.asarray(train_idx).copy(), np.asarray(valid_idx).copy())
        return honest(prepared, fold, train_idx, valid_idx, out_dir, tracker)

    monkeypatch.setattr(tfidf, "fit_fold", recording)
    cfg = load_config(ws, "001", [f"data.conflicts={rule}"])
    result = train(ws, cfg, data=ds)
    assert result.complete and len(pd.read_parquet(ws.run_dir("001") / "oof.parquet")) == len(ds.train)
    text, y = ds.train["text"].astype(str).to_numpy(), ds.y
    fold = folds_mod.read_folds(ws, ds)["fold"].to_numpy()
    dropped_somewhere = False
    for k, (train_idx, valid_idx) in seen.items():
        assert (valid_idx == np.flatnonzero(fold == k)).all()            # validation rows untouched
        rest = np.flatnonzero(fold != k)
        expect = []
        for i in rest:                                                   # computed here, row by row
            same = [j for j in rest if text[j] == text[i]]
            labels = [y[j] for j in same]
            if len(set(labels)) == 1:
                expect.append(i)
            elif rule == "majority":
                top = max(set(labels), key=labels.count)
                if labels.count(top) > len(labels) - labels.count(top) and y[i] == top:
                    expect.append(i)
        assert sorted(train_idx.tolist()) == expect, k
        dropped_somewhere |= len(expect) < len(rest)
    assert dropped_somewhere
    if rule == "majority":   # a text with two votes to one in some fold's training rows keeps its majority copies
        kept_conflicted = any(len({y[j] for j in np.flatnonzero((fold != k) & (text == text[i]))}) > 1
                              for k, (tr, _) in seen.items() for i in tr)
        assert kept_conflicted
