"""Reading one CSV/TSV file, and the column helpers every reader of its frames shares.

:func:`read_table` is the one CSV reader: the spec's read options, a wrong encoding or a
file that is not a CSV refused with the fix, ids kept as written. :func:`require_columns`
refuses a missing column; :func:`strings` turns a column into text
(:mod:`competition.text` builds a model's input from such columns). Checking a whole competition's files against its spec is
:mod:`competition.data`.
"""

from __future__ import annotations

import codecs
import csv
import csv as csv_mod
import difflib
import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import DataWarning, InputError
from competition.spec import ReadOptions, Spec

QUOTING = {"minimal": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE, "all": csv.QUOTE_ALL,
           "nonnumeric": csv.QUOTE_NONNUMERIC}
INTEGER_ID = r"-?(0|[1-9]\d{0,17})"    # an id written as data.load reads it as an integer
ENCODINGS = ("utf-8", "cp1252", "latin-1")  # tried in this order to suggest a fix


# -- reading ---------------------------------------------------------------------------------

def _decode(path: Path, encoding: str, role: str, given: bool = False) -> str:
    """The file's text; a wrong encoding is an error that names one that works. ``given``: the path
    came from the command line, not from competition.yaml (the not-found message says which)."""
    if path.is_dir():
        raise InputError(f"{path} ({role}): this is a folder, not a file; point at the CSV file itself"
                         + (f" (it holds {', '.join(sorted(p.name for p in path.glob('*.csv'))[:3])})"
                            if any(path.glob("*.csv")) else ""))
    if not path.is_file():
        fix = ("Check the path you gave on the command line." if given else
               "Fix the path in competition.yaml (file names are relative to data_dir, data_dir to the "
               "spec's folder).")
        raise InputError(f"{path} ({role}): file not found. {fix}")
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(f"{path} ({role}): the file is empty; it needs a header line and rows.")
    for magic, kind, fix in ((b"\x1f\x8b", "gzip-compressed", "gunzip it"), (b"PK\x03\x04", "a zip archive", "unzip it"),
                             (b"PAR1", "a parquet file", "write it as CSV")):
        if raw.startswith(magic):
            raise InputError(f"{path} ({role}): this is {kind}, not a CSV; {fix} and point at the .csv")
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"{path} ({role}): unknown encoding read.encoding: {encoding!r}; "
                         f"use one of {', '.join(ENCODINGS)}") from None
    try:
        return raw.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        works = next((e for e in ENCODINGS if codecs.lookup(e).name != codec and _decodes(raw, e)), None)
        if given and role != "train":  # a file named on the command line: the spec's encoding also reads train
            fix = (f"it decodes as {works}: re-save it as {encoding} (e.g. `iconv -f {works} -t {encoding}`), as "
                   "read.encoding in competition.yaml reads the train file too") if works else \
                f"re-save it as {encoding}"
        else:
            fix = (f"it decodes as {works}: set `read.encoding: {works}` in competition.yaml "
                   f"(comp init --encoding {works})") if works else "re-save it as UTF-8"
        raise InputError(f"{path} ({role}): not valid {encoding}: byte {raw[err.start]:#04x} on line "
                         f"{line} ({err.reason}); {fix}") from None


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _sep(read: ReadOptions) -> str:
    """'\\t' typed as two characters (YAML without quotes, a shell) means a tab."""
    return "\t" if read.sep in ("\\t", "tab", "TAB") else read.sep


def read_table(path: Path | str, read: ReadOptions, *, role: str, ids: str | None = None,
               dtype: type | None = None, given: bool = False) -> pd.DataFrame:
    """Read one CSV/TSV file with the spec's read options; every problem is an InputError.

    Empty fields are missing (NaN); strings such as ``NA`` or ``null`` stay text. The ``ids``
    column is read as written: integers when every value is a plain integer, else strings
    (so ``007`` keeps its zeros). ``dtype=str`` reads every cell as written. Rows that an
    unescaped quote seems to have merged are a :class:`DataWarning`.
    """
    frame, notes = read_with_notes(Path(path), read, role, ids, dtype, given)
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return frame


def _merged_rows(frame: pd.DataFrame, sep: str, path: Path) -> list[str]:
    """TSV-like files: a field holding a newline and the separator swallowed whole rows, almost
    always through an unescaped quote. (In comma CSVs, multi-line quoted texts are normal.)"""
    if sep in (",", ";") or len(frame.columns) < 2:
        return []
    merged = sum(int((v.str.contains("\n", regex=False) & v.str.contains(sep, regex=False)).sum())
                 for v in (strings(frame[c]) for c in frame.columns if frame[c].dtype.kind in "OUT"
                           or pd.api.types.is_string_dtype(frame[c])))
    if not merged:
        return []
    return [f"{path.name}: {merged} field(s) hold line breaks and the separator {sep!r}: an unescaped "
            "quote probably merged rows. If texts hold bare quotes, set `read.quoting: none` "
            "(comp init --quoting none)."]


SEPARATORS = (",", ";", "\t", "|")


def sniff_sep(text: str) -> str | None:
    r"""The separator the first lines of ``text`` seem to use (one of ``SEPARATORS``), or None.

    >>> sniff_sep("id;text;target\n1;fire;1\n2;calm;0\n"), sniff_sep("a\tb\n1\t2\n"), sniff_sep("one\ntwo\n")
    (';', '\t', None)
    """
    head = "\n".join(text.splitlines()[:20])
    try:
        found = csv_mod.Sniffer().sniff(head, delimiters="".join(SEPARATORS)).delimiter
    except csv_mod.Error:
        first = head.split("\n", 1)[0]
        counts = {sep: first.count(sep) for sep in SEPARATORS}
        found = max(counts, key=counts.get) if max(counts.values()) else None
    return found


def sep_hint(text: str, sep: str, given: bool = False) -> str:
    """' The file looks ';'-separated: set ...' when it seems to use another separator than ``sep``.
    ``given``: a file named on the command line (rows to predict), which is re-saved as the competition's
    files are: ``read.sep`` would change how train and test are read too.

    >>> sep_hint("id;text", ",", given=True)
    " The file looks ';'-separated: re-save it with the competition's separator ',' (read.sep in competition.yaml also reads train and test)."
    """
    found, sep = sniff_sep(text), _sep(ReadOptions(sep=sep)) if sep else sep
    if found is None or found == sep:
        return ""
    shown = "\\t" if found == "\t" else found
    if given and sep:
        mine = "\\t" if sep == "\t" else sep
        return (f" The file looks '{shown}'-separated: re-save it with the competition's separator '{mine}' "
                "(read.sep in competition.yaml also reads train and test).")
    return (f" The file looks '{shown}'-separated: set `read.sep: '{shown}'` in competition.yaml "
            f"(comp init --sep '{shown}').")


def read_with_notes(path: Path, read: ReadOptions, role: str, ids: str | None,
                    dtype: type | None, given: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """:func:`read_table`, returning its :class:`DataWarning` sentences instead of warning them
    (:func:`competition.data.load` keeps them in ``Dataset.warnings``)."""
    text = _decode(path, read.encoding, role, given)
    sep = _sep(read)
    kwargs = dict(sep=sep, quoting=QUOTING[read.quoting], header=0 if read.header else None,
                  names=read.names, keep_default_na=False, na_values=[""], index_col=False)
    if dtype is not None:
        kwargs["dtype"] = dtype
    elif ids is not None:
        kwargs["dtype"] = {ids: str}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), **kwargs)
    except pd.errors.ParserWarning:
        hint = sep_hint(text, sep, given and role != "train") or (f" Check read.sep ({sep!r}) or read.quoting (use `none` when texts hold "
                                       "unescaped quotes).")
        raise InputError(f"{path} ({role}): some rows have more fields than the header "
                         f"({read.names or 'first line'}).{hint}") from None
    except (pd.errors.ParserError, csv.Error, ValueError) as err:
        hint = sep_hint(text, sep, given and role != "train") or (" Check read.sep; files whose texts hold unescaped quotes need "
                                       "`read.quoting: none`.")
        raise InputError(f"{path} ({role}): cannot parse it with sep {sep!r} and quoting {read.quoting!r}: "
                         f"{str(err).strip()}.{hint}") from None
    if frame.empty:
        raise InputError(f"{path} ({role}): the file has a header ({', '.join(map(str, frame.columns))}) "
                         "but no rows.")
    if ids is not None and ids in frame.columns and dtype is None:
        frame[ids] = ids_as_read(frame[ids])
    notes = _merged_rows(frame, sep, path) if read.quoting != "none" and "\n" in text else []
    return frame, notes


def ids_as_read(ids: pd.Series) -> pd.Series:
    """Integers when every id is a canonical integer, else the strings as written.

    >>> ids_as_read(pd.Series(["3", "10"])).tolist(), ids_as_read(pd.Series(["007", "8"])).tolist()
    ([3, 10], ['007', '8'])
    """
    if ids.isna().any():
        return ids
    plain = ids.str.fullmatch(INTEGER_ID)
    return ids.astype(np.int64) if bool(plain.all()) else ids


def read_sample_submission(spec: Spec) -> pd.DataFrame:
    """The sample submission, every cell a string exactly as written."""
    return read_table(spec.file(spec.sample_submission), ReadOptions(), role="sample submission", dtype=str)


# -- columns ---------------------------------------------------------------------------------

def require_columns(frame: pd.DataFrame, columns: list[str], path: Path, role: str, key: str,
                    sep: str = "", given: bool = False) -> None:
    """Every column of ``columns`` exists, else an error listing the ones that do. ``sep``, ``given``: the
    file's separator and whether it was named on the command line (:func:`sep_hint`)."""
    for column in columns:
        if column in frame.columns:
            continue
        have = [str(c) for c in frame.columns]
        # never a column the same key names too (a pair's other side, sentence1 for sentence2)
        close = difflib.get_close_matches(column, [h for h in have if h not in columns], n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        if len(have) == 1 and sniff_sep(have[0]) is not None:
            hint += " The whole header is one column." + sep_hint(have[0], sep, given)
        raise InputError(f"{path} ({role}): column {column!r} (named by `{key}` in competition.yaml) "
                         f"is missing; the columns are: {', '.join(map(repr, have))}.{hint}")


def strings(values: pd.Series, missing: str = "") -> pd.Series:
    """The values as Python strings, missing ones as ``missing`` (pandas 3 keeps NaN in astype(str))."""
    return values.astype(object).where(values.notna(), missing).astype(str)


def positions(ids: pd.Series, among: pd.Series) -> np.ndarray:
    """Where each of ``ids`` sits in ``among`` (-1 where it is absent or there more than once).

    Integer ids compare as integers; otherwise both sides as strings, so 7 and "7" are one id. A
    million ids cost a few arrays, not a million Python strings; ``among`` in ``ids``' order (the
    usual case: a run's rows in train order) is found without hashing at all.

    >>> positions(pd.Series([3, 1, 2]), pd.Series(["1", "2", "3"])).tolist()
    [2, 0, 1]
    >>> positions(pd.Series([1, 2, 4]), pd.Series([2, 2, 1])).tolist()     # 2 twice, 4 absent
    [2, -1, -1]
    """
    if pd.api.types.is_integer_dtype(ids) and pd.api.types.is_integer_dtype(among):
        key, theirs = ids.to_numpy(), among.to_numpy()
    else:
        key, theirs = ids.astype(str).to_numpy(), among.astype(str).to_numpy()
    if len(key) == len(theirs) and (key == theirs).all():
        return np.arange(len(key))
    index = pd.Index(theirs)
    if index.is_unique:
        return index.get_indexer(key)
    once = np.flatnonzero(~index.duplicated(keep=False))
    found = pd.Index(theirs[once]).get_indexer(key)
    return np.where(found >= 0, once[found], -1)


# -- model input -----------------------------------------------------------------------------
