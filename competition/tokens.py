"""Token-level tasks: tags inside a text (NER), the data shape, the decoder and the metric.

A row of a ``task: tokens`` competition is a sequence of *units* -- the competition's own tokens
when the data come tokenised, the characters of the text otherwise -- with one tag per unit. Tags
are read in IOB2, IOB1, BIOES or IO and converted once, on read, to IOB2 over the *tag list*
``["O", "B-<type1>", "I-<type1>", "B-<type2>", ...]`` (types in the spec's ``labels`` order), so
a tag's code says what it is: 0 is O, ``1 + 2t`` begins type ``t``, ``2 + 2t`` continues it.

A row's prediction is a float array ``(units, len(tag list))``: the probability of each tag at each
unit (the format of :mod:`competition.predictions`). Folds, seeds and models average these arrays;
:func:`decode` turns them into tags that are always valid IOB2 (Viterbi over the allowed
transitions), with one setting -- ``o_bias``, added to every unit's log P(O) -- chosen on OOF
without the scored fold as a threshold is (:mod:`competition.thresholds`).

The metric is entity-level F1 as ``seqeval`` scores it in strict IOB2 mode: an entity is a ``B-t``
followed by its ``I-t``; a predicted entity counts when its type, start and end all match.

Reading and checking a competition's rows is :mod:`competition.token_data`; aligning units with a
model's sub-tokens is :mod:`competition.align`.
"""

from __future__ import annotations

import numpy as np

from competition.errors import InputError
from competition.predictions import rows

O_BIASES = tuple(np.round(np.arange(-2.0, 3.01, 0.25), 2))   # the decoder's grid, in log-probability units


# -- the tag list -----------------------------------------------------------------------------

def tag_list(types: list[str]) -> list[str]:
    """Every IOB2 tag of these entity types, in code order.

    >>> tag_list(["loc", "per"])
    ['O', 'B-loc', 'I-loc', 'B-per', 'I-per']
    """
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in "BI"]


def split_tag(tag: str) -> tuple[str, str | None]:
    """(prefix, type) of a tag: ``'B-loc'`` -> ``('B', 'loc')``, ``'O'`` -> ``('O', None)``; IO data
    may give a bare type (``'loc'``), read as ``('I', 'loc')``."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIESLU":
        return tag[0], tag[2:]
    return "I", tag


def to_iob2(tags: list[str], scheme: str) -> list[str]:
    """One row's tags in IOB2.

    >>> to_iob2(["I-loc", "I-loc", "B-loc", "O", "I-per"], "iob1")
    ['B-loc', 'I-loc', 'B-loc', 'O', 'B-per']
    >>> to_iob2(["S-loc", "B-per", "E-per", "O"], "bioes")
    ['B-loc', 'B-per', 'I-per', 'O']
    >>> to_iob2(["loc", "loc", "O", "per"], "io")
    ['B-loc', 'I-loc', 'O', 'B-per']
    """
    out, previous = [], None
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "O":
            out.append("O")
        elif scheme == "iob2":
            out.append(f"{prefix}-{kind}")
        elif scheme == "bioes":
            out.append(f"{'B' if prefix in 'BSU' else 'I'}-{kind}")
        else:   # iob1 and io: an I begins an entity unless it continues one of its type
            begins = prefix == "B" or previous != kind
            out.append(f"{'B' if begins else 'I'}-{kind}")
        previous = kind
    return out


def invalid_positions(tags: list[str]) -> list[int]:
    """Positions of IOB2 ``I-t`` tags that continue nothing (after O, at the start, after another type).

    >>> invalid_positions(["O", "I-loc", "B-per", "I-loc", "B-loc", "I-loc"])
    [1, 3]
    """
    bad, previous = [], None
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == "I" and previous != kind:
            bad.append(i)
        previous = kind
    return bad


def repair(tags: list[str]) -> list[str]:
    """IOB2 tags with every ``I-t`` that continues nothing turned into ``B-t`` (what IOB1 reading does).

    >>> repair(["O", "I-loc", "I-loc", "B-per", "I-loc"])
    ['O', 'B-loc', 'I-loc', 'B-per', 'B-loc']
    """
    return to_iob2(tags, "iob1")


# -- entities and the metric ------------------------------------------------------------------

def entities(codes) -> set[tuple[int, int, int]]:
    """The entities of one row's tag codes: ``(type, start, end)``, end exclusive; strict IOB2 (an
    entity starts at a B; an I that continues nothing is no entity, as ``seqeval`` strict mode reads it).

    >>> sorted(entities([0, 1, 2, 2, 0, 3, 1, 4, 2]))      # O B-a I-a I-a O B-b B-a I-b I-a
    [(0, 1, 4), (0, 6, 7), (1, 5, 6)]
    """
    found, start, kind = set(), None, None
    for i, c in enumerate(list(codes) + [0]):
        c = int(c)
        continues = c > 0 and c % 2 == 0 and start is not None and (c - 2) // 2 == kind
        if continues:
            continue
        if start is not None:
            found.add((kind, start, i))
            start = None
        if c > 0 and c % 2 == 1:
            start, kind = i, (c - 1) // 2
    return found


def _counts(y_true, y_pred, n: int) -> np.ndarray:
    """Per type: (true positives, predicted, true) entity counts over rows."""
    out = np.zeros((n, 3), dtype=np.int64)
    for truth, guess in zip(y_true, y_pred):
        t, p = entities(truth), entities(guess)
        for kind, *_ in t & p:
            out[kind, 0] += 1
        for kind, *_ in p:
            out[kind, 1] += 1
        for kind, *_ in t:
            out[kind, 2] += 1
    return out


def _f1(tp: float, predicted: float, true: float) -> float:
    return 0.0 if predicted + true == 0 else float(2.0 * tp / (predicted + true))


def entity_f1(y_true, y_pred) -> float:
    """Micro entity F1 over rows of tag codes (exact type, start and end), as seqeval's strict IOB2.

    >>> entity_f1([[1, 2, 0, 3]], [[1, 2, 0, 1]])      # one of two entities found, one wrong
    0.5
    """
    n = 1 + max([int(max(r, default=0)) for r in [*y_true, *y_pred]], default=0) // 2
    tp, predicted, true = _counts(y_true, y_pred, n).sum(axis=0)
    return _f1(tp, predicted, true)


def row_counts(y_true, y_pred) -> np.ndarray:
    """Per row: (true positives, predicted, true) entities, ``(n, 3)``; entity F1 over any rows (or
    a bootstrap draw's weights of them) is ``2 tp / (predicted + true)`` of their sums."""
    out = np.zeros((len(y_true), 3))
    for i, (truth, guess) in enumerate(zip(y_true, y_pred)):
        t, p = entities(truth), entities(guess)
        out[i] = len(t & p), len(p), len(t)
    return out


def per_type_f1(y_true, y_pred, types: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each entity type."""
    out = {}
    for kind, (tp, predicted, true) in zip(types, _counts(y_true, y_pred, len(types))):
        out[kind] = {"precision": tp / predicted if predicted else 0.0, "recall": tp / true if true else 0.0,
                     "f1": _f1(tp, predicted, true), "support": int(true)}
    return out


# -- decoding ---------------------------------------------------------------------------------

def allowed(n_tags: int) -> tuple[np.ndarray, np.ndarray]:
    """IOB2's allowed starts ``(L,)`` and transitions ``(L, L)`` (from, to): an ``I-t`` only after
    ``B-t`` or ``I-t``."""
    start = np.ones(n_tags, dtype=bool)
    trans = np.ones((n_tags, n_tags), dtype=bool)
    for c in range(2, n_tags, 2):                  # I-t
        start[c] = False
        trans[:, c] = False
        trans[c - 1, c] = trans[c, c] = True
    return start, trans


def viterbi(probs: np.ndarray, o_bias: float = 0.0) -> np.ndarray:
    """The most probable valid IOB2 tag codes of one row's ``(units, L)`` tag probabilities, with
    ``o_bias`` added to every unit's log P(O) (below 0 finds more entities).

    >>> p = np.array([[0.1, 0.2, 0.7], [0.1, 0.2, 0.7]])   # I-t wins at both units
    >>> viterbi(p).tolist()                                 # valid: the entity must begin with B
    [1, 2]
    """
    n, L = probs.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    logp = np.log(np.clip(probs, 1e-12, None))
    logp[:, 0] += o_bias
    start, trans = allowed(L)
    penalty = np.where(trans, 0.0, -np.inf)
    score = np.where(start, logp[0], -np.inf)
    back = np.zeros((n, L), dtype=np.int64)
    for i in range(1, n):
        candidates = score[:, None] + penalty          # (from, to)
        back[i] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + logp[i]
    path = np.zeros(n, dtype=np.int64)
    path[-1] = int(score.argmax())
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def decode(probs, o_bias: float = 0.0, batch: int = 512) -> np.ndarray:
    """Tag codes of every row (an object array of int arrays): :func:`viterbi` on batches of rows
    padded to their longest (a pad unit is O for sure, which never changes the best path before it,
    since any tag may be followed by O)."""
    out = np.empty(len(probs), dtype=object)
    if len(probs) == 0:
        return out
    lengths = np.array([len(p) for p in probs])
    order = np.argsort(lengths, kind="stable")
    L = np.shape(probs[order[-1]])[1] if lengths.max() else 1
    start, trans = allowed(L)
    penalty = np.where(trans, 0.0, -np.inf)
    for at in range(0, len(order), batch):
        chosen = order[at:at + batch]
        n = int(lengths[chosen].max())
        logp = np.full((len(chosen), max(n, 1), L), -np.inf)
        logp[:, :, 0] = 0.0
        for r, i in enumerate(chosen):
            if lengths[i]:
                logp[r, :lengths[i]] = np.log(np.clip(np.asarray(probs[i], dtype=float), 1e-12, None))
        logp[:, :, 0] += o_bias
        score = np.where(start, logp[:, 0], -np.inf)                      # (rows, L)
        back = np.zeros((len(chosen), max(n, 1), L), dtype=np.int64)
        for t in range(1, n):
            candidates = score[:, :, None] + penalty                     # (rows, from, to)
            back[:, t] = candidates.argmax(axis=1)
            score = candidates.max(axis=1) + logp[:, t]
        path = np.zeros((len(chosen), max(n, 1)), dtype=np.int64)
        path[:, -1] = score.argmax(axis=1)
        for t in range(n - 1, 0, -1):
            path[:, t - 1] = np.take_along_axis(back[:, t], path[:, t:t + 1], axis=1)[:, 0]
        for r, i in enumerate(chosen):
            out[i] = path[r, :lengths[i]]
    return out


def best_bias(y_true, y_pred) -> float:
    """The ``o_bias`` of :data:`O_BIASES` with the best entity F1 on these rows (ties: nearest 0)."""
    tp, predicted, true = _bias_counts(y_true, y_pred).sum(axis=0).T          # each (biases,)
    f1 = np.divide(2 * tp, predicted + true, out=np.zeros_like(tp), where=predicted + true > 0)
    return float(max(zip(f1, [-abs(b) for b in O_BIASES], O_BIASES))[2])


# Rows decoded at every bias of the grid, by the identity of their arrays: the nested choice of a run's
# CV asks again about the same rows fold after fold (and the leaderboard about every run), so each row
# is decoded once per process. The entries hold the arrays, so an id is never reused while cached.
_DECODED: dict[tuple[int, int], tuple[object, object, np.ndarray]] = {}
_DECODED_LIMIT = 1_000_000


def _bias_counts(y_true, y_pred) -> np.ndarray:
    """(rows, biases, 3): each row's entity counts (:func:`row_counts`) decoded at every O bias."""
    out = np.empty((len(y_pred), len(O_BIASES), 3))
    todo = []
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        hit = _DECODED.get((id(t), id(p)))
        if hit is not None and hit[0] is t and hit[1] is p:
            out[i] = hit[2]
        else:
            todo.append(i)
    if todo:
        truth, probs = rows([y_true[i] for i in todo]), rows([y_pred[i] for i in todo])
        for b, bias in enumerate(O_BIASES):
            out[todo, b] = row_counts(truth, decode(probs, bias))
        if len(_DECODED) + len(todo) > _DECODED_LIMIT:
            _DECODED.clear()
        for i in todo:
            _DECODED[(id(y_true[i]), id(y_pred[i]))] = (y_true[i], y_pred[i], out[i])
    return out


def check_rows_predicted(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Tag codes and tag probabilities of the same rows, each row's units as many in both.

    Raises:
        InputError: another number of rows, or a row whose lengths differ (naming its position).
    """
    y_true, y_pred = rows(y_true), rows(y_pred)
    if len(y_true) != len(y_pred):
        raise InputError(f"token predictions: {len(y_pred)} rows for {len(y_true)} rows of tags")
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if np.ndim(p) != 2 or len(p) != len(t):
            raise InputError(f"token predictions: row {i} has {np.shape(p)} probabilities for {len(t)} units; "
                             "one row of tag probabilities per unit")
    return y_true, y_pred


# -- stacking units -----------------------------------------------------------------------------

def unit_features(inputs: list, window: int = 1) -> np.ndarray:
    """The level-2 matrix of a unit-level stack: one row per unit of every row (rows in order), the
    tag probabilities of every input at the unit and at its ``window`` neighbours on each side
    (NaN past the row's ends: LightGBM's missing value), the inputs' mean at the unit (a tree splits on
    one column at a time, so it cannot form the blend itself), then the unit's position, the row's
    length and the relative position. ``inputs``: one ragged prediction per input run.

    >>> a = rows([np.array([[0.9, 0.1], [0.2, 0.8]])])
    >>> unit_features([a], window=1).astype(float).round(2).tolist()
    [[0.9, 0.1, nan, nan, 0.2, 0.8, 0.9, 0.1, 0.0, 2.0, 0.0], [0.2, 0.8, 0.9, 0.1, nan, nan, 0.2, 0.8, 1.0, 2.0, 1.0]]
    """
    lengths = np.array([len(p) for p in inputs[0]])
    flats = [np.concatenate(list(pred)).astype(np.float32) for pred in inputs]      # (units, k) each
    position = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0)
    size = np.repeat(lengths, lengths)
    blocks = []
    for flat in flats:
        blocks.append(flat)
        for d in range(1, window + 1):
            for shift in (-d, d):
                moved = np.full_like(flat, np.nan)
                inside = (position + shift >= 0) & (position + shift < size)
                at = np.flatnonzero(inside)
                moved[at] = flat[at + shift]
                blocks.append(moved)
    own = np.stack([position, size, position / np.maximum(size - 1, 1)], axis=1).astype(np.float32)
    return np.hstack(blocks + [np.mean(flats, axis=0), own])


# -- decoded rows as the submission writes them ----------------------------------------------

def tags_of(codes, tags: list[str]) -> list[list[str]]:
    """Tag codes -> tag strings, row by row."""
    return [[tags[int(c)] for c in row] for row in codes]


def spans_of(codes, types: list[str]) -> list[list]:
    """Character spans ``[start, end, type]`` of a character-unit row's entities, in text order.

    >>> spans_of([1, 2, 0, 3], ["loc", "per"])
    [[0, 2, 'loc'], [3, 4, 'per']]
    """
    return [[s, e, types[k]] for k, s, e in sorted(entities(codes), key=lambda x: x[1])]
