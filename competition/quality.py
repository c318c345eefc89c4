"""Sentences about data that is usable but degraded: texts repeated with conflicting labels,
mojibake, empty texts, test texts or ids also in train, classes rarer than the folds. They
become :class:`~competition.errors.DataWarning` notes in ``Dataset.warnings``
(:func:`competition.data.load`); ``comp check`` shows them in full."""

from __future__ import annotations

import numpy as np
import pandas as pd

from competition.spec import Spec
from competition.tables import positions, strings

_MOJIBAKE = r"[\x80-\x9f]|Ã[\x80-\xbf]|â€"  # C1 controls, UTF-8 read as cp1252/latin-1


def examples(values, k: int = 5) -> str:
    """Up to ``k`` of ``values`` quoted for a message, "..." when there are more."""
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in list(values)[:k])
    return shown + (", ..." if len(values) > k else "")


def first_ids(frame: pd.DataFrame, spec: Spec, mask) -> str:
    """The ids of the first rows of ``frame`` where ``mask`` holds, quoted for a message."""
    return examples(frame.loc[np.asarray(mask), spec.id_column].to_numpy())


def _short(texts, k: int = 2, width: int = 50) -> str:
    return ", ".join(repr(t if len(t) <= width else t[:width] + "...") for t in list(texts)[:k])


def main_text(spec: Spec, train: pd.DataFrame) -> str:
    """The text column duplicates are judged on: the longest on average."""
    return max(spec.text, key=lambda c: strings(train[c]).str.len().mean())


PAIR_JOIN = " | "     # how a text pair is shown (and compared) as one input


def _inputs(spec: Spec, frame: pd.DataFrame) -> pd.Series:
    """What duplicates are judged on: the text pair where the spec reads one (one side repeating is
    normal for pair data), else the main text column."""
    if spec.text_pair:
        first, second = (strings(frame[c]) for c in spec.text_pair)
        return (first + PAIR_JOIN + second).where(frame[spec.text_pair[0]].notna() | frame[spec.text_pair[1]].notna())
    return frame[main_text(spec, frame)]


def data_warnings(spec: Spec, train: pd.DataFrame, test: pd.DataFrame | None, y: np.ndarray,
                  labels: list | None) -> list[str]:
    """Sentences about degraded input: conflicting duplicates, mojibake, empty texts, rare classes."""
    notes = []
    if spec.text:
        main = main_text(spec, train)
        text = _inputs(spec, train)
        what = f"pair(s) of {spec.text_pair}" if spec.text_pair else f"text(s) in column {main!r}"
        if spec.task != "regression":
            key = pd.Series([row.tobytes() for row in y] if y.ndim == 2 else y, index=train.index)
            dup = text.notna() & text.duplicated(keep=False)
            n_targets = key[dup].groupby(text[dup]).nunique()
            conflict = n_targets.index[n_targets > 1]
            if len(conflict):
                notes.append(f"{spec.train}: {len(conflict)} {what} repeat with different "
                             f"targets ({text[dup].nunique()} repeated in all), e.g. {_short(conflict)}; "
                             "one input with two answers: fix or drop them if the labels are noise.")
        for file, frame in ((spec.train, train), (spec.test, test)):
            if frame is None:
                continue
            values = [strings(frame[column]) for column in spec.text]
            blank = np.logical_and.reduce([(v.str.strip() == "").to_numpy() for v in values])
            odd = np.logical_or.reduce([v.str.contains(_MOJIBAKE).to_numpy() for v in values])
            if blank.any():
                notes.append(f"{file}: {int(blank.sum())} row(s) have no text in {spec.text}, first at "
                             f"{spec.id_column} {first_ids(frame, spec, blank)}; their input is empty.")
            if odd.any():
                notes.append(f"{file}: {int(odd.sum())} row(s) hold mojibake such as '\\x89Û_', 'Ã©' or "
                             "'\\x92' (text decoded with the wrong encoding upstream); ftfy can repair it.")
        if test is not None and all(c in test.columns for c in (spec.text_pair or [main])):
            shared = int(strings(_inputs(spec, test)).isin(strings(text).unique()).sum())
            if shared:
                notes.append(f"{spec.test}: {shared} {what} also appear in train, where their labels are known.")
    if test is not None and spec.id is not None:
        same = positions(test[spec.id_column], train[spec.id_column]) >= 0   # 7 and "7" are one id
        if same.any():
            notes.append(f"{spec.test}: {int(same.sum())} of {len(test)} test id(s) are also train ids "
                         f"(e.g. {first_ids(test, spec, same)}): the test file may be the train file, or "
                         "the ids are row numbers; check `test:` in competition.yaml.")
    if spec.task in ("multiclass", "multilabel"):
        counts = y.sum(axis=0) if y.ndim == 2 else np.bincount(y, minlength=len(labels))
        rare = [(label, int(c)) for label, c in zip(labels, counts) if c < spec.folds.n_splits]
        if rare:
            notes.append(f"{spec.train}: {len(rare)} class(es) have fewer rows than the {spec.folds.n_splits} "
                         f"folds ({examples(rare)}); some validation folds will lack them.")
    return notes
