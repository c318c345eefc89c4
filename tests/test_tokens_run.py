"""Token runs end to end on real WNUT-17 rows: the CRF and the encoder's token head train on folds,
write per-unit predictions, resume, replay exactly, and submit a JSON list of tags per row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from competition import align, predictions
from competition import tokens as tk
from competition.config import load_config
from competition.data import load
from competition.spec import load_spec
from competition.train import train
from tests.workspaces import wnut_workspace


def _run(ws, exp, **kw):
    data = load(load_spec(ws.spec_file))
    return data, train(ws, load_config(ws, exp), data=data, **kw)


def _tiny_encoder_workspace(tmp_path, n_train: int, n_test: int, model: str, train_: str):
    """A WNUT-17 workspace whose experiment 010 is a tiny random BERT (vocabulary from its rows) with a
    token head: ``model`` and ``train_`` are the inner YAML of its model and train blocks."""
    from tests.tiny import tiny_bert

    ws = wnut_workspace(tmp_path / "ws", n_train=n_train, n_test=n_test, experiments={})
    texts = [" ".join(json.loads(t)) for t in pd.read_csv(ws.root / "train.csv")["tokens"]]
    folder = tiny_bert(tmp_path, texts)
    (ws.root / "experiments" / "010.yaml").write_text(
        f"model: {{family: encoder, name: {folder}, {model}}}\n"
        f"train: {{epochs: 1, batch_size: 8, select: last, patience: null, {train_}}}\n")
    return ws


def test_crf_run_writes_per_unit_predictions_scored_as_seqeval_scores_its_tags(tmp_path):
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    ws = wnut_workspace(tmp_path / "ws")
    data, result = _run(ws, "001")
    oof = pd.read_parquet(ws.run_dir("001") / "oof.parquet")
    cols = data.spec.pred_columns
    pred = predictions.matrix(oof, cols)
    units = [len(t) for t in data.train["tokens"]]
    assert [len(p) for p in pred] == units and all(np.allclose(p.sum(axis=1), 1.0) for p in pred)
    # the reported CV is seqeval's F1 of the tags decoded with each fold's bias chosen on the other folds
    metrics = json.loads((ws.run_dir("001") / "metrics.json").read_text())
    fold = oof["fold"].to_numpy()
    decoded = [None] * len(oof)
    for k, bias in metrics["fold_thresholds"].items():
        here = np.flatnonzero(fold == int(k))
        for i, codes in zip(here, tk.decode(pred[here], bias)):
            decoded[i] = [data.labels[c] for c in codes]
    truth = tk.tags_of(data.y, data.labels)
    assert result.oof_score == pytest.approx(f1_score(truth, decoded, mode="strict", scheme=IOB2))
    assert result.oof_score > 0.15       # a CRF finds entities in 200 training sentences


def test_token_run_replays_and_submits_a_json_list_of_tags_per_row(tmp_path):
    from competition.predict import predict
    from competition.submit import submit

    ws = wnut_workspace(tmp_path / "ws")
    data, _ = _run(ws, "001")
    replay = predict(ws, "001", ws.root / "test.csv")
    cols = data.spec.pred_columns
    mine = predictions.matrix(pd.read_parquet(ws.run_dir("001") / "test.parquet"), cols)
    again = predictions.matrix(replay.predictions, cols)
    assert max(np.abs(a - b).max() for a, b in zip(mine, again)) <= 1e-6
    out = submit(ws, "001", data=data)
    table = pd.read_csv(out.path)
    tags = [json.loads(cell) for cell in table["tags"]]
    assert list(table.columns) == ["id", "tags"]
    assert [len(t) for t in tags] == [len(t) for t in data.test["tokens"]]
    assert all(tk.invalid_positions(t) == [] and set(t) <= set(data.labels) for t in tags)


def test_encoder_token_head_trains_replays_and_resumes_identically(tmp_path):
    ws = _tiny_encoder_workspace(tmp_path, 90, 20, "max_length: 16, stride: 6, lr: 1e-3", "seeds: [1, 2]")
    data, result = _run(ws, "010", folds="0")
    fold0 = ws.fold_dir("010", 0)
    first = {p.name: p.read_bytes() for p in fold0.glob("*.parquet")}
    test = predictions.matrix(pd.read_parquet(fold0 / "test.parquet"), data.spec.pred_columns)
    # every unit has a distribution; rows longer than a window (16 ids) are read whole through windows
    assert [len(p) for p in test] == [len(t) for t in data.test["tokens"]]
    assert all(np.allclose(p.sum(axis=1), 1.0) for p in test)
    from competition.models import encoder
    from competition.config import load_config as cfg_of
    import types
    again = encoder.predict(fold0, cfg_of(ws, "010"), types.SimpleNamespace(spec=data.spec), data.test)
    assert max(np.abs(a - b).max() for a, b in zip(test, again)) <= 1e-6
    # a second run skips the finished fold and leaves its files as they were
    _, second = _run(ws, "010", folds="0")
    assert [r.status for r in second.folds] == ["skipped"]
    assert {p.name: p.read_bytes() for p in fold0.glob("*.parquet")} == first


def test_unit_level_stack_is_honest_replays_and_submits(tmp_path):
    from competition.predict import predict
    from competition.stack import stack

    ws = wnut_workspace(tmp_path / "ws", experiments={"001": "model: {family: crf}\n",
                                                      "002": "model: {family: crf, window: 0, affixes: 1, c1: 0.5}\n"})
    data, _ = _run(ws, "001")
    _run(ws, "002")
    result = stack(ws, inputs=["001", "002"], data=data)
    cols = data.spec.pred_columns
    oof = predictions.matrix(pd.read_parquet(result.run_dir / "oof.parquet"), cols)
    assert [len(p) for p in oof] == [len(t) for t in data.train["tokens"]]
    assert all(np.allclose(p.sum(axis=1), 1.0, atol=1e-5) for p in oof)
    assert result.oof_score > 0.1 and result.versus_best is not None
    replay = predict(ws, result.name, ws.root / "test.csv")
    mine = predictions.matrix(pd.read_parquet(result.run_dir / "test.parquet"), cols)
    again = predictions.matrix(replay.predictions, cols)
    assert max(np.abs(a - b).max() for a, b in zip(mine, again)) <= 1e-6


def test_unit_features_read_each_input_at_the_unit_and_its_neighbours():
    a = predictions.rows([np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]), np.array([[0.3, 0.7]])])
    b = predictions.rows([np.array([[1.0, 0.0], [0.0, 1.0], [0.4, 0.6]]), np.array([[0.6, 0.4]])])
    x = tk.unit_features([a, b], window=1)
    assert x.shape == (4, 2 * 3 * 2 + 2 + 3)
    assert np.allclose(x[1, :6], [0.2, 0.8, 0.9, 0.1, 0.5, 0.5])          # a at unit 1, then units 0 and 2
    assert np.allclose(x[1, 6:12], [0.0, 1.0, 1.0, 0.0, 0.4, 0.6])        # b likewise
    assert np.isnan(x[3, 2:6]).all() and np.allclose(x[3, :2], [0.3, 0.7])   # a one-unit row has no neighbours
    assert np.allclose(x[:, 12:14], [[0.95, 0.05], [0.1, 0.9], [0.45, 0.55], [0.45, 0.55]])   # the inputs' mean
    assert np.allclose(x[:, -3:], [[0, 3, 0], [1, 3, 0.5], [2, 3, 1], [0, 1, 0]])


@pytest.mark.parametrize("method", ["mean", "hill-climb"])
def test_blends_average_per_unit_arrays_and_replay(tmp_path, method):
    from competition.blend import blend
    from competition.predict import predict

    ws = wnut_workspace(tmp_path / "ws", experiments={"001": "model: {family: crf}\n",
                                                      "002": "model: {family: crf, window: 0, affixes: 1, c1: 0.5}\n"})
    data, _ = _run(ws, "001")
    _run(ws, "002")
    result = blend(ws, inputs=["001", "002"], method=method, data=data)
    cols = data.spec.pred_columns
    a, b = (predictions.matrix(pd.read_parquet(ws.run_dir(r) / "oof.parquet"), cols) for r in ("001", "002"))
    mine = predictions.matrix(pd.read_parquet(result.run_dir / "oof.parquet"), cols)
    if method == "mean":    # the mean of the two inputs' arrays, unit by unit
        assert max(np.abs(m - (x + y) / 2).max() for m, x, y in zip(mine, a, b)) <= 1e-6
    replay = predict(ws, result.name, ws.root / "test.csv")
    test = predictions.matrix(pd.read_parquet(result.run_dir / "test.parquet"), cols)
    assert max(np.abs(x - y).max() for x, y in zip(test, predictions.matrix(replay.predictions, cols))) <= 1e-6


def test_ctrl_c_in_a_fold_then_resume_gives_the_files_of_an_uninterrupted_run(tmp_path, monkeypatch):
    from competition.models import crf

    clean = wnut_workspace(tmp_path / "clean")
    _run(clean, "001")
    ws = wnut_workspace(tmp_path / "ws")
    real_fit = crf.fit_fold

    def dies_on_fold_1(prepared, fold, *args, **kwargs):
        if fold == 1:
            raise KeyboardInterrupt
        return real_fit(prepared, fold, *args, **kwargs)

    monkeypatch.setattr(crf, "fit_fold", dies_on_fold_1)
    with pytest.raises(KeyboardInterrupt):
        _run(ws, "001")
    run = ws.run_dir("001")
    assert (run / "fold0" / "done.json").is_file() and not (run / "fold1").exists()
    monkeypatch.setattr(crf, "fit_fold", real_fit)
    _, resumed = _run(ws, "001")
    assert [r.status for r in resumed.folds] == ["skipped", "trained", "trained"]
    for name in ("oof.parquet", "test.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(run / name), pd.read_parquet(clean.run_dir("001") / name))


def test_character_units_train_on_the_token_head_and_come_back_per_character(tmp_path):
    from competition.folds import write_folds
    from competition.workspace import Workspace
    from tests.datasets import shared_data
    from tests.tiny import tiny_bert

    source = pd.read_csv(shared_data() / "wnut17" / "train.csv").head(80)
    types = ["corporation", "creative-work", "group", "location", "person", "product"]
    texts, spans = [], []
    for tokens, tags in zip(source["tokens"].map(json.loads), source["tags"].map(json.loads)):
        text, at = align.join_tokens(tokens)        # the sentence as a text, its entities as character spans
        codes = [tk.tag_list(types).index(t) for t in tags]
        texts.append(text)
        spans.append([[int(at[s][0]), int(at[e - 1][1]), types[k]]
                      for k, s, e in sorted(tk.entities(codes), key=lambda x: x[1])])
    root = tmp_path / "ws"
    root.mkdir()
    pd.DataFrame({"id": source["id"], "text": texts, "spans": [json.dumps(s) for s in spans]}).to_csv(
        root / "train.csv", index=False)
    (root / "competition.yaml").write_text(
        "name: chars\ntrain: train.csv\nid: id\ntask: tokens\ntext: [text]\ntargets: [spans]\n"
        "labels: [corporation, creative-work, group, location, person, product]\ntokens: {unit: char}\n"
        "metric: entity_f1\nfolds: {scheme: kfold, n_splits: 2, seed: 0}\n")
    (root / "experiments").mkdir()
    folder = tiny_bert(tmp_path, texts)
    (root / "experiments" / "base.yaml").write_text("track: {wandb: false}\n")
    (root / "experiments" / "010.yaml").write_text(
        f"model: {{family: encoder, name: {folder}, max_length: 24, lr: 1e-3}}\n"
        "train: {epochs: 1, batch_size: 8, select: last, patience: null}\n")
    ws = Workspace(root)
    data = load(load_spec(ws.spec_file))
    write_folds(ws, data)
    _, result = _run(ws, "010")
    oof = predictions.matrix(pd.read_parquet(ws.run_dir("010") / "oof.parquet"), data.spec.pred_columns)
    assert [len(p) for p in oof] == [len(t) for t in texts] and result.complete
    assert all(np.allclose(p.sum(axis=1), 1.0) for p in oof)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_token_head_predicts_in_bf16_and_int8_close_to_fp32(tmp_path, precision):
    import types

    from competition.models import PRECISION, encoder

    ws = _tiny_encoder_workspace(tmp_path, 60, 12, "max_length: 32, lr: 1e-3", "seeds: [42]")
    data, _ = _run(ws, "010", folds="0")
    fold0, cfg = ws.fold_dir("010", 0), load_config(ws, "010")
    plain = encoder.predict(fold0, cfg, types.SimpleNamespace(spec=data.spec), data.test)
    token = PRECISION.set(precision)
    try:
        fast = encoder.predict(fold0, cfg, types.SimpleNamespace(spec=data.spec), data.test)
    finally:
        PRECISION.reset(token)
    gap = max(np.abs(a - b).max() for a, b in zip(plain, fast))
    assert 0 < gap < 0.1 and [len(p) for p in fast] == [len(p) for p in plain]


def test_the_unit_stack_fits_fold_k_on_units_of_the_other_folds_only(tmp_path, monkeypatch):
    from competition import stack as stack_mod
    from competition.folds import read_folds

    ws = wnut_workspace(tmp_path / "ws", experiments={"001": "model: {family: crf}\n",
                                                      "002": "model: {family: crf, window: 0, c1: 0.5}\n"})
    data, _ = _run(ws, "001")
    _run(ws, "002")
    seen, real = {}, stack_mod._fit_lgbm

    def spy(x, y, rows, objective, n_class, cat_idx, params, seed, metric, halt=None):
        seen[seed - 42] = (len(x), np.asarray(rows))
        return real(x, y, rows, objective, n_class, cat_idx, params, seed, metric, halt)

    monkeypatch.setattr(stack_mod, "_fit_lgbm", spy)
    stack_mod.stack(ws, inputs=["001", "002"], data=data)
    row_fold = read_folds(ws, data)["fold"].to_numpy()
    unit_fold = np.repeat(row_fold, [len(t) for t in data.train["tokens"]])
    assert sorted(seen) == sorted(set(row_fold))
    for k, (n_units, rows) in seen.items():
        assert n_units == len(unit_fold)                       # the meta-model's rows are units
        assert set(unit_fold[rows]) == set(row_fold) - {k}     # every other fold's units, none of fold k's
        assert len(rows) == int((unit_fold != k).sum())


def test_token_folds_as_ray_tasks_give_the_local_run_exactly(tmp_path):
    import shutil

    pytest.importorskip("ray")
    from competition.dispatch import train_on_ray
    from competition.workspace import Workspace

    local = wnut_workspace(tmp_path / "a", n_train=200, n_test=40)
    shutil.copytree(local.root, tmp_path / "b")
    remote = Workspace(tmp_path / "b")
    _run(local, "001")
    out = train_on_ray(remote, [load_config(remote, "001")], ray_init={"num_cpus": 2})
    assert not out.failed and out.results["001"].complete
    for name in ("oof.parquet", "test.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(local.run_dir("001") / name),
                                      pd.read_parquet(remote.run_dir("001") / name))


def test_frozen_layers_stay_as_pretrained_in_a_token_run(tmp_path):
    from safetensors.torch import load_file

    ws = _tiny_encoder_workspace(tmp_path, 60, 12, "max_length: 32, lr: 1e-2", "freeze_layers: 1")
    _run(ws, "010", folds="0")
    before = load_file(str(next((tmp_path / "tiny-bert").glob("*.safetensors"))))
    after = load_file(str(ws.fold_dir("010", 0) / "seed42" / "model.safetensors"))
    frozen = [k for k in before if k.startswith(("embeddings.", "encoder.layer.0."))]
    learnt = [k for k in before if k.startswith("encoder.layer.1.") and k.endswith("weight")]
    assert frozen and learnt
    assert all(np.array_equal(before[k].numpy(), after[f"encoder.{k}"].numpy()) for k in frozen)
    assert any(not np.array_equal(before[k].numpy(), after[f"encoder.{k}"].numpy()) for k in learnt)
