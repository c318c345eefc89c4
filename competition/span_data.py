"""A span task's rows as the data give them: a context text column, condition columns (a sentiment, a
question) and the answer -- a substring of the context (``selected_text``), optionally with its character
offset (``span.start``, SQuAD's ``answer_start``); an empty answer is a row without one. Every bad row is
refused by id and column with the fix, before anything is written. :func:`infer` is what ``comp init``
recognises.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.spans import answers
from competition.token_data import _problems


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def read_units(spec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """``frame`` with its context column as strings (kept exactly: leading and doubled spaces are part of
    the text) and its condition columns as strings; an empty context refused by id. A copy."""
    column, ids = spec.text[0], frame[spec.id_column].tolist()
    frame = frame.copy()
    frame[column] = [_text(v) for v in frame[column]]
    for c in spec.span.condition:
        frame[c] = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in frame[c]]
    empty = [i for i, v in zip(ids, frame[column]) if not v]
    if empty:
        raise InputError(_problems(where, column, [f"row id {i}: empty text; drop the row or give its {column}"
                                                   for i in empty]))
    return frame


def read_targets(spec, frame: pd.DataFrame, where: str) -> tuple[np.ndarray, list, list[str]]:
    """Every train row's :class:`~competition.spans.Answer` (an object array), no labels, warning lines.

    The answer's offset is ``span.start``'s value when the spec names that column, else where the answer
    first occurs in the text. Refused by id: an answer that is not in its text, an offset outside the text
    or one where the text does not hold the answer.
    """
    column, ids = spec.targets[0], frame[spec.id_column].tolist()
    texts, values = frame[spec.text[0]].tolist(), [_text(v) for v in frame[column]]
    offsets = frame[spec.span.start].tolist() if spec.span.start else [None] * len(frame)
    starts, problems, empty = [], [], 0
    for i, (text, answer, offset) in enumerate(zip(texts, values, offsets)):
        if not answer:
            starts.append(0)
            empty += 1
            continue
        if offset is not None and not (isinstance(offset, float) and np.isnan(offset)):
            try:
                at = int(offset)
            except (TypeError, ValueError):
                problems.append(f"row id {ids[i]}: {spec.span.start} {offset!r} is not a character offset")
                continue
            if not 0 <= at <= len(text) - len(answer):
                problems.append(f"row id {ids[i]}: {spec.span.start} {at} with an answer of {len(answer)} characters "
                                f"lies outside its text of {len(text)} characters; fix the offset")
            elif text[at:at + len(answer)] != answer:
                problems.append(f"row id {ids[i]}: the text at {spec.span.start} {at} is "
                                f"{text[at:at + len(answer)][:40]!r}, not the answer {answer[:40]!r}; fix the offset")
            else:
                starts.append(at)
                continue
            continue
        at = text.find(answer)
        if at < 0:
            problems.append(f"row id {ids[i]}: {answer[:40]!r} is not a substring of its {spec.text[0]} "
                            f"{text[:60]!r}; fix the answer (exactly as the text has it) or drop the row")
            continue
        starts.append(at)
    if problems:
        raise InputError(_problems(where, column, problems))
    notes = [f"{where}: {empty} row(s) have an empty {column!r}: read as rows without an answer"] if empty else []
    return answers(texts, starts, [s + len(a) for s, a in zip(starts, values)]), [], notes


def conditions(spec, frame: pd.DataFrame) -> list[str]:
    """Each row's condition as models read it: its ``span.condition`` columns joined by a space ('' without
    any)."""
    columns = spec.span.condition
    if not columns:
        return [""] * len(frame)
    return [" ".join(str(v) for v in values) for values in zip(*(frame[c].tolist() for c in columns))]


def units_of(spec, frame: pd.DataFrame) -> list[int]:
    """How many characters each row's context has (a span row's units)."""
    return [len(v) for v in frame[spec.text[0]]]


def infer(frame: pd.DataFrame, target: str, candidates: list[str]) -> dict | None:
    """A span shape recognised in ``frame`` (what ``comp init`` writes), or None: ``target`` a substring of
    one text column in every row that has it (the context), and it is not that column in every row. The
    other text-like columns with few distinct values or shorter than the context become conditions.

    >>> f = pd.DataFrame({"text": ["so sad today", "what a day", "fine"], "sentiment": ["negative", "neutral",
    ...                   "neutral"], "selected_text": ["sad", "what a day", "fine"]})
    >>> infer(f, "selected_text", ["text", "sentiment"])["span"]
    {'condition': ['sentiment']}
    """
    answer = frame[target]
    if not answer.map(lambda v: isinstance(v, str) or v is None or (isinstance(v, float) and np.isnan(v))).all():
        return None
    present = answer.map(lambda v: isinstance(v, str) and bool(v))
    if present.sum() == 0:
        return None
    for column in candidates:
        texts = frame[column]
        if column == target or not texts.map(lambda v: isinstance(v, str)).all():
            continue
        inside = [a in t for a, t in zip(answer[present], texts[present])]
        same = (answer[present] == texts[present]).all()
        if all(inside) and not same:
            conditions = [c for c in candidates if c not in (column, target)
                          and frame[c].map(lambda v: isinstance(v, str)).all()]
            return {"task": "span", "text": [column], "labels": None, "span": {"condition": conditions},
                    "note": f"task: span (column {target!r} is a substring of {column!r} in every row; "
                            f"conditions: {', '.join(conditions) or 'none'})"}
    return None
