"""The span task from first principles: the competition's Jaccard and SQuAD's scores on hand cases, a
decoder that only ever cuts real substrings (start <= end), answers across window boundaries recovered
whole, and every bad row refused by id before anything is written."""

from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from competition import predictions, spans
from competition.errors import InputError
from competition.models import extracting
from competition.span_data import infer, read_targets, read_units
from competition.spec import Spec


def kaggle_jaccard(str1, str2):
    """The evaluation page of Tweet Sentiment Extraction, verbatim (it divides by zero on two empty strings,
    which the page's own notebook scores as 1)."""
    a = set(str1.lower().split())
    b = set(str2.lower().split())
    c = a.intersection(b)
    return float(len(c)) / (len(a) + len(b) - len(c))


@pytest.mark.parametrize("truth, guess", [
    ("Sorry", "Sorry everyone."), ("my boss is bullying me...", "bullying me"), ("good", "GOOD day"),
    ("a a b", "b"), ("  spaced   out ", "spaced out"), ("x", "y"), ("I`m sad", "I`m  sad"),
])
def test_word_jaccard_is_the_competitions_definition(truth, guess):
    assert spans.word_jaccard(truth, guess) == pytest.approx(kaggle_jaccard(truth, guess))


def test_word_jaccard_of_empty_answers():
    assert spans.word_jaccard("", "") == 1.0
    assert spans.word_jaccard("", "word") == 0.0 and spans.word_jaccard("word", "  ") == 0.0


def squad_f1_and_em(prediction, truth):
    """SQuAD v1.1's evaluate script (normalize_answer, f1_score, exact_match_score), as published."""
    def normalize_answer(s):
        s = s.lower()
        s = "".join(ch for ch in s if ch not in set(string.punctuation))
        s = re.sub(r"\b(a|an|the)\b", " ", s)
        return " ".join(s.split())

    p, g = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    f1 = 0.0 if same == 0 else 2 * (same / len(p)) * (same / len(g)) / (same / len(p) + same / len(g))
    return f1, float(normalize_answer(prediction) == normalize_answer(truth))


@pytest.mark.parametrize("truth, guess", [
    ("the Eiffel Tower", "Eiffel tower."), ("Denver Broncos", "the Denver Broncos won"), ("1990", "in 1990 and 1991"),
    ("a b a", "a a"), ("Paris", "London"),
])
def test_exact_match_and_span_f1_are_squads(truth, guess):
    f1, em = squad_f1_and_em(guess, truth)
    assert spans.token_f1(truth, guess) == pytest.approx(f1)
    assert spans.exact(truth, guess) == em


def _random_rows(rng, n):
    out = []
    for _ in range(n):
        length = int(rng.integers(1, 60))
        p = rng.random((length, 2)) * (rng.random((length, 2)) < 0.3)      # sparse, as sub-token models give
        p /= max(p.sum(axis=0).max(), 1e-9) * rng.uniform(1.0, 1.5)
        out.append(p)
    return predictions.rows(out)


@pytest.mark.parametrize("rule", ["likeliest", "overlap"])
@pytest.mark.parametrize("bias", [-0.1, 0.0, 0.05])
def test_decoder_never_starts_after_it_ends_and_cuts_substrings(bias, rule):
    rng = np.random.default_rng(0)
    probs = _random_rows(rng, 400)
    texts = ["".join(rng.choice(list("ab c,."), len(p))) for p in probs]
    found = spans.decode(probs, bias, rule)
    assert (found[:, 0] <= found[:, 1]).all()
    assert all(0 <= s <= e <= len(p) for (s, e), p in zip(found, probs))
    for text, answer, (s, e) in zip(texts, spans.cut(texts, found), found):
        assert answer == text[s:e] and answer in text


def test_decoder_finds_the_best_pair_by_brute_force():
    """Over rows short enough that the top candidates are every character, the decoder's pair has the
    highest log P(start) + log P(end) + bias x length of all pairs with start <= end (or no answer)."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        p = rng.dirichlet(np.ones(n + 1), size=2).T[1:]          # (n, 2), the rest is "no answer"
        bias = float(rng.choice(spans.BIASES))
        (s, e), = spans.decode(predictions.rows([p]), bias, "likeliest")
        best, where = np.log(1 - p[:, 0].sum()) + np.log(1 - p[:, 1].sum()), (0, 0)
        for a in range(n):
            for b in range(a, n):
                v = np.log(p[a, 0]) + np.log(p[b, 1]) + bias * (b - a + 1)
                if v > best:
                    best, where = v, (a, b + 1)
        assert (int(s), int(e)) == where


def _jaccard(a: tuple[int, int], b: tuple[int, int]) -> float:
    both = len(set(range(*a)) & set(range(*b)))
    either = (a[1] - a[0]) + (b[1] - b[0]) - both
    return 1.0 if either == 0 else both / either


def test_overlap_rule_takes_the_span_of_highest_expected_jaccard_by_brute_force():
    """Over rows short enough that every span is a candidate, the overlap rule's answer maximises the
    expected character Jaccard against the decoder's distribution over spans (each start <= end, and no
    answer, weighted P(start) P(end) e^(bias x length)), computed here span by span."""
    rng = np.random.default_rng(3)
    for _ in range(150):
        n = int(rng.integers(1, 7))                              # at most 21 spans + no answer <= KEEP
        p = rng.dirichlet(np.ones(n + 1), size=2).T[1:]
        bias = float(rng.choice(spans.BIASES))
        spans_ = [(a, b + 1) for a in range(n) for b in range(a, n)] + [(0, 0)]
        weight = np.array([p[a, 0] * p[b - 1, 1] * np.exp(bias * (b - a)) for a, b in spans_[:-1]]
                          + [(1 - p[:, 0].sum()) * (1 - p[:, 1].sum())])
        expected = [sum(w * _jaccard(c, d) for w, d in zip(weight, spans_)) / weight.sum() for c in spans_]
        (s, e), = spans.decode(predictions.rows([p]), bias, "overlap")
        assert expected[spans_.index((int(s), int(e)) if e > s else (0, 0))] == pytest.approx(max(expected))


def test_overlap_rule_scores_higher_than_the_likeliest_where_answers_are_drawn_from_the_model():
    """Where the truth really is drawn from the predicted distribution, the minimum-risk rule's mean
    Jaccard is the higher one (and exact match is the likeliest rule's)."""
    rng = np.random.default_rng(4)
    probs = predictions.rows([rng.dirichlet(np.ones(n + 1) * 0.3, size=2).T[1:] for n in rng.integers(1, 10, 300)])
    truth = []
    for p in probs:
        n = len(p)
        pairs = [(a, b + 1) for a in range(n) for b in range(a, n)] + [(0, 0)]
        w = np.array([p[a, 0] * p[b - 1, 1] for a, b in pairs[:-1]] + [(1 - p[:, 0].sum()) * (1 - p[:, 1].sum())])
        truth.append([pairs[i] for i in rng.choice(len(pairs), 40, p=w / w.sum())])
    def mean_of(rule, score):
        found = spans.decode(probs, 0.0, rule)
        return np.mean([score(tuple(map(int, f)), t) for f, ts in zip(found, truth) for t in ts])
    assert mean_of("overlap", _jaccard) > mean_of("likeliest", _jaccard)
    assert mean_of("likeliest", lambda a, b: a == b) > mean_of("overlap", lambda a, b: a == b)


def test_length_bias_lengthens_the_answer():
    p = predictions.rows([np.array([[0.5, 0.1], [0.3, 0.5], [0.0, 0.0], [0.0, 0.3]])])
    assert spans.decode(p, 0.0, "likeliest").tolist() == [[0, 2]]
    assert spans.decode(p, 0.5, "likeliest").tolist() == [[0, 4]]


def test_the_bias_is_chosen_to_maximise_the_metric():
    rng = np.random.default_rng(2)
    probs = _random_rows(rng, 200)
    y = spans.answers(["w " * len(p) for p in probs], [0] * len(probs), [len(p) for p in probs])
    y = predictions.rows([spans.Answer(a.text[:len(p)], 0, len(p)) for a, p in zip(y, probs)])
    best = spans.best_bias("word_jaccard", y, probs)
    means = {b: spans.row_scores("word_jaccard", y, spans.decode(probs, b)).mean() for b in spans.BIASES}
    assert means[best] == pytest.approx(max(means.values()))


# -- windows --------------------------------------------------------------------------------------

def test_span_loss_is_cross_entropy_and_smoothing_spreads_only_over_allowed_positions():
    """The span head's loss is the mean of the start's and the end's cross-entropy over the positions an
    answer may take; smoothing moves that share of the target evenly onto them, none onto the masked
    ones (the condition's tokens, padding), so large logits there cost nothing."""
    import torch
    import torch.nn.functional as F

    from competition.models.textmodel import span_loss

    torch.manual_seed(0)
    labels = torch.tensor([[0, -100, -100, 1, 0, 2, -100], [0, -100, 3, 0, 0, -100, -100]])
    z = torch.randn(2, 7, 2)
    allowed = labels >= 0
    masked = z.masked_fill(~allowed[..., None], -1e4)
    start, end = torch.tensor([3, 2]), torch.tensor([5, 2])
    plain = (F.cross_entropy(masked[..., 0], start) + F.cross_entropy(masked[..., 1], end)) / 2
    assert torch.isclose(span_loss(z, labels), plain)
    eps, logp = 0.1, masked.log_softmax(1)
    by_hand = 0.0
    for b in range(2):
        for c, target in ((0, start), (1, end)):
            ok = allowed[b].nonzero().flatten()
            by_hand += -(1 - eps) * logp[b, target[b], c] - eps * logp[b, ok, c].mean()
    assert torch.isclose(span_loss(z, labels, eps), by_hand / 4)
    loud = z.clone()
    loud[~allowed] = 50.0                     # masked positions' logits never enter the loss
    assert torch.isclose(span_loss(loud, labels, eps), span_loss(z, labels, eps))


def test_an_answer_across_a_window_boundary_is_recovered_whole():
    """A text read as two windows (sub-tokens 0-5 and 3-8): the answer is sub-tokens 4-6, so the first
    window holds its start but not its end and, as taught, says "no answer" or guesses an end inside
    itself; the second window holds it whole. Merged, the decoder cuts the whole answer."""
    text = "aa bb cc dd ee ff gg hh ii"
    offsets = np.array([[3 * i, 3 * i + 2] for i in range(9)])
    first = np.zeros((7, 2))          # its first token, then sub-tokens 0..5
    first[0] = [0.5, 0.5]             # no answer: its end is outside
    first[1 + 4] = [0.4, 0.0]
    first[1 + 5] = [0.1, 0.5]         # the best end it can see: its last sub-token
    second = np.zeros((7, 2))         # sub-tokens 3..8
    second[0] = [0.05, 0.05]
    second[1 + 1] = [0.9, 0.0]        # sub-token 4
    second[1 + 3] = [0.05, 0.9]       # sub-token 6
    merged = extracting.merge([first, second], np.array([0, 0]), np.array([0, 3]), [offsets], [len(text)],
                              np.array([0]))
    (s, e), = spans.decode(merged)
    assert text[s:e] == "ee ff gg"


def test_windows_teach_the_answer_only_where_it_is_whole(tmp_path):
    from transformers import AutoTokenizer

    from competition.config import ExperimentConfig
    from tests.tiny import tiny_bert

    texts = [" ".join(f"w{i}" for i in range(60))]
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert(tmp_path, texts * 20))
    spec = Spec(name="x", train="t.csv", id="id", targets=["a"], text=["text"], task="span",
                span={"condition": ["sentiment"]}, metric="word_jaccard")
    cfg = ExperimentConfig.model_validate({"exp": "010", "model": {"family": "encoder", "name": "x",
                                                                   "max_length": 24, "stride": 3},
                                           "train": {"select": "last", "patience": None}})
    frame = pd.DataFrame({"id": [1], "text": texts, "sentiment": ["neutral"]})
    start = texts[0].index("w30")
    y = spans.answers(texts, [start], [start + len("w30 w31")])
    enc = extracting.encode(cfg, spec, tokenizer, frame, y)
    first, last = extracting.answer_subtokens(enc.offsets[0], y[0].start, y[0].end)
    assert len(enc.windows) > 2 and any(s <= first and last < s + n for s, n in zip(enc.start, enc.size))
    offsets = enc.offsets[0]
    first, last = extracting.answer_subtokens(offsets, y[0].start, y[0].end)
    for w, labels in enumerate(enc.labels):
        labels = labels.numpy()
        s, n, at = enc.start[w], enc.size[w], enc.at[w]
        whole = s <= first and last < s + n
        ids = enc.windows[w].tolist()
        assert len(ids) <= 24 and ids[0] == tokenizer.cls_token_id
        if whole:      # the start and end sub-tokens taught, no answer not
            assert labels[at + first - s] in (1, 3) and labels[at + last - s] in (2, 3) and labels[0] == 0
            assert texts[0][offsets[first][0]:offsets[last][1]] == "w30 w31"
        else:
            assert labels[0] == 3 and not ((labels == 1) | (labels == 2)).any()
        # the condition's sub-tokens and the special tokens can never hold the answer
        assert (labels[1:at] == -100).all() and (labels[at + n:] == -100).all()


# -- data -------------------------------------------------------------------------------------------

def _spec(**span):
    return Spec(name="x", train="t.csv", id="id", targets=["selected_text"], text=["text"], task="span",
                span={"condition": ["sentiment"], **span}, metric="word_jaccard")


def _read(frame, **span):
    spec = _spec(**span)
    return read_targets(spec, read_units(spec, frame, "train.csv"), "train.csv")


def test_answers_are_found_in_their_texts_with_spaces_kept():
    frame = pd.DataFrame({"id": [1, 2, 3], "text": [" I`m so  sad", "fine, ok", "x"],
                          "sentiment": ["negative", "neutral", "neutral"], "selected_text": ["so  sad", "fine, ok", ""]})
    y, labels, notes = _read(frame)
    assert [a.answer for a in y] == ["so  sad", "fine, ok", ""]
    assert (y[0].start, y[0].end) == (5, 12) and labels == [] and "1 row(s) have an empty" in notes[0]


@pytest.mark.parametrize("rows, start, message", [
    ({"text": ["good day"], "selected_text": ["bad"]}, None, "'bad' is not a substring"),
    ({"text": ["good day"], "selected_text": ["day"], "answer_start": [7]}, "answer_start", "lies outside its text"),
    ({"text": ["good day"], "selected_text": ["day"], "answer_start": [-1]}, "answer_start", "lies outside its text"),
    ({"text": ["good day"], "selected_text": ["day"], "answer_start": [0]}, "answer_start", "not the answer 'day'"),
    ({"text": [""], "selected_text": [""]}, None, "empty text"),
])
def test_bad_rows_are_refused_by_id(rows, start, message):
    frame = pd.DataFrame({"id": [77], "sentiment": ["positive"], **rows})
    with pytest.raises(InputError) as err:
        _read(frame, start=start)
    assert "row id 77" in str(err.value) and message in str(err.value)


def test_offsets_place_answers_that_occur_twice():
    frame = pd.DataFrame({"id": [1], "text": ["no no no"], "sentiment": ["negative"], "selected_text": ["no"],
                          "answer_start": [6]})
    y, _, _ = _read(frame, start="answer_start")
    assert (y[0].start, y[0].end) == (6, 8)


def test_init_recognises_a_substring_target():
    frame = pd.read_csv(_shared("tweet-spans") / "train.csv", nrows=300, keep_default_na=False)
    found = infer(frame, "selected_text", ["text", "sentiment"])
    assert found["task"] == "span" and found["text"] == ["text"] and found["span"] == {"condition": ["sentiment"]}
    assert infer(frame, "sentiment", ["text"]) is None      # a label, not a substring of the text


def _shared(name):
    from tests.datasets import shared_data

    return shared_data() / name
