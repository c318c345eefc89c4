"""Frozen bottom layers computed once (train.freeze_layers): the cached path is the frozen model.

The reference every test compares with is written here from first principles: the whole Hugging Face
encoder run as usual, its embeddings and bottom k layers with requires_grad off and in eval mode, the
top layers in train mode; mean pooling and a linear head.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models import encoder, frozen, torch_common
from competition.models.batches import encode, eval_loader
from competition.models.textmodel import TextModel
from competition.track import Tracker
from competition.workspace import cache_dir
from tests.tiny import all_texts, tiny_bert, tweets

N, N_VALID, K = 80, 24, 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return tiny_bert(tmp_path_factory.mktemp("tiny3"), all_texts(tweets("binary", 200)), layers=3)


def cfg_of(name: str, **train) -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "exp": "t", "model": {"family": "encoder", "name": name, "max_length": 48}, "track": {"wandb": False},
        "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "freeze_layers": K, **train}})


def fit(cfg, data, out_dir, prepared=None):
    prepared = prepared or encoder.prepare(cfg, data)
    idx = np.arange(len(data.train))
    return encoder.fit_fold(prepared, 0, idx[N_VALID:], idx[:N_VALID], out_dir, Tracker()), prepared


def _batch(tiny, texts):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    ids = encode(tokenizer, texts, 48)
    return next(iter(eval_loader(ids, torch.ones(len(ids), 1), tokenizer.pad_token_id, len(ids))))


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_cached_states_give_the_loss_and_gradients_of_the_frozen_model(tiny, dropout):
    """Loss and every gradient equal the reference's to 1e-5 (float32 storage; dropout in the top
    layers draws the same masks, as the bottom draws none)."""
    texts = all_texts(tweets("binary", 12))[:12]
    batch = _batch(tiny, texts)
    ids, mask, y = batch["input_ids"], batch["attention_mask"], batch["labels"]

    torch.manual_seed(0)
    ours = TextModel(encoder.load_encoder(tiny, dropout), "binary", 1, dropout=dropout, freeze_layers=K,
                     freeze_dtype="float32")
    reference = copy.deepcopy(ours.encoder)
    head = copy.deepcopy(ours.head)
    for p in reference.parameters():
        p.requires_grad_(True)
    for name, p in reference.named_parameters():      # frozen: everything but the top layers
        if not name.startswith(tuple(f"encoder.layer.{i}." for i in range(K, 3))):
            p.requires_grad_(False)
    reference.train()
    reference.embeddings.eval()
    for layer in reference.encoder.layer[:K]:
        layer.eval()

    states = frozen.bottom(ours.encoder, ids, mask, K, "float32")   # what the cache holds
    ours.train()
    torch.manual_seed(1)
    loss = ours.loss(ours(None, mask, states), y)
    loss.backward()
    torch.manual_seed(1)
    hidden = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    ref_loss = F.binary_cross_entropy_with_logits(head(F.dropout(pooled, dropout, training=True)), y)
    ref_loss.backward()
    assert abs(loss.item() - ref_loss.item()) <= 1e-5
    trained = dict(reference.named_parameters())
    n = 0
    for name, p in ours.encoder.named_parameters():
        if p.requires_grad:
            n += 1
            torch.testing.assert_close(p.grad, trained[name].grad, atol=1e-5, rtol=0)
        else:
            assert trained[name].grad is None
    assert n == sum(1 for _ in reference.encoder.layer[K:].parameters())    # only the top layers learn
    torch.testing.assert_close(ours.head.weight.grad, head.weight.grad, atol=1e-5, rtol=0)


def test_training_on_the_cache_matches_the_live_frozen_model_and_replays(tiny, tmp_path):
    """The OOF and test predictions of a fold trained on cached states equal those of the same fold
    computing its frozen layers live (no cache), and predicting the saved fold from raw text replays
    the test predictions (float16 storage, the default)."""
    data = tweets("binary", N)
    cached, prepared = fit(cfg_of(tiny), data, tmp_path / "cached")
    assert prepared.train_states is not None and prepared.train_states["plain"][0].dtype == torch.float16
    assert prepared.train_states["plain"][0].shape == (len(prepared.train["plain"][0]), 32)
    live_prepared = encoder.prepare(cfg_of(tiny), data)
    live_prepared.train_states = live_prepared.test_states = None      # token ids: layers run live
    live, _ = fit(cfg_of(tiny), data, tmp_path / "live", prepared=live_prepared)
    np.testing.assert_allclose(cached.oof, live.oof, atol=1e-6)
    np.testing.assert_allclose(cached.test, live.test, atol=1e-6)
    again = torch_common.predict(tmp_path / "cached", None, data, data.test)
    np.testing.assert_allclose(again, cached.test, atol=1e-6)


def test_frozen_layers_do_not_change_and_the_top_does(tiny, tmp_path):
    data = tweets("binary", N)
    fit(cfg_of(tiny), data, tmp_path)
    model, _ = torch_common.load_model(tmp_path, tmp_path / "seed42")
    start = encoder.load_encoder(tiny, 0.1).state_dict()
    after = model.encoder.state_dict()
    for name, value in start.items():
        if name.startswith("pooler."):       # comp pools itself: BERT's pooler is dropped
            continue
        same = torch.equal(value, after[name])
        assert same == (not name.startswith(("encoder.layer.2.",))), name


def _entries() -> set[str]:
    return {p.name for p in cache_dir("states").iterdir() if p.is_dir()} if cache_dir("states").exists() else set()


def test_the_cache_is_computed_once_and_invalidated_by_model_texts_and_depth(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("COMP_CACHE", str(tmp_path / "cache"))
    data = tweets("binary", N)
    before = _entries()
    encoder.prepare(cfg_of(tiny), data)
    first = _entries() - before
    assert len(first) == 2                      # train and test rows
    stamp = {e: (cache_dir("states") / e / "states.npy").stat().st_mtime_ns for e in first}
    encoder.prepare(cfg_of(tiny, seeds=[1, 2], epochs=3), data)     # folds, epochs, seeds share it
    dropout = ExperimentConfig.model_validate({**cfg_of(tiny).to_dict(), "model": {
        **cfg_of(tiny).to_dict()["model"], "dropout": 0.3}})           # eval-mode states do not depend on it
    encoder.prepare(dropout, data)
    assert _entries() - before == first
    assert stamp == {e: (cache_dir("states") / e / "states.npy").stat().st_mtime_ns for e in first}
    seen = set(first)
    for change in ({"freeze_layers": 1}, {"freeze_dtype": "float32"}):
        encoder.prepare(cfg_of(tiny, **change), data)
        new = _entries() - before - seen
        assert len(new) == 2, change
        seen |= new
    short = ExperimentConfig.model_validate({**cfg_of(tiny).to_dict(), "model": {
        **cfg_of(tiny).to_dict()["model"], "max_length": 12}})           # other token ids
    encoder.prepare(short, data)
    assert len(_entries() - before - seen) == 2
    seen = _entries()
    other = tiny_bert(tmp_path / "other", all_texts(tweets("binary", 200)), layers=3)
    from transformers import BertModel

    model = BertModel.from_pretrained(other)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[5] += 1        # other frozen weights, same vocabulary
    model.save_pretrained(other)
    encoder.prepare(cfg_of(other), data)
    assert len(_entries() - seen) == 2
    meta = json.loads((cache_dir("states") / sorted(first)[0] / "meta.json").read_text())
    assert meta["freeze_layers"] == K and meta["dtype"] == "float16" and meta["hidden"] == 32


def test_the_caching_pass_prints_progress_lines(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("COMP_CACHE", str(tmp_path / "cache"))
    from competition.models import PROGRESS

    lines: list[str] = []
    token = PROGRESS.set(lines.append)
    try:
        encoder.prepare(cfg_of(tiny, freeze_layers=1, eval_batch_size=8), tweets("binary", 40))
    finally:
        PROGRESS.reset(token)
    train = [line for line in lines if "states of train" in line]
    assert train and train[-1].strip().startswith("caching layer-1 states of train: 40/40 rows")
    assert "rows/s" in train[-1] and "left" in train[-1]


def test_settings_that_would_train_frozen_layers_are_refused(tiny):
    data = tweets("binary", 40)
    with pytest.raises(InputError, match=r"freeze_layers=4: this encoder has 3 layers"):
        encoder.prepare(cfg_of(tiny, freeze_layers=4), data)
    with pytest.raises(InputError, match=r"reinit_layers=2 would re-initialise frozen layers"):
        encoder.prepare(ExperimentConfig.model_validate({**cfg_of(tiny).to_dict(), "model": {
            **cfg_of(tiny).to_dict()["model"], "reinit_layers": 2}}), data)
    with pytest.raises(ValueError, match="model.family scratch has none"):
        ExperimentConfig.model_validate({"exp": "t", "model": {"family": "scratch"}, "train": {"freeze_layers": 1}})
