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


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("long")
    encoder = f"model: {{family: encoder, name: {tiny}, max_length: 16, truncation: windows, stride: 8"
    train = "train: {epochs: 1, batch_size: 16, eval_batch_size: 8}\ntext: {pair: false}\n"
    return msrp_workspace(root / "ws", n_train=120, n_test=30, experiments={
        "win": f"{encoder}}}\n{train}",
        "att": f"{encoder}, window_pool: attention}}\n{train}",
    })


@pytest.mark.parametrize("name", ["win", "att"])
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
    from competition.train import train

    with pytest.raises(InputError, match="train.freeze_layers=0 or model.truncation=head_tail"):
        train(ws, load_config(ws, "win", ["train.freeze_layers=1"]), force=True)
