"""The stack stage on synthetic runs whose truth we control, plus one real two-experiment stack.

Input runs are fabricated with ``runs.write_run`` (OOF/test columns drawn from the labels), so
each test knows exactly how much signal -- or leakage -- every input carries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from competition import artifacts, metrics, runs
from competition.errors import InputError
from competition.inputs import _fold_vector
from competition.stack import replay, stack
from tests.scoring import nested_cv

SPEC = """\
name: synth-{task}
train: train.csv
test: test.csv
id: id
targets: {targets}
{labels}text: [text]
task: {task}
metric: {metric}
folds: {{n_splits: {n_splits}, seed: 0}}
"""
WORDS = np.array("fire flood storm calm sunny quiet crash help news road".split())


@dataclass
class Synth:
    """A tiny workspace and what the tests need to fabricate runs in it."""

    ws: object
    data: object
    fold: np.ndarray
    y_test: np.ndarray          # the hidden test labels (not in test.csv)


def synth_workspace(root: Path, task: str = "binary", metric: str = "roc_auc", n: int = 3000,
                    n_test: int = 1000, n_splits: int = 5, seed: int = 0) -> Synth:
    """Synthetic train/test CSVs (id, text, kind, target), folds written by competition.folds."""
    from competition import data as data_mod
    from competition import folds as folds_mod
    from competition.spec import load_spec
    from competition.workspace import Workspace

    rng = np.random.default_rng(seed)

    def draw(size):
        if task == "binary":
            return (rng.random(size) < 0.4).astype(int)
        if task == "multiclass":
            return rng.choice(["a", "b", "c"], size)
        if task == "multilabel":
            return (rng.random((size, 3)) < [0.2, 0.4, 0.5]).astype(int)
        return rng.normal(0, 2, size).round(4)

    def frame(size, start):
        words = rng.integers(1, 30, size)
        return pd.DataFrame({"id": np.arange(start, start + size),
                             "text": [" ".join(rng.choice(WORDS, w)) for w in words],
                             "kind": rng.choice(["x", "y", "z"], size)})

    root.mkdir(parents=True, exist_ok=True)
    train, test = frame(n, 0), frame(n_test, 10**6)
    targets = ["l0", "l1", "l2"] if task == "multilabel" else ["target"]
    train[targets], y_test = draw(n).reshape(n, -1), draw(n_test)
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    labels = "labels: [a, b, c]\n" if task == "multiclass" else ""
    (root / "competition.yaml").write_text(SPEC.format(
        task=task, metric=metric, n_splits=n_splits, labels=labels, targets=f"[{', '.join(targets)}]"))
    ws = Workspace(root)
    data = data_mod.load(load_spec(ws.spec_file))
    folds_mod.write_folds(ws, data)
    if task == "multiclass":
        y_test = pd.Categorical(y_test, categories=data.labels).codes
    return Synth(ws, data, _fold_vector(ws, data), np.asarray(y_test))


def signal(y: np.ndarray, strength: float, rng, task: str = "binary", k: int = 3) -> np.ndarray:
    """Predictions carrying ``strength`` of signal about ``y`` (0 = pure noise), shaped (n, k)."""
    if task == "regression":  # y ~ N(0, 2); noise shrinks as strength grows
        return (y + rng.normal(0, 2 / strength, len(y)) if strength else rng.normal(0, 2, len(y)))[:, None]
    if task == "multilabel":
        return 1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(0, 1, y.shape))))
    if task == "multiclass":
        logits = rng.normal(0, 1, (len(y), k))
        logits[np.arange(len(y)), y] += strength
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)
    return (1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(0, 1, len(y))))))[:, None]


def fake_run(env: Synth, name: str, oof: np.ndarray, test: np.ndarray, **manifest) -> runs.Run:
    """Write a complete experiment run with these OOF (train order) and test predictions."""
    spec, data = env.data.spec, env.data
    cols = spec.pred_columns
    frame = pd.DataFrame(np.asarray(oof, dtype=float).reshape(len(oof), -1), columns=cols)
    frame.insert(0, "fold", env.fold)
    frame.insert(0, "id", data.train[spec.id_column].to_numpy())
    test_frame = pd.DataFrame(np.asarray(test, dtype=float).reshape(len(test), -1), columns=cols)
    test_frame.insert(0, "id", data.test[spec.id_column].to_numpy())
    folds = list(range(int(env.fold.max()) + 1))
    info = {"kind": "experiment", "family": "synthetic", "folds_hash": artifacts.file_hash(env.ws.folds_file),
            "data_hash": data.train_hash, "test_hash": data.test_hash, "n_splits": len(folds),
            "folds_done": list(folds), **manifest}
    return runs.write_run(env.ws, name, spec=spec, data=data, oof=frame, test=test_frame,
                          manifest=info)


def add_runs(env: Synth, strengths: dict[str, float], seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    task = env.data.spec.task
    for name, s in strengths.items():
        fake_run(env, name, signal(env.data.y, s, rng, task), signal(env.y_test, s, rng, task))


def rescore(run_dir: Path, env: Synth) -> float:
    """The CV recomputed from the saved oof.parquet, in its own row order (nested thresholds)."""
    oof = pd.read_parquet(run_dir / "oof.parquet")
    spec = env.data.spec
    y = pd.Series(np.arange(len(env.data.y)), index=env.data.train[spec.id_column].astype(str))
    return nested_cv(spec.metric, env.data.y[y.loc[oof["id"].astype(str)].to_numpy()],
                     oof[spec.pred_columns].to_numpy(), spec.task, oof["fold"])


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Synth:
    return synth_workspace(tmp_path_factory.mktemp("binary") / "ws")


def test_pure_noise_stacks_at_chance(tmp_path):
    env = synth_workspace(tmp_path / "ws")
    add_runs(env, {f"n{i}": 0.0 for i in range(5)})
    result = stack(env.ws, inputs=[f"n{i}" for i in range(5)], data=env.data)   # named: noise is let in
    assert result.name == "s01" and set(result.input_scores) == {f"n{i}" for i in range(5)}
    assert not result.versus_best.significant
    assert abs(result.oof_score - 0.5) < 0.04, result.oof_score
    assert all(abs(s - 0.5) < 0.08 for s in result.fold_scores.values())


def test_stack_writes_an_honest_reproducible_run(tmp_path):
    env = synth_workspace(tmp_path / "ws")
    add_runs(env, {"a": 1.0, "b": 0.8, "c": 0.0})
    result = stack(env.ws, inputs=["a", "b", "c"], data=env.data)
    run = env.ws.run_dir(result.name)
    for f in ("manifest.json", "metrics.json", "oof.parquet", "test.parquet", "importance.json",
              "fold0/meta/meta.json", "fold4/meta/meta.json"):
        assert (run / f).is_file(), f
    # the reported CV is what the saved OOF gives
    saved = json.loads((run / "metrics.json").read_text())
    assert rescore(run, env) == pytest.approx(saved["oof_score"]) == pytest.approx(result.oof_score)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "stack" and manifest["family"] == "lgbm-stack" and manifest["inputs"] == ["a", "b", "c"]
    # two informative inputs with independent noise: the stack beats the best single one and the noise input
    # counts for little
    assert result.best_input == "a" and result.oof_score > result.input_scores["a"]
    assert result.importance["c"] < 0.1 and sum(result.importance.values()) == pytest.approx(1)
    # test predictions = mean of the fold meta-models, and the saved models re-run to the same numbers
    test = pd.read_parquet(run / "test.parquet")
    assert np.allclose(test["target"], test[[f"target__fold{k}" for k in range(5)]].mean(axis=1), atol=1e-6)
    again = replay(run, {r: runs.load_run(env.ws, r).test()[["target"]].to_numpy() for r in "abc"}, None, env.data.spec)
    assert np.allclose(again[:, 0], test["target"], atol=1e-5)
    assert roc_auc_score(env.y_test, test["target"]) > result.input_scores["a"] - 0.03
    # a stack is a run: the default inputs of a second stack leave it out; naming it uses it
    second = stack(env.ws, data=env.data, meta="logistic")
    assert second.name == "s02" and "s01" not in second.input_scores
    third = stack(env.ws, data=env.data, inputs=["s01", "a"], meta="ridge")
    assert set(third.input_scores) == {"s01", "a"} and 0.5 < third.oof_score <= 1


def test_leaky_input_is_flagged_and_its_cv_does_not_hold_on_test(tmp_path):
    """OOF = the true label, test = noise: the stack cannot know, so its CV inherits the leak.
    Honest behaviour is to say so: the input is named in a warning (its OOF and test predictions
    are differently distributed), and on the hidden test labels the stack falls far below its CV."""
    env = synth_workspace(tmp_path / "ws")
    add_runs(env, {"honest": 1.0})
    rng = np.random.default_rng(5)
    fake_run(env, "leak", env.data.y[:, None].astype(float), rng.random((len(env.y_test), 1)))
    result = stack(env.ws, data=env.data)
    assert result.oof_score > 0.97                      # the inflated CV...
    assert result.input_scores["leak"] == pytest.approx(1.0)
    assert any(w.startswith("leak:") and "leak" in w for w in result.warnings)
    assert not any(w.startswith("honest:") for w in result.warnings)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["warnings"] == result.warnings
    test_auc = roc_auc_score(env.y_test, pd.read_parquet(result.run_dir / "test.parquet")["target"])
    assert test_auc < result.oof_score - 0.15           # ...does not hold on the hidden labels


def test_inputs_on_other_folds_are_refused_by_name(binary):
    add_runs(binary, {"good": 1.0})
    rng = np.random.default_rng(2)
    fake_run(binary, "stale", signal(binary.data.y, 1, rng), signal(binary.y_test, 1, rng), folds_hash="0123abcd")
    with pytest.raises(InputError, match="input stale is stale: folds changed"):
        stack(binary.ws, data=binary.data, inputs=["good", "stale"])
    # by default it is left out, with a note; one run left is no stack
    with pytest.raises(InputError, match=r"at least two runs, got \['good'\]; left out stale: stale: folds changed"):
        stack(binary.ws, data=binary.data, name="default-pick")


def test_names_features_and_metas(binary):
    add_runs(binary, {"good": 1.0})
    with pytest.raises(InputError, match="not a feature.*text_len"):
        stack(binary.ws, data=binary.data, features=["nope"])
    with pytest.raises(InputError, match="never features"):
        stack(binary.ws, data=binary.data, features=["target"])
    with pytest.raises(InputError, match="categorical"):
        stack(binary.ws, data=binary.data, features=["kind"], meta="logistic")
    result = stack(binary.ws, data=binary.data, inputs=["good"], features=["text_len", "n_words", "kind"],
                   name="feat")
    assert set(result.importance) == {"good", "text_len", "n_words", "kind"}
    again = replay(binary.ws.run_dir("feat"), {"good": runs.load_run(binary.ws, "good").test()[["target"]].to_numpy()},
                   binary.data.test, binary.data.spec)
    assert np.allclose(again[:, 0], runs.load_run(binary.ws, "feat").test()["target"], atol=1e-5)
    with pytest.raises(InputError, match="already holds a run"):
        stack(binary.ws, data=binary.data, inputs=["good"], features=["text_len"], name="feat")
    stack(binary.ws, data=binary.data, inputs=["good"], features=["text_len"], name="feat", force=True, meta="ridge")
    with pytest.raises(InputError, match="cannot be its own input"):
        stack(binary.ws, data=binary.data, inputs=["good", "feat"], name="feat", force=True)


@pytest.mark.parametrize("task,metric,meta", [
    ("multiclass", "log_loss", "lgbm"), ("multiclass", "accuracy", "logistic"), ("regression", "rmse", "lgbm"),
    ("regression", "rmse", "ridge"), ("multilabel", "f1", "lgbm"), ("multilabel", "roc_auc", "logistic")])
def test_other_tasks(tmp_path, task, metric, meta):
    env = synth_workspace(tmp_path / "ws", task=task, metric=metric, n=1500, n_test=300)
    add_runs(env, {"a": 1.5, "b": 1.0})
    result = stack(env.ws, inputs=["a", "b"], data=env.data, meta=meta)
    assert rescore(result.run_dir, env) == pytest.approx(result.oof_score)
    assert not metrics.is_better(metric, result.best_input_score, result.oof_score + 0.05 * abs(result.oof_score))
    assert runs.load_run(env.ws, result.name).test().shape[0] == 300


def test_cli_prints_the_comparison(binary):
    import typer
    from typer.testing import CliRunner

    from competition.commands import stack as stack_cmd

    add_runs(binary, {"good": 1.0, "other": 0.5})
    app = typer.Typer()
    app.command()(stack_cmd.command)
    out = CliRunner().invoke(app, ["--exp", "good,other", "--name", "cli", "-w", str(binary.ws.root)])
    assert out.exit_code == 0, out.output
    assert "best single" in out.output and "cli" in out.output
    bad = CliRunner().invoke(app, ["--exp", "good,missing", "-w", str(binary.ws.root)])
    assert bad.exit_code == 2 and "missing" in bad.output


def test_real_tweets_two_tfidf_runs_stacked_and_blended(tmp_path):
    pytest.importorskip("competition.models.tfidf")
    from competition.blend import blend
    from competition.config import load_config
    from competition.train import train
    from tests.workspaces import tweets_workspace

    ws = tweets_workspace(tmp_path / "ws", n_train=800, n_test=200, experiments={
        "001": "template: tfidf\nmodel:\n  char_ngrams: null\n",
        "002": "template: tfidf\nmodel:\n  word_ngrams: null\n  char_ngrams: [2, 4]\n  max_features: 20000\n"})
    for exp in ("001", "002"):
        assert train(ws, load_config(ws, exp)).complete
    s = stack(ws)
    b = blend(ws, method="weighted")
    assert set(s.input_scores) == set(b.input_scores) == {"001", "002"}
    for result in (s, b):
        assert 0.5 < result.oof_score <= 1 and len(result.fold_scores) == 3
    assert not s.warnings, s.warnings   # honest models: OOF and test predictions alike
    print(f"tweets F1: inputs {s.input_scores}, stack {s.oof_score:.4f}, weighted blend {b.oof_score:.4f} "
          f"(weights {b.weights})")


def test_leaderboard_names_inputs_retrained_or_removed_since_the_stack(binary):
    from competition.blend import blend
    from competition.leaderboard import leaderboard

    add_runs(binary, {"a": 1.0, "b": 0.5})
    stack(binary.ws, data=binary.data, inputs=["a", "b"], name="s01")
    blend(binary.ws, data=binary.data, inputs=["a", "b", "s01"], method="mean", name="b01")
    by_name = {e.name: e for e in leaderboard(binary.ws, data=binary.data)}
    assert by_name["s01"].notes == () and by_name["b01"].notes == ()
    # `a` retrained with other predictions; `b` deleted
    oof_a = binary.ws.run_dir("a") / "oof.parquet"
    frame = pd.read_parquet(oof_a)
    frame["target"] = 1.0 - frame["target"]
    artifacts.write_parquet(oof_a, frame)
    by_name = {e.name: e for e in leaderboard(binary.ws, data=binary.data)}
    s01 = by_name["s01"]
    assert s01.status == "stale"         # its replay would read other inputs than it was fitted on
    assert s01.notes[0].startswith("input a changed since")
    # the rebuild command remakes it as it was made: same meta-model, same blend method
    assert "`comp stack --exp a,b --meta lgbm --name s01 --force`" in s01.notes[-1]
    assert by_name["b01"].notes[0].startswith("input a changed since")
    assert "`comp blend --exp a,b,s01 --method mean --name b01 --force`" in by_name["b01"].notes[-1]
    import shutil
    shutil.rmtree(binary.ws.run_dir("b"))
    assert "input b is gone" in " ".join(next(e for e in leaderboard(binary.ws, data=binary.data)
                                              if e.name == "s01").notes)


def test_a_stack_reads_each_input_as_one_version_while_it_is_retrained(tmp_path, monkeypatch):
    """Issue 24 #3: a retrain of input a lands right after the stack read a's OOF (it renames oof,
    test, metrics, then the manifest). The stack read the old OOF with the new test predictions
    and recorded one hash; it now reads a again and uses the new version whole."""
    import shutil

    env = synth_workspace(tmp_path / "ws")
    add_runs(env, {"a": 1.0, "b": 0.5})
    rng = np.random.default_rng(7)
    new_oof, new_test = signal(env.data.y, 2.0, rng), signal(env.y_test, 2.0, rng)
    oof_a = env.ws.run_dir("a") / "oof.parquet"
    real_read_bytes = Path.read_bytes
    landed = []

    def read_then_retrained(self):
        raw = real_read_bytes(self)
        if self == oof_a and not landed:          # the concurrent --force retrain lands right after the read
            landed.append(True)
            fake_run(env, "a", new_oof, new_test)
        return raw

    monkeypatch.setattr(Path, "read_bytes", read_then_retrained)
    stack(env.ws, data=env.data, inputs=["a", "b"], name="s01")
    monkeypatch.setattr(Path, "read_bytes", real_read_bytes)
    assert landed
    manifest = json.loads((env.ws.run_dir("s01") / "manifest.json").read_text())
    assert manifest["input_hashes"]["a"] == artifacts.file_hash(oof_a)           # the version it used: the new one
    clean = tmp_path / "clean"                                                   # the same stack, nothing racing
    shutil.copytree(env.ws.root, clean, ignore=shutil.ignore_patterns("s01"))
    from competition.workspace import Workspace

    stack(Workspace(clean), data=env.data, inputs=["a", "b"], name="s01")
    for name in ("oof.parquet", "test.parquet"):
        got, want = pd.read_parquet(env.ws.run_dir("s01") / name), pd.read_parquet(clean / "experiments" / "s01" / name)
        np.testing.assert_allclose(got["target"], want["target"], atol=1e-9, err_msg=name)


def test_an_input_that_keeps_changing_while_read_is_refused_and_nothing_written(tmp_path, monkeypatch):
    import time

    env = synth_workspace(tmp_path / "ws")
    add_runs(env, {"a": 1.0, "b": 0.5})
    rng = np.random.default_rng(7)
    versions = [(signal(env.data.y, s, rng), signal(env.y_test, s, rng)) for s in (2.0, 0.3)]
    oof_a = env.ws.run_dir("a") / "oof.parquet"
    real_read_bytes = Path.read_bytes
    reads = []

    def retrained_after_every_read(self):
        raw = real_read_bytes(self)
        if self == oof_a:
            reads.append(1)
            fake_run(env, "a", *versions[len(reads) % 2])
        return raw

    monkeypatch.setattr(Path, "read_bytes", retrained_after_every_read)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    with pytest.raises(InputError, match="damaged .*run a recorded in its manifest, read 6 times.*being rewritten by a command running now"):
        stack(env.ws, data=env.data, inputs=["a", "b"], name="s01")
    assert len(reads) == runs.READ_TRIES and not env.ws.run_dir("s01").exists()


def test_a_stack_of_one_run_is_refused_and_trivial_runs_are_left_out_by_default(tmp_path):
    env = synth_workspace(tmp_path / "ws")
    add_runs(env, {"a": 1.0})
    with pytest.raises(InputError, match=r"at least two runs, got \['a'\].*`comp submit a`"):
        stack(env.ws, inputs=["a"], data=env.data)
    assert not (env.ws.run_dir("s01")).exists()
    # a constant predictor and one that is noise below the trivial baseline: flagged when written
    const = fake_run(env, "const", np.full((len(env.data.y), 1), 0.3), np.full((len(env.y_test), 1), 0.3))
    assert const.trivial == "its OOF predictions are constant (one value per column)"
    assert const.metrics["baseline_score"] == pytest.approx(0.5, abs=0.01)   # ~ the AUC of a constant
    add_runs(env, {"b": 0.8}, seed=4)
    result = stack(env.ws, data=env.data)
    assert set(result.input_scores) == {"a", "b"}
    assert any("left out const: its OOF predictions are constant" in w for w in result.warnings)
    named = stack(env.ws, inputs=["a", "b", "const"], data=env.data)         # named: the user decides
    assert "const" in named.input_scores


def test_the_gain_over_the_best_input_carries_a_paired_interval(tmp_path):
    from competition import bootstrap

    env = synth_workspace(tmp_path / "ws", n=1500, n_test=200)
    add_runs(env, {"a": 1.0, "b": 1.0, "c": 1.0}, seed=3)     # independent errors: combining helps
    result = stack(env.ws, data=env.data, meta="logistic")
    c = result.versus_best
    oof = runs.load_run(env.ws, result.name).oof()["target"].to_numpy()[:, None]
    best = runs.load_run(env.ws, result.best_input).oof()["target"].to_numpy()[:, None]
    assert c.diff == pytest.approx(metrics.score("roc_auc", env.data.y, oof, "binary")
                                   - metrics.score("roc_auc", env.data.y, best, "binary"))
    assert c == bootstrap.compare("roc_auc", env.data.y, oof[:, 0], best[:, 0], "binary")
    assert c.significant and c.low > 0


def test_a_large_stack_takes_bigger_steps_on_coarser_bins_and_params_still_win(binary, monkeypatch):
    """Above LARGE_ROWS training rows the meta-model fits with LARGE_DEFAULTS (the saved booster says
    so); below, with LGBM_DEFAULTS; a user's params override both."""
    from competition import stack as stack_mod

    add_runs(binary, {"p": 1.0, "q": 0.8})

    def fitted(name: str) -> str:
        return (binary.ws.fold_dir(name, 0) / "meta" / "head0.txt").read_text()

    stack(binary.ws, data=binary.data, inputs=["p", "q"], name="small", force=True)
    assert "[learning_rate: 0.05]" in fitted("small") and "[max_bin: 255]" in fitted("small")
    monkeypatch.setattr(stack_mod, "LARGE_ROWS", 100)
    stack(binary.ws, data=binary.data, inputs=["p", "q"], name="large", force=True, seed=7)   # not small's twin
    assert "[learning_rate: 0.1]" in fitted("large") and "[max_bin: 63]" in fitted("large")
    stack(binary.ws, data=binary.data, inputs=["p", "q"], name="mine", force=True, params={"max_bin": 31})
    assert "[learning_rate: 0.1]" in fitted("mine") and "[max_bin: 31]" in fitted("mine")


def test_folds_fitted_side_by_side_give_what_one_at_a_time_gives(binary, monkeypatch):
    """Two folds at a time in threads (one per core) and one at a time: the same OOF, test
    predictions and saved meta-models, byte for byte."""
    from competition import stack as stack_mod

    import shutil

    add_runs(binary, {"u": 1.0, "v": 0.7}, seed=3)
    run, outputs = binary.ws.run_dir("side"), {}
    for workers in (2, 1):
        monkeypatch.setattr(stack_mod, "_fold_workers", lambda meta, params, w=workers: w)
        result = stack(binary.ws, data=binary.data, inputs=["u", "v"], name="side", force=True)
        outputs[workers] = (result.oof_score, result.fold_scores,
                            *(pd.read_parquet(run / f) for f in ("oof.parquet", "test.parquet")),
                            [(binary.ws.fold_dir("side", k) / "meta" / "head0.txt").read_text() for k in range(5)],
                            result.input_scores, result.mean_blend_score)
        shutil.rmtree(run)     # else the second is refused as the first's twin
    side, alone = outputs[2], outputs[1]
    assert side[:2] == alone[:2] and side[4:] == alone[4:]
    # the inputs' scores (fitted as a task beside the folds): each run's own CV, and the mean blend's
    oof = {name: runs.load_run(binary.ws, name).oof().set_index("id").loc[binary.data.train["id"]] for name in "uv"}
    cv = {name: roc_auc_score(binary.data.y, o["target"]) for name, o in oof.items()}   # OOF AUC over all rows
    mean = roc_auc_score(binary.data.y, (oof["u"]["target"].to_numpy(float) + oof["v"]["target"].to_numpy(float)) / 2)
    assert side[5] == pytest.approx(cv, abs=1e-12) and side[6] == pytest.approx(mean, abs=1e-9)
    pd.testing.assert_frame_equal(side[2], alone[2])
    pd.testing.assert_frame_equal(side[3], alone[3])


def test_fold_workers_follow_the_meta_models_threads(monkeypatch):
    from competition import stack as stack_mod

    monkeypatch.setattr(stack_mod.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert stack_mod._fold_workers("lgbm", {}) == 4                      # one single-threaded fit per core
    assert stack_mod._fold_workers("lgbm", {"num_threads": 2}) == 2
    assert stack_mod._fold_workers("lgbm", {"num_threads": 0}) == 1      # a fit takes every core
    assert stack_mod._fold_workers("logistic", {}) == 4


def test_ctrl_c_while_folds_fit_in_threads_stops_them_and_writes_no_stack(binary, monkeypatch):
    """Ctrl-C reaches the main thread only: it halts the fits running in the other threads at
    their next boosting round, no further fold starts, and no stack run is written."""
    import threading

    from competition import stack as stack_mod
    from competition.models import estimators

    add_runs(binary, {"w": 1.0, "z": 0.7}, seed=4)
    monkeypatch.setattr(stack_mod, "_fold_workers", lambda meta, params: 2)
    started, rounds_after_halt = threading.Barrier(3), []
    real = estimators.fit_booster

    def slow_fit(*args, halt=None, **kwargs):
        started.wait(timeout=30)        # both folds are fitting: now the user presses Ctrl-C
        assert halt is not None and halt.wait(timeout=30)
        try:
            return real(*args, halt=halt, **kwargs)
        except KeyboardInterrupt:
            rounds_after_halt.append(0)
            raise

    monkeypatch.setattr(stack_mod.estimators, "fit_booster", slow_fit)

    def interrupt():
        started.wait(timeout=30)
        import _thread
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        stack(binary.ws, data=binary.data, inputs=["w", "z"], name="halted", force=True)
    assert len(rounds_after_halt) == 2                       # both running fits stopped by the halt
    assert not (binary.ws.run_dir("halted") / "manifest.json").exists()


def test_ctrl_c_between_two_submits_halts_the_tasks_already_running(monkeypatch):
    """Ctrl-C can land while later folds are still being handed to the pool: the folds already
    fitting are halted and waited for all the same, and no further one starts."""
    import threading

    from competition import stack as stack_mod

    running = threading.Barrier(3)
    real = stack_mod.ThreadPoolExecutor

    class InterruptedAtTheThirdSubmit(real):
        submitted = 0

        def submit(self, fn, *args, **kwargs):
            if self.submitted == 2:
                running.wait(timeout=30)          # the first two tasks run: now the user presses Ctrl-C
                raise KeyboardInterrupt
            self.submitted += 1
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(stack_mod, "ThreadPoolExecutor", InterruptedAtTheThirdSubmit)
    saw_halt = []

    def task(halt):
        running.wait(timeout=30)
        saw_halt.append(halt.wait(timeout=30))

    with pytest.raises(KeyboardInterrupt):
        stack_mod._side_by_side({k: task for k in range(4)}, workers=2)
    assert saw_halt == [True, True]                          # halted, and returned before Ctrl-C was raised
