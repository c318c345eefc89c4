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

Alignment of units with a model's sub-tokens (the fast tokenizer's offset mapping) lives here too,
so every family labels and reads back units the same way.
"""

from __future__ import annotations

import ast
import json
from collections import Counter

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.predictions import rows

TAG_SCHEMES = ("iob2", "iob1", "bioes", "io")
O_BIASES = tuple(np.round(np.arange(-2.0, 3.01, 0.25), 2))   # the decoder's grid, in log-probability units


# -- the tag list -----------------------------------------------------------------------------

def tag_list(types: list[str]) -> list[str]:
    """Every IOB2 tag of these entity types, in code order.

    >>> tag_list(["loc", "per"])
    ['O', 'B-loc', 'I-loc', 'B-per', 'I-per']
    """
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in "BI"]


def n_types(n_tags: int) -> int:
    return (n_tags - 1) // 2


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
    scores = [(entity_f1(y_true, decode(y_pred, b)), -abs(b), b) for b in O_BIASES]
    return float(max(scores)[2])


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
    (NaN past the row's ends: LightGBM's missing value), then the unit's position, the row's length
    and the relative position. ``inputs``: one ragged prediction per input run.

    >>> a = rows([np.array([[0.9, 0.1], [0.2, 0.8]])])
    >>> unit_features([a], window=1).astype(float).round(2).tolist()
    [[0.9, 0.1, nan, nan, 0.2, 0.8, 0.0, 2.0, 0.0], [0.2, 0.8, 0.9, 0.1, nan, nan, 1.0, 2.0, 1.0]]
    """
    lengths = np.array([len(p) for p in inputs[0]])
    position = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0)
    size = np.repeat(lengths, lengths)
    blocks = []
    for pred in inputs:
        flat = np.concatenate(list(pred)).astype(np.float32)                 # (units, k)
        blocks.append(flat)
        for d in range(1, window + 1):
            for shift in (-d, d):
                moved = np.full_like(flat, np.nan)
                inside = (position + shift >= 0) & (position + shift < size)
                at = np.flatnonzero(inside)
                moved[at] = flat[at + shift]
                blocks.append(moved)
    own = np.stack([position, size, position / np.maximum(size - 1, 1)], axis=1).astype(np.float32)
    return np.hstack(blocks + [own])


# -- reading ----------------------------------------------------------------------------------

def parse_list(value, row_id, column: str, where: str) -> list:
    """A cell holding a JSON list (``["EU", "rejects"]``), or a Python one as pandas writes a column of
    lists (``['EU', 'rejects']``); InputError naming the row otherwise.

    >>> parse_list("['EU', 'rejects']", 1, "tokens", "train.csv")
    ['EU', 'rejects']
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
    if not isinstance(parsed, list):
        raise InputError(f"{where}: row id {row_id}, column {column!r}: expected a JSON list such as "
                         f"[\"EU\", \"rejects\"], got {str(value)[:60]!r}. Write every cell of {column!r} as a "
                         "JSON list.")
    return parsed


def read_conll(path) -> tuple[list[list[str]], list[list[str]] | None]:
    """A CoNLL file: ``token<TAB>tag`` lines (or ``token`` alone for unlabelled rows), a blank line
    between sentences. Returns the sentences' tokens and tags (None when no line has a tag)."""
    tokens, tags, row_t, row_g, tagged = [], [], [], [], False
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                if row_t:
                    tokens.append(row_t), tags.append(row_g)
                    row_t, row_g = [], []
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            row_t.append(parts[0])
            if len(parts) > 1:
                row_g.append(parts[-1])
                tagged = True
            elif tagged:
                raise InputError(f"{path}: line {number} holds a token without a tag ({line[:40]!r}); every "
                                 "line of a labelled CoNLL file is `token<TAB>tag`")
    if row_t:
        tokens.append(row_t), tags.append(row_g)
    return tokens, (tags if tagged else None)


def check_rows(ids, tokens: list[list[str]], tags: list[list[str]], scheme: str, invalid: str,
               types: list[str] | None, where: str, column: str) -> tuple[list[list[str]], list[str], list[str]]:
    """Every row's tags checked and converted to IOB2: counts equal to the tokens', tags of known
    types, ``I-`` continuing nothing repaired (``invalid: repair``, one warning line) or refused.

    Returns the IOB2 tags, the entity types (``types`` or those found, sorted) and warning lines.

    Raises:
        InputError: naming the first bad rows by id, the column and the fix.
    """
    problems, notes = [], []
    if scheme not in TAG_SCHEMES:
        raise InputError(f"tokens.scheme {scheme!r}: choose one of {', '.join(TAG_SCHEMES)}")
    for i, (t, g) in enumerate(zip(tokens, tags)):
        if len(t) == 0:
            problems.append(f"row id {ids[i]}: no tokens (an empty row); drop it or give its tokens")
        elif len(t) != len(g):
            problems.append(f"row id {ids[i]}: {len(g)} tags for {len(t)} tokens; give one tag per token")
        elif any(not isinstance(x, str) for x in [*t, *g]):
            problems.append(f"row id {ids[i]}: tokens and tags must be strings")
    if problems:
        raise InputError(_problems(where, column, problems))
    allowed_prefixes = {"iob2": "BI", "iob1": "BI", "bioes": "BIES", "io": "I"}[scheme] + "O"
    found = Counter()
    for i, g in enumerate(tags):
        for tag in g:
            prefix, kind = split_tag(tag)
            if prefix not in allowed_prefixes:
                problems.append(f"row id {ids[i]}: tag {tag!r} is not a {scheme.upper()} tag; set tokens.scheme to "
                                "the scheme your tags use (iob2, iob1, bioes, io)")
                break
            if kind is not None:
                found[kind] += 1
    unknown = sorted(set(found) - set(types)) if types is not None else []
    if unknown:
        raise InputError(f"{where}: column {column!r}: tag type(s) {unknown} are not in `labels: {types}`; add "
                         "them to labels in competition.yaml or fix the rows")
    if problems:
        raise InputError(_problems(where, column, problems))
    out, repaired = [], []
    for i, g in enumerate(tags):
        g = to_iob2(g, scheme)
        bad = invalid_positions(g)
        if bad:
            repaired.append(ids[i])
            if invalid == "refuse":
                problems.append(f"row id {ids[i]}: {g[bad[0]]!r} at token {bad[0]} continues no entity "
                                f"(after {g[bad[0] - 1] if bad[0] else 'the start'!r})")
                continue
            g = repair(g)
        out.append(g)
    if problems:
        raise InputError(_problems(where, column, problems) + " Fix the rows, or set tokens.invalid: repair "
                         "(an I- that continues nothing begins an entity)")
    if repaired:
        notes.append(f"{where}: {len(repaired)} row(s) had an I- tag that continues no entity, read as B- "
                     f"(tokens.invalid: repair); e.g. row id {repaired[0]}")
    return out, (list(types) if types is not None else sorted(found)), notes


def check_spans(ids, texts: list[str], spans: list[list], types: list[str] | None, where: str, column: str
                ) -> tuple[list[list[tuple[int, int, str]]], list[str]]:
    """Character spans ``[[start, end, label], ...]`` of each text checked: inside the text, not
    empty, not overlapping, texts not empty. Returns the sorted spans and the entity types."""
    problems, out, found = [], [], set()
    for i, (text, row) in enumerate(zip(texts, spans)):
        if not isinstance(text, str) or not text:
            problems.append(f"row id {ids[i]}: empty text")
            continue
        clean = []
        for span in row:
            if not (isinstance(span, (list, tuple)) and len(span) == 3 and all(isinstance(x, int) for x in span[:2])):
                problems.append(f"row id {ids[i]}: span {span!r} is not [start, end, label]")
                break
            start, end, label = span
            if not 0 <= start < end <= len(text):
                problems.append(f"row id {ids[i]}: span {span!r} lies outside its text of {len(text)} "
                                "characters (0 <= start < end <= length)")
                break
            clean.append((start, end, str(label)))
        else:
            clean.sort()
            overlap = [(a, b) for a, b in zip(clean, clean[1:]) if b[0] < a[1]]
            if overlap:
                problems.append(f"row id {ids[i]}: spans {list(overlap[0][0])} and {list(overlap[0][1])} overlap; "
                                "a character belongs to one entity at most")
            found.update(s[2] for s in clean)
            out.append(clean)
    if problems:
        raise InputError(_problems(where, column, problems))
    unknown = sorted(found - set(types)) if types is not None else []
    if unknown:
        raise InputError(f"{where}: column {column!r}: span label(s) {unknown} are not in `labels: {types}`; add "
                         "them to labels in competition.yaml or fix the rows")
    return out, (list(types) if types is not None else sorted(found))


def spans_to_tags(text: str, spans: list[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags of the characters of ``text`` from its entity spans.

    >>> spans_to_tags("New York is big", [(0, 8, "loc")])[:9]
    ['B-loc', 'I-loc', 'I-loc', 'I-loc', 'I-loc', 'I-loc', 'I-loc', 'I-loc', 'O']
    """
    tags = ["O"] * len(text)
    for start, end, label in spans:
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags


def _problems(where: str, column: str, problems: list[str]) -> str:
    shown = "\n  - ".join(problems[:5])
    more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
    return f"{where}: column {column!r}: {len(problems)} bad row(s), nothing written:\n  - {shown}{more}\n"


# -- a spec's rows -----------------------------------------------------------------------------

def conll_frame(path, id_column: str, text: str, target: str) -> pd.DataFrame:
    """A CoNLL file as a frame: ids numbered 0..n-1 in file order, the sentences' token lists in
    ``text`` and, when tagged, their tag lists in ``target``."""
    tokens, tags = read_conll(path)
    frame = pd.DataFrame({id_column: np.arange(len(tokens), dtype=np.int64), text: tokens})
    if tags is not None:
        frame[target] = tags
    return frame


def read_units(spec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """``frame`` with its text column parsed: token lists (``unit: token``, JSON cells) or texts
    (``unit: char``), each non-empty; InputError naming the row otherwise. A copy."""
    column, ids = spec.text[0], frame[spec.id_column].tolist()
    frame = frame.copy()
    if spec.tokens.unit == "token":
        frame[column] = [parse_list(v, i, column, where) for v, i in zip(frame[column], ids)]
        empty = [i for i, v in zip(ids, frame[column]) if not v]
        what = "no tokens"
    else:
        frame[column] = [v if isinstance(v, str) else "" for v in frame[column]]
        empty = [i for i, v in zip(ids, frame[column]) if not v]
        what = "empty text"
    if empty:
        raise InputError(_problems(where, column, [f"row id {i}: {what}; drop the row or give its {column}"
                                                   for i in empty]))
    return frame


def read_targets(spec, frame: pd.DataFrame, where: str) -> tuple[np.ndarray, list[str], list[str]]:
    """The tag codes of every train row (an object array of int arrays, one code per unit), the
    tag list and warning lines; every bad row refused (:func:`check_rows`, :func:`check_spans`)."""
    column, ids = spec.targets[0], frame[spec.id_column].tolist()
    cells = [parse_list(v, i, column, where) for v, i in zip(frame[column], ids)]
    texts = frame[spec.text[0]].tolist()
    if spec.tokens.unit == "token":
        tags, types, notes = check_rows(ids, texts, cells, spec.tokens.scheme, spec.tokens.invalid,
                                        list(spec.labels), where, column)
    else:
        spans, types = check_spans(ids, texts, cells, list(spec.labels), where, column)
        tags, notes = [spans_to_tags(t, s) for t, s in zip(texts, spans)], []
    code = {tag: c for c, tag in enumerate(tag_list(types))}
    return rows([np.array([code[t] for t in row], dtype=np.int64) for row in tags]), tag_list(types), notes


def units_of(spec, frame: pd.DataFrame) -> list[int]:
    """How many units each row of a parsed frame has (its tokens, or its characters)."""
    return [len(v) for v in frame[spec.text[0]]]


def tags_of(codes, tags: list[str]) -> list[list[str]]:
    """Tag codes -> tag strings, row by row."""
    return [[tags[int(c)] for c in row] for row in codes]


def spans_of(codes, types: list[str]) -> list[list]:
    """Character spans ``[start, end, type]`` of a character-unit row's entities, in text order.

    >>> spans_of([1, 2, 0, 3], ["loc", "per"])
    [[0, 2, 'loc'], [3, 4, 'per']]
    """
    return [[s, e, types[k]] for k, s, e in sorted(entities(codes), key=lambda x: x[1])]


def _json_lists(values, limit: int = 200) -> list | None:
    """The first ``limit`` non-empty cells parsed as JSON lists, or None when any is not one."""
    out = []
    for v in values.dropna().head(limit):
        try:
            parsed = json.loads(v) if isinstance(v, str) else v
        except json.JSONDecodeError:
            return None
        if not isinstance(parsed, list):
            return None
        out.append(parsed)
    return out or None


def infer(frame: pd.DataFrame, target: str, candidates: list[str]) -> dict | None:
    """A token-level shape recognised in ``frame`` (what ``comp init`` writes), or None.

    ``target`` holding JSON lists of tags beside a column of JSON token lists of the same lengths:
    ``unit: token`` with that column as the text, the tag scheme read off the prefixes. ``target``
    holding JSON lists of ``[start, end, label]`` spans beside a text column they fit in: ``unit: char``.
    Returns the spec fields (task, text, labels, tokens) and a note on what was seen.

    >>> f = pd.DataFrame({"toks": ['["EU", "rejects"]'], "tags": ['["S-org", "O"]']})
    >>> infer(f, "tags", ["toks"])["tokens"]
    {'unit': 'token', 'scheme': 'bioes'}
    """
    cells = _json_lists(frame[target])
    if cells is None:
        return None
    flat = [x for row in cells for x in row]
    if all(isinstance(x, str) for x in flat):
        for column in candidates:
            units = _json_lists(frame[column], len(cells))
            if units is not None and len(units) == len(cells) and all(len(a) == len(b) for a, b in zip(units, cells)):
                break
        else:
            return None
        every = [split_tag(t) for row in frame[target].dropna() for t in (json.loads(row) if isinstance(row, str)
                                                                         else row)]
        prefixes = {p for p, _ in every}
        bare = any(t != "O" and not (len(t) > 2 and t[1] in "-_") for row in cells for t in row)
        if prefixes & set("ESLU"):
            scheme = "bioes"
        elif bare:
            scheme = "io"
        elif "B" not in prefixes or any(invalid_positions(row) for row in cells):
            scheme = "iob1"        # an I- begins an entity: B- only between two of one type
        else:
            scheme = "iob2"
        types = sorted({k for _, k in every if k is not None})
        return {"task": "tokens", "text": [column], "labels": types, "tokens": {"unit": "token", "scheme": scheme},
                "note": f"task: tokens (column {target!r} holds a tag per token of {column!r}; scheme {scheme})"}
    spans = all(isinstance(x, list) and len(x) == 3 and isinstance(x[0], int) and isinstance(x[1], int) for x in flat)
    if spans:
        texts = [c for c in candidates if frame[c].map(lambda v: isinstance(v, str)).all()]
        if texts:
            column = max(texts, key=lambda c: frame[c].str.len().mean())
            types = sorted({str(x[2]) for x in flat})
            return {"task": "tokens", "text": [column], "labels": types, "tokens": {"unit": "char"},
                    "note": f"task: tokens (column {target!r} holds character spans [start, end, label] of "
                            f"{column!r})"}
    return None


# -- alignment with a model's sub-tokens --------------------------------------------------------

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


def char_spans(text: str) -> np.ndarray:
    """Each character as a unit: ``(len(text), 2)`` spans."""
    at = np.arange(len(text), dtype=np.int64)
    return np.stack([at, at + 1], axis=1)


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
