"""comp submit / comp score: the sample submission's exact layout, and every bad case refused
with nothing written. Runs are fabricated with ``runs.write_run`` (no training)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition import artifacts, metrics, runs
from competition import data as data_mod
from competition.commands.submit import FLAGS
from competition.errors import InputError
from competition.score import score_file
from competition.spec import load_spec
from competition.submit import submit
from competition.workspace import Workspace
from tests.datasets import shared_data

# -- fabricated workspaces and runs ----------------------------------------------------------

SPEC = """\
name: synth
train: train.csv
test: test.csv
{sample}{solution}id: id
targets: [target]
{labels}text: [text]
task: {task}
metric: {metric}
folds: {{n_splits: 3}}
"""
CLASSES = ["bird", "cat", "dog"]


def synth_workspace(root: Path, task: str = "binary", metric: str = "f1", n_train: int = 60,
                    n_test: int = 20, sample: bool = True, solution: bool = False, seed: int = 0) -> Workspace:
    """A small made-up workspace: train.csv, test.csv, sample_submission.csv (and solution.csv)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids = rng.permutation(np.arange(1000, 1000 + n_train + n_test))
    texts = [f"row {i} says {w}" for i, w in zip(ids, rng.choice(["hello", "fire", "calm"], len(ids)))]
    if task == "regression":
        target = rng.normal(size=len(ids)).round(3)
    elif task == "multiclass":
        target = np.array(CLASSES)[np.arange(len(ids)) % 3]
    else:
        target = np.arange(len(ids)) % 2
    frame = pd.DataFrame({"id": ids, "text": texts, "target": target})
    train, test = frame.iloc[:n_train], frame.iloc[n_train:]
    train.to_csv(root / "train.csv", index=False)
    test[["id", "text"]].to_csv(root / "test.csv", index=False)
    if sample:
        fill = {"regression": 0.0, "multiclass": "bird"}.get(task, 0)
        test[["id"]].assign(target=fill).to_csv(root / "sample_submission.csv", index=False)
    if solution:
        test[["id", "target"]].to_csv(root / "solution.csv", index=False)
    (root / "competition.yaml").write_text(SPEC.format(
        task=task, metric=metric, sample="sample_submission: sample_submission.csv\n" if sample else "",
        solution="solution: solution.csv\n" if solution else "",
        labels=f"labels: [{', '.join(CLASSES)}]\n" if task == "multiclass" else ""))
    (root / "folds").mkdir(exist_ok=True)
    folds_csv = root / "folds" / "folds.csv"
    train[["id"]].assign(fold=np.arange(n_train) % 3).to_csv(folds_csv, index=False)
    return Workspace(root)


def load_data(ws: Workspace):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data_mod.load(load_spec(ws.spec_file))


def fake_preds(data, n: int, y=None, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """(n, k) predictions in the spec's pred_columns form; near ``y`` when given."""
    rng = np.random.default_rng(seed)
    spec, k = data.spec, len(data.spec.pred_columns)
    if spec.task == "regression":
        base = np.zeros((n, k)) if y is None else np.asarray(y, dtype=float).reshape(n, -1)
        return base + rng.normal(scale=noise, size=(n, k))
    if spec.task == "multiclass":
        logits = rng.normal(size=(n, k)) + (0 if y is None else 3 * (1 - noise) * np.eye(k)[y])
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)
    base = rng.uniform(size=(n, k))
    if y is not None:
        base = (1 - noise) * np.asarray(y, dtype=float).reshape(n, -1) + noise * base
    return base


def make_run(ws: Workspace, data, name: str, *, noise: float = 0.3, seed: int = 0, n_splits: int = 3,
             kind: str = "experiment", **manifest):
    """A complete run written by runs.write_run, with the current folds/data/test hashes."""
    spec, n = data.spec, len(data.train)
    cols = spec.pred_columns
    fold = np.arange(n) % n_splits
    oof = pd.DataFrame(fake_preds(data, n, data.y, noise, seed), columns=cols)
    oof.insert(0, "fold", fold)
    oof.insert(0, "id", data.train[spec.id_column].to_numpy())
    parts = []
    for k in range(n_splits):
        part = pd.DataFrame(fake_preds(data, len(data.test), None, noise, seed + 10 + k), columns=cols)
        part.insert(0, "id", data.test[spec.id_column].to_numpy())
        parts.append(part)
    test = runs.average_folds(parts, cols)
    base = {"kind": kind, "family": "tfidf", "folds_hash": artifacts.file_hash(ws.folds_file),
            "data_hash": data.train_hash, "test_hash": data.test_hash, "n_splits": n_splits,
            "folds_done": list(range(n_splits)), "seconds_per_fold": {str(k): 1.5 for k in range(n_splits)}}
    return runs.write_run(ws, name, spec=spec, data=data, oof=oof, test=test,
                          manifest={**base, **manifest})


def tamper(run, edit, record: bool = True) -> None:
    """Rewrite a run's test.parquet through ``edit(frame) -> frame``; ``record``: and its hash in the
    manifest, as if the run had written those values (else it is damage, refused as such)."""
    path = run.dir / "test.parquet"
    edit(pd.read_parquet(path)).to_parquet(path, index=False)
    if record:
        manifest = artifacts.read_json(run.dir / "manifest.json")
        manifest["files"]["test.parquet"] = artifacts.file_hash(path)
        artifacts.write_json(run.dir / "manifest.json", manifest)


def written(ws: Workspace) -> list[str]:
    folder = ws.submissions_dir
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def binary_ws(tmp_path):
    ws = synth_workspace(tmp_path / "ws")
    data = load_data(ws)
    return ws, data, make_run(ws, data, "001")


# -- submit: the happy paths -----------------------------------------------------------------

def test_binary_labels_through_the_run_threshold(binary_ws):
    ws, data, run = binary_ws
    result = submit(ws)
    assert result.source == "001" and result.output == "labels" and result.rows == 20
    assert result.path.parent == ws.submissions_dir
    assert result.path.name.endswith(f"_001_cv{run.score:.4f}.csv")
    out = pd.read_csv(result.path)
    sample = pd.read_csv(ws.root / "sample_submission.csv")
    assert list(out.columns) == ["id", "target"] and out["id"].tolist() == sample["id"].tolist()
    p = run.test().set_index("id").loc[sample["id"], "target"].to_numpy()
    assert out["target"].tolist() == (p >= run.threshold).astype(int).tolist()
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["source"] == "001" and manifest["cv"] == run.score
    assert manifest["threshold"] == run.threshold and manifest["rows"] == 20
    assert manifest["test_hash"] == data.test_hash and manifest["folds_hash"] == run.manifest["folds_hash"]
    assert manifest["sample_submission_hash"] == artifacts.file_hash(ws.root / "sample_submission.csv")
    assert manifest["submission_hash"] == artifacts.file_hash(result.path)
    assert "pandas" in manifest["packages"]


def test_default_source_is_the_best_cv_and_incomplete_runs_are_skipped(tmp_path):
    ws = synth_workspace(tmp_path / "ws", task="regression", metric="rmse")
    data = load_data(ws)
    good = make_run(ws, data, "good", noise=0.1)
    bad = make_run(ws, data, "bad", noise=1.0)
    assert good.score < bad.score  # rmse: lower is better
    stale = make_run(ws, data, "stale", noise=0.01, folds_hash="0" * 16)  # best CV, but other folds
    assert stale.score < good.score
    partial = ws.run_dir("zzz")
    partial.mkdir()
    artifacts.write_json(partial / "manifest.json", {"status": "partial", "n_splits": 3, "folds_done": [0],
                                                     "pred_columns": ["target"]})
    result = submit(ws)
    assert result.source == "good" and result.output == "values"
    out = pd.read_csv(result.path)
    assert out["target"].dtype == float
    with pytest.raises(InputError, match=r"not complete \(folds \[1, 2\] missing\)"):
        submit(ws, "zzz")
    with pytest.raises(InputError, match="run 'stale' is stale: folds changed"):
        submit(ws, "stale")           # named explicitly: still refused, its CV is for other folds
    assert submit(ws, "stale", allow_stale=True).source == "stale"   # unless the user says so
    for name in ("good", "bad"):
        artifacts.write_json(ws.run_dir(name) / "manifest.json",
                             runs.load_run(ws, name).manifest | {"data_hash": "1" * 16})
    with pytest.raises(InputError, match=r"no complete run on the current folds.*stale \(stale: folds changed"):
        submit(ws)


def test_multiclass_labels_are_names_and_probabilities_without_a_sample(tmp_path):
    ws = synth_workspace(tmp_path / "a", task="multiclass", metric="accuracy")
    data = load_data(ws)
    run = make_run(ws, data, "001")
    out = pd.read_csv(submit(ws).path)
    p = run.test().set_index("id").loc[out["id"], run.pred_columns].to_numpy()
    assert out["target"].tolist() == [data.labels[i] for i in p.argmax(axis=1)]

    ws = synth_workspace(tmp_path / "b", task="multiclass", metric="log_loss", sample=False)
    data = load_data(ws)
    make_run(ws, data, "001")
    out = pd.read_csv(submit(ws).path)
    assert list(out.columns) == ["id", *[f"target_{c}" for c in CLASSES]]
    assert out["id"].tolist() == data.test["id"].tolist()
    assert np.allclose(out.iloc[:, 1:].sum(axis=1), 1.0)


def test_out_option_and_no_overwrite(binary_ws, tmp_path):
    ws, _, _ = binary_ws
    target = tmp_path / "mine.csv"
    result = submit(ws, "001", out=target)
    assert result.path == target and target.with_suffix(".json").is_file()
    with pytest.raises(InputError, match="already exists"):
        submit(ws, "001", out=target)
    first, second = submit(ws).path, submit(ws).path  # same second: a suffix, not an overwrite
    assert first != second and first.is_file() and second.is_file()


# -- submit: every bad case is refused and writes nothing ------------------------------------

BAD_CASES = {
    "wrong ids": (lambda f: f.assign(id=f["id"].where(f.index != 0, 999999)),
                  r"1 id\(s\) missing .*1 id\(s\) not in the sample submission sample_submission.csv \('999999'\)"),
    "duplicated ids": (lambda f: f.assign(id=f["id"].where(f.index != 0, f["id"].iloc[1])),
                       r"1 duplicated id\(s\)"),
    "missing rows": (lambda f: f.iloc[1:], r"19 prediction rows but the sample submission .* has 20"),
    "NaN": (lambda f: f.assign(target=f["target"].where(f.index != 3)),
            r"column 'target' has 1 missing, non-numeric or infinite value"),
    "inf": (lambda f: f.assign(target=f["target"].where(f.index != 3, np.inf)), r"column 'target'.*infinite"),
    "missing column": (lambda f: f.drop(columns=["target"]), r"prediction column\(s\) \['target'\] missing"),
    "out of range": (lambda f: f.assign(target=f["target"] + 1.0),
                     r"column 'target' holds \d+ value\(s\) outside \[0, 1\]"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_predictions_are_refused_and_nothing_is_written(binary_ws, case):
    ws, _, run = binary_ws
    edit, message = BAD_CASES[case]
    tamper(run, edit)
    with pytest.raises(InputError, match=message) as err:
        submit(ws)
    assert "test.parquet" in str(err.value) and "comp train exp=001" in str(err.value)
    assert written(ws) == []


def test_predictions_changed_after_their_run_recorded_them_are_damage_whatever_the_change(binary_ws):
    ws, _, run = binary_ws
    tamper(run, lambda f: f.assign(target=f["target"] * 0.99), record=False)     # plausible values, not its own
    with pytest.raises(InputError, match=r"test.parquet: damaged \(its bytes differ from those run 001 recorded"):
        submit(ws, "001")
    assert written(ws) == []


def test_stale_test_data_is_refused(binary_ws):
    ws, _, run = binary_ws
    manifest = run.manifest | {"test_hash": "0123456789abcdef"}
    artifacts.write_json(run.dir / "manifest.json", manifest)
    with pytest.raises(InputError, match="test data changed since 001 was trained"):
        submit(ws, "001")
    assert written(ws) == []


@pytest.mark.parametrize("key,what", [("data_hash", "train data changed"), ("folds_hash", "folds changed")])
def test_a_named_run_on_other_train_data_or_folds_is_refused_unless_allowed(binary_ws, key, what):
    ws, _, run = binary_ws
    artifacts.write_json(run.dir / "manifest.json", run.manifest | {key: "0123456789abcdef"})
    with pytest.raises(InputError, match=f"run '001' is stale: {what}.*allow_stale=True") as err:
        submit(ws, "001")
    assert re.search(f"run '001' is stale: {what}.*--allow-stale", err.value.phrased(FLAGS))   # `comp submit` says
    assert written(ws) == []
    assert submit(ws, "001", allow_stale=True).path.is_file()


def test_sample_columns_that_do_not_match_the_spec_are_refused(binary_ws):
    ws, data, _ = binary_ws
    sample = ws.root / "sample_submission.csv"
    pd.read_csv(sample).rename(columns={"target": "label"}).to_csv(sample, index=False)
    # caught where the data is first read (check, train, submit alike), not only at submit
    for step in (lambda: load_data(ws), lambda: submit(ws)):
        with pytest.raises(InputError, match=r"sample_submission.csv \(sample submission\): its columns "
                                             r"\['id', 'label'\] do not hold the targets \['target'\]"):
            step()
    assert written(ws) == []


def test_no_runs_and_no_test_set(tmp_path):
    ws = synth_workspace(tmp_path / "ws")
    with pytest.raises(InputError, match="no run to submit yet"):
        submit(ws)
    with pytest.raises(InputError, match="no run named 'nope'"):
        submit(ws, "nope")
    assert written(ws) == []


# -- kaggle hand-off: never fails the submission ---------------------------------------------

def _fake_kaggle(folder: Path, code: int) -> Path:
    exe = folder / "kaggle"
    exe.write_text(f"#!/bin/sh\necho \"$@\" > {folder}/args.txt\necho 'Successfully submitted'\nexit {code}\n")
    exe.chmod(0o755)
    return exe


def test_kaggle_missing_unconfigured_configured_and_failing(binary_ws, tmp_path, monkeypatch):
    ws, _, _ = binary_ws
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(key, raising=False)
    result = submit(ws, kaggle=True)
    assert result.path.is_file() and "pip install kaggle" in result.kaggle
    _fake_kaggle(bin_dir, 0)
    assert "not configured" in submit(ws, kaggle=True).kaggle
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    result = submit(ws, kaggle=True, competition="nlp-getting-started", message="first try")
    assert "submitted" in result.kaggle
    args = (bin_dir / "args.txt").read_text().split()
    assert args[:4] == ["competitions", "submit", "-c", "nlp-getting-started"] and str(result.path) in args
    _fake_kaggle(bin_dir, 1)
    result = submit(ws, kaggle=True)
    assert "failed (exit 1)" in result.kaggle and result.path.is_file()


# -- real competitions: byte-compatible with their sample submissions ------------------------

REAL = {
    "disaster-tweets": ("sample_submission.csv", "id", "target", "[keyword, text]", "binary", "f1"),
    "commonlit": ("sample_submission.csv", "id", "target", "[excerpt]", "regression", "rmse"),
    "titanic": ("gender_submission.csv", "PassengerId", "Survived", "[]", "binary", "accuracy"),
}


def real_workspace(root: Path, name: str) -> Workspace:
    sample, id_col, target, text, task, metric = REAL[name]
    root.mkdir(parents=True)
    (root / "competition.yaml").write_text(
        f"name: {name}\ndata_dir: {shared_data() / name}\ntrain: train.csv\ntest: test.csv\n"
        f"sample_submission: {sample}\nid: {id_col}\ntargets: [{target}]\ntext: {text}\n"
        f"task: {task}\nmetric: {metric}\n")
    data = load_data(Workspace(root))
    (root / "folds").mkdir()
    data.train[[id_col]].assign(fold=np.arange(len(data.train)) % 3).to_csv(root / "folds/folds.csv", index=False)
    return Workspace(root)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_submission_matches_the_sample_layout_byte_for_byte(tmp_path, name):
    ws = real_workspace(tmp_path / name, name)
    data = load_data(ws)
    run = make_run(ws, data, "001")
    result = submit(ws, data=data)
    sample_raw = (shared_data() / name / REAL[name][0]).read_bytes()
    out_raw = result.path.read_bytes()
    eol = b"\r\n" if name == "titanic" else b"\n"
    sample_lines, out_lines = sample_raw.split(eol), out_raw.split(eol)
    assert out_lines[0] == sample_lines[0]                       # header, byte for byte
    assert out_raw.endswith(eol) and len(out_lines) == len(sample_lines)
    assert (b"\r\n" in out_raw) == (name == "titanic")           # line terminator as the sample's
    assert [ln.split(b",")[0] for ln in out_lines] == [ln.split(b",")[0] for ln in sample_lines]
    values = [ln.split(b",")[1] for ln in out_lines[1:-1]]
    preds = run.test().set_index("id")[REAL[name][2]]
    if name == "commonlit":  # floats, full precision, as pandas writes them
        ids = [ln.split(b",")[0].decode() for ln in out_lines[1:-1]]
        assert [float(v) for v in values] == preds.loc[ids].tolist()
        assert all(b"." in v for v in values)
    else:  # labels 0/1 as plain ints through the run's threshold (accuracy: 0.5 or the best cut)
        assert set(values) <= {b"0", b"1"}
        ids = [int(ln.split(b",")[0]) for ln in out_lines[1:-1]]
        thr = run.threshold if run.threshold is not None else 0.5
        assert [int(v) for v in values] == (preds.loc[ids].to_numpy() >= thr).astype(int).tolist()


def test_sms_spam_holdout_submit_then_score(tmp_path):
    from competition.init import init_workspace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init_workspace(tmp_path / "sms", train=shared_data() / "sms-spam" / "SMSSpamCollection", holdout=0.2,
                       sep="\t", header=False, names=["label", "text"], quoting="none",
                       metric="average_precision", n_splits=3)
    ws = Workspace(tmp_path / "sms")
    data = load_data(ws)
    data.train[["id"]].assign(fold=np.arange(len(data.train)) % 3).to_csv(ws.folds_file, index=False)
    run = make_run(ws, data, "001")
    result = submit(ws, data=data)
    assert result.output == "probabilities"
    sample_raw = (ws.root / "data" / "sample_submission.csv").read_bytes()
    out_raw = result.path.read_bytes()
    assert out_raw.split(b"\n")[0] == sample_raw.split(b"\n")[0] == b"id,label"
    assert [ln.split(b",")[0] for ln in out_raw.split(b"\n")] == [ln.split(b",")[0] for ln in sample_raw.split(b"\n")]
    scored = score_file(ws, result.path, data=data)
    solution = pd.read_csv(ws.root / "data" / "solution.csv")
    y = (solution["label"] == "spam").astype(int).to_numpy()
    p = run.test().set_index("id").loc[solution["id"], "label"].to_numpy()
    assert scored.metric == "average_precision" and scored.rows == len(solution)
    assert scored.score == pytest.approx(metrics.score("average_precision", y, p[:, None], "binary"))


# -- comp score ------------------------------------------------------------------------------

def _solution(ws: Workspace) -> pd.DataFrame:
    return pd.read_csv(ws.root / "solution.csv")


def test_score_reproduces_a_known_score(tmp_path):
    ws = synth_workspace(tmp_path / "ws", solution=True)
    sol = _solution(ws)
    wrong = sol["target"].to_numpy().copy()
    wrong[:4] = 1 - wrong[:4]  # 4 of 20 wrong
    sub = tmp_path / "sub.csv"
    sol.assign(target=wrong).iloc[::-1].to_csv(sub, index=False)  # row order does not matter
    result = score_file(ws, sub)
    from sklearn.metrics import f1_score

    assert result.score == pytest.approx(f1_score(sol["target"], wrong)) and result.rows == 20
    assert result.metric == "f1" and result.direction == "maximize" and result.note is None

    ws = synth_workspace(tmp_path / "reg", task="regression", metric="rmse", solution=True)
    sol = _solution(ws)
    sol.assign(target=sol["target"] + 0.5).to_csv(sub, index=False)
    assert score_file(ws, sub).score == pytest.approx(0.5)


def test_score_round_trips_a_submission(tmp_path):
    ws = synth_workspace(tmp_path / "ws", task="multiclass", metric="accuracy", solution=True)
    data = load_data(ws)
    run = make_run(ws, data, "001")
    path = submit(ws).path
    sol = _solution(ws)
    p = run.test().set_index("id").loc[sol["id"], run.pred_columns].to_numpy()
    y = sol["target"].map({c: i for i, c in enumerate(data.labels)}).to_numpy()
    assert score_file(ws, path).score == pytest.approx(metrics.score("accuracy", y, p, "multiclass"))


def test_score_refusals(tmp_path):
    ws = synth_workspace(tmp_path / "ws", solution=True)
    sol = _solution(ws)
    sub = tmp_path / "sub.csv"

    def refused(frame: pd.DataFrame, pattern: str):
        frame.to_csv(sub, index=False)
        with pytest.raises(InputError, match=pattern) as err:
            score_file(ws, sub)
        assert str(sub) in str(err.value)

    refused(sol.iloc[1:], r"19 rows, but the solution solution.csv has 20")
    refused(sol.assign(id=sol["id"].where(sol.index != 0, 5)), r"1 id\(s\) missing.*\('5'\)")
    refused(sol.rename(columns={"target": "label"}), r"missing \['target'\], unexpected \['label'\]")
    refused(sol.assign(target=np.linspace(0.01, 0.99, 20)), r"probabilities\?\), but metric f1 scores labels")
    refused(sol.assign(target=sol["target"].astype(float).where(sol.index != 2)), r"column 'target' is empty")
    refused(sol.assign(target=np.where(sol.index == 3, 2, sol["target"])),   # a label the task does not have
            r"column 'target' holds label\(s\) '2' outside the label set \[0, 1\]; metric f1 scores labels \[0, 1\]")

    ws = synth_workspace(tmp_path / "auc", metric="roc_auc", solution=True)
    sol = _solution(ws)
    refused(sol.assign(target=np.where(sol["target"] == 1, "yes", "no")),
            r"holds class labels \('no', 'yes'\), but metric roc_auc scores probabilities")
    refused(sol.assign(target=np.linspace(-1, 1, 20)), r"outside \[0, 1\]")
    sol.to_csv(sub, index=False)  # hard 0/1 labels for a probability metric: scored, with a warning
    result = score_file(ws, sub)
    assert result.score == 1.0 and "hard 0/1 labels" in result.note

    ws = synth_workspace(tmp_path / "nosol")
    with pytest.raises(InputError, match="no `solution:` file"):
        score_file(ws, sub)


def test_a_truncated_submission_scored_against_a_given_solution_is_blamed_not_the_solution(tmp_path):
    """Issue 40: a submission cut short said "check that the solution you gave holds the test ids"."""
    ws = synth_workspace(tmp_path / "ws", solution=True)
    sol = _solution(ws)
    given, sub = tmp_path / "mine.csv", tmp_path / "sub.csv"
    sol.to_csv(given, index=False)
    sol.iloc[:12].to_csv(sub, index=False)
    with pytest.raises(InputError, match=r"sub.csv: 12 rows, but the solution .*mine.csv has 20; submit one row "
                                         r"per test id, as the sample submission has 20") as err:
        score_file(ws, sub, solution=given)
    assert "check that the solution" not in str(err.value)
    sol.iloc[:15].to_csv(given, index=False)          # the solution given is the short one: it is named
    with pytest.raises(InputError, match=r"check that the solution .*mine.csv you gave holds"):
        score_file(ws, sub, solution=given)


def test_multilabel_labels_use_one_threshold_per_label_and_score_back(tmp_path):
    root = tmp_path / "ml"
    root.mkdir()
    rng = np.random.default_rng(1)
    ids = np.arange(80)
    y = (rng.uniform(size=(80, 3)) < 0.4).astype(int)
    frame = pd.DataFrame({"id": ids, "text": [f"text number {i}" for i in ids], "a": y[:, 0], "b": y[:, 1],
                          "c": y[:, 2]})
    frame.iloc[:60].to_csv(root / "train.csv", index=False)
    frame.iloc[60:][["id", "text"]].to_csv(root / "test.csv", index=False)
    frame.iloc[60:][["id", "c", "a", "b"]].assign(a=0, b=0, c=0).to_csv(root / "sample_submission.csv", index=False)
    frame.iloc[60:][["id", "a", "b", "c"]].to_csv(root / "solution.csv", index=False)
    (root / "competition.yaml").write_text(
        "name: ml\ntrain: train.csv\ntest: test.csv\nsample_submission: sample_submission.csv\n"
        "solution: solution.csv\nid: id\ntargets: [a, b, c]\ntext: [text]\ntask: multilabel\nmetric: f1\n")
    (root / "folds").mkdir()
    frame.iloc[:60][["id"]].assign(fold=np.arange(60) % 3).to_csv(root / "folds" / "folds.csv", index=False)
    ws = Workspace(root)
    data = load_data(ws)
    run = make_run(ws, data, "001", noise=0.6)
    assert isinstance(run.threshold, list) and len(run.threshold) == 3
    result = submit(ws)
    out = pd.read_csv(result.path)
    assert list(out.columns) == ["id", "c", "a", "b"]  # the sample's column order
    p = run.test().set_index("id").loc[out["id"]]
    for j, col in enumerate(["a", "b", "c"]):
        assert out[col].tolist() == (p[col].to_numpy() >= run.threshold[j]).astype(int).tolist()
    truth = frame.iloc[60:][["a", "b", "c"]].to_numpy()
    assert score_file(ws, result.path).score == pytest.approx(
        metrics.score("f1", truth, out.set_index("id").loc[frame.iloc[60:]["id"], ["a", "b", "c"]].to_numpy(),
                      "multilabel"))


def test_a_read_only_or_full_folder_is_a_message_not_a_traceback(binary_ws, monkeypatch):
    import errno
    import os

    from typer.testing import CliRunner

    from competition.cli import app

    ws, _, _ = binary_ws
    ws.submissions_dir.mkdir(exist_ok=True)
    if os.geteuid() != 0:       # root writes anywhere: then the permission case is simulated below
        ws.submissions_dir.chmod(0o500)
    real_replace = os.replace

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    out = CliRunner().invoke(app, ["submit", "001", "-w", str(ws.root)])
    monkeypatch.setattr(os, "replace", real_replace)
    ws.submissions_dir.chmod(0o700)
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "cannot write it" in text and ("free some disk space" in text or "writable" in text)
    assert written(ws) == []


def test_an_edited_data_hash_does_not_make_a_run_on_other_labels_submittable(tmp_path):
    """Issue 24 #4: change train labels, write the new data_hash into the run's manifest: submit took
    the old CV. The folds' done.json and folds/manifest.json still say which data it was trained on."""
    from competition.config import load_config
    from competition.train import train
    from tests.workspaces import tweets_workspace

    ws = tweets_workspace(tmp_path / "ws", n_train=300, n_test=40)
    train(ws, load_config(ws, "001"), data=data_mod.load(load_spec(ws.spec_file)))
    frame = pd.read_csv(ws.root / "train.csv")
    frame.loc[:60, "target"] = 1 - frame.loc[:60, "target"]
    frame.to_csv(ws.root / "train.csv", index=False)
    data = data_mod.load(load_spec(ws.spec_file))

    def forge(path: Path) -> None:
        info = json.loads(path.read_text())
        path.write_text(json.dumps({**info, "data_hash": data.train_hash}))

    forge(ws.run_dir("001") / "manifest.json")
    with pytest.raises(InputError, match=r"fold0/done.json: run '001' is stale: train data changed"):
        submit(ws, "001", data=data)
    for k in range(3):
        forge(ws.fold_dir("001", k) / "done.json")
    with pytest.raises(InputError, match=r"folds/manifest.json: run '001' is stale: train data changed since folds "
                                         r"were made: run `comp folds --force`"):
        submit(ws, "001", data=data)
    assert not list(ws.root.glob("submissions/*.csv"))                         # nothing written
    assert submit(ws, "001", data=data, allow_stale=True).path.is_file()       # the user's call, when named
