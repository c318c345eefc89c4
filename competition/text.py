"""The text a model reads, built in one place: the spec's text columns joined (or filled into
``text.template``), then ``text.clean``'s steps. Every text family, test-time augmentation and
adversarial validation read their rows through :func:`input_texts` or :func:`build_texts`.
"""

from __future__ import annotations

import re
import string

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
        import ftfy     # optional steps import what they need only when asked

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
    import html

    for _ in range(rounds):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text
