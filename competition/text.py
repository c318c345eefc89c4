"""The text a model reads, built in one place: the spec's text columns joined (or filled into
``text.template``), then ``text.clean``'s steps. Every text family, test-time augmentation and
adversarial validation read their rows through :func:`input_texts` or :func:`build_texts`.

A text *pair* (the spec's ``text_pair``: paraphrase, entailment, query-document) is read as two
texts, :class:`Pairs`, by every text family (:func:`model_inputs`): the encoders tokenise them
together (``[CLS] a [SEP] b [SEP]``), TF-IDF and frozen embeddings build features of each side and
of what the two share.
"""

from __future__ import annotations

import html
import re
import string
from dataclasses import dataclass

import pandas as pd

from competition.errors import InputError
from competition.tables import strings


def build_texts(frame: pd.DataFrame, columns: list[str], template: str | None = None, sep: str = " | ",
                drop: tuple[str, ...] = ()) -> list[str]:
    """The input text of every row, from one or more columns.

    With a ``template`` such as ``"{keyword} | {text}"`` each field takes the column's value;
    without one, the non-empty values of ``columns`` are joined by ``sep``. Missing values
    are empty. ``drop`` blanks columns (test-time augmentation: the text without its keyword).

    >>> df = pd.DataFrame({"keyword": ["fire", None], "text": ["Forest fire", "All calm"]})
    >>> build_texts(df, ["keyword", "text"])
    ['fire | Forest fire', 'All calm']
    >>> build_texts(df, ["keyword", "text"], template="{keyword}: {text}")
    ['fire: Forest fire', ': All calm']
    >>> build_texts(df, ["keyword", "text"], drop=("keyword",))
    ['Forest fire', 'All calm']
    """
    def values(column: str) -> pd.Series:
        if column in drop:
            return pd.Series("", index=frame.index, dtype=object)
        return strings(frame[column])

    if template is not None:
        pieces = list(string.Formatter().parse(template))
        fields = [f for _, f, _, _ in pieces if f]
        missing = [f for f in fields if f not in frame.columns]
        if missing:
            raise InputError(f"text template {template!r}: field(s) {missing} are not columns; "
                             f"columns are {', '.join(map(str, frame.columns))}")
        out = pd.Series("", index=frame.index, dtype=object)
        for literal, field, _, _ in pieces:
            out = out + literal
            if field:
                out = out + values(field)
        return out.tolist()
    if not columns:
        raise InputError("no text columns: set `text:` in competition.yaml (e.g. text: [text])")
    out = values(columns[0])
    for column in columns[1:]:
        nxt = values(column)
        joined = out + sep + nxt
        out = joined.where((out != "") & (nxt != ""), out + nxt)
    return out.tolist()


def input_texts(cfg, spec, frame, drop: tuple[str, ...] = ()) -> list[str]:
    """The model input text of every row of ``frame``: the spec's text columns through
    ``cfg.text`` (template or separator); ``drop`` blanks columns (test-time augmentation)."""
    if not spec.text and cfg.text.template is None:
        raise InputError(f"model.family {cfg.model.family}: the competition has no text columns; "
                         "list them under `text:` in competition.yaml or set text.template")
    texts = build_texts(frame, spec.text, template=cfg.text.template, sep=cfg.text.sep, drop=drop)
    return clean(texts, cfg.text.clean) if cfg.text.clean else texts


_URL = re.compile(r"(?:https?://|www\.)\S+")
_USER = re.compile(r"(?<![\w@])@\w+")


def clean(texts: list[str], steps) -> list[str]:
    """``text.clean``: ftfy (mojibake and other broken Unicode), html (entities), urls (each becomes
    ``http``: a link's letters are noise, that there is one is not), users (``@name`` -> ``@user``);
    in that order.

    >>> clean(["CafÃ© &amp; bar @bob http://t.co/x1"], ["users", "urls", "html", "ftfy"])
    ['Café & bar @user http']
    """
    out = list(texts)
    if "ftfy" in steps:
        import ftfy  # optional steps import what they need only when asked

        out = [ftfy.fix_text(t) for t in out]
    if "html" in steps:   # entities escaped twice (&amp;amp;) are common in scraped text
        out = [_unescape(t) for t in out]
    if "urls" in steps:
        out = [_URL.sub("http", t) for t in out]
    if "users" in steps:
        out = [_USER.sub("@user", t) for t in out]
    return out


def _unescape(text: str, rounds: int = 3) -> str:
    """HTML entities decoded until none is left (at most ``rounds`` times).

    >>> _unescape("J&amp;amp;K")
    'J&K'
    """
    for _ in range(rounds):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text


@dataclass(frozen=True)
class Pairs:
    """The two sides of every row's text pair (the spec's ``text_pair``), each built and cleaned as a
    single text would be."""

    first: list[str]
    second: list[str]

    def __len__(self) -> int:
        return len(self.first)

    def take(self, rows) -> Pairs:
        return Pairs([self.first[i] for i in rows], [self.second[i] for i in rows])

    def swapped(self) -> Pairs:
        """Second side first (test-time augmentation ``swap``, for symmetric tasks)."""
        return Pairs(self.second, self.first)


def pair_columns(cfg, spec) -> list[str] | None:
    """The two columns read as a pair under ``cfg`` (``text.pair``; None: whenever the spec has
    ``text_pair``), or None when the text is one string."""
    if cfg.text.pair is False or (cfg.text.pair is None and not spec.text_pair):
        return None
    if not spec.text_pair:
        raise InputError("text.pair: true, but competition.yaml names no text_pair; add "
                         "`text_pair: [first, second]` (two text columns) or drop text.pair")
    if cfg.text.template is not None:
        raise InputError(f"text.template {cfg.text.template!r} glues the columns into one text, but the spec's "
                         f"text_pair {spec.text_pair} is read as a pair; set text.pair=false to glue them "
                         "with the template, or drop the template")
    return list(spec.text_pair)


def input_pairs(cfg, spec, frame: pd.DataFrame) -> Pairs:
    """Both sides of every row of ``frame``'s text pair, through ``text.clean``."""
    first, second = (build_texts(frame, [column]) for column in pair_columns(cfg, spec))
    if cfg.text.clean:
        first, second = clean(first, cfg.text.clean), clean(second, cfg.text.clean)
    return Pairs(first, second)


def model_inputs(cfg, spec, frame: pd.DataFrame) -> list[str] | Pairs:
    """What a text family reads for every row of ``frame``: :class:`Pairs` when the experiment reads
    the spec's text pair, else one text per row (:func:`input_texts`)."""
    return input_pairs(cfg, spec, frame) if pair_columns(cfg, spec) else input_texts(cfg, spec, frame)
