"""A token task's rows as the data give them: token lists (JSON or Python literals in a CSV), CoNLL
files, or texts with character spans; each row checked and its tags read into IOB2 codes once
(:mod:`competition.tokens` says what the codes mean). Every bad row is refused by id and column with
the fix; nothing is written before the data passed. :func:`infer` is what ``comp init`` recognises.
"""

from __future__ import annotations

import ast
import json
from collections import Counter

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.predictions import rows
from competition.tokens import invalid_positions, repair, split_tag, tag_list, to_iob2

TAG_SCHEMES = ("iob2", "iob1", "bioes", "io")


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
