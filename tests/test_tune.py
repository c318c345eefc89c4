"""comp tune: search spaces, samplers, pruning, resume, export, sweeps — and real parallel workers
on a PostgreSQL server this test starts itself."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml

from competition import tune as tune_mod
from competition import tune_objective, tune_storage
from competition.config import load_config, parse_overrides
from competition.errors import InputError
from competition.search import check_space, parse_space, wandb_sweep
from competition.train import FoldRow, train
from competition.tune import summarize, tune
from tests.workspaces import tweets_workspace

REPO = Path(__file__).resolve().parents[1]

TFIDF_SEARCH = """\
template: tfidf
model: {char_ngrams: [2, 4], max_features: 20000}
search:
  model.C: {type: float, low: 0.1, high: 30, log: true}
  model.estimator: {type: categorical, choices: [logistic, ridge]}
  model.min_df: {type: int, low: 1, high: 3}
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Three folds of 240 tweets; experiment 001 with a search block."""
    return tweets_workspace(tmp_path_factory.mktemp("tune") / "ws", n_train=240, n_test=40, n_splits=3,
                            experiments={"001": TFIDF_SEARCH})


def fake_training(monkeypatch, score):
    """Replace the training of each trial by ``score(cfg, fold)``; returns the list of (trial exp, fold)."""
    calls = []

    def fake_train(ws, cfg, *, folds, force, data, on_fold):
        for k in folds:
            calls.append((cfg.exp, k))
            on_fold(FoldRow(k, "trained", score(cfg, k)))

    monkeypatch.setattr(tune_objective, "train", fake_train)
    return calls


def db(tmp_path, name="study") -> str:
    return f"sqlite:///{tmp_path / name}.db"


def load(url, name="001"):
    return optuna.load_study(study_name=name, storage=tune_storage.storage_url(None, url))  # names the PG driver


# -- the search space ------------------------------------------------------------------------

@pytest.mark.parametrize("entry, message", [
    ({"model.C": {"type": "float", "low": 5, "high": 1}}, "low (5) must be below high (1)"),
    ({"model.C": {"type": "float", "low": 0, "high": 1, "log": True}}, "log: true needs low > 0"),
    ({"model.C": {"type": "normal", "low": 0, "high": 1}}, "type 'normal' is not one of"),
    ({"model.C": {"type": "float", "low": 0.1, "high": 1, "scale": 2}}, "unknown field(s) scale"),
    ({"model.estimator": {"type": "categorical", "choices": []}}, "non-empty list `choices"),
    ({"model.min_df": {"type": "int", "low": 1.5, "high": 3}}, "type int needs whole numbers"),
    ({"model.C": {"type": "float", "low": 0.1, "high": 1, "log": True, "step": 0.1}}, "cannot be combined"),
    ({"exp": ["a", "b"]}, "exp cannot be tuned"),
    ({"model.C": {"type": "float", "low": 0.1, "high": 1, "when": {"model.estimator": "ridge"}},
      "model.estimator": ["logistic", "ridge"]}, "listed before it"),
    ({"model.C": 3}, "write e.g."),
])
def test_malformed_search_entries_name_the_key_and_the_fix(entry, message):
    with pytest.raises(InputError) as err:
        parse_space(entry, "042.yaml")
    assert message in str(err.value) and "042.yaml: search key" in str(err.value)


def test_search_keys_are_validated_against_the_config(ws):
    with pytest.raises(InputError, match=r"search key 'model.lr'.*unknown key 'model.lr'; valid keys here: C, alpha"):
        check_space(ws, "001", parse_space({"model.lr": {"type": "float", "low": 1e-5, "high": 1e-4}}, "x"))
    with pytest.raises(InputError, match=r"search key 'model.C' with value 0.*greater than 0"):
        check_space(ws, "001", parse_space({"model.C": {"type": "float", "low": 0, "high": 2}}, "x"))
    with pytest.raises(InputError, match="no `search:` block"):
        parse_space({}, "x")
    # a family switch and keys of that family, conditioned on it
    space = parse_space({"model.family": ["tfidf", "scratch"],
                         "model.d_model": {"type": "categorical", "choices": [32, 64],
                                           "when": {"model.family": "scratch"}}}, "x")
    check_space(ws, "001", space)
    with pytest.raises(InputError, match="grid"):
        tune_mod.make_sampler("grid", space, 0)
    with pytest.raises(InputError, match="wilcoxon compares trials fold by fold"):
        tune_mod.make_pruner("wilcoxon", 1)


def test_a_space_is_checked_with_one_config_load_and_agrees_with_it(ws, monkeypatch):
    """check_space reads the experiment files once, and a value passes exactly when `load_config`
    (what a trial runs) accepts it; a failing cross-field check alone is left to the trial."""
    from competition import search
    from competition.search import Param

    scratch = (("model.family", ("scratch",)),)
    cases = [("model.C", 0, ()), ("model.C", 2.5, ()), ("model.min_df", 0, ()), ("model.estimator", "lasso", ()),
             ("model.estimator", "ridge", ()), ("model.lr", 1e-4, ()), ("model.family", "scratch", ()),
             ("model.d_model", 4, scratch), ("model.d_model", 30, scratch), ("model.d_model", 64, scratch)]
    loads = []
    real = search.load_config
    monkeypatch.setattr(search, "load_config", lambda *a, **k: loads.append(a) or real(*a, **k))
    for key, value, when in cases:
        try:
            real(ws, "001", [*(f"{c}={v[0]}" for c, v in when), f"{key}={value}"])
            accepted = True
        except InputError as err:
            accepted = "'(top level)'" in str(err)              # d_model 30 with 4 heads
        loads.clear()
        space = [Param(key, "categorical", choices=(value,), when=when)]
        if accepted:
            check_space(ws, "001", space)
        else:
            with pytest.raises(InputError, match=f"search key '{key}' with value {value!r}"):
                check_space(ws, "001", space)
        assert len(loads) == 1, (key, value)
    loads.clear()
    check_space(ws, "001", parse_space({"model.C": {"type": "float", "low": 0.1, "high": 30, "log": True},
                                        "model.min_df": {"type": "int", "low": 1, "high": 3},
                                        "model.family": ["tfidf", "scratch"],
                                        "model.d_model": {"type": "categorical", "choices": [32, 64],
                                                          "when": {"model.family": "scratch"}}}, "x"))
    assert len(loads) == 1                                      # one load for the whole space


# -- samplers --------------------------------------------------------------------------------

def test_grid_sampler_covers_exactly_the_grid_with_real_training(tmp_path):
    ws = tweets_workspace(tmp_path / "ws", n_train=200, n_test=20, n_splits=2, experiments={"001": """\
template: tfidf
model: {char_ngrams: null}
search:
  model.C: {type: grid, values: [0.5, 4.0]}
  model.word_ngrams: {type: categorical, choices: [[1, 1], [1, 2]]}
"""})
    result = tune(ws, "001", sampler="grid", export=False)        # trials default to the grid's size
    st = load(f"sqlite:///{ws.tuning_db}")
    seen = [(t.params["model.C"], t.params["model.word_ngrams"]) for t in st.trials]
    grid = set(itertools.product([0.5, 4.0], ["[1, 1]", "[1, 2]"]))
    assert result.total == 4 and len(seen) == 4 and set(seen) == grid
    assert all(t.state.name == "COMPLETE" and 0 < t.value <= 1 for t in st.trials)
    assert result.best_params["model.word_ngrams"] in ([1, 1], [1, 2])  # decoded back to the config's value
    assert tune(ws, "001", sampler="grid", export=False).ran == 0       # nothing left of the grid
    assert not any((ws.experiments_dir / ".tune" / "001").glob("001-trial*"))  # trial artifacts removed
    assert not ws.run_dir("001").exists()                                # the experiment's own folder untouched


def test_same_seed_gives_the_same_tpe_sequence(ws, tmp_path, monkeypatch):
    fake_training(monkeypatch, lambda cfg, k: 1 / (1 + abs(cfg.model.C - 3)) + 0.01 * cfg.model.min_df)

    def params(url, seed, n=12):
        tune(ws, "001", trials=n, seed=seed, storage=url, export=False)   # 10 random startup trials, then TPE
        return [t.params for t in load(url).trials]

    first, again = params(db(tmp_path, "a"), 7), params(db(tmp_path, "b"), 7)
    assert first == again and len(first) == 12
    assert params(db(tmp_path, "c"), 8, n=3) != first[:3]


def test_cmaes_and_hyperband_run_where_they_fit(ws, tmp_path, monkeypatch):
    pytest.importorskip("cmaes", reason="--sampler cmaes needs the cmaes package")
    fake_training(monkeypatch, lambda cfg, k: 1 / (1 + abs(cfg.model.C - 3)) / cfg.model.min_df)
    with pytest.warns(UserWarning, match="categorical keys are sampled at random"):
        result = tune(ws, "001", trials=6, sampler="cmaes", pruner="hyperband", folds="all",
                      storage=db(tmp_path), export=False)
    assert sum(result.states.values()) == 6 and result.states.get("COMPLETE")
    with pytest.raises(InputError, match="cmaes searches two or more float/int keys"):
        tune_mod.make_sampler("cmaes", parse_space({"model.estimator": ["logistic", "ridge"]}, "x"), 0)


def test_a_failing_combination_is_a_failed_trial_and_tuning_goes_on(tmp_path):
    ws = tweets_workspace(tmp_path / "ws", n_train=120, n_test=20, n_splits=2, experiments={"001": """\
template: tfidf
search:
  model.word_ngrams: {type: grid, values: [null, [1, 1]]}
  model.char_ngrams: {type: grid, values: [null, [2, 3]]}
"""})
    result = tune(ws, "001", sampler="grid", export=False)
    st = load(f"sqlite:///{ws.tuning_db}")
    failed = [t for t in st.trials if t.state.name == "FAIL"]
    assert result.states == {"COMPLETE": 3, "FAIL": 1} and len(failed) == 1
    assert "no features" in failed[0].user_attrs["error"]


# -- pruning ---------------------------------------------------------------------------------

def test_median_pruner_stops_bad_trials_after_their_first_fold(ws, tmp_path, monkeypatch):
    calls = fake_training(monkeypatch, lambda cfg, k: 0.9 if cfg.model.C > 1 else 0.1)
    url = db(tmp_path)
    tune(ws, "001", trials=16, sampler="random", folds="all", storage=url, export=False)
    trials = load(url).trials
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and all(t.params["model.C"] <= 1 for t in pruned)
    assert all(t.params["model.C"] > 1 for t in trials if t.state.name == "COMPLETE" and t.number >= 5)
    for t in pruned:    # reported the running mean after fold 0 and trained no further fold
        assert list(t.intermediate_values) == [0]
        assert [k for exp, k in calls if exp == f"001-trial{t.number}"] == [0]
    complete = next(t for t in trials if t.state.name == "COMPLETE")
    assert sorted(complete.intermediate_values) == [0, 1, 2]


def test_wilcoxon_pruner_compares_fold_by_fold(tmp_path, monkeypatch):
    ws = tweets_workspace(tmp_path / "ws", n_train=150, n_test=20, n_splits=5, experiments={"001": TFIDF_SEARCH})
    fake_training(monkeypatch, lambda cfg, k: (0.9 if cfg.model.C > 1 else 0.3) + 0.01 * k)
    tune(ws, "001", trials=12, sampler="random", pruner="wilcoxon", folds="all", export=False)
    trials = load(f"sqlite:///{ws.tuning_db}").trials
    complete = next(t for t in trials if t.state.name == "COMPLETE")
    assert complete.intermediate_values == pytest.approx({k: complete.value - 0.02 + 0.01 * k for k in range(5)})
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and all(t.params["model.C"] <= 1 and len(t.intermediate_values) < 5 for t in pruned)


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_torch_trials_report_every_validation_and_prune_inside_a_fold(tmp_path):
    ws = tweets_workspace(tmp_path / "ws", n_train=160, n_test=20, n_splits=2, experiments={"001": """\
model: {family: scratch, d_model: 16, heads: 2, layers: 1, vocab_size: 200, max_length: 32}
train: {epochs: 2, batch_size: 32, threads: 1}
search:
  model.lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
"""})
    tune(ws, "001", trials=1, folds="all", pruner="none", export=False)
    first = load(f"sqlite:///{ws.tuning_db}").trials[0]
    # fold 0: validations at steps 0 and 1, its score at 2; fold 1: 3 and 4, then the mean at 5
    assert first.state.name == "COMPLETE" and sorted(first.intermediate_values) == list(range(6))
    assert first.intermediate_values[5] == pytest.approx(first.value)
    tune(ws, "001", trials=2, folds="all", pruner=AlwaysPrune(), export=False)
    second = load(f"sqlite:///{ws.tuning_db}").trials[1]
    # pruned by the Lightning callback at the first validation: inside fold 0's fit
    assert second.state.name == "PRUNED" and list(second.intermediate_values) == [0]
    assert second.user_attrs["fold_scores"] == {}


# -- studies: totals, resume, export, show ---------------------------------------------------

def test_trials_is_the_study_total_and_a_rerun_resumes(ws, tmp_path, monkeypatch):
    fake_training(monkeypatch, lambda cfg, k: cfg.model.C / 30)
    url = db(tmp_path)
    assert tune(ws, "001", trials=3, storage=url, export=False).ran == 3
    assert tune(ws, "001", storage=url, export=False).ran == 0          # the total it was given
    again = tune(ws, "001", trials=5, storage=url, export=False)
    assert again.ran == 2 and again.states == {"COMPLETE": 5}
    with pytest.raises(InputError, match="was tuned with folds"):
        tune(ws, "001", trials=6, folds="0,1", storage=url, export=False)
    other = tune(ws, "001", trials=2, folds="0,1", storage=url, study="001-two-folds", export=False)
    assert other.study == "001-two-folds" and other.folds == [0, 1]
    summary = summarize(ws, "001", storage=url)
    assert summary.states == {"COMPLETE": 5} and summary.total == 5 and summary.metric == "f1"
    values = [row["value"] for row in summary.best]
    assert values == sorted(values, reverse=True) and set(summary.importances) == {"model.C", "model.estimator",
                                                                                    "model.min_df"}
    few = summarize(ws, "001", storage=url, study="001-two-folds")
    assert few.importances is None and "3 or more complete trials" in few.importance_note
    with pytest.raises(InputError, match="no study 'nope'.*001-two-folds"):
        summarize(ws, "001", storage=url, study="nope")


def test_best_trial_exported_as_an_experiment_reproduces_its_score(tmp_path):
    ws = tweets_workspace(tmp_path / "ws", n_train=150, n_test=10, n_splits=3, experiments={"001": TFIDF_SEARCH})
    result = tune(ws, "001", overrides=["train.limit_rows=80"], trials=3, folds="0,2", sampler="random")
    assert result.exported == ws.experiment_file("002")
    text = result.exported.read_text()
    assert text.startswith("# Tuned from experiments/001.yaml: best trial of Optuna study '001'")
    assert f"trial {result.best_number}," in text and "train.limit_rows=80" in text
    saved = yaml.safe_load(text)
    assert "search" not in saved and saved["model"]["estimator"] == result.best_params["model.estimator"]
    cfg = load_config(ws, "002")                               # what `comp train exp=002` runs
    assert cfg.train.limit_rows == 80 and cfg.model.C == pytest.approx(result.best_params["model.C"])
    rows = train(ws, cfg, folds=[0, 2]).folds
    assert sum(r.score for r in rows) / 2 == pytest.approx(result.best_value, abs=1e-12)
    # the same best trial is not written twice
    assert tune(ws, "001", overrides=["train.limit_rows=80"], folds="0,2").exported == result.exported
    assert ws.experiment_ids() == ["001", "002"]


def test_a_tuned_experiment_says_which_folds_chose_it_and_the_leaderboard_scores_the_others(tmp_path):
    """Tuned on fold 0: the exported experiment records tuned_on [0], its run's manifest says the
    tuning chose on fold 0, and the leaderboard's CV on untouched folds is the nested CV of the
    OOF rows of folds 1 and 2 alone, computed here from the files."""
    import io
    import json

    import numpy as np
    import pandas as pd
    from rich.console import Console

    from competition.leaderboard import leaderboard, render, to_json
    from tests.scoring import nested_cv

    ws = tweets_workspace(tmp_path / "ws", n_train=240, n_test=10, n_splits=3, experiments={"001": TFIDF_SEARCH})
    result = tune(ws, "001", trials=2, sampler="random")            # default: each trial scores fold 0
    text = result.exported.read_text()
    assert "tuned_on: [0]" in text and "the folds whose labels chose these settings" in text
    cfg = load_config(ws, "002")
    assert cfg.tuned_on == [0]
    train(ws, cfg)
    manifest = json.loads((ws.run_dir("002") / "manifest.json").read_text())
    assert manifest["selected_on"] == {"tuning": [0]} and manifest["select"] is None   # logistic/ridge: no epochs
    for k in range(3):
        done = json.loads((ws.fold_dir("002", k) / "done.json").read_text())
        assert done["selected_on"] == {"tuning": [0]}

    (entry,) = [e for e in leaderboard(ws) if e.name == "002"]
    oof = pd.read_parquet(ws.run_dir("002") / "oof.parquet")
    y = pd.read_csv(ws.root / "train.csv").set_index("id").loc[oof["id"], "target"].to_numpy()
    keep = oof["fold"].isin([1, 2]).to_numpy()
    expected = nested_cv("f1", y[keep], oof[["target"]].to_numpy()[keep], "binary", oof["fold"].to_numpy()[keep])
    assert entry.untouched_folds == (1, 2) and entry.untouched_cv == pytest.approx(expected, abs=1e-12)
    assert entry.untouched_cv != pytest.approx(entry.cv)
    assert entry.selected_on == {"tuning": [0]}
    note = next(n for n in entry.notes if n.startswith("chosen on scored rows"))
    assert f"tuning on fold 0; CV on untouched folds 1,2: {expected:.4f} (full CV {entry.cv:.4f})" in note
    doc = json.loads(to_json([entry], "f1", "maximize"))["runs"][0]
    assert doc["selected_on"] == {"tuning": [0]} and doc["untouched_folds"] == [1, 2]
    assert doc["untouched_cv"] == pytest.approx(expected)
    table, lines = render([entry], "f1", "maximize")
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    assert "complete*" in console.export_text() and any(line.plain.startswith("*: something was chosen")
                                                        for line in lines)
    # an untuned run of the same experiment records nothing and is not marked
    (ws.experiments_dir / "003.yaml").write_text(
        "\n".join(line for line in result.exported.read_text().splitlines() if not line.startswith("tuned_on")))
    train(ws, load_config(ws, "003"))
    (plain,) = [e for e in leaderboard(ws) if e.name == "003"]
    assert plain.selected_on is None and plain.untouched_cv is None
    assert not any(n.startswith("chosen on scored rows") for n in plain.notes)
    assert np.isclose(plain.cv, entry.cv)                          # the same model, only the record differs


def test_family_switch_exports_a_clean_model_block(tmp_path, monkeypatch):
    fake_training(monkeypatch, lambda cfg, k: 0.9 if cfg.model.family == "scratch" else 0.5)
    exp_ws = tweets_workspace(tmp_path / "ws", n_train=100, n_test=10, n_splits=2, experiments={"010": """\
template: tfidf
search:
  model.family: {type: grid, values: [tfidf, scratch]}
  model.d_model: {type: grid, values: [32], when: {model.family: scratch}}
"""})
    with pytest.raises(InputError, match="when"):
        tune(exp_ws, "010", sampler="grid")
    (exp_ws.experiments_dir / "010.yaml").write_text("template: tfidf\nsearch:\n  model.family: [tfidf, scratch]\n"
                                                     "  model.d_model: {type: categorical, choices: [32], "
                                                     "when: {model.family: scratch}}\n")
    result = tune(exp_ws, "010", trials=6, sampler="random")
    saved = yaml.safe_load(result.exported.read_text())
    assert result.exported.name == "011.yaml" and saved["model"] == {"family": "scratch", "d_model": 32}
    assert load_config(exp_ws, "011").model.family == "scratch"


# -- W&B sweeps and the command ---------------------------------------------------------------

def test_wandb_sweep_has_the_search_space_and_runs_comp_train(ws):
    sweep = wandb_sweep(ws, "001", overrides=["train.limit_rows=80"])
    assert sweep["method"] == "bayes" and sweep["metric"] == {"name": "fold/score", "goal": "maximize"}
    assert sweep["parameters"] == {
        "model.C": {"distribution": "log_uniform_values", "min": 0.1, "max": 30.0},
        "model.estimator": {"values": ["logistic", "ridge"]},
        "model.min_df": {"distribution": "int_uniform", "min": 1, "max": 3},
    }
    assert sweep["command"][:4] == ["${env}", "comp", "train", "exp=001"]
    assert sweep["command"][-2:] == ["train.limit_rows=80", "${args_no_hyphens}"]
    # runs write their own folders: never --force on the experiment itself
    assert "--sweep" in sweep["command"] and "--force" not in sweep["command"]
    grid = wandb_sweep(ws, "001", sampler="random")
    assert grid["method"] == "random"


def test_sweep_values_come_back_as_the_same_config_values(tmp_path):
    ws = tweets_workspace(tmp_path / "ws", n_train=60, n_test=10, n_splits=2, experiments={"001": """\
template: tfidf
search:
  model.char_ngrams: {type: grid, values: [[2, 4], null]}
  model.estimator: {type: grid, values: [logistic, ridge]}
"""})
    sweep = wandb_sweep(ws, "001", sampler="grid")
    assert sweep["method"] == "grid"
    assert wandb_sweep(ws, "001")["method"] == "grid"     # a grid space exports as a grid, whatever the sampler
    values = sweep["parameters"]["model.char_ngrams"]["values"]
    # W&B passes key=str(value): each must parse to the choice it stands for
    assert [parse_overrides([f"x={v}"])["x"] for v in values] == [[2, 4], None]


def test_command_tunes_shows_and_exports_a_sweep(ws, tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from competition.commands.tune import command

    fake_training(monkeypatch, lambda cfg, k: cfg.model.C / 30)
    app = typer.Typer()
    app.command()(command)
    runner = CliRunner()
    url = db(tmp_path)
    out = runner.invoke(app, ["exp=001", "--trials", "3", "--storage", url, "--no-export", "-w", str(ws.root)])
    assert out.exit_code == 0, out.output
    assert "trial 2: complete" in out.output and "best f1" in out.output
    out = runner.invoke(app, ["exp=001", "--show", "--storage", url, "-w", str(ws.root)])
    assert out.exit_code == 0 and "best trials" in out.output and "parameter importances" in out.output
    sweep_file = tmp_path / "sweep.yaml"
    out = runner.invoke(app, ["exp=001", "--export-wandb-sweep", str(sweep_file), "-w", str(ws.root)])
    assert out.exit_code == 0 and yaml.safe_load(sweep_file.read_text())["method"] == "bayes"
    out = runner.invoke(app, ["exp=001", "--sampler", "annealing", "--storage", url, "-w", str(ws.root)])
    assert out.exit_code == 2 and "valid samplers are tpe, random, grid, cmaes" in out.output


CONDITIONAL = """\
template: tfidf
search:
  model.family: [tfidf, scratch]
  model.d_model: {type: categorical, choices: [32], when: {model.family: scratch}}
  model.min_df: {type: int, low: 1, high: 3, when: {model.family: tfidf}}
"""


def test_a_sweep_agent_run_of_a_conditional_space_trains_its_own_run(tmp_path, monkeypatch):
    """What `wandb agent` runs: every key of the space, whatever the conditions, under its run id."""
    from typer.testing import CliRunner

    from competition.cli import app

    ws = tweets_workspace(tmp_path / "ws", n_train=120, n_test=20, n_splits=2, experiments={"001": CONDITIONAL})
    monkeypatch.setenv("WANDB_RUN_ID", "abc123")
    with pytest.warns(UserWarning, match="`comp train --sweep` drops it where its `when:` does not hold"):
        command = wandb_sweep(ws, "001")["command"]
    assert command[1:3] == ["comp", "train"]
    agent_args = ["model.family=tfidf", "model.d_model=32", "model.min_df=3"]   # ${args_no_hyphens}
    words = [w for w in command[3:] if w not in ("${env}", "${args_no_hyphens}")] + agent_args
    out = CliRunner().invoke(app, ["train", *words, "-w", str(ws.root)])
    assert out.exit_code == 0, out.output
    assert "dropped model.d_model=32" in out.output
    run = ws.run_dir("001-sweep-abc123")
    assert (run / "fold0" / "done.json").is_file() and not ws.run_dir("001").exists()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["family"] == "tfidf" and saved["model"]["min_df"] == 3


class _RecordedRuns:
    """Stands in for ``wandb.init`` (wandb 0.31 keeps offline summaries in its binary .wandb log,
    with no reader left in the package): records what comp sends to each run."""

    def __init__(self):
        self.runs = []

    def init(self, **kwargs):
        import types

        run = types.SimpleNamespace(kwargs=kwargs, history=[], summary={}, finished=False)
        run.log = lambda metrics, step=None: run.history.append(dict(metrics))
        run.finish = lambda: setattr(run, "finished", True)
        self.runs.append(run)
        return run


def test_fold_and_sweep_scores_reach_the_wandb_summary(tmp_path, monkeypatch):
    """A fold run's summary holds the fold's score (done.json) under a key no history row uses, so
    the last validation cannot stand in for it; a sweep run's holds the mean over its folds."""
    import json

    import wandb
    from typer.testing import CliRunner

    from competition.cli import app
    from competition.config import load_config
    from competition.train import train

    ws = tweets_workspace(tmp_path / "ws", n_train=120, n_test=20, n_splits=2, experiments={"001": CONDITIONAL})
    (ws.root / "experiments" / "base.yaml").write_text("track:\n  wandb: true\n")
    recorded = _RecordedRuns()
    monkeypatch.setattr(wandb, "init", recorded.init)
    monkeypatch.setenv("WANDB_MODE", "offline")
    scratch = ["model.family=scratch", "model.d_model=32", "model.heads=2", "model.layers=1", "model.vocab_size=300",
               "model.max_length=32", "train.epochs=2", "train.val_per_epoch=2", "train.patience=1"]
    train(ws, load_config(ws, "001", scratch), folds="0")
    done = json.loads((ws.fold_dir("001", 0) / "done.json").read_text())
    (fold_run,) = recorded.runs
    assert fold_run.summary["fold/score"] == done["score"] and fold_run.finished
    assert len(fold_run.history) >= 2 and all("fold/score" not in row for row in fold_run.history)

    monkeypatch.setenv("WANDB_RUN_ID", "sweeprun1")
    recorded.runs.clear()
    out = CliRunner().invoke(app, ["train", "exp=001", "--fold", "all", "--sweep", "model.min_df=2", "-w", str(ws.root)])
    assert out.exit_code == 0, out.output
    run = ws.run_dir("001-sweep-sweeprun1")
    # the run is complete: its folds' scores as the CV reports them (thresholds from the other folds)
    scores = list(json.loads((run / "metrics.json").read_text())["folds"].values())
    (agent_run,) = recorded.runs          # fold runs stay off: the agent's run is the one W&B run
    assert agent_run.kwargs["job_type"] == "sweep" and agent_run.kwargs["name"] == "001-sweep-sweeprun1"
    assert agent_run.summary["fold/score"] == pytest.approx(sum(scores) / 2)


# -- many workers on one PostgreSQL study ------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip_or_fail(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on loopback (initdb + pg_ctl in a temp dir); yields a database URL."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    bindir = found[-1].parent if found else (Path(shutil.which("initdb")).parent if shutil.which("initdb") else None)
    if bindir is None:
        _skip_or_fail("no PostgreSQL server binaries (initdb, pg_ctl); install Debian's `postgresql` package")
    root = Path(tempfile.mkdtemp(prefix="comp-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:       # initdb refuses root: run the server as the `postgres` system user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _skip_or_fail("running as root and there is no `postgres` user to run the server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port, data = _free_port(), root / "data"
    subprocess.run([*as_user, bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE tune")
        conn.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/tune"
    finally:
        subprocess.run([*as_user, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _worker(ws, url, trials, *, pace: float = 0.0, hang: bool = False):
    """A `comp tune` process running the same command function as ``comp tune``.

    ``pace``: each trial's training first sleeps this long, so that two workers started
    together both get trials however slowly one of them starts. ``hang``: trials hang in
    training, so that the worker can be killed mid-trial.
    """
    args = ["exp=001", "--trials", str(trials), "--storage", url, "--sampler", "random", "--heartbeat", "1",
            "-w", str(ws.root)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    patch = ("t.train = lambda *a, **k: time.sleep(600)\n" if hang else
             f"real = t.train\nt.train = lambda *a, **k: (time.sleep({pace}), real(*a, **k))[1]\n")
    script = ("import sys, time, typer\nimport competition.tune_objective as t\n" + patch +
              "from competition.commands.tune import command\n"
              f"sys.argv = ['comp-tune', *{args!r}]\ntyper.run(command)\n")
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_parallel_workers_share_one_postgres_study_and_a_killed_trial_is_retried(postgres, tmp_path):
    ws = tweets_workspace(tmp_path / "ws", n_train=240, n_test=20, n_splits=2, experiments={"001": TFIDF_SEARCH})
    workers = [_worker(ws, postgres, 6, pace=3), _worker(ws, postgres, 6, pace=3)]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = load(postgres).trials
    assert [t.number for t in trials] == list(range(6))               # each recorded once, none lost
    assert all(t.state.name == "COMPLETE" for t in trials)            # exactly the total: no overshoot
    assert len({t.user_attrs["worker"] for t in trials}) == 2         # both workers did trials
    assert len(list(ws.experiments_dir.glob("*.yaml"))) == 3          # base, 001, and one export: 002

    # a worker killed in the middle of a trial: its trial is failed after the grace period, then rerun
    doomed = _worker(ws, postgres, 8, hang=True)
    deadline = time.monotonic() + 60
    def training(t):      # sampled its parameters (recorded as overrides) and is in training
        return t.state.name == "RUNNING" and "overrides" in t.user_attrs

    while not any(training(t) for t in load(postgres).trials):
        assert time.monotonic() < deadline and doomed.poll() is None, doomed.stdout.read()
        time.sleep(0.2)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    killed = next(t for t in load(postgres).trials if training(t))
    time.sleep(2.5)                                                   # grace period: 2 heartbeats of 1 s
    # the next run (here in-process) fails the silent trial, runs it again, then the rest
    again = tune(ws, "001", trials=8, storage=postgres, sampler="random", heartbeat=1)
    trials = load(postgres).trials
    assert trials[killed.number].state.name == "FAIL"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE" and retried[0].params == killed.params
    assert again.ran == 2 and again.states == {"COMPLETE": 8, "FAIL": 1} and len(trials) == 9


def test_a_garbage_tuning_db_is_one_line_that_says_to_move_it_aside(tmp_path):
    """It printed SQLAlchemy's dump and suggested the same file as the fix."""
    from competition.tune_storage import open_storage

    bad = tmp_path / "tuning.db"
    bad.write_bytes(b"\x00\xffnot a database at all" * 10)
    with pytest.raises(InputError) as err:
        open_storage(f"sqlite:///{bad}")
    text = str(err.value)
    assert "not a SQLite database" in text and f"mv {bad} {bad}.bad" in text and "\n" not in text
    assert "Background" not in text and "sqlalchemy" not in text.lower()
