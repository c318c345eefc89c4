"""The token task's foundation (competition/tokens.py): tag schemes, entity F1 against seqeval, the
decoder's validity, alignment of units with WordPiece and byte-level BPE sub-tokens, character-level
combination, and the refusal of every bad row."""

from __future__ import annotations

import numpy as np
import pytest

from competition import align, token_data
from competition import tokens as tk
from competition.errors import InputError

TYPES = ["loc", "org", "per"]
TAGS = tk.tag_list(TYPES)


def _random_codes(rng, n, valid=False):
    codes = rng.choice(len(TAGS), size=n, p=[0.6] + [0.4 / (len(TAGS) - 1)] * (len(TAGS) - 1))
    if valid:
        codes = np.array([TAGS.index(t) for t in tk.repair([TAGS[c] for c in codes])])
    return codes


def test_entity_f1_equals_seqeval_strict_iob2_on_random_sequences():
    from seqeval.metrics import classification_report, f1_score
    from seqeval.scheme import IOB2

    rng = np.random.default_rng(0)
    for trial in range(30):
        rows = rng.integers(1, 25, size=int(rng.integers(1, 30)))
        truth = [_random_codes(rng, n, valid=True) for n in rows]
        guess = [_random_codes(rng, n, valid=trial % 2 == 0) for n in rows]   # odd trials: invalid I- too
        as_tags = lambda rs: [[TAGS[c] for c in r] for r in rs]               # noqa: E731
        want = f1_score(as_tags(truth), as_tags(guess), mode="strict", scheme=IOB2)
        assert tk.entity_f1(truth, guess) == pytest.approx(want, abs=1e-12)
        report = classification_report(as_tags(truth), as_tags(guess), mode="strict", scheme=IOB2,
                                       output_dict=True, zero_division=0)
        for kind, got in tk.per_type_f1(truth, guess, TYPES).items():
            if kind in report:
                assert got["f1"] == pytest.approx(report[kind]["f1-score"], abs=1e-12)
                assert got["support"] == report[kind]["support"]


@pytest.mark.parametrize("bias", [-2.0, 0.0, 1.5])
def test_the_decoder_only_emits_valid_iob2_and_is_the_best_valid_path(bias):
    from itertools import product

    rng = np.random.default_rng(1)
    for _ in range(40):
        n = int(rng.integers(1, 5))
        p = rng.dirichlet(np.ones(len(TAGS)) * 0.3, size=n)
        path = tk.viterbi(p, bias)
        assert tk.invalid_positions([TAGS[c] for c in path]) == []
        logp = np.log(np.clip(p, 1e-12, None))
        logp[:, 0] += bias
        best = max((sum(logp[i, c] for i, c in enumerate(seq)), seq) for seq in product(range(len(TAGS)), repeat=n)
                   if not tk.invalid_positions([TAGS[c] for c in seq]))
        assert sum(logp[i, c] for i, c in enumerate(path)) == pytest.approx(best[0])


def test_schemes_convert_to_the_same_entities():
    iob2 = ["B-loc", "I-loc", "O", "B-per", "B-per", "I-per"]
    assert tk.to_iob2(["I-loc", "I-loc", "O", "I-per", "B-per", "I-per"], "iob1") == iob2
    assert tk.to_iob2(["B-loc", "E-loc", "O", "S-per", "B-per", "E-per"], "bioes") == iob2
    assert tk.to_iob2(["loc", "loc", "O", "per"], "io") == ["B-loc", "I-loc", "O", "B-per"]


def _wordpiece(tmp_path, texts):
    from competition.models.scratch import train_tokenizer
    return train_tokenizer(texts, 300)


def _bytelevel(texts):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.post_processor = processors.ByteLevel(trim_offsets=True)
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def _random_rows(rng, n=60):
    words = ["New", "York", "is", "big", "@paulwalk", "ESB", "&", "gt", ";", "http://t.co/x1", "Empire",
             "naïve", "日本", "😀", "don't", "U.S.", "x", "Sonmarg", "3.5", "#tag"]
    rows = []
    for _ in range(n):
        tokens = [words[i] for i in rng.integers(0, len(words), size=int(rng.integers(1, 20)))]
        rows.append((tokens, _random_codes(rng, len(tokens), valid=True)))
    return rows


@pytest.mark.parametrize("kind", ["wordpiece", "bytelevel"])
@pytest.mark.parametrize("label_all", [False, True])
def test_labels_aligned_to_subtokens_and_back_lose_no_entity(tmp_path, kind, label_all):
    rng = np.random.default_rng(2)
    rows = _random_rows(rng)
    texts = [align.join_tokens(t)[0] for t, _ in rows]
    tokenizer = _wordpiece(tmp_path, texts) if kind == "wordpiece" else _bytelevel(texts)
    for tokens, codes in rows:
        text, spans = align.join_tokens(tokens)
        enc = tokenizer(text, return_offsets_mapping=True)
        units = align.subtoken_units(enc["offset_mapping"], spans)
        assert set(units[units >= 0]) == set(range(len(tokens))), "every token reaches a sub-token"
        labels = align.subtoken_labels(units, codes, label_all=label_all)
        one_hot = np.zeros((len(labels), len(TAGS)))
        one_hot[labels >= 0, labels[labels >= 0]] = 1.0
        one_hot[labels < 0, 0] = 1.0          # what the model is not taught: O
        back = align.to_units(one_hot, units, len(tokens), how="first")
        assert tk.entities(tk.viterbi(back)) == tk.entities(codes)


def test_two_tokenizers_average_at_the_character_level_as_computed_by_hand():
    # "New York" as units of two tokenizers: A reads ["New", "York"], B reads ["Ne", "w", "York"]
    a = np.array([[0.2, 0.8, 0.0], [0.4, 0.0, 0.6]])                  # O, B-loc, I-loc
    b = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    ca = align.spread_to_chars(a, np.array([[0, 3], [4, 8]]), 8)
    cb = align.spread_to_chars(b, np.array([[0, 2], [2, 3], [4, 8]]), 8)
    by_hand_a = [[.2, .8, 0], [.2, 0, .8], [.2, 0, .8], [.4, 0, .6], [.4, 0, .6], [.4, 0, .6], [.4, 0, .6],
                 [.4, 0, .6]]
    by_hand_b = [[0, 1, 0], [0, 0, 1], [.5, .5, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1]]
    assert np.allclose(ca, by_hand_a) and np.allclose(cb, by_hand_b)
    mean = (ca + cb) / 2
    assert np.allclose(mean[2], [.35, .25, .4]) and np.allclose(mean.sum(axis=1), 1.0)
    assert tk.entities(tk.viterbi(mean)) == {(0, 0, 8)}        # one location over the whole "New York"


def test_bad_rows_are_refused_by_id_with_the_fix():
    ids = ["a", "b", "c"]
    with pytest.raises(InputError, match=r"row id b: 1 tags for 2 tokens"):
        token_data.check_rows(ids, [["x"], ["x", "y"], ["z"]], [["O"], ["O"], ["O"]], "iob2", "repair", None, "train.csv",
                      "tags")
    with pytest.raises(InputError, match=r"row id c: no tokens"):
        token_data.check_rows(ids, [["x"], ["y"], []], [["O"], ["O"], []], "iob2", "repair", None, "train.csv", "tags")
    with pytest.raises(InputError, match=r"\['weird'\] are not in `labels"):
        token_data.check_rows(ids, [["x"]] * 3, [["B-loc"], ["B-weird"], ["O"]], "iob2", "repair", ["loc"], "t.csv", "tags")
    with pytest.raises(InputError, match=r"row id a: 'I-loc' at token 1 continues no entity"):
        token_data.check_rows(ids, [["x", "y"]] * 3, [["O", "I-loc"], ["O", "O"], ["O", "O"]], "iob2", "refuse", None,
                      "t.csv", "tags")
    tags, types, notes = token_data.check_rows(ids, [["x", "y"]] * 3, [["O", "I-loc"], ["O", "O"], ["O", "O"]], "iob2",
                                       "repair", None, "t.csv", "tags")
    assert tags[0] == ["O", "B-loc"] and types == ["loc"] and "row id a" in notes[0]
    with pytest.raises(InputError, match=r"row id b: span \[3, 9, 'loc'\] lies outside its text"):
        token_data.check_spans(["a", "b"], ["New York", "Paris"], [[[0, 8, "loc"]], [[3, 9, "loc"]]], None, "t.csv", "spans")
    with pytest.raises(InputError, match=r"row id a: spans \[0, 3, 'loc'\] and \[2, 8, 'loc'\] overlap"):
        token_data.check_spans(["a"], ["New York"], [[[0, 3, "loc"], [2, 8, "loc"]]], None, "t.csv", "spans")
    with pytest.raises(InputError, match=r"row id a: empty text"):
        token_data.check_spans(["a"], [""], [[]], None, "t.csv", "spans")


def test_conll_files_read_as_sentences(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("EU\tB-org\nrejects\tO\n\nPeter\tB-per\nBlackburn\tI-per\n")
    tokens, tags = token_data.read_conll(path)
    assert tokens == [["EU", "rejects"], ["Peter", "Blackburn"]] and tags == [["B-org", "O"], ["B-per", "I-per"]]
    path.write_text("EU\tB-org\nrejects\n")
    with pytest.raises(InputError, match="line 2 holds a token without a tag"):
        token_data.read_conll(path)


def test_batched_decoding_equals_the_row_by_row_viterbi():
    rng = np.random.default_rng(3)
    probs = tk.rows([rng.dirichlet(np.ones(len(TAGS)) * 0.3, size=int(n)) for n in rng.integers(0, 30, size=50)])
    for bias in (-1.0, 0.0, 2.0):
        batched = tk.decode(probs, bias, batch=7)
        assert all(np.array_equal(b, tk.viterbi(p, bias)) for b, p in zip(batched, probs))


def test_comp_init_recognises_token_lists_and_character_spans(tmp_path):
    import json

    import pandas as pd

    from competition.init import init_workspace

    train = pd.DataFrame({"id": [1, 2, 3], "words": [json.dumps(["EU", "rejects", "it"]), json.dumps(["Peter", "ran"]),
                                                      json.dumps(["x"])],
                          "tags": [json.dumps(["S-org", "O", "O"]), json.dumps(["B-per", "E-per"]), json.dumps(["O"])]})
    train.to_csv(tmp_path / "train.csv", index=False)
    spec = init_workspace(tmp_path / "a", train=tmp_path / "train.csv", targets=["tags"])
    assert (spec.task, spec.text, spec.labels, spec.tokens.scheme, spec.metric) == (
        "tokens", ["words"], ["org", "per"], "bioes", "entity_f1")
    notes = pd.DataFrame({"id": [1, 2], "note": ["New York is big", "Paris"],
                          "spans": [json.dumps([[0, 8, "loc"]]), json.dumps([[0, 5, "loc"]])]})
    notes.to_csv(tmp_path / "notes.csv", index=False)
    spec = init_workspace(tmp_path / "b", train=tmp_path / "notes.csv", targets=["spans"])
    assert (spec.task, spec.text, spec.tokens.unit, spec.labels) == ("tokens", ["note"], "char", ["loc"])
    from competition.data import load
    data = load(spec)
    assert tk.entities(data.y[0]) == {(0, 0, 8)}


def _token_spec(tmp_path, train_name="train.csv", extra=""):
    from competition.spec import load_spec

    (tmp_path / "competition.yaml").write_text(
        f"name: t\ntrain: {train_name}\nid: id\ntask: tokens\ntext: [tokens]\ntargets: [tags]\n"
        f"labels: [loc, per]\nmetric: entity_f1\n{extra}")
    return load_spec(tmp_path / "competition.yaml")


def test_a_bad_row_in_a_file_is_refused_naming_file_row_and_column(tmp_path):
    import json

    import pandas as pd

    from competition.data import load

    rows = pd.DataFrame({"id": [1, 2], "tokens": [json.dumps(["a", "b"]), json.dumps(["c"])],
                         "tags": [json.dumps(["B-loc", "O"]), json.dumps(["O", "O"])]})
    rows.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(InputError, match=r"(?s)train\.csv \(train\): column 'tags'.*row id 2: 2 tags for 1 tokens"):
        load(_token_spec(tmp_path))
    rows.loc[1, "tags"] = "B-loc"          # not a JSON list
    rows.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(InputError, match=r"row id 2, column 'tags': expected a JSON list"):
        load(_token_spec(tmp_path))


def test_conll_train_files_are_read_through_the_spec(tmp_path):
    from competition.data import load

    (tmp_path / "train.conll").write_text("Paris\tB-loc\nis\tO\n\nAnn\tB-per\nLee\tI-per\n")
    data = load(_token_spec(tmp_path, "train.conll"))
    assert data.train["tokens"].tolist() == [["Paris", "is"], ["Ann", "Lee"]]
    assert [tk.entities(y) for y in data.y] == [{(0, 0, 1)}, {(1, 0, 2)}]
    (tmp_path / "train.conll").write_text("Paris\tS-loc\nis\tO\n")
    data = load(_token_spec(tmp_path, "train.conll", "tokens: {scheme: bioes}\n"))
    assert tk.entities(data.y[0]) == {(0, 0, 1)}


def test_the_chosen_bias_is_the_grid_point_with_the_best_entity_f1():
    rng = np.random.default_rng(4)
    truth = [_random_codes(rng, int(n), valid=True) for n in rng.integers(1, 20, size=60)]
    probs = tk.rows([rng.dirichlet(np.ones(len(TAGS)), size=len(t)) * 0.5 + np.eye(len(TAGS))[t] * 0.5
                     for t in truth])
    by_hand = max((tk.entity_f1(truth, tk.decode(probs, b)), -abs(b), b) for b in tk.O_BIASES)[2]
    assert tk.best_bias(truth, probs) == by_hand
    assert tk.best_bias(truth[:30], probs[:30]) == max(
        (tk.entity_f1(truth[:30], tk.decode(probs[:30], b)), -abs(b), b) for b in tk.O_BIASES)[2]   # cached rows
