"""Span tasks: one substring of a text, conditioned on other columns (Tweet Sentiment Extraction's
``selected_text`` given the sentiment; extractive question answering's answer given the question).

A row's truth is an :class:`Answer`: the context text and the answer's character offsets in it
(``start == end``: the row has no answer). A row's prediction is a float array ``(characters, 2)`` --
the format of :mod:`competition.predictions`, one unit per character of the context: the probability
that the answer starts at the character and that it ends at it (its last character). What the two
columns leave of 1 is the probability of no answer. Folds, seeds and models average these arrays.

:func:`decode` scores each row's candidate spans ``start <= end`` among the most probable starts and ends
(and no answer), and takes, by the metric's rule (:func:`rule_of`), the likeliest one (exact match) or the
one of the highest expected overlap with the others (word Jaccard, token F1: the minimum-risk answer). One
setting -- ``bias``, added per character of a span to its log-probability (above 0 favours longer spans)
-- is chosen on OOF without the scored fold as a threshold is (:mod:`competition.thresholds`). The answer
is cut from the original text, so its spaces and punctuation are exactly the text's.

Metrics: ``word_jaccard`` (Tweet Sentiment Extraction's: the Jaccard of the lower-cased words, split on
whitespace, of the predicted and true answers; two empty answers agree), ``exact_match`` and
``span_f1`` (SQuAD's, on answers normalised by lower-casing and dropping punctuation and articles).

Reading and checking a competition's rows is :mod:`competition.span_data`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import NamedTuple

import numpy as np

from competition.errors import InputError
from competition.predictions import rows

BIASES = tuple(np.round(np.arange(-0.1, 0.1001, 0.01), 3))     # the decoder's grid, log-probability per character
TOP = 20                                                       # starts and ends the decoder pairs up
KEEP = 30                                                      # candidate spans the overlap rule weighs


class Answer(NamedTuple):
    """A row's truth: the context and the answer's characters ``text[start:end]`` (empty: no answer)."""

    text: str
    start: int
    end: int

    @property
    def answer(self) -> str:
        return self.text[self.start:self.end]


def answers(texts, starts, ends) -> np.ndarray:
    """Rows of :class:`Answer` as a 1-D object array (what ``Dataset.y`` holds for a span task)."""
    return rows([Answer(str(t), int(s), int(e)) for t, s, e in zip(texts, starts, ends)])


# -- metrics ----------------------------------------------------------------------------------

def word_jaccard(a: str, b: str) -> float:
    """Tweet Sentiment Extraction's score of one row: Jaccard of the lower-cased whitespace words.

    >>> word_jaccard("Sorry everyone.", "sorry")
    0.5
    >>> word_jaccard("", ""), word_jaccard("", "x")
    (1.0, 0.0)
    """
    x, y = set(a.lower().split()), set(b.lower().split())
    if not x and not y:
        return 1.0
    both = len(x & y)
    return both / (len(x) + len(y) - both)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(s: str) -> list[str]:
    """SQuAD's answer normalisation, as words: lower case, no punctuation, no articles.

    >>> normalise("The  Eiffel-Tower!")
    ['eiffeltower']
    """
    return _ARTICLES.sub(" ", s.lower().translate(_PUNCTUATION)).split()


def exact(a: str, b: str) -> float:
    """SQuAD's exact match of one row (on normalised answers).

    >>> exact("the Eiffel Tower", "Eiffel tower."), exact("Paris", "in Paris")
    (1.0, 0.0)
    """
    return float(normalise(a) == normalise(b))


def token_f1(a: str, b: str) -> float:
    """SQuAD's F1 of one row: the normalised words in common, as a bag (two empty answers agree).

    >>> token_f1("in Paris France", "Paris")
    0.5
    """
    x, y = normalise(a), normalise(b)
    if not x or not y:
        return float(x == y)
    common = sum((Counter(x) & Counter(y)).values())
    return 0.0 if common == 0 else 2 * common / (len(x) + len(y))


ROW_SCORES = {"word_jaccard": word_jaccard, "exact_match": exact, "span_f1": token_f1}


def row_scores(name: str, y_true, spans) -> np.ndarray:
    """Per row, metric ``name`` of the answer cut at ``spans`` ``(n, 2)`` against the true answer; the
    metric is their mean (a bootstrap draw's: their weighted mean)."""
    fn = ROW_SCORES[name]
    return np.array([fn(t.answer, t.text[int(s):int(e)]) for t, (s, e) in zip(y_true, np.asarray(spans).reshape(-1, 2))])


def metric(name: str):
    """The metric function ``(y_true, spans) -> float`` of :data:`ROW_SCORES` ``name``."""
    return lambda y, spans: float(row_scores(name, y, spans).mean()) if len(y) else 0.0


# -- decoding ---------------------------------------------------------------------------------

def rule_of(metric: str) -> str:
    """The decoding rule that serves metric ``metric`` best: ``likeliest`` (the most probable span) for
    exact match, ``overlap`` (the span of the highest expected overlap) for the metrics that give
    partial credit.

    >>> rule_of("exact_match"), rule_of("word_jaccard")
    ('likeliest', 'overlap')
    """
    return "likeliest" if metric == "exact_match" else "overlap"


def decode(probs, bias: float = 0.0, rule: str = "overlap", top: int = TOP, keep: int = KEEP,
           batch: int = 512) -> np.ndarray:
    """Every row's answer span ``(n, 2)``: characters ``[start, end)``, ``start == end == 0`` for no answer.

    A candidate is a pair ``start <= end`` among the row's ``top`` likeliest start and end characters,
    scored ``log P(start) + log P(end) + bias x length``, or no answer, scored ``log P(no start) + log P(no
    end)`` (what the two columns leave of 1). ``rule``: ``likeliest`` takes the best-scored candidate (what
    exact match rewards); ``overlap`` weighs the ``keep`` best-scored candidates by their scores (a softmax)
    and takes the one whose expected character Jaccard with them is highest: the minimum-risk answer
    for metrics that give partial credit (word Jaccard, token F1), which the likeliest one is not when
    the model hesitates between a long and a short answer.

    >>> p = np.array([[0.1, 0.0], [0.6, 0.1], [0.1, 0.2], [0.2, 0.7]])    # start, end at each character
    >>> decode(rows([p]), rule="likeliest").tolist(), decode(rows([p])).tolist()
    ([[1, 4]], [[1, 4]])
    >>> q = np.array([[0.1, 0.8], [0.8, 0.15]])     # the likeliest end comes before the likeliest start
    >>> decode(rows([q]), rule="likeliest").tolist()      # never start > end: the best pair that is a span
    [[1, 2]]
    >>> h = np.array([[.5, 0], [0, .5], [0, 0], [.5, 0], [0, .5]])  # [0, 2) or [3, 5): the likeliest is
    >>> decode(rows([h]), rule="likeliest").tolist(), decode(rows([h])).tolist()   # one; [0, 5) covers both
    ([[0, 2]], [[0, 5]])
    """
    if rule not in ("likeliest", "overlap"):
        raise ValueError(f"span decoding rule {rule!r}: likeliest or overlap")
    out = np.zeros((len(probs), 2), dtype=np.int64)
    if len(probs) == 0:
        return out
    lengths = np.array([len(p) for p in probs])
    order = np.argsort(lengths, kind="stable")
    for at in range(0, len(order), batch):
        chosen = order[at:at + batch]
        n = max(int(lengths[chosen].max()), 1)
        p = np.zeros((len(chosen), n, 2))
        for r, i in enumerate(chosen):
            if lengths[i]:
                p[r, :lengths[i]] = np.asarray(probs[i], dtype=float)
        with np.errstate(divide="ignore"):
            logp = np.log(np.clip(p, 0.0, None))                                     # -inf: never
            none = np.log(np.clip(1.0 - p.sum(axis=1), 1e-12, None)).sum(axis=1)     # (rows,)
        k = min(top, n)
        starts = np.argpartition(-logp[:, :, 0], k - 1, axis=1)[:, :k]              # (rows, k)
        ends = np.argpartition(-logp[:, :, 1], k - 1, axis=1)[:, :k]
        ls = np.take_along_axis(logp[:, :, 0], starts, axis=1)
        le = np.take_along_axis(logp[:, :, 1], ends, axis=1)
        length = ends[:, None, :] - starts[:, :, None] + 1                          # (rows, k, k)
        score = np.where(length >= 1, ls[:, :, None] + le[:, None, :] + bias * length, -np.inf)
        score = np.concatenate([score.reshape(len(chosen), -1), none[:, None]], axis=1)   # last: no answer
        s = np.concatenate([np.repeat(starts, k, axis=1), np.zeros((len(chosen), 1), np.int64)], axis=1)
        e = np.concatenate([np.tile(ends, (1, k)) + 1, np.zeros((len(chosen), 1), np.int64)], axis=1)
        if rule == "likeliest":
            best = score.argmax(axis=1)
        else:
            m = min(keep, score.shape[1])
            kept = np.argpartition(-score, m - 1, axis=1)[:, :m]                      # (rows, m)
            sc = np.take_along_axis(score, kept, axis=1)
            s, e = np.take_along_axis(s, kept, axis=1), np.take_along_axis(e, kept, axis=1)
            with np.errstate(invalid="ignore"):
                weight = np.nan_to_num(np.exp(sc - sc.max(axis=1, keepdims=True)))     # -inf: 0
            weight /= weight.sum(axis=1, keepdims=True)
            both = np.clip(np.minimum(e[:, :, None], e[:, None, :]) - np.maximum(s[:, :, None], s[:, None, :]), 0, None)
            either = (e - s)[:, :, None] + (e - s)[:, None, :] - both
            jaccard = np.where(either > 0, both / np.maximum(either, 1), 1.0)         # two no-answers agree
            expected = np.where(np.isfinite(sc), (jaccard * weight[:, None, :]).sum(axis=2), -1.0)
            best = expected.argmax(axis=1)
        out[chosen, 0] = s[np.arange(len(chosen)), best]
        out[chosen, 1] = e[np.arange(len(chosen)), best]
    return out


def cut(texts, spans) -> list[str]:
    """The answers: each text's characters ``[start, end)``, as the text has them.

    >>> cut([" I`m  sad, ok"], [[5, 9]])
    [' sad']
    """
    return [str(t)[int(s):int(e)] for t, (s, e) in zip(texts, np.asarray(spans).reshape(-1, 2))]


def best_bias(name: str, y_true, y_pred) -> float:
    """The ``bias`` of :data:`BIASES` with the best mean metric ``name`` on these rows (ties: nearest 0)."""
    means = _bias_scores(name, y_true, y_pred).mean(axis=0)                   # (biases,)
    return float(max(zip(np.round(means, 12), [-abs(b) for b in BIASES], BIASES))[2])


# Rows decoded at every bias, by the identity of their arrays: the nested choice of a run's CV asks about
# the same rows fold after fold, so each row is decoded once per process (as competition.tokens does).
_DECODED: dict[tuple[str, int, int], tuple[object, object, np.ndarray]] = {}
_DECODED_LIMIT = 1_000_000


def _bias_scores(name: str, y_true, y_pred) -> np.ndarray:
    """(rows, biases): each row's metric decoded at every bias."""
    out = np.empty((len(y_pred), len(BIASES)))
    todo = []
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        hit = _DECODED.get((name, id(t), id(p)))
        if hit is not None and hit[0] is t and hit[1] is p:
            out[i] = hit[2]
        else:
            todo.append(i)
    if todo:
        truth, probs = [y_true[i] for i in todo], rows([y_pred[i] for i in todo])
        for b, bias in enumerate(BIASES):
            out[todo, b] = row_scores(name, truth, decode(probs, bias, rule_of(name)))
        if len(_DECODED) + len(todo) > _DECODED_LIMIT:
            _DECODED.clear()
        for i in todo:
            _DECODED[(name, id(y_true[i]), id(y_pred[i]))] = (y_true[i], y_pred[i], out[i])
    return out


def check_rows_predicted(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Answers and span probabilities of the same rows, a ``(characters, 2)`` array per row.

    Raises:
        InputError: another number of rows, or a row whose shape is not its text's (naming its position).
    """
    y_true, y_pred = rows(y_true), rows(y_pred)
    if len(y_true) != len(y_pred):
        raise InputError(f"span predictions: {len(y_pred)} rows for {len(y_true)} answers")
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if not isinstance(t, Answer):
            raise InputError(f"span targets: row {i} is {type(t).__name__}, not an Answer (text, start, end)")
        if np.ndim(p) != 2 or np.shape(p) != (len(t.text), 2):
            raise InputError(f"span predictions: row {i} has {np.shape(p)} probabilities for {len(t.text)} "
                             "characters; one (start, end) pair per character of the text")
    return y_true, y_pred


# -- what families and the stack teach ----------------------------------------------------------

def char_targets(y) -> list[np.ndarray]:
    """Per row, each character's class for a unit-level model: 0 neither, 1 the answer starts there, 2 it
    ends there (its last character), 3 both (a one-character answer).

    >>> char_targets([Answer("ab cd", 3, 5)])[0].tolist()
    [0, 0, 0, 1, 2]
    """
    out = []
    for a in y:
        codes = np.zeros(len(a.text), dtype=np.int64)
        if a.end > a.start:
            codes[a.start] += 1
            codes[a.end - 1] += 2
        out.append(codes)
    return out


def from_classes(p: np.ndarray) -> np.ndarray:
    """Per-character class probabilities ``(chars, 4)`` (:func:`char_targets`' classes) -> ``(chars, 2)``
    start and end probabilities."""
    return np.stack([p[:, 1] + p[:, 3], p[:, 2] + p[:, 3]], axis=1)
