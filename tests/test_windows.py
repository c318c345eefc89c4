"""Long documents as sliding windows (issue 27): ``model.truncation: windows``.

A document is cut into windows of ``max_length`` tokens every ``stride`` tokens; the model encodes
each window, pools the windows' vectors into the document's (mean, max or a learned attention) and
the head reads that: training and prediction are the same function, replayed exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from competition.config import load_config
from competition.errors import InputError
from tests.tiny import tiny_bert
from tests.workspaces import msrp_workspace

LONG = " ".join(f"w{i % 50} x{i % 7}" for i in range(120))
SHORT = "The cat sat on the mat today."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("bert"), [LONG, SHORT] * 20, vocab_size=200)


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny)


def test_windows_cover_the_whole_text_every_stride_tokens_and_a_short_text_is_one_window(tokenizer):
    from competition.models.batches import encode

    long_rows, short_rows = encode(tokenizer, [LONG, SHORT], 40, "windows", stride=19)
    body = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    room = 38
    assert len(body) > 3 * room
    starts = list(range(0, len(body) - room + 1, 19))
    if starts[-1] + room < len(body):
        starts.append(len(body) - room)                     # the last window ends with the text
    assert [w.tolist() for w in long_rows] == [[cls, *body[s:s + room], sep] for s in starts]
    assert all(len(w) <= 40 for w in long_rows)
    covered = {t for s in starts for t in range(s, s + room)}
    assert covered == set(range(len(body)))                 # nothing of the text is lost
    assert [w.tolist() for w in short_rows] == [tokenizer(SHORT)["input_ids"]]
    default = encode(tokenizer, [LONG], 40, "windows")[0]   # stride: half the window
    assert [w[1:3].tolist() for w in default[:2]] == [body[0:2], body[20:22]]


@pytest.mark.parametrize("how", ["mean", "max", "attention"])
def test_the_document_vector_pools_its_windows_as_a_hand_computation_does(tiny, tokenizer, how):
    from transformers import AutoModel

    from competition.models.batches import TokenDataset, encode
    from competition.models.textmodel import TextModel

    torch.manual_seed(0)
    model = TextModel(AutoModel.from_pretrained(tiny), "binary", 1, window_pool=how).eval()
    if model.window_score is not None:
        torch.nn.init.normal_(model.window_score.weight, std=1.0)   # weights far from uniform
    docs = encode(tokenizer, [LONG, SHORT, LONG[:300]], 32, "windows", stride=16)
    assert len(docs[0]) > 3 and len(docs[1]) == 1
    batch = TokenDataset(docs, pad_id=tokenizer.pad_token_id).__getitems__([0, 1, 2])
    with torch.no_grad():
        got = model(batch["input_ids"], batch["attention_mask"], windows=batch["windows"])       # (3, 1)
        expected = []
        for windows in docs:    # each window alone, unpadded; pooled by hand
            vectors = torch.cat([model.sentence(w[None], torch.ones(1, len(w), dtype=torch.long)) for w in windows])
            if how == "mean":
                doc = vectors.mean(0)
            elif how == "max":
                doc = vectors.max(0).values
            else:
                weights = torch.softmax(model.window_score(vectors).squeeze(-1), 0)
                doc = (weights[:, None] * vectors).sum(0)
            expected.append(model.head(doc))
    assert torch.allclose(got, torch.stack(expected), atol=1e-5)


def test_window_loss_window_trains_each_window_on_its_documents_label_and_predicts_their_mean_logits(tiny, tokenizer):
    """In training every window is an example with its document's label (the loss a hand computation
    gives over the windows); in evaluation a document's logits are the mean of its windows'."""
    import torch.nn.functional as F
    from transformers import AutoModel

    from competition.models.batches import TokenDataset, encode
    from competition.models.textmodel import TextModel

    torch.manual_seed(0)
    model = TextModel(AutoModel.from_pretrained(tiny), "binary", 1, dropout=0.0, window_pool="mean",
                      window_loss="window")
    docs = encode(tokenizer, [LONG, SHORT, LONG[:300]], 32, "windows", stride=16)
    labels = torch.tensor([[1.0], [0.0], [1.0]])
    batch = TokenDataset(docs, labels, pad_id=tokenizer.pad_token_id).__getitems__([0, 1, 2])
    model.encoder.eval()                      # dropout off inside the encoder too: a deterministic forward
    with torch.no_grad():
        each = [torch.cat([model.head(model.sentence(w[None], torch.ones(1, len(w), dtype=torch.long))) for w in d])
                for d in docs]                                                        # per document: (windows, 1)
        expected_loss = F.binary_cross_entropy_with_logits(
            torch.cat(each), torch.cat([labels[i].expand(len(d), 1) for i, d in enumerate(docs)]))
        model.train()
        model.encoder.eval()
        loss, logits = model._shared_step(batch)
        assert logits.shape == (sum(map(len, docs)), 1)                              # one per window
        assert torch.allclose(loss, expected_loss, atol=1e-5)
        model.eval()
        got = model(batch["input_ids"], batch["attention_mask"], windows=batch["windows"])
    assert torch.allclose(got, torch.stack([e.mean(0) for e in each]), atol=1e-5)
    with pytest.raises(ValueError, match="model.window_pool=mean or model.window_loss=document"):
        from competition.families import EncoderModel

        EncoderModel(truncation="windows", window_loss="window", window_pool="max")


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("long")
    encoder = f"model: {{family: encoder, name: {tiny}, max_length: 16, truncation: windows, stride: 8"
    train = "train: {epochs: 1, batch_size: 16, eval_batch_size: 8}\ntext: {pair: false}\n"
    return msrp_workspace(root / "ws", n_train=120, n_test=30, experiments={
        "win": f"{encoder}}}\n{train}",
        "att": f"{encoder}, window_pool: attention}}\n{train}",
        "each": f"{encoder}, window_loss: window}}\n{train}",
    })


@pytest.mark.parametrize("name", ["win", "att", "each"])
def test_a_windowed_run_trains_on_whole_documents_and_predict_and_export_replay_it(ws, tmp_path, name):
    from competition import runs
    from competition.export import export
    from competition.predict import predict
    from competition.train import train
    from competition.workspace import Workspace

    assert train(ws, load_config(ws, name)).complete
    test = runs.load_run(ws, name).test()["label"].to_numpy()
    result = predict(ws, name, ws.root / "test.csv", out=tmp_path / name)
    assert np.abs(result.predictions["label"].to_numpy() - test).max() <= 1e-6
    export(ws, name, tmp_path / "bundle", wheel=False)
    bundled = predict(Workspace(tmp_path / "bundle"), name, ws.root / "test.csv", out=tmp_path / "b")
    assert np.abs(bundled.predictions["label"].to_numpy() - test).max() <= 1e-6


def test_bad_window_settings_are_refused_with_the_fix(ws, tokenizer):
    from competition.models.batches import encode, encode_frame
    from competition.data import load
    from competition.spec import load_spec

    with pytest.raises(ValueError, match=r"model.stride 16 must be smaller than the window .*model.stride=8"):
        load_config(ws, "win", ["model.stride=16"])
    with pytest.raises(InputError, match=r"model.stride 15: windows hold 14 text tokens.*model.stride=7"):
        encode(tokenizer, [LONG], 16, "windows", stride=15)
    limited = tokenizer.__class__.from_pretrained(tokenizer.name_or_path, model_max_length=24)
    with pytest.raises(InputError, match="model.max_length 32 .* at most 24 tokens.*model.max_length=24"):
        encode(limited, [LONG], 32, "windows")
    data = load(load_spec(ws.spec_file))
    paired = load_config(ws, "win", ["text.pair=true"])
    with pytest.raises(InputError, match="model.truncation: windows reads one long text.*text pair"):
        encode_frame(paired, data.spec, tokenizer, data.train)
    with pytest.raises(InputError, match="remove tail from train.tta"):
        encode_frame(load_config(ws, "win", ["train.tta=[tail]"]), data.spec, tokenizer, data.train)



# -- the frozen-embedding family reads long documents as windows too ---------------------------

@pytest.mark.parametrize("how", ["mean", "max"])
def test_an_embedded_document_pools_its_windows_embeddings_as_a_hand_computation_does(tiny, tokenizer, how):
    """embed_texts with truncation windows: each window embedded alone (unpadded, mean of its
    tokens), then the mean or per-dimension max over the document's windows; batching and padding
    change nothing."""
    from transformers import AutoModel

    from competition.models.embed import embed_texts

    model = AutoModel.from_pretrained(tiny).eval()
    texts = [SHORT, LONG, LONG[:300]]
    got = embed_texts(texts, tokenizer, model, pooling="mean", max_length=32, batch_size=2,
                      truncation="windows", stride=16, window_pool=how)
    body = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    cls, sep, room = tokenizer.cls_token_id, tokenizer.sep_token_id, 30
    expected = []
    with torch.no_grad():
        for ids in body:        # the windows by hand: every 16 tokens, the last one ending with the text
            starts = list(range(0, max(len(ids) - room, 0) + 1, 16))
            if starts[-1] + room < len(ids):
                starts.append(len(ids) - room)
            vectors = torch.stack([model(input_ids=torch.tensor([[cls, *ids[s:s + room], sep]])).last_hidden_state[0].mean(0)
                                   for s in starts])
            expected.append(vectors.mean(0) if how == "mean" else vectors.max(0).values)
    assert len(body[1]) > 3 * room                            # the long text really is several windows
    np.testing.assert_allclose(got, torch.stack(expected).numpy(), atol=1e-5)
    head = embed_texts(texts, tokenizer, model, pooling="mean", max_length=32, batch_size=2)
    assert np.allclose(got[0], head[0], atol=1e-5) and not np.allclose(got[1], head[1], atol=1e-3)


def test_a_windowed_embed_run_predicts_and_exports_as_it_trained(ws, tmp_path, tiny):
    from competition import runs
    from competition.export import export
    from competition.models import embed
    from competition.predict import predict
    from competition.train import train
    from competition.workspace import Workspace

    ws.experiment_file("emb").write_text(f"model: {{family: embed, name: {tiny}, max_length: 16, truncation: windows, "
                                         "stride: 8, window_pool: max}\ntext: {pair: false}\n")
    assert train(ws, load_config(ws, "emb")).complete
    test = runs.load_run(ws, "emb").test()["label"].to_numpy()
    saved = runs.load_run(ws, "emb")
    assert (saved.dir / "fold0" / "embed.json").is_file()
    embed._CACHE.clear()      # predict embeds again, reading the texts as the folds did
    result = predict(ws, "emb", ws.root / "test.csv", out=tmp_path / "emb")
    assert np.abs(result.predictions["label"].to_numpy() - test).max() <= 1e-6
    embed._CACHE.clear()
    export(ws, "emb", tmp_path / "bundle", wheel=False)
    bundled = predict(Workspace(tmp_path / "bundle"), "emb", ws.root / "test.csv", out=tmp_path / "b")
    assert np.abs(bundled.predictions["label"].to_numpy() - test).max() <= 1e-6
    head = load_config(ws, "emb", ["model.truncation=head"])
    with pytest.raises(ValueError, match="window_pool"):          # no learned attention without training
        load_config(ws, "emb", ["model.window_pool=attention"])
    data_pairs = load_config(ws, "emb", ["text.pair=true"])
    from competition.data import load
    from competition.spec import load_spec

    with pytest.raises(InputError, match="model.truncation: windows reads one long text.*set model.truncation=head"):
        embed.prepare(data_pairs, load(load_spec(ws.spec_file)))
    assert head.model.truncation == "head"


def test_frozen_layers_cache_every_window_and_a_fold_trained_on_them_is_the_live_frozen_model(ws, tmp_path,
                                                                                             monkeypatch):
    """train.freeze_layers with windows: each window's states are cached (a row: its windows' states);
    the fold trained on them predicts OOF and test rows as the same fold computing its frozen layer
    live, and predicting the saved fold from raw text replays its test predictions (1e-6)."""
    from competition.data import load
    from competition.models import encoder, torch_common
    from competition.spec import load_spec
    from competition.track import Tracker

    monkeypatch.setenv("COMP_CACHE", str(tmp_path / "cache"))
    cfg = load_config(ws, "win", ["train.freeze_layers=1", "track.wandb=false"])
    data = load(load_spec(ws.spec_file))
    prepared = encoder.prepare(cfg, data)
    docs, states = prepared.train["plain"], prepared.train_states["plain"]
    assert max(len(d) for d in docs) > 1 and [len(d) for d in docs] == [len(s) for s in states]
    assert all(s.shape == (len(w), 32) for d, st in zip(docs, states) for w, s in zip(d, st))
    idx = np.arange(len(data.train))
    cached = encoder.fit_fold(prepared, 0, idx[30:], idx[:30], tmp_path / "cached", Tracker())
    live_prepared = encoder.prepare(cfg, data)
    live_prepared.train_states = live_prepared.test_states = None      # token ids: the frozen layer runs live
    live = encoder.fit_fold(live_prepared, 0, idx[30:], idx[:30], tmp_path / "live", Tracker())
    np.testing.assert_allclose(cached.oof, live.oof, atol=1e-6)
    np.testing.assert_allclose(cached.test, live.test, atol=1e-6)
    np.testing.assert_allclose(torch_common.predict(tmp_path / "cached", None, data, data.test), cached.test, atol=1e-6)
