"""Folds: every scheme on real data, bad input refused with the fix, the files guarded by their hashes."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from competition import artifacts, folds, splitters
from competition.commands.folds import FLAGS
from competition.errors import InputError
from competition.spec import SCHEMES
from tests.datasets import shared_data
from tests.workspaces import tweets_workspace

K = 5


# -- real data, read directly (module-scoped: each file is parsed once) ---------------------------

@pytest.fixture(scope="module")
def tweets() -> pd.DataFrame:
    return pd.read_csv(shared_data() / "disaster-tweets" / "train.csv")


@pytest.fixture(scope="module")
def commonlit() -> pd.DataFrame:
    return pd.read_csv(shared_data() / "commonlit" / "train.csv")


@pytest.fixture(scope="module")
def goemotions() -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.read_csv(shared_data() / "goemotions" / "train.tsv", sep="\t", header=None,
                        names=["text", "labels", "id"])
    y = np.zeros((len(frame), 28), dtype=np.int64)
    for row, ids in enumerate(frame["labels"].astype(str)):
        y[row, [int(i) for i in ids.split(",")]] = 1
    return frame, y


def _case(scheme: str, tweets, commonlit, goemotions) -> dict:
    """make_folds arguments for a scheme, on the real dataset it belongs to."""
    if scheme == "multilabel-stratified":
        frame, y = goemotions
        return dict(ids=frame["id"], y=y, task="multilabel")
    if scheme == "binned-stratified":
        return dict(ids=commonlit["id"], y=commonlit["target"].to_numpy(), task="regression")
    case = dict(ids=tweets["id"], y=tweets["target"].to_numpy(), task="binary")
    if scheme in ("group", "stratified-group"):
        case["groups"] = tweets["text"]
    if scheme == "time-ordered":
        case["time"] = tweets["id"]  # ids grow with collection order: a stand-in for time
    return case


@pytest.fixture(scope="module")
def made(tweets, commonlit, goemotions):
    """Folds of every scheme with seeds 42 (twice) and 7, built once for the module."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for scheme in SCHEMES:
            case = _case(scheme, tweets, commonlit, goemotions)
            runs = [splitters.make_folds(**case, scheme=scheme, n_splits=K, seed=s) for s in (42, 42, 7)]
            out[scheme] = (case, runs)
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_row_in_exactly_one_fold(made, scheme):
    case, (a, _, _) = made[scheme]
    assert a["id"].tolist() == list(case["ids"]) and a["id"].is_unique
    assert sorted(a["fold"].unique()) == list(range(K))
    sizes = a["fold"].value_counts()
    assert sizes.min() > 0.5 * len(a) / K


@pytest.mark.parametrize("scheme", SCHEMES)
def test_splitter_contract_train_and_valid_disjoint(made, scheme):
    case, _ = made[scheme]
    y = np.asarray(case["y"])
    groups = pd.factorize(case["groups"])[0] if "groups" in case else None
    splitter = splitters.make_splitter(scheme, K, 42)
    assert splitter.get_n_splits() == K
    seen = np.zeros(len(y), dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for train, valid in splitter.split(np.zeros((len(y), 1)), y, groups):
            assert not np.intersect1d(train, valid).size
            assert len(train) + len(valid) == len(y)
            seen[valid] += 1
    assert (seen == 1).all()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_folds_other_seed_other_folds(made, scheme):
    _, (a, b, other) = made[scheme]
    pd.testing.assert_frame_equal(a, b)
    if scheme == "time-ordered":  # contiguous blocks in time: nothing random, the seed is unused
        pd.testing.assert_frame_equal(a, other)
    else:
        assert (a["fold"] != other["fold"]).mean() > 0.3


def test_stratified_keeps_the_positive_rate(made, tweets):
    _, (a, _, _) = made["stratified"]
    overall = tweets["target"].mean()
    rates = tweets["target"].groupby(a["fold"]).mean()
    assert (rates - overall).abs().max() < 0.01


@pytest.mark.parametrize("scheme", ["group", "stratified-group"])
def test_duplicate_texts_never_straddle_folds(made, tweets, scheme):
    _, (a, _, _) = made[scheme]
    assert tweets["text"].duplicated().sum() > 50  # the real file repeats texts
    assert (a["fold"].groupby(tweets["text"]).nunique() == 1).all()


def test_stratified_group_also_keeps_the_positive_rate(made, tweets):
    _, (a, _, _) = made["stratified-group"]
    rates = tweets["target"].groupby(a["fold"]).mean()
    assert (rates - tweets["target"].mean()).abs().max() < 0.02


def test_multilabel_counts_per_fold_within_ten_percent(made, goemotions):
    _, y = goemotions
    _, (a, _, _) = made["multilabel-stratified"]
    counts = np.stack([y[a["fold"].to_numpy() == k].sum(axis=0) for k in range(K)])  # (folds, labels)
    mean = counts.mean(axis=0)
    assert (np.abs(counts - mean) <= 0.1 * mean).all()


def test_binned_regression_fold_means_agree(made, commonlit):
    _, (a, _, _) = made["binned-stratified"]
    means = commonlit["target"].groupby(a["fold"]).mean()
    assert means.max() - means.min() < 0.05


def test_time_ordered_blocks_follow_time(made, tweets):
    _, (a, _, _) = made["time-ordered"]
    span = tweets["id"].groupby(a["fold"]).agg(["min", "max"]).sort_index()
    assert (span["max"].to_numpy()[:-1] < span["min"].to_numpy()[1:]).all()


def test_time_ordered_sorts_by_time_not_file_order():
    time = pd.Series(["2021-03-01", "2020-01-05", "2021-01-01", "2020-06-30"], name="when")
    out = splitters.make_folds(range(4), np.zeros(4), task="regression", scheme="time-ordered", n_splits=2,
                           time=time)
    assert out["fold"].tolist() == [1, 0, 1, 0]


# -- bad input: an InputError naming the parameter, the value and the fix -------------------------

def test_n_splits_above_the_smallest_class(tweets):
    y = tweets["target"].to_numpy().copy()
    y[np.flatnonzero(y == 1)[3:]] = 0  # three positives left
    with pytest.raises(InputError, match=r"n_splits=5 is more than the 3 row\(s\) of class 'disaster'"):
        splitters.make_folds(tweets["id"], y, task="binary", scheme="stratified", labels=["calm", "disaster"])


def test_a_class_of_one_row_never_suggests_n_splits_1(tweets):
    y = tweets["target"].to_numpy().copy()
    y[np.flatnonzero(y == 1)[1:]] = 0  # one positive left
    with pytest.raises(InputError, match=r"1 row\(s\) of class 'disaster'.*merge or drop that class") as err:
        splitters.make_folds(tweets["id"], y, task="binary", scheme="stratified", labels=["calm", "disaster"])
    assert "at most 1" not in str(err.value)


def test_n_splits_above_the_number_of_groups(tweets):
    groups = pd.Series(np.arange(len(tweets)) % 3, name="batch")
    with pytest.raises(InputError, match=r"n_splits=5 is more than the 3 distinct groups in folds.group "
                                         r"column 'batch'; lower n_splits to at most 3"):
        splitters.make_folds(tweets["id"], tweets["target"], task="binary", scheme="group", groups=groups)


def test_group_column_with_empty_rows(tweets):
    # keyword is blank in 61 rows of the real file
    with pytest.raises(InputError, match=r"folds.group column 'keyword' is empty in 61 row\(s\)"):
        splitters.make_folds(tweets["id"], tweets["target"], task="binary", scheme="stratified-group",
                         groups=tweets["keyword"])


def test_unknown_scheme(tweets):
    with pytest.raises(InputError, match=r"unknown fold scheme 'stratifed'.*valid: kfold, stratified"):
        splitters.make_folds(tweets["id"], tweets["target"], task="binary", scheme="stratifed")


def test_scheme_that_does_not_fit_the_task(commonlit, tweets):
    with pytest.raises(InputError, match="use scheme 'binned-stratified'"):
        splitters.make_folds(commonlit["id"], commonlit["target"], task="regression", scheme="stratified")
    with pytest.raises(InputError, match="use scheme 'stratified'"):
        splitters.make_folds(tweets["id"], tweets["target"], task="binary", scheme="multilabel-stratified")
    with pytest.raises(InputError, match="needs a group column"):
        splitters.make_folds(tweets["id"], tweets["target"], task="binary", scheme="group")


def test_degraded_input_warns(goemotions, tweets):
    frame, y = goemotions
    few = y[:300]  # some emotions have fewer than 5 positives in 300 rows
    with pytest.warns(splitters.FoldWarning, match="fewer positive rows than the 5 folds"):
        splitters.make_folds(frame["id"][:300], few, task="multilabel", scheme="multilabel-stratified")
    with pytest.warns(splitters.FoldWarning, match="ignored by scheme 'kfold'"):
        splitters.make_folds(tweets["id"], tweets["target"], task="binary", scheme="kfold", groups=tweets["text"])
    with pytest.warns(splitters.FoldWarning, match="folds.time column 'id' is ignored by scheme 'stratified'"):
        splitters.make_folds(tweets["id"], tweets["target"], task="binary", scheme="stratified", time=tweets["id"])
    with pytest.warns(splitters.FoldWarning, match="file order"):
        splitters.make_folds(tweets["id"], tweets["target"], task="binary", scheme="time-ordered")


def test_time_column_with_empty_rows():
    time = pd.Series([1.0, None, 3.0, 4.0], name="when")
    with pytest.raises(InputError, match=r"folds.time column 'when' is empty in 1 row"):
        splitters.make_folds(range(4), np.zeros(4), task="regression", scheme="time-ordered", n_splits=2, time=time)


# -- the files: written once, guarded by hashes ----------------------------------------------------

@pytest.fixture
def ws(tmp_path):
    return tweets_workspace(tmp_path / "ws", n_train=300, n_test=20, folds=False)


def _load(ws, **fold_changes):
    from competition import data
    from competition.spec import load_spec

    spec = load_spec(ws.spec_file)
    if fold_changes:
        new = spec.model_copy(update={"folds": spec.folds.model_copy(update=fold_changes)})
        object.__setattr__(new, "_root", spec.root)
        spec = new
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data.load(spec, with_test=False)


def _fake_run(ws, name: str, folds_hash: str) -> None:
    artifacts.write_json(ws.run_dir(name) / "manifest.json", {"name": name, "folds_hash": folds_hash})


def test_write_then_read(ws):
    ds = _load(ws)
    result = folds.write_folds(ws, ds)
    assert result.status == "written" and result.files == [ws.folds_file, ws.folds_manifest]
    manifest = json.loads(ws.folds_manifest.read_text())
    assert manifest["folds_hash"] == artifacts.file_hash(ws.folds_file)
    assert manifest["data_hash"] == ds.train_hash and manifest["n_rows"] == 300
    assert {manifest[k] for k in ("scheme", "n_splits", "seed")} == {"stratified", 3, 42}
    back = folds.read_folds(ws, ds)
    pd.testing.assert_frame_equal(back, result.folds)
    assert folds.read_folds(ws)["id"].tolist() == ds.train["id"].tolist()


def test_identical_folds_are_kept(ws):
    ds = _load(ws)
    folds.write_folds(ws, ds)
    _fake_run(ws, "001", artifacts.file_hash(ws.folds_file))
    before = ws.folds_file.stat().st_mtime_ns
    again = folds.write_folds(ws, ds)  # same settings: no --force needed, nothing rewritten
    assert again.status == "unchanged" and ws.folds_file.stat().st_mtime_ns == before


def test_overwrite_refused_while_runs_use_the_folds(ws):
    ds = _load(ws)
    folds.write_folds(ws, ds)
    old = ws.folds_file.read_bytes()
    _fake_run(ws, "001", artifacts.file_hash(ws.folds_file))
    _fake_run(ws, "002", "someotherfolds")
    with pytest.raises(InputError, match=r"run\(s\) 001 were trained on the current folds.*force=True") as err:
        folds.write_folds(ws, ds, seed=7)
    assert re.search(r"run\(s\) 001 were trained on the current folds.*--force", err.value.phrased(FLAGS))
    assert ws.folds_file.read_bytes() == old
    replaced = folds.write_folds(ws, ds, seed=7, force=True)
    assert replaced.status == "replaced" and replaced.replaced_runs == ["001"]
    assert folds.read_folds(ws, ds)["fold"].tolist() != pd.read_csv(io.BytesIO(old))["fold"].tolist()


def test_a_finished_fold_also_counts_as_a_user(ws):
    ds = _load(ws)
    folds.write_folds(ws, ds)
    artifacts.write_json(ws.fold_dir("003", 0) / "done.json", {"folds_hash": artifacts.file_hash(ws.folds_file)})
    with pytest.raises(InputError, match="003"):
        folds.write_folds(ws, ds, n_splits=4)


def test_settings_fall_back_to_the_spec_and_overrides_win(ws):
    result = folds.write_folds(ws, _load(ws, scheme="kfold", n_splits=4, seed=3))
    assert (result.manifest["scheme"], result.manifest["n_splits"], result.manifest["seed"]) == ("kfold", 4, 3)
    with pytest.warns(splitters.FoldWarning, match="ignored"):
        grouped = folds.write_folds(ws, _load(ws, group="keyword"), scheme="kfold", n_splits=3)
    assert grouped.manifest["group"] is None  # kfold ignores the group column


def test_missing_time_column_is_refused(ws):
    ds = _load(ws)
    spec = ds.spec.model_copy(update={"folds": ds.spec.folds.model_copy(update={"time": "created_at"})})
    with pytest.raises(InputError, match=r"folds.time: column 'created_at' is not in train.csv"):
        folds.write_folds(ws, dataclasses.replace(ds, spec=spec), scheme="time-ordered")


def test_read_folds_refusals(ws):
    ds = _load(ws)
    with pytest.raises(InputError, match="no folds yet.*comp folds"):
        folds.read_folds(ws, ds)
    folds.write_folds(ws, ds)
    # a crash between folds.csv and its manifest: the manifest's hash no longer matches
    text = ws.folds_file.read_text().replace(",0\n", ",1\n", 1)
    ws.folds_file.write_text(text)
    with pytest.raises(InputError, match="changed since its manifest"):
        folds.read_folds(ws, ds)
    folds.write_folds(ws, ds)  # the folds are written again (no run used the edited ones)
    other = dataclasses.replace(ds, train_hash="0000")
    with pytest.raises(InputError, match="train data changed since folds were made: run `comp folds --force`"):
        folds.read_folds(ws, other)
    fewer = dataclasses.replace(ds, train=ds.train.iloc[:-1])
    with pytest.raises(InputError, match="ids differ"):
        folds.read_folds(ws, fewer)
    ws.folds_manifest.unlink()
    with pytest.raises(InputError, match="manifest.json is missing"):
        folds.read_folds(ws, ds)


@pytest.mark.parametrize("task, y, column", [
    ("binary", np.array([1, 0, 0, 1]), "positive rate"),
    ("multiclass", np.array([0, 2, 1, 2]), "share c"),
    ("multilabel", np.array([[1, 0], [1, 1], [0, 0], [0, 1]]), "labels per row"),
    ("regression", np.array([0.5, 1.5, 1.0, 2.0]), "target mean"),
])
def test_summary_balance_per_task(task, y, column):
    table = folds.summary(pd.DataFrame({"id": range(4), "fold": [0, 1, 0, 1]}), y, task, labels=["a", "b", "c"])
    assert table.index.tolist() == ["0", "1", "all"] and table["rows"].tolist() == [2, 2, 4]
    assert column in table.columns


def test_cli_writes_folds_and_reports_errors(ws):
    from typer.testing import CliRunner

    from competition.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["folds", "--workspace", str(ws.root)])
    assert ok.exit_code == 0, ok.output
    assert "positive rate" in ok.output and "folds.csv" in ok.output and ws.folds_file.is_file()
    again = runner.invoke(app, ["folds", "--workspace", str(ws.root)])
    assert again.exit_code == 0 and "unchanged" in again.output
    bad = runner.invoke(app, ["folds", "--workspace", str(ws.root), "--scheme", "nope"])
    assert bad.exit_code == 2 and "unknown fold scheme 'nope'" in bad.output
