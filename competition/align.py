"""Units and a model's sub-tokens, one place for every family: which sub-token reads which unit
(the fast tokenizer's offset mapping), what each sub-token is taught, how sub-token probabilities
come back as units, and how units of different tokenizers meet at the characters.
"""

from __future__ import annotations

import numpy as np


def join_tokens(tokens: list[str]) -> tuple[str, np.ndarray]:
    """The text a model reads for a tokenised row (tokens joined by one space) and each token's
    character span ``(units, 2)`` in it.

    >>> join_tokens(["EU", "rejects", "it"])
    ('EU rejects it', array([[ 0,  2],
           [ 3, 10],
           [11, 13]]))
    """
    spans, at = [], 0
    for token in tokens:
        spans.append((at, at + len(token)))
        at += len(token) + 1
    return " ".join(tokens), np.array(spans, dtype=np.int64).reshape(-1, 2)


def subtoken_units(offsets, spans: np.ndarray) -> np.ndarray:
    """For each sub-token (``offsets``: the fast tokenizer's ``(start, end)`` characters), the first
    unit it overlaps, or -1 (special tokens, empty offsets, whitespace only).

    >>> subtoken_units([(0, 0), (0, 2), (3, 6), (6, 10), (0, 0)], np.array([[0, 2], [3, 10]]))
    array([-1,  0,  1,  1, -1])
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    out = np.full(len(offsets), -1, dtype=np.int64)
    if len(spans) == 0:
        return out
    ends, starts = spans[:, 1], spans[:, 0]
    for j, (s, e) in enumerate(offsets):
        if e <= s:
            continue
        u = int(np.searchsorted(ends, s, side="right"))     # first unit ending after s
        if u < len(spans) and starts[u] < e:
            out[j] = u
    return out


def subtoken_labels(units: np.ndarray, codes, label_all: bool = False) -> np.ndarray:
    """Training labels of the sub-tokens: each unit's code at its first sub-token, -100 (ignored by the
    loss) elsewhere; ``label_all``: every sub-token of a unit, a B continuing as its I.

    >>> subtoken_labels(np.array([-1, 0, 1, 1, -1]), [0, 1]).tolist()
    [-100, 0, 1, -100, -100]
    >>> subtoken_labels(np.array([-1, 0, 1, 1, -1]), [0, 1], label_all=True).tolist()
    [-100, 0, 1, 2, -100]
    """
    out = np.full(len(units), -100, dtype=np.int64)
    previous = -1
    for j, u in enumerate(units):
        if u < 0:
            previous = -1
            continue
        c = int(codes[u])
        if u != previous:
            out[j] = c
        elif label_all:
            out[j] = c + 1 if c % 2 == 1 else c     # B-t continues as I-t
        previous = u
    return out


def to_units(probs: np.ndarray, units: np.ndarray, n_units: int, how: str = "first") -> np.ndarray:
    """Sub-token tag probabilities ``(subtokens, L)`` -> unit tag probabilities ``(n_units, L)``: a
    unit takes its first sub-token's (``how='first'``) or the mean of its sub-tokens' (``'mean'``);
    a unit no sub-token reached (cut off, or dropped by the tokenizer) is O with probability 1.
    Character units read sub-tokens through :func:`spread_to_chars` instead.
    """
    L = probs.shape[1]
    out = np.zeros((n_units, L), dtype=np.float64)
    counts = np.zeros(n_units, dtype=np.int64)
    for j, u in enumerate(units):
        if u < 0 or (how == "first" and counts[u]):
            continue
        out[u] += probs[j]
        counts[u] += 1
    reached = counts > 0
    out[reached] /= counts[reached, None]
    out[~reached, 0] = 1.0
    return out


def spread_to_chars(unit_probs: np.ndarray, spans: np.ndarray, n_chars: int) -> np.ndarray:
    """Unit tag probabilities ``(units, L)`` -> character tag probabilities ``(n_chars, L)``, so
    models with different tokenizers combine by averaging: a unit's first character takes the
    unit's probabilities, its other characters the same with the B mass moved to I (they continue
    what the first began). A character between two units (a space) continues an entity as far as
    the next unit does: its P(I-t) is the next unit's, the rest is O; before the first unit and
    after the last, O.

    >>> spread_to_chars(np.array([[0.2, 0.8, 0.0], [0.4, 0.1, 0.5]]), np.array([[0, 2], [3, 4]]), 5).round(2).tolist()
    [[0.2, 0.8, 0.0], [0.2, 0.0, 0.8], [0.5, 0.0, 0.5], [0.4, 0.1, 0.5], [1.0, 0.0, 0.0]]
    """
    L = unit_probs.shape[1]
    out = np.zeros((n_chars, L), dtype=np.float64)
    out[:, 0] = 1.0
    inside = unit_probs.copy()
    inside[:, 2::2] += inside[:, 1::2]
    inside[:, 1::2] = 0.0
    previous_end = None
    for u, (s, e) in enumerate(spans):
        if previous_end is not None and s > previous_end:      # the gap continues what unit u continues
            out[previous_end:s, 2::2] = unit_probs[u, 2::2]
            out[previous_end:s, 0] = 1.0 - unit_probs[u, 2::2].sum()
        out[s] = unit_probs[u]
        out[s + 1:e] = inside[u]
        previous_end = e
    return out
