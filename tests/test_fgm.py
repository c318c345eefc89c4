"""Adversarial training (FGM, ``train.fgm``): each training batch is read a second time with its word
embeddings moved ``eps`` along the gradient of its loss, and the two losses train the model.

What a user believes: the second loss is the loss at exactly that move (L2 norm ``eps`` over the
batch, direction the gradient's), the move makes the loss worse (it is adversarial), nothing
changes without it or before ``fgm_start``, predictions never see it, and it is refused where there
are no word embeddings to move.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from competition.config import ExperimentConfig
from competition.models import encoder
from competition.models.batches import TokenDataset, encode
from competition.models.textmodel import TextModel
from competition.models.torch_common import load_model
from competition.track import Tracker
from tests.tiny import all_texts, tiny_bert, tweets

os.environ["WANDB_MODE"] = "disabled"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return tiny_bert(tmp_path_factory.mktemp("tiny"), all_texts(tweets("binary", 120)))


def _batch(tiny: str, n: int = 6) -> dict:
    from transformers import AutoTokenizer

    data = tweets("binary", n)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    rows = encode(tokenizer, list(data.train["text"].astype(str)), 40)
    batch = TokenDataset(rows, pad_id=tokenizer.pad_token_id).__getitems__(list(range(n)))
    batch["labels"] = torch.tensor(np.asarray(data.y)[:n], dtype=torch.float32)[:, None]
    return batch


def _model(tiny: str, **kwargs) -> TextModel:
    from transformers import AutoModel

    torch.manual_seed(0)
    return TextModel(AutoModel.from_pretrained(tiny), "binary", 1, **kwargs).eval()   # eval: no dropout noise


def _loss_with_added(model: TextModel, batch: dict, delta: torch.Tensor) -> torch.Tensor:
    """The batch's loss with ``delta`` (B, T, H) added to the word embeddings' output, by a forward hook:
    the plain ``input_ids`` path of the model, not the one FGM takes."""
    hook = model.encoder.get_input_embeddings().register_forward_hook(lambda _m, _i, out: out + delta)
    try:
        return model.loss(model(batch["input_ids"], batch["attention_mask"]), batch["labels"])
    finally:
        hook.remove()


@pytest.mark.parametrize("eps", [0.05, 1.0])
def test_the_second_loss_is_the_loss_at_embeddings_moved_eps_along_its_gradient(tiny, eps):
    batch = _batch(tiny)
    model = _model(tiny, fgm=eps)
    clean, total = model._adversarial_loss(batch, eps)
    # by hand: the gradient of the loss with respect to an added zero, normalised over the whole batch
    shape = (*batch["input_ids"].shape, model.encoder.config.hidden_size)
    zero = torch.zeros(shape, requires_grad=True)
    (grad,) = torch.autograd.grad(_loss_with_added(model, batch, zero), zero)
    move = eps * grad / grad.norm()
    assert float(move.norm()) == pytest.approx(eps, rel=1e-5)
    with torch.no_grad():
        plain = model.loss(model(batch["input_ids"], batch["attention_mask"]), batch["labels"])
        moved = _loss_with_added(model, batch, move)
    assert float(clean.detach()) == pytest.approx(float(plain), abs=1e-6)
    assert float(total.detach()) == pytest.approx(float(plain + moved), abs=1e-5)
    assert float(moved) > float(plain)               # the move is adversarial: the loss gets worse
    random = torch.randn(shape)
    with torch.no_grad():                            # and worse than a random move of the same size
        assert float(moved) > float(_loss_with_added(model, batch, eps * random / random.norm()))


def test_both_losses_train_the_model_and_the_embeddings_get_their_gradient(tiny):
    batch = _batch(tiny)
    model = _model(tiny, fgm=0.5)
    clean, total = model._adversarial_loss(batch, 0.5)
    total.backward(retain_graph=True)
    emb = model.encoder.get_input_embeddings().weight
    summed = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    model.zero_grad()
    clean.backward()                                 # the clean loss alone gives other gradients
    assert any(not torch.allclose(p.grad, summed[n]) for n, p in model.named_parameters() if p.grad is not None)


def test_without_fgm_or_before_fgm_start_a_step_is_the_plain_loss(tiny, monkeypatch):
    batch = _batch(tiny)
    with torch.no_grad():
        plain = float(_model(tiny).training_step(batch, 0))
        assert float(_model(tiny, fgm=1.0, fgm_start=1).training_step(batch, 0)) == pytest.approx(plain, abs=1e-6)
        monkeypatch.setattr(TextModel, "current_epoch", property(lambda self: 1))
    adversarial = _model(tiny, fgm=1.0, fgm_start=1)
    value = float(adversarial.training_step(batch, 0).detach())
    assert value > 2 * plain - 1e-6                  # clean + adversarial, each at least the plain loss
    assert adversarial.pop_train_loss() == pytest.approx(plain, abs=1e-6)   # the log shows the plain loss


def test_a_fold_trained_with_fgm_learns_differently_and_replays_without_it(tiny, tmp_path):
    data = tweets("binary", 80)
    idx = np.arange(80)

    def fold(fgm: float, out):
        cfg = ExperimentConfig.model_validate({
            "exp": "t", "track": {"wandb": False}, "model": {"family": "encoder", "name": tiny, "max_length": 48},
            "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "fgm": fgm}})
        return encoder.fit_fold(encoder.prepare(cfg, data), 0, idx[24:], idx[:24], out, Tracker()), cfg

    plain, _ = fold(0.0, tmp_path / "plain")
    result, cfg = fold(1.0, tmp_path / "fgm")
    assert np.isfinite(result.oof).all()
    assert np.abs(result.oof - plain.oof).max() > 1e-4            # the second loss changed what it learnt
    model, saved = load_model(tmp_path / "fgm", tmp_path / "fgm" / "seed42")
    assert model.hparams.fgm == 1.0 and saved["train"]["fgm"] == 1.0
    np.testing.assert_allclose(encoder.predict(tmp_path / "fgm", cfg, data, data.test), result.test, atol=1e-6)


@pytest.mark.parametrize("extra,names", [
    ({"train": {"fgm": 1.0, "freeze_layers": 1}}, ["train.fgm", "freeze_layers", "train.fgm=0"]),
    ({"model": {"family": "tfidf"}, "train": {"fgm": 1.0}}, ["train.fgm", "tfidf", "train.fgm=0"]),
    ({"train": {"fgm": 1.0, "fgm_start": 2, "epochs": 2}}, ["train.fgm_start=2", "train.epochs"]),
    ({"train": {"fgm": -1.0}}, ["fgm", "greater than or equal to 0"]),
])
def test_fgm_where_it_cannot_run_is_refused_naming_the_fix(extra, names):
    raw = {"exp": "t", "track": {"wandb": False}, "model": {"family": "encoder", "name": "x"}, "train": {}}
    raw["model"].update(extra.get("model", {}))
    if raw["model"]["family"] == "tfidf":
        del raw["model"]["name"]
    raw["train"].update(extra["train"])
    with pytest.raises(ValueError) as err:
        ExperimentConfig.model_validate(raw)
    assert all(name in str(err.value) for name in names), str(err.value)
