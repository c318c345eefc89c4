"""Text pairs (the spec's ``text_pair``): every text family reads the two sides as a pair.

What a user believes: the encoder sees exactly ``tokenizer(a, b)`` (ids and segment ids), cut as
configured; swapping the sides at test time happens only when asked; TF-IDF and frozen embeddings
see what the two sides share; and a pair run replays its own test predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from competition.config import load_config
from competition.errors import InputError
from competition.spec import Spec
from competition.text import Pairs, model_inputs
from tests.tiny import tiny_bert
from tests.workspaces import msrp_workspace

ROWS = pd.DataFrame({"id": [1, 2, 3],
                     "sentence1": ["The cat sat on the mat today.", "Stocks fell sharply",
                                   "a very long first side " * 12],
                     "sentence2": ["A cat was sitting on the mat.", "Shares dropped a lot on Monday", "short"]})


def spec(**extra) -> Spec:
    return Spec(name="pairs", train="train.csv", targets=["label"], task="binary", metric="f1", **extra)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    texts = ROWS["sentence1"].tolist() + ROWS["sentence2"].tolist()
    return tiny_bert(tmp_path_factory.mktemp("bert"), texts * 20, vocab_size=300)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("msrp")
    return msrp_workspace(root / "ws", n_train=240, n_test=60, experiments={
        "enc": f"model: {{family: encoder, name: {tiny}, max_length: 48}}\n"
               "train: {epochs: 1, batch_size: 32, eval_batch_size: 16, tta: [swap]}\n",
        "glued": f"model: {{family: encoder, name: {tiny}, max_length: 48}}\n"
                 "text: {pair: false}\ntrain: {epochs: 1, batch_size: 32, eval_batch_size: 16}\n",
        "tfidf": "template: tfidf\n",
        "emb": f"model: {{family: embed, name: {tiny}, max_length: 48}}\n",
        "scratch": "model: {family: scratch, d_model: 32, heads: 2, layers: 1, vocab_size: 300, max_length: 48}\n"
                   "train: {epochs: 1, batch_size: 32, eval_batch_size: 16}\n",
    })


def test_the_spec_names_a_pair_of_two_columns_and_text_defaults_to_them():
    s = spec(text_pair=["sentence1", "sentence2"])
    assert s.text == ["sentence1", "sentence2"]
    with pytest.raises(ValueError, match="text_pair names two different text columns"):
        spec(text_pair=["sentence1", "sentence1"])
    with pytest.raises(ValueError, match="text_pair names two different"):
        spec(text_pair=["sentence1"])


def test_pairs_are_read_unless_the_experiment_glues_them(ws):
    from competition import data as data_mod
    from competition.spec import load_spec

    data = data_mod.load(load_spec(ws.spec_file))
    pairs = model_inputs(load_config(ws, "enc"), data.spec, data.train)
    assert isinstance(pairs, Pairs) and pairs.first == data.train["sentence1"].tolist()
    assert pairs.second == data.train["sentence2"].tolist()
    glued = model_inputs(load_config(ws, "glued"), data.spec, data.train)
    assert glued[0] == f"{data.train['sentence1'].iloc[0]} | {data.train['sentence2'].iloc[0]}"
    with pytest.raises(InputError, match="text.pair=false to glue them"):
        model_inputs(load_config(ws, "enc", ["text.template='{sentence1}'"]), data.spec, data.train)
    single = spec(text=["sentence1"])
    with pytest.raises(InputError, match="names no text_pair"):
        model_inputs(load_config(ws, "enc", ["text.pair=true"]), single, ROWS)


@pytest.mark.parametrize("how", ["longest_first", "only_first", "only_second"])
def test_pair_ids_and_segments_are_the_tokenizers_and_cut_as_configured(ws, tiny, how):
    from transformers import AutoTokenizer

    from competition.models.batches import eval_loader, segments
    from competition.models.batches import encode_frame

    cfg = load_config(ws, "enc", [f"model.pair_truncation={how}", "model.max_length=24"])
    s = spec(text_pair=["sentence1", "sentence2"])
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    frame = ROWS.iloc[:2]
    variants = encode_frame(cfg, s, tokenizer, frame)
    expected = tokenizer(frame["sentence1"].tolist(), frame["sentence2"].tolist(), truncation=how, max_length=24,
                         return_token_type_ids=True)
    assert [row.tolist() for row in variants["plain"]] == expected["input_ids"]
    assert [row.tolist() for row in variants["swap"]] == tokenizer(
        frame["sentence2"].tolist(), frame["sentence1"].tolist(), truncation=how, max_length=24)["input_ids"]
    batch = next(iter(eval_loader(variants["plain"], None, tokenizer.pad_token_id, 8)))
    types = segments(batch["input_ids"], batch["attention_mask"], tokenizer.sep_token_id)
    padded = tokenizer.pad(expected, return_tensors="pt")
    order = batch["index"].tolist()                              # the loader sorts rows by length
    assert torch.equal(types, padded["token_type_ids"][order, :types.shape[1]])
    # the third pair's first side alone overflows 24 tokens: only_second cannot fit it and cuts it
    # longest_first, saying so; only_first cuts the first side and keeps the short second whole
    with pytest.warns(UserWarning, match="1 of 3 pairs") if how == "only_second" else _nothing():
        long = encode_frame(cfg, s, tokenizer, ROWS)["plain"][-1].tolist()
    fallback = "longest_first" if how == "only_second" else how
    assert long == tokenizer(ROWS["sentence1"].iloc[2], ROWS["sentence2"].iloc[2], truncation=fallback,
                             max_length=24)["input_ids"]
    assert len(long) == 24
    second = tokenizer(ROWS["sentence2"].iloc[2], add_special_tokens=False)["input_ids"]
    assert long[-1 - len(second):-1] == second                 # the short second side is kept whole by every mode


def test_the_scratch_family_reads_a_pair_as_its_own_tokenizer_does(ws):
    """The scratch transformer trains its tokenizer on the run's texts; its pair ids are that tokenizer's
    ``tokenizer(a, b)``: ``[CLS] a [SEP] b [SEP]``, cut longest_first at max_length."""
    from competition import data as data_mod
    from competition.models import scratch
    from competition.spec import load_spec

    data = data_mod.load(load_spec(ws.spec_file))
    prepared = scratch.prepare(load_config(ws, "scratch", ["model.max_length=48", "train.tta=[]"]), data)
    tok = prepared.tokenizer
    first, second = data.train["sentence1"].tolist(), data.train["sentence2"].tolist()
    got = [row.tolist() for row in prepared.train["plain"]]
    assert got == tok(first, second, truncation="longest_first", max_length=48)["input_ids"]
    whole = [i for i, row in enumerate(got) if len(row) < 48]
    assert 0 < len(whole) < len(got)                                         # some pairs cut, some whole
    for i in whole[:5]:
        a, b = (tok(side[i], add_special_tokens=False)["input_ids"] for side in (first, second))
        assert got[i] == [tok.cls_token_id, *a, tok.sep_token_id, *b, tok.sep_token_id]


def test_frozen_embeddings_read_a_pair_as_each_sides_vector_their_distance_and_product(ws, tiny):
    """The embed family is a bi-encoder: each side is tokenised alone (tokenizer(a), tokenizer(b)),
    mean-pooled, and the head reads [u, v, |u - v|, u * v]; computed here by hand."""
    from transformers import AutoModel, AutoTokenizer

    from competition import data as data_mod
    from competition.models import embed
    from competition.spec import load_spec

    data = data_mod.load(load_spec(ws.spec_file))
    prepared = embed.prepare(load_config(ws, "emb"), data)
    tokenizer, model = AutoTokenizer.from_pretrained(tiny), AutoModel.from_pretrained(tiny).eval()

    def vector(text):
        enc = tokenizer(text, truncation=True, max_length=48, return_tensors="pt")
        with torch.no_grad():
            return model(**enc).last_hidden_state[0].mean(0).numpy()

    for i in range(3):
        u, v = vector(data.train["sentence1"].iloc[i]), vector(data.train["sentence2"].iloc[i])
        assert np.allclose(prepared.train[i], np.concatenate([u, v, np.abs(u - v), u * v]), atol=1e-5)
    assert prepared.test.shape == (len(data.test), 4 * model.config.hidden_size)


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def test_swap_is_applied_only_when_asked_and_refused_without_a_pair(ws, tiny):
    from transformers import AutoTokenizer

    from competition.models.batches import encode_frame

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    s = spec(text_pair=["sentence1", "sentence2"])
    assert set(encode_frame(load_config(ws, "enc", ["train.tta=[]"]), s, tokenizer, ROWS)) == {"plain"}
    assert set(encode_frame(load_config(ws, "enc"), s, tokenizer, ROWS)) == {"plain", "swap"}
    with pytest.raises(InputError, match="'swap' reads a text pair"):
        encode_frame(load_config(ws, "glued", ["train.tta=[swap]"]), s, tokenizer, ROWS)
    with pytest.raises(InputError, match="'no_keyword'.*swap is the pair's TTA"):
        encode_frame(load_config(ws, "enc", ["train.tta=[no_keyword]"]), s, tokenizer, ROWS)


def test_the_model_gives_the_encoder_the_pairs_segment_ids(tiny):
    """TextModel with sep_id = the encoder called with tokenizer(a, b)'s own token_type_ids."""
    from transformers import AutoModel, AutoTokenizer

    from competition.models.textmodel import TextModel

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    encoder = AutoModel.from_pretrained(tiny)
    model = TextModel(encoder, "binary", 1, sep_id=tokenizer.sep_token_id).eval()
    enc = tokenizer(ROWS["sentence1"].tolist(), ROWS["sentence2"].tolist(), padding=True, return_tensors="pt",
                    return_token_type_ids=True)
    assert enc["token_type_ids"].sum() > 0
    with torch.no_grad():
        got = model.sentence(enc["input_ids"], enc["attention_mask"])
        hidden = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        want = (hidden * mask).sum(1) / mask.sum(1)
        without = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, (without * mask).sum(1) / mask.sum(1), atol=1e-4)   # the segments matter


def test_tfidf_pair_features_are_each_side_and_what_they_share(ws):
    from competition.models.tfidf import _fit_vectorizer, pair_features

    cfg = load_config(ws, "tfidf", ["model.min_df=1"])
    pairs = Pairs(ROWS["sentence1"].tolist(), ROWS["sentence2"].tolist())
    vectorizer, X = _fit_vectorizer(cfg, pairs)
    a, b = vectorizer.transform(pairs.first).toarray(), vectorizer.transform(pairs.second).toarray()
    V = a.shape[1]
    dense = X.toarray()
    assert dense.shape == (3, 4 * V + 2)
    assert np.allclose(dense[:, :V], a, atol=1e-6) and np.allclose(dense[:, V:2 * V], b, atol=1e-6)
    assert np.allclose(dense[:, 2 * V:3 * V], a * b, atol=1e-6)
    assert np.allclose(dense[:, 3 * V:4 * V], np.abs(a - b), atol=1e-6)
    assert np.allclose(dense[:, -2], (a * b).sum(1) / 2, atol=1e-6)               # word and char cosines' mean
    assert dense[0, -2] > dense[2, -2]                     # the paraphrase shares more than the unrelated pair
    assert np.allclose(pair_features(vectorizer, pairs).toarray(), dense)


@pytest.mark.parametrize("name", ["enc", "tfidf", "emb", "scratch"])
def test_every_text_family_trains_on_pairs_and_replays_them(ws, tmp_path, name):
    from competition import runs
    from competition.predict import predict
    from competition.train import train

    assert train(ws, load_config(ws, name)).complete
    result = predict(ws, name, ws.root / "test.csv", out=tmp_path / name)
    test = runs.load_run(ws, name).test()
    assert np.abs(result.predictions["label"].to_numpy() - test["label"].to_numpy()).max() <= 1e-6
    if name == "enc":      # the bundle replays the pair encoding too
        from competition.export import export
        from competition.workspace import Workspace

        export(ws, name, tmp_path / "bundle", wheel=False)
        bundled = predict(Workspace(tmp_path / "bundle"), name, ws.root / "test.csv", out=tmp_path / "b")
        assert np.abs(bundled.predictions["label"].to_numpy() - test["label"].to_numpy()).max() <= 1e-6


def test_head_tail_keeps_the_start_and_the_end_of_a_long_text_and_short_texts_whole(tiny):
    from transformers import AutoTokenizer

    from competition.models.batches import encode

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    long_text = " ".join(f"w{i}" for i in range(200))
    short = "The cat sat on the mat today."
    rows = encode(tokenizer, [long_text, short], 40, "head_tail", head_tokens=10)
    body = tokenizer(long_text, add_special_tokens=False)["input_ids"]
    assert len(body) > 38
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert rows[0].tolist() == [cls, *body[:10], *body[-28:], sep] and len(rows[0]) == 40
    assert rows[1].tolist() == tokenizer(short, truncation=True, max_length=40)["input_ids"]
    default = encode(tokenizer, [long_text], 40, "head_tail")[0].tolist()       # head: a quarter of max_length
    assert default == [cls, *body[:10], *body[-28:], sep]
    with pytest.raises(InputError, match="model.head_tokens 38"):
        encode(tokenizer, [long_text], 40, "head_tail", head_tokens=38)


def test_a_pair_column_missing_where_rows_are_predicted_is_refused_naming_the_file_and_text_pair(ws, tmp_path):
    """The test file, a file given to predict and a Python frame must each hold both sides of the pair;
    the error names the file, the column and the key, and predict writes nothing."""
    import shutil

    from competition import data as data_mod
    from competition.predict import predict, predict_frame
    from competition.spec import load_spec
    from competition.train import train
    from competition.workspace import Workspace

    assert train(ws, load_config(ws, "tfidf")).complete
    one_sided = tmp_path / "one_sided.csv"
    pd.read_csv(ws.root / "test.csv").drop(columns=["sentence2"]).to_csv(one_sided, index=False)
    want = r"one_sided.csv .*column 'sentence2' \(named by `text_pair` in competition.yaml\) is missing"
    with pytest.raises(InputError, match=want):
        predict(ws, "tfidf", one_sided, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match=r"rows to predict.*'sentence2' \(named by `text_pair`"):
        predict_frame(ws, "tfidf", pd.read_csv(one_sided))
    copy = tmp_path / "copy"
    shutil.copytree(ws.root, copy, ignore=shutil.ignore_patterns("runs", "experiments"))
    shutil.copy(one_sided, copy / "test.csv")
    with pytest.raises(InputError, match=r"test.csv \(test\): column 'sentence2' \(named by `text_pair`"):
        data_mod.load(load_spec(Workspace(copy).spec_file))
