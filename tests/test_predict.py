"""comp predict: any run replayed on a file reproduces its own test predictions and submission.

One small disaster-tweets workspace with every text family (tfidf with a linear and a LightGBM
estimator, a tiny random encoder with two seeds and TTA, scratch, frozen embeddings), stacks
(one with row features, one over stacks) and a blend of every method; titanic for the tabular
lgbm family. Identity: ``comp predict RUN --test <the workspace's test.csv>`` equals the run's
``test.parquet`` to 1e-6 and writes ``comp submit``'s CSV byte for byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from competition import runs
from competition.cli import app
from competition.config import load_config
from competition.errors import InputError
from competition.predict import predict
from competition.submit import submit
from competition.train import train
from tests.tiny import tiny_bert
from tests.workspaces import tweets_workspace

BLENDS = ("hill-climb", "mean", "weighted", "rank", "vote-hard", "vote-soft", "moe")


@pytest.fixture(scope="module")
def tweets(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    ws = tweets_workspace(root / "ws", n_train=240, n_test=60, n_splits=3, experiments={})
    texts = pd.read_csv(ws.root / "train.csv")["text"].astype(str).tolist()
    tiny = tiny_bert(root, texts, vocab_size=400)
    torch_train = "train: {epochs: 1, batch_size: 32, eval_batch_size: 16}\n"
    experiments = {
        "001": "template: tfidf\n",
        "002": "template: tfidf\nmodel: {estimator: lgbm, max_features: 2000, lgbm: {num_boost_round: 40}}\n",
        "003": f"model: {{family: encoder, name: {tiny}, max_length: 40}}\n"
               "train: {epochs: 1, batch_size: 32, eval_batch_size: 16, seeds: [1, 2], tta: [tail, no_keyword]}\n",
        "004": "model: {family: scratch, d_model: 32, heads: 2, layers: 1, vocab_size: 300, max_length: 40}\n"
               + torch_train,
        "005": f"model: {{family: embed, name: {tiny}, max_length: 40, head: logistic}}\n",
        # two that hill-climbing mixes (keyword only; char n-grams only): it must not be one run again
        "006": "template: tfidf\ntext: {template: '{keyword}'}\n",
        "007": "template: tfidf\nmodel: {word_ngrams: null}\n",
    }
    for exp, text in experiments.items():
        (ws.root / "experiments" / f"{exp}.yaml").write_text(text)
        assert train(ws, load_config(ws, exp)).complete
    from competition.blend import blend
    from competition.stack import stack

    stack(ws, inputs=["001", "003", "004"], name="s01")
    stack(ws, inputs=["002", "005"], features=["text_len", "n_words"], meta="logistic", name="s02")
    stack(ws, inputs=["s01", "s02"], meta="ridge", name="s03")
    for i, method in enumerate(BLENDS):
        inputs = ["006", "007"] if method == "hill-climb" else ["001", "003", "005"]
        assert blend(ws, inputs=inputs, method=method, name=f"b{i}").same_as is None, method
    return ws


def _identical(ws, name: str, tmp_path: Path) -> None:
    result = predict(ws, name, ws.root / "test.csv", out=tmp_path / f"pred-{name}")
    test = runs.load_run(ws, name).test()
    cols = runs.load_run(ws, name).pred_columns
    assert list(result.predictions["id"]) == list(test["id"])
    assert np.abs(result.predictions[cols].to_numpy() - test[cols].to_numpy()).max() <= 1e-6, name
    submitted = submit(ws, name, out=tmp_path / f"submit-{name}.csv")
    assert (result.out_dir / "submission.csv").read_bytes() == submitted.path.read_bytes(), name
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["run"] == name and manifest["same_rows_as_training_test"] is True
    assert manifest["rows"] == len(test) and manifest["packages"]["torch"]


@pytest.mark.parametrize("name", ["001", "002", "003", "004", "005"])
def test_every_text_family_replays_its_test_predictions(tweets, tmp_path, name):
    _identical(tweets, name, tmp_path)


@pytest.mark.parametrize("name", ["s01", "s02", "s03"])
def test_stacks_and_a_stack_over_stacks_replay(tweets, tmp_path, name):
    _identical(tweets, name, tmp_path)


@pytest.mark.parametrize("i", range(len(BLENDS)))
def test_every_blend_method_replays_from_its_saved_parameters(tweets, tmp_path, i):
    assert json.loads((tweets.run_dir(f"b{i}") / "blend.json").read_text())["method"] == BLENDS[i]
    _identical(tweets, f"b{i}", tmp_path)


def test_each_base_experiment_is_predicted_once_and_tokenised_once_per_variant(tweets, tmp_path, monkeypatch):
    from competition.models import encoder, torch_common

    calls, encodes = [], []
    real_predict, real_encode = encoder.predict, torch_common.encode_frame
    monkeypatch.setattr(encoder, "predict", lambda *a, **k: calls.append(a[0]) or real_predict(*a, **k))
    monkeypatch.setattr(torch_common, "encode_frame", lambda *a, **k: encodes.append(1) or real_encode(*a, **k))
    result = predict(tweets, "s03", tweets.root / "test.csv", out=tmp_path / "p")   # s01 and s02 over 5 runs
    assert len(calls) == 3                       # 003: three folds, once although s03 reaches it via s01
    assert len(encodes) == 2                     # once per tokenizer (003's three folds share one; 004 has its own)
    assert set(result.seconds) == {"001", "002", "003", "004", "005", "s01", "s02", "s03"}


# max |p - p_fp32| on this tiny random encoder; BENCHMARKS.md has MiniLM's (bf16 ~1e-3, int8 a few 1e-2)
TOLERANCE = {"bf16": 0.02, "int8": 0.05, "onnx-int8": 0.1}


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("name", ["003", "005", "s01"])
def test_a_faster_precision_stays_close_while_the_default_stays_exact(tweets, tmp_path, name, precision, monkeypatch):
    """Issue 26: --precision bf16 (autocast) or int8 (every nn.Linear of the encoder quantized, torch and
    embedding families) predicts differently from fp32 (so it did run) but within TOLERANCE; the default
    path still reproduces the run's own test predictions to 1e-6 afterwards."""
    import torch

    from competition import models

    quantized = []
    real = models.int8
    for module in ("competition.models.torch_common", "competition.models.embed"):
        monkeypatch.setattr(f"{module}.int8", lambda m: quantized.append(1) or real(m))
    fast = predict(tweets, name, tweets.root / "test.csv", out=tmp_path / precision, precision=precision)
    exact = runs.load_run(tweets, name).test()
    cols = runs.load_run(tweets, name).pred_columns
    gap = np.abs(fast.predictions[cols].to_numpy() - exact[cols].to_numpy())
    assert 0 < gap.max() <= TOLERANCE[precision], gap.max()
    assert bool(quantized) == (precision == "int8")
    assert json.loads((fast.out_dir / "manifest.json").read_text())["precision"] == precision
    _identical(tweets, name, tmp_path)                      # PRECISION is reset: fp32 again, exactly
    probe = real(torch.nn.Sequential(torch.nn.Linear(4, 4)))
    assert type(probe[0]).__module__ == "torch.ao.nn.quantized.dynamic.modules.linear"


def test_a_precision_for_a_run_without_an_encoder_is_refused_and_unknown_ones_too(tweets, tmp_path):
    """Issue 40: --precision int8 on a TF-IDF run changed nothing, said nothing and recorded int8."""
    from competition.export import export

    assert runs.load_run(tweets, "001").config().model.family == "tfidf"
    for command in (["predict", "001", "--test", str(tweets.root / "test.csv"), "--out", str(tmp_path / "p")],
                    ["export", "001", str(tmp_path / "bundle")]):
        out = CliRunner().invoke(app, [*command, "--precision", "int8", "-w", str(tweets.root)])
        text = " ".join(out.output.split())
        assert out.exit_code == 2 and "--precision int8: it sets what encoders compute in, and run 001 has none " \
            "(family tfidf)" in text, out.output
    assert not (tmp_path / "p").exists() and not (tmp_path / "bundle").exists()
    with pytest.raises(InputError, match="has none"):
        export(tweets, "001", tmp_path / "b2", wheel=False, precision="bf16")
    out = CliRunner().invoke(app, ["predict", "003", "--test", str(tweets.root / "test.csv"), "--precision", "fp16",
                                   "-w", str(tweets.root), "--out", str(tmp_path / "no")])
    assert out.exit_code == 2 and "--precision 'fp16': choose one of fp32, bf16, int8, onnx-int8" in out.output, out.output
    assert not (tmp_path / "no").exists()


def test_a_bundle_exported_with_a_precision_predicts_in_it_unless_told_otherwise(tweets, tmp_path):
    from competition.export import export

    export(tweets, "003", tmp_path / "bundle", wheel=False, precision="int8")
    assert json.loads((tmp_path / "bundle" / "bundle.json").read_text())["precision"] == "int8"
    manifests = {}
    for extra in ([], ["--precision", "fp32"]):
        out = tmp_path / f"out{len(extra)}"
        done = subprocess.run([sys.executable, str(tmp_path / "bundle" / "predict.py"), "--test",
                               str(tweets.root / "test.csv"), "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        manifests[bool(extra)] = json.loads((out / "manifest.json").read_text())
    assert manifests[False]["precision"] == "int8" and manifests[True]["precision"] == "fp32"


def test_the_onnx_graph_computes_the_fold_models_probabilities(tweets, tmp_path):
    """The graph comp quantizes is the fold model: its fp32 export run by ONNX Runtime gives torch's
    probabilities (1e-5) on batches of other sizes and lengths than the example it was traced on."""
    import onnxruntime as ort
    import torch

    from competition.models import onnx_runtime, torch_common
    from competition.models.batches import encode

    fold = tweets.fold_dir("003", 0)
    model, _ = torch_common.load_model(fold, fold / "seed1")
    onnx_runtime.export_fp32(model, tmp_path / "model.onnx")
    assert not model.training                    # exporting leaves the model as it was: eval, no dropout
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(fold / "tokenizer")
    ids = encode(tokenizer, pd.read_csv(tweets.root / "test.csv")["text"].astype(str).tolist()[:37], 40)
    runner = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = onnx_runtime.predict_ids(runner, ids, tokenizer.pad_token_id, 16, 1)
    with torch.inference_mode():
        want = np.vstack([model.probabilities(model(row[None], torch.ones(1, len(row), dtype=torch.long))).numpy()
                          for row in ids])
    assert np.abs(got - want).max() <= 1e-5


@pytest.mark.parametrize("name", ["003", "004", "s01"])
def test_onnx_int8_predicts_close_to_fp32_and_builds_each_graph_once(tweets, tmp_path, name, monkeypatch):
    """Issue 26: --precision onnx-int8 runs the fold models (every seed, every TTA variant; encoder and
    scratch families) as int8 graphs in ONNX Runtime: different from fp32 (so it ran), within
    TOLERANCE on this tiny encoder. A stack over the embedding family still predicts (that input with
    torch int8). Each graph is built once, then reused from the cache."""
    from competition.models import onnx_runtime

    monkeypatch.setenv("COMP_CACHE", str(tmp_path / "cache"))
    sessions, written = [], []
    real_session, real_write = onnx_runtime.session, onnx_runtime.write
    monkeypatch.setattr(onnx_runtime, "session", lambda *a, **k: sessions.append(1) or real_session(*a, **k))
    monkeypatch.setattr(onnx_runtime, "write", lambda *a, **k: written.append(1) or real_write(*a, **k))
    exact = runs.load_run(tweets, name).test()
    cols = runs.load_run(tweets, name).pred_columns
    fast = predict(tweets, name, tweets.root / "test.csv", out=tmp_path / "int8", precision="onnx-int8")
    gap = np.abs(fast.predictions[cols].to_numpy() - exact[cols].to_numpy()).max()
    assert 0 < gap <= TOLERANCE["onnx-int8"], gap
    assert sessions and len(written) == len(sessions)
    predict(tweets, name, tweets.root / "test.csv", out=tmp_path / "again", precision="onnx-int8")
    assert len(written) < len(sessions)                          # the second time: the cached graphs
    _identical(tweets, name, tmp_path)                           # the default path stays exact


def test_a_bundle_exported_for_onnx_int8_carries_its_graphs_and_predicts_without_building_them(tweets, tmp_path,
                                                                                              monkeypatch):
    from competition.export import export
    from competition.models import onnx_runtime
    from competition.predict import predict as predict_run
    from competition.workspace import Workspace

    monkeypatch.setenv("COMP_CACHE", str(tmp_path / "cache"))
    export(tweets, "003", tmp_path / "bundle", wheel=False, precision="onnx-int8")
    graphs = sorted((tmp_path / "bundle").glob("experiments/003/fold*/seed*/model.int8.onnx"))
    assert len(graphs) == 3 * 2                                      # 3 folds x 2 seeds
    files = json.loads((tmp_path / "bundle" / "bundle.json").read_text())["files"]
    assert all(str(g.relative_to(tmp_path / "bundle")) in files for g in graphs)   # checked like every file
    built = predict_run(tweets, "003", tweets.root / "test.csv", out=tmp_path / "w", precision="onnx-int8")
    monkeypatch.setattr(onnx_runtime, "write", lambda *a, **k: pytest.fail("a bundled graph was built again"))
    monkeypatch.setenv("COMP_CACHE", str(tmp_path / "empty-cache"))
    result = predict_run(Workspace(tmp_path / "bundle"), "003", tweets.root / "test.csv", out=tmp_path / "o",
                         precision="onnx-int8")
    assert np.abs(result.predictions[["target"]].to_numpy() - built.predictions[["target"]].to_numpy()).max() <= 1e-6


def test_new_rows_get_predictions_and_a_submission_in_the_sample_format(tweets, tmp_path):
    rows = pd.read_csv(tweets.root / "test.csv").iloc[::-1].head(25).assign(id=lambda f: f["id"] + 100_000)
    rows.to_csv(tmp_path / "hidden.csv", index=False)
    out = CliRunner().invoke(app, ["predict", "s01", "--test", str(tmp_path / "hidden.csv"), "--out",
                                   str(tmp_path / "out"), "-w", str(tweets.root)])
    assert out.exit_code == 0, out.output
    sub = pd.read_csv(tmp_path / "out" / "submission.csv")
    assert list(sub.columns) == ["id", "target"] and list(sub["id"]) == list(rows["id"])
    assert set(sub["target"]) <= {0, 1}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["same_rows_as_training_test"] is False and manifest["rows"] == 25


def test_titanic_lgbm_replays(tmp_path):
    from tests.datasets import shared_data

    root = tmp_path / "titanic"
    (root / "experiments").mkdir(parents=True)
    spec = (Path(__file__).parents[1] / "examples" / "titanic" / "competition.yaml").read_text()
    (root / "competition.yaml").write_text(spec.replace("${oc.env:COMP_DATA,../../../shared/data}", str(shared_data())))
    (root / "experiments" / "001.yaml").write_text("template: lgbm\n")
    from competition import data, folds
    from competition.spec import load_spec
    from competition.workspace import Workspace

    ws = Workspace(root)
    folds.write_folds(ws, data.load(load_spec(ws.spec_file)))
    train(ws, load_config(ws, "001"))
    test_file = shared_data() / "titanic" / "test.csv"
    result = predict(ws, "001", test_file, out=tmp_path / "p")
    test = runs.load_run(ws, "001").test()
    assert np.abs(result.predictions["Survived"].to_numpy() - test["Survived"].to_numpy()).max() <= 1e-6
    assert (result.out_dir / "submission.csv").read_bytes() == submit(ws, "001", out=tmp_path / "s.csv").path.read_bytes()


# -- bad input: a clear error, exit 2, nothing written -------------------------------------------

def _bad_rows(kind: str, ws, tmp_path: Path) -> Path:
    rows = pd.read_csv(ws.root / "test.csv").head(10)
    path = tmp_path / f"{kind}.csv"
    if kind == "no-text-column":
        rows.drop(columns=["text"]).to_csv(path, index=False)
    elif kind == "duplicate-ids":
        rows.assign(id=1).to_csv(path, index=False)
    elif kind == "empty-ids":
        rows.astype({"id": object}).assign(id=[None] + list(rows["id"][1:])).to_csv(path, index=False)
    elif kind == "header-only":
        rows.head(0).to_csv(path, index=False)
    elif kind == "wrong-encoding":
        path.write_bytes(rows.to_csv(index=False).encode() + "9999,fire,,caf\xe9 burning\n".encode("latin-1"))
    elif kind == "wrong-separator":
        rows.to_csv(path, index=False, sep=";")
    return path


BAD = [
    # (what, setup -> (run, args), message fragment)
    ("no such file", lambda ws, t: ("001", ["--test", str(t / "nope.csv")]), "no such file"),
    ("text column missing", lambda ws, t: ("001", ["--test", str(_bad_rows("no-text-column", ws, t))]), "column 'text'"),
    ("duplicated ids", lambda ws, t: ("001", ["--test", str(_bad_rows("duplicate-ids", ws, t))]), "duplicated id"),
    ("empty ids", lambda ws, t: ("001", ["--test", str(_bad_rows("empty-ids", ws, t))]), "is empty in 1 row"),
    ("header but no rows", lambda ws, t: ("001", ["--test", str(_bad_rows("header-only", ws, t))]), "no rows"),
    ("not utf-8", lambda ws, t: ("001", ["--test", str(_bad_rows("wrong-encoding", ws, t))]), "it decodes as cp1252: re-save it as utf-8"),
    ("other separator", lambda ws, t: ("001", ["--test", str(_bad_rows("wrong-separator", ws, t))]), "read.sep"),
    ("unknown run", lambda ws, t: ("zz9", ["--test", str(ws.root / "test.csv")]), "no run named 'zz9'"),
    ("sample of other rows", lambda ws, t: ("001", ["--test", str(ws.root / "test.csv"), "--sample-submission",
                                                   str(_sample_of_other_rows(ws, t))]), "sample submission"),
    ("fold folder deleted", lambda ws, t: (_damage(ws, "001", "fold1"), ["--test", str(ws.root / "test.csv")]),
     "fold 1 of 001 is missing"),
    ("config.yaml deleted", lambda ws, t: (_damage(ws, "002", "config.yaml"), ["--test", str(ws.root / "test.csv")]),
     "config.yaml: missing"),
    ("encoder weights deleted", lambda ws, t: (_damage(ws, "003", "fold2/seed1/model.safetensors", "fold2/seed2/model.safetensors"),
                                               ["--test", str(ws.root / "test.csv")]),
     "model.safetensors: damaged (missing); comp writes it whole, so something else changed it. Retrain that fold: "
     "comp train exp=003 --fold 2 --force"),
    ("blend parameters deleted", lambda ws, t: (_damage(ws, "b2", "blend.json"), ["--test", str(ws.root / "test.csv")]),
     "blend.json: damaged (missing); comp writes it whole, so something else changed it. Rebuild that blend: "
     "comp blend --exp"),
    ("stack meta-model deleted", lambda ws, t: (_damage(ws, "s01", "fold0/meta/meta.json"), ["--test", str(ws.root / "test.csv")]),
     "meta-model is missing"),
    ("partial run", lambda ws, t: (_partial(ws, "005"), ["--test", str(ws.root / "test.csv")]), "is not complete"),
]


def _sample_of_other_rows(ws, tmp_path: Path) -> Path:
    path = tmp_path / "other_sample.csv"
    pd.read_csv(ws.root / "sample_submission.csv").head(5).to_csv(path, index=False)
    return path


def _damage(ws, run: str, *parts: str) -> str:
    for part in parts:
        target = ws.run_dir(run) / part
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return run


def _partial(ws, run: str) -> str:
    manifest = ws.run_dir(run) / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"status": "complete"', '"status": "partial"'))
    return run


@pytest.fixture
def damaged(tweets, tmp_path):
    """A copy of the trained workspace that a test may break."""
    from competition.workspace import Workspace

    shutil.copytree(tweets.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


@pytest.mark.parametrize("what,setup,message", BAD, ids=[b[0] for b in BAD])
def test_bad_files_and_damaged_runs_are_refused_with_the_fix(damaged, tmp_path, what, setup, message):
    run, args = setup(damaged, tmp_path)
    out_dir = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", run, *args, "--out", str(out_dir), "-w", str(damaged.root)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert message in text, text
    assert not out_dir.exists() and not list(tmp_path.glob(".out.tmp-*"))


# -- comp export: a bundle that predicts with no workspace, no training data, no network -----------

DAMAGED_RUNS = [b for b in BAD if b[0] in ("fold folder deleted", "config.yaml deleted", "encoder weights deleted",
                                           "blend parameters deleted", "stack meta-model deleted", "partial run")]


@pytest.mark.parametrize("what,setup,message", DAMAGED_RUNS, ids=[b[0] for b in DAMAGED_RUNS])
def test_export_refuses_what_predict_refuses_and_writes_nothing(damaged, tmp_path, what, setup, message):
    """Issue 24 #2: export wrote a bundle of a run that predict refuses; it failed later, offline."""
    run, _ = setup(damaged, tmp_path)
    for name in {run, "s03" if run in ("001", "003", "004", "002", "005", "s01") else run}:   # it, and a stack over it
        out = CliRunner().invoke(app, ["export", name, str(tmp_path / "bundle"), "-w", str(damaged.root)])
        text = " ".join(out.output.split())
        assert out.exit_code == 2 and message in text, (name, text)
        assert not (tmp_path / "bundle").exists() and not list(tmp_path.glob(".bundle.tmp-*"))


def test_export_of_a_stack_over_a_run_missing_a_model_file_names_the_fold(damaged, tmp_path):
    """The issue's case: experiments/001/fold2's classical model deleted, then `comp export s01 bundle`."""
    shutil.rmtree(damaged.run_dir("001") / "fold2" / "head")
    out = CliRunner().invoke(app, ["export", "s01", str(tmp_path / "bundle"), "-w", str(damaged.root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "fold2" in text and "comp train exp=001 --fold 2" in text, text
    assert not (tmp_path / "bundle").exists()

def _venv_with_wheel(wheel: Path, where: Path) -> Path:
    """A new virtualenv with comp installed from ``wheel`` (not editable); its dependencies are
    borrowed from this test environment through a path entry, so nothing is downloaded."""
    import subprocess
    import sys
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    python = where / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_exported_bundle_predicts_offline_from_a_wheel_install(tweets, tmp_path):
    import os
    import subprocess

    bundle = tmp_path / "bundle"
    out = CliRunner().invoke(app, ["export", "s03", str(bundle), "--kaggle-dataset", "me/comp-s03", "-w",
                                   str(tweets.root)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    for part in ("encoder weights", "tokenizers", "classical models", "meta-models", "total"):
        assert part in text, part
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["runs"] == ["001", "003", "004", "s01", "002", "005", "s02", "s03"]
    assert not list(bundle.rglob("*.parquet")) and (bundle / "experiments" / "005" / "encoder" / "config.json").is_file()
    assert json.loads((bundle / "dataset-metadata.json").read_text())["id"] == "me/comp-s03"
    (wheel,) = bundle.glob("wheels/competition-*.whl")

    python = _venv_with_wheel(wheel, tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"            # no workspace above, no repository on the path
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMP_", "HF_", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf-home"), WANDB_MODE="disabled")
    where = subprocess.run([str(python), "-c", "import competition; print(competition.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert str(tmp_path / "venv") in where                           # the wheel, not the checkout
    tiny = tweets.root.parent / "tiny-bert"                           # where the fixture saved the encoder
    hidden = tiny.with_name("tiny-bert-hidden")
    tiny.rename(hidden)                                               # the encoder's origin is gone
    try:
        proc = subprocess.run([str(python), str(bundle / "predict.py"), "--test", str(tweets.root / "test.csv"),
                               "--out", str(tmp_path / "preds")], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=600)
    finally:
        hidden.rename(tiny)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = pd.read_parquet(tmp_path / "preds" / "predictions.parquet")
    want = runs.load_run(tweets, "s03").test()
    assert np.abs(got["target"].to_numpy() - want["target"].to_numpy()).max() <= 1e-6
    assert (tmp_path / "preds" / "submission.csv").read_bytes() == \
        submit(tweets, "s03", out=tmp_path / "s03.csv").path.read_bytes()


def test_the_bundles_predict_py_runs_as_printed_without_comp_installed(tweets, tmp_path):
    """Issue 24 #18-19: `python bundle/predict.py --test FILE` with a Python that lacks comp was a raw
    ModuleNotFoundError, and without --out it wrote into the bundle (read-only on Kaggle)."""
    import os
    import subprocess
    import sys
    import sysconfig

    bundle = tmp_path / "bundle"
    out = CliRunner().invoke(app, ["export", "s01", str(bundle), "-w", str(tweets.root)])
    assert out.exit_code == 0, out.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMP_", "HF_", "TRANSFORMERS_", "PYTHON"))}
    env.update(HF_HOME=str(tmp_path / "empty-hf-home"))
    bare = tmp_path / "bare"                      # a Python with nothing: says which package is missing
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    proc = subprocess.run([str(bare / "bin" / "python"), str(bundle / "predict.py"), "--test",
                           str(tweets.root / "test.csv")], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    # issue 40: every package at once (it took 9 reruns, one package each), with comp's own pins
    line = proc.stderr.strip()
    assert "\n" not in line and "lacks packages the bundle needs; install them all at once: pip install" in line
    required = (bundle / "requirements.txt").read_text().splitlines()[1:]
    assert "'typer<0.29,>=0.12'" in line and all(r.split("<")[0].split(">")[0] in line for r in required)
    for package in ("pandas", "pyarrow", "pyyaml", "scikit-learn", "skops", "omegaconf", "filelock", "torch"):
        assert any(r.startswith(package) for r in required), (package, required)
    assert "requirements.txt" in json.loads((bundle / "bundle.json").read_text())["files"]
    deps = tmp_path / "deps"                      # the dependencies, but not comp
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(deps)], check=True)
    site = Path(subprocess.run([str(deps / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    lacks = subprocess.run([str(deps / "bin" / "python"), "-c", "import competition"], cwd=elsewhere, env=env,
                           capture_output=True, text=True)
    assert lacks.returncode != 0                  # comp itself is not importable there
    proc = subprocess.run([str(deps / "bin" / "python"), str(bundle / "predict.py"), "--test",
                           str(tweets.root / "test.csv")], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (written,) = elsewhere.glob("s01_predict_*/predictions.parquet")          # in the working directory
    assert not list(bundle.glob("submissions"))                               # never inside the bundle
    got, want = pd.read_parquet(written), runs.load_run(tweets, "s01").test()
    assert np.abs(got["target"].to_numpy() - want["target"].to_numpy()).max() <= 1e-6


@pytest.mark.parametrize("hidden,package", [("omegaconf", "omegaconf"), ("yaml", "pyyaml")])
def test_the_bundles_predict_py_names_a_dependency_its_stages_import_late(tweets, tmp_path, hidden, package):
    """comp's CLI imports typer and rich only; the stages import the rest when they run. A Python lacking
    one of those still gets the one line naming the package and the pip command, not a traceback."""
    import subprocess
    import sys

    bundle = tmp_path / "bundle"
    out = CliRunner().invoke(app, ["export", "001", str(bundle), "--no-wheel", "-w", str(tweets.root)])
    assert out.exit_code == 0, out.output
    script = (f"import runpy, sys; sys.modules[{hidden!r}] = None; "     # `import {hidden}` now fails
              f"sys.argv = ['predict.py', '--test', {str(tweets.root / 'test.csv')!r}, '--out', "
              f"{str(tmp_path / 'preds')!r}]; runpy.run_path({str(bundle / 'predict.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"comp needs the package {package!r}" in proc.stderr and f"pip install {package}" in proc.stderr, \
        proc.stderr
    assert not (tmp_path / "preds").exists()


def test_a_bundle_pinned_by_its_digest_refuses_a_tampered_copy_with_a_recomputed_manifest(tweets, tmp_path):
    """Issue 24 #5: bundle.json catches damage; anyone who edits a model file can recompute it. The
    digest `comp export` prints pins the bundle: `--expect` refuses any other."""
    import hashlib

    bundle = tmp_path / "bundle"
    out = CliRunner().invoke(app, ["export", "001", str(bundle), "--no-wheel", "-w", str(tweets.root)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    pinned = hashlib.sha256((bundle / "bundle.json").read_bytes()).hexdigest()
    assert f"bundle digest: sha256:{pinned}" in text, text
    args = ["predict", "001", "--test", str(tweets.root / "test.csv"), "-w", str(bundle)]
    ok = CliRunner().invoke(app, [*args, "--expect", f"sha256:{pinned}", "--out", str(tmp_path / "p1")])
    assert ok.exit_code == 0, ok.output
    # tamper: change a model file and recompute bundle.json, as an attacker would
    manifest = json.loads((bundle / "bundle.json").read_text())
    rel = next(r for r in manifest["files"] if r.endswith(".json") and "fold0" in r and "done" not in r)
    target = bundle / rel
    target.write_text(target.read_text().replace("0", "1", 1))
    manifest["files"][rel] = {"sha256": hashlib.sha256(target.read_bytes()).hexdigest(), "bytes": target.stat().st_size}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    from competition.bundle import verify

    verify(bundle)                                   # the files match the recomputed manifest: not caught
    refused = CliRunner().invoke(app, [*args, "--expect", f"sha256:{pinned}", "--out", str(tmp_path / "p2")])
    text = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "not the sha256:" in text and "--expect" in text, text
    assert not (tmp_path / "p2").exists()


@pytest.mark.parametrize("damage,message", [
    ("truncate-weights", "differs from what was exported"),
    ("delete-meta", "is missing"),
])
def test_a_damaged_bundle_is_refused_before_anything_loads(tweets, tmp_path, damage, message):
    from competition.export import export
    from competition.workspace import Workspace

    bundle = tmp_path / "bundle"
    export(tweets, "s01", bundle, wheel=False)
    if damage == "truncate-weights":
        weights = next(bundle.rglob("model.safetensors"))
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        next(bundle.rglob("meta.json")).unlink()
    with pytest.raises(InputError, match=message):
        predict(Workspace(bundle), "s01", tweets.root / "test.csv", out=tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_no_saved_model_can_run_code_when_it_loads(tweets, tmp_path):
    """Every family and meta-model saves safetensors, JSON, LightGBM text or skops: no pickle. A
    skops file holding a type outside the trusted list (here a transformer calling os.system) is
    refused, not loaded."""
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    from competition.models.saving import load_model

    suffixes = {p.suffix for p in tweets.experiments_dir.rglob("*") if p.is_file()}
    assert not suffixes & {".pkl", ".joblib", ".pickle", ".pt", ".bin"}, suffixes
    assert {".safetensors", ".skops", ".txt", ".json"} <= suffixes
    sio.dump(FunctionTransformer(os.system), tmp_path / "model0.skops")
    with pytest.raises(InputError, match="holds types comp does not load"):
        load_model(tmp_path, {"kind": "sklearn", "file": "model0.skops"})


@pytest.mark.slow
def test_the_real_minilm_replays_and_exports(tmp_path):
    """The 22M-parameter all-MiniLM-L6-v2 (installed offline copy), briefly fine-tuned with two seeds
    and TTA, then stacked with TF-IDF: predict and the exported bundle reproduce the test predictions."""
    import os
    import subprocess
    import sys

    from competition.stack import stack

    ws = tweets_workspace(tmp_path / "ws", n_train=300, n_test=80, n_splits=2, experiments={
        "001": "template: tfidf\n",
        "042": "template: minilm\ntrain: {epochs: 1, limit_rows: 120, seeds: [1, 2], tta: [tail]}\n"})
    for exp in ("001", "042"):
        train(ws, load_config(ws, exp))
    stack(ws, inputs=["001", "042"], name="s01")
    for name in ("042", "s01"):
        _identical(ws, name, tmp_path)
    bundle = tmp_path / "bundle"
    assert CliRunner().invoke(app, ["export", "s01", str(bundle), "--no-wheel", "-w", str(ws.root)]).exit_code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMP_", "HF_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf"), WANDB_MODE="disabled")
    (tmp_path / "elsewhere").mkdir()
    proc = subprocess.run([sys.executable, str(bundle / "predict.py"), "--test", str(ws.root / "test.csv"), "--out",
                           str(tmp_path / "p")], cwd=tmp_path / "elsewhere", env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = pd.read_parquet(tmp_path / "p" / "predictions.parquet")["target"].to_numpy()
    assert np.abs(got - runs.load_run(ws, "s01").test()["target"].to_numpy()).max() <= 1e-6


def test_models_saved_under_other_versions_load_with_a_warning_naming_them(damaged, tmp_path):
    from competition.workspace import Workspace

    manifest = damaged.run_dir("003") / "manifest.json"
    saved = json.loads(manifest.read_text())
    saved["packages"] = {**saved["packages"], "torch": "1.0.0", "transformers": "3.0.0"}
    manifest.write_text(json.dumps(saved))
    with pytest.warns(UserWarning, match=r"run 003 was saved with torch 1.0.0 \(now .*\), transformers 3.0.0"):
        result = predict(Workspace(damaged.root), "003", damaged.root / "test.csv", out=tmp_path / "p")
    assert result.rows == 60
