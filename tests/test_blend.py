"""The blend stage: every method on synthetic runs, fold-honest weights, directions and tasks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from competition import metrics, runs
from competition.blend import METHODS, blend
from competition.errors import InputError
from tests.test_stack import add_runs, fake_run, rescore, signal, synth_workspace


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    env = synth_workspace(tmp_path_factory.mktemp("blend") / "ws", metric="f1", n=2000, n_test=400)
    add_runs(env, {"a": 1.2, "b": 1.0, "c": 0.6, "noise": 0.0})
    return env


@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_binary_writes_an_honest_run(binary, method):
    result = blend(binary.ws, inputs=["a", "b", "c", "noise"], method=method, name=f"bin-{method}", data=binary.data)
    run = binary.ws.run_dir(result.name)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "blend" and manifest["method"] == method
    assert manifest["inputs"] == ["a", "b", "c", "noise"] and manifest["weights"] == result.weights
    assert sum(result.weights.values()) == pytest.approx(1, abs=1e-4)
    assert min(result.weights.values()) >= 0
    # the figure reported is the one the saved OOF gives, threshold re-optimised on it
    assert rescore(run, binary) == pytest.approx(result.oof_score)
    assert isinstance(result.threshold, float)
    test = runs.load_run(binary.ws, result.name).test()
    assert len(test) == 400 and test["target"].between(0, 1).all()
    assert result.oof_score > 0.6


def test_weights_favour_the_informative_inputs(binary):
    weighted = blend(binary.ws, inputs=["a", "b", "c", "noise"], method="weighted", name="w", data=binary.data)
    assert weighted.weights["noise"] < 0.05 and weighted.weights["a"] == max(weighted.weights.values())
    climbed = blend(binary.ws, inputs=["a", "b", "c", "noise"], method="hill-climb", name="hc", data=binary.data)
    assert climbed.weights["noise"] == 0 and climbed.weights["a"] > 0
    assert climbed.oof_score >= climbed.input_scores["a"] - 0.01


def test_fold_honest_weights_on_noise(tmp_path):
    """Pure-noise inputs: weights fit in-sample look better than chance; the fold-honest CV does not."""
    env = synth_workspace(tmp_path / "ws", n=1500, n_test=200)
    add_runs(env, {f"n{i}": 0.0 for i in range(8)})
    for method in ("hill-climb", "weighted"):
        result = blend(env.ws, inputs=[f"n{i}" for i in range(8)], method=method, name=method, data=env.data)
        assert result.oof_score <= result.in_sample_score + 1e-9, method
        assert abs(result.oof_score - 0.5) < 0.05, (method, result.oof_score)
    climbed = runs.load_run(env.ws, "hill-climb")
    assert climbed.manifest["in_sample_score"] > climbed.score   # the optimism it avoided


@pytest.mark.parametrize("task,metric", [("regression", "rmse"), ("multiclass", "log_loss"),
                                         ("multiclass", "accuracy"), ("multilabel", "f1")])
@pytest.mark.parametrize("method", ["hill-climb", "weighted"])
def test_other_tasks_and_directions(tmp_path, task, metric, method):
    env = synth_workspace(tmp_path / "ws", task=task, metric=metric, n=1200, n_test=200)
    add_runs(env, {"a": 1.5, "b": 1.2, "noise": 0.0})
    result = blend(env.ws, inputs=["a", "b", "noise"], method=method, data=env.data)
    assert result.name == "b01"
    assert rescore(result.run_dir, env) == pytest.approx(result.oof_score)
    # combining two informative inputs is no worse than the best one (small tolerance for honesty)
    slack = 0.02 * abs(result.best_input_score)
    assert not metrics.is_better(metric, result.best_input_score, result.oof_score + (slack if
                                 metrics.greater_is_better(metric) else -slack))
    assert result.weights["noise"] < 0.2
    test = runs.load_run(env.ws, "b01").test()
    if task == "multiclass":
        assert np.allclose(test[env.data.spec.pred_columns].sum(axis=1), 1, atol=1e-5)


def test_vote_hard_multiclass_and_refusals(tmp_path):
    env = synth_workspace(tmp_path / "ws", task="multiclass", metric="accuracy", n=900, n_test=100)
    add_runs(env, {"a": 1.5, "b": 1.5, "c": 1.5})
    voted = blend(env.ws, method="vote-hard", data=env.data)
    assert voted.oof_score > max(voted.input_scores.values()) - 0.01
    with pytest.raises(InputError, match="rank does not fit task multiclass"):
        blend(env.ws, method="rank", data=env.data)
    with pytest.raises(InputError, match="choose one of"):
        blend(env.ws, method="median", data=env.data)
    with pytest.raises(InputError, match="at least two runs"):
        blend(env.ws, inputs=["a"], data=env.data)
    with pytest.raises(InputError, match=r"got \['a'\]; a named twice counts once \(other complete runs here: b, b01, c\)"):
        blend(env.ws, inputs=["a", "a"], data=env.data)      # it said "no other run" while b and c existed
    rng = np.random.default_rng(0)
    fake_run(env, "stale", signal(env.data.y, 1, rng, "multiclass"), signal(env.y_test, 1, rng, "multiclass"),
             data_hash="feedbeef")
    with pytest.raises(InputError, match="input stale is stale: train data changed"):
        blend(env.ws, inputs=["a", "stale"], data=env.data)


def test_moe_learns_which_expert_to_trust_per_row(tmp_path):
    """Expert ``short`` is right on short texts and noise on long ones, ``long`` the reverse: one
    global weight cannot use both, a gate on text length can."""
    env = synth_workspace(tmp_path / "ws", metric="log_loss", n=3000, n_test=300)
    rng = np.random.default_rng(3)
    words = env.data.train["text"].str.split().str.len().to_numpy()
    is_short = words < 15
    good, noise = signal(env.data.y, 2.5, rng), signal(env.data.y, 0.0, rng)
    fake_run(env, "short", np.where(is_short[:, None], good, noise), rng.random((300, 1)))
    fake_run(env, "long", np.where(is_short[:, None], noise, good), rng.random((300, 1)))
    moe = blend(env.ws, method="moe", name="moe", data=env.data)
    weighted = blend(env.ws, method="weighted", name="w", data=env.data)
    assert moe.oof_score < weighted.oof_score - 0.1          # log-loss: lower is better
    assert moe.gain > 0.1 and weighted.gain < moe.gain


def test_a_blend_can_blend_a_stack_and_the_cli_reports(binary):
    import typer
    from typer.testing import CliRunner

    from competition.commands import blend as blend_cmd
    from competition.stack import stack

    stack(binary.ws, inputs=["a", "b"], name="st", data=binary.data)
    app = typer.Typer()
    app.command()(blend_cmd.command)
    out = CliRunner().invoke(app, ["--exp", "st,a,c", "--method", "weighted", "--name", "mix",
                                   "-w", str(binary.ws.root)])
    assert out.exit_code == 0, out.output
    assert "best single" in out.output and "mix" in out.output
    assert runs.load_run(binary.ws, "mix").manifest["inputs"] == ["st", "a", "c"]
    oof = pd.read_parquet(binary.ws.run_dir("mix") / "oof.parquet")
    assert len(oof) == 2000 and not oof.isna().any().any()


def test_a_blend_that_puts_all_weight_on_one_input_is_that_input(tmp_path):
    env = synth_workspace(tmp_path / "ws")
    add_runs(env, {"strong": 3.0, "weak": 0.3})
    result = blend(env.ws, inputs=["strong", "weak"], method="hill-climb", data=env.data)
    assert result.same_as == "strong" and result.weights == {"strong": 1.0, "weak": 0.0}
    assert result.oof_score == pytest.approx(runs.load_run(env.ws, "strong").score)
    assert not env.ws.run_dir("b01").exists()                       # no new run to win `comp submit`
