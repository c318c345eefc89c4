"""Family ``words``: a learned per-word baseline for span tasks -- LightGBM on every word of the text.

About a minute a fold of 17,600 tweets on 2 cores, and a view unlike an encoder's for a stack. A row's
words are its whitespace-separated pieces (the unit the competition's Jaccard counts). Each word is a
LightGBM row with: how often the word (lower-cased), under the row's condition, began, ended or lay inside the answer in the training
rows (rates shrunk towards the condition's own by ``model.smoothing`` pseudo-counts; a training row sees
rates counted on the other training rows, out of fold, so it is not told its own answer), the same
rates of its ``model.window`` neighbours on each side, its position, the row's length in words, the
condition, case and punctuation. Two models, one for "the answer starts at this word" and one for "it
ends at this word"; a row's start probabilities are normalised over its words and put at each word's
first character, its end probabilities at each word's last character (so no row is left unanswered).

What a fold saves::

    fold0/
        start.txt, end.txt   the two LightGBM models (LightGBM's text format)
        words.parquet        the per-word counts of the fold's training rows (condition, word, counts)
        words.json           the conditions' codes and the settings

Example experiment::

    model: {family: words, n_estimators: 300, window: 2}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from competition import artifacts
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models import FoldResult
from competition.span_data import conditions
from competition.predictions import rows

COUNTS, INFO = "words.parquet", "words.json"
_WORD = re.compile(r"\S+")
_RATES = ("start", "end", "inside")


@dataclass
class Words:
    """Every word of every row of a frame: one table, a row's words contiguous and in order."""

    table: pd.DataFrame     # row, position, n, begin, end (characters), word (lower), condition, shape features
    spans: list[np.ndarray]  # per row: (words, 2) character spans
    n_chars: list[int]


@dataclass
class Prepared:
    cfg: ExperimentConfig
    data: object
    train: Words
    test: Words | None
    targets: pd.DataFrame   # per train word: start, end, inside (0/1)


def split_words(text: str) -> np.ndarray:
    """The ``(words, 2)`` character spans of a text's whitespace-separated words.

    >>> split_words(" I`m  sad, ok").tolist()
    [[1, 4], [6, 10], [11, 13]]
    """
    return np.array([m.span() for m in _WORD.finditer(text)], dtype=np.int64).reshape(-1, 2)


def words_of(spec, frame) -> Words:
    """The word table of a frame's rows (:class:`Words`)."""
    texts, cond = frame[spec.text[0]].tolist(), conditions(spec, frame)
    parts, spans = [], []
    for r, text in enumerate(texts):
        sp = split_words(text)
        spans.append(sp)
        words = [text[s:e] for s, e in sp]
        n = len(words)
        parts.append(pd.DataFrame({
            "row": r, "position": np.arange(n), "n": n, "begin": sp[:, 0], "end": sp[:, 1],
            "word": [w.lower() for w in words], "condition": cond[r],
            "length": [len(w) for w in words], "upper": [w.isupper() for w in words],
            "title": [w.istitle() for w in words], "alnum": [sum(c.isalnum() for c in w) / len(w) for w in words],
            "bang": [("!" in w) for w in words], "handle": [w.startswith(("@", "http", "www")) for w in words]}))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return Words(table, spans, [len(t) for t in texts])


def targets_of(words: Words, y) -> pd.DataFrame:
    """Per word of the train rows: 1 where the answer starts in it, ends in it, overlaps it."""
    t = words.table
    start = np.array([a.start for a in y])[t["row"]]
    end = np.array([a.end for a in y])[t["row"]]
    has = end > start
    inside = has & (t["end"].to_numpy() > start) & (t["begin"].to_numpy() < end)
    out = pd.DataFrame({"inside": inside.astype(np.int8)})
    first = out.assign(row=t["row"].to_numpy()).groupby("row")["inside"].transform(lambda s: s.cumsum() == 1)
    last = out.assign(row=t["row"].to_numpy())[::-1].groupby("row")["inside"].transform(lambda s: s.cumsum() == 1)[::-1]
    out["start"] = (inside & first.to_numpy()).astype(np.int8)
    out["end"] = (inside & last.to_numpy()).astype(np.int8)
    return out


def prepare(cfg: ExperimentConfig, data) -> Prepared:
    """Every train and test row's words, once per run."""
    spec = data.spec
    if spec.task != "span":
        raise InputError(f"model.family words cuts spans: it needs `task: span` (this competition is task "
                         f"{spec.task}); choose another model.family")
    train = words_of(spec, data.train)
    return Prepared(cfg, data, train, None if data.test is None else words_of(spec, data.test),
                    targets_of(train, data.y))


def count(table: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """Per (condition, word): how often it was seen, began, ended and lay inside the answer."""
    both = pd.concat([table[["condition", "word"]].reset_index(drop=True), targets.reset_index(drop=True)], axis=1)
    return both.groupby(["condition", "word"], sort=True).agg(
        seen=("inside", "size"), start=("start", "sum"), end=("end", "sum"), inside=("inside", "sum")).reset_index()


def rates(table: pd.DataFrame, counts: pd.DataFrame, smoothing: float) -> np.ndarray:
    """Each word's shrunk start, end and inside rates and its log count, ``(words, 4)``, from ``counts``;
    a word never seen gets its condition's rates."""
    prior = counts.groupby("condition")[["seen", *_RATES]].sum()
    prior = prior[list(_RATES)].div(prior["seen"].clip(lower=1), axis=0)
    merged = table[["condition", "word"]].merge(counts, on=["condition", "word"], how="left")
    seen = merged["seen"].fillna(0).to_numpy()
    base = prior.reindex(table["condition"]).fillna(0).to_numpy()
    out = np.empty((len(table), 4), dtype=np.float32)
    for j, name in enumerate(_RATES):
        out[:, j] = (merged[name].fillna(0).to_numpy() + smoothing * base[:, j]) / (seen + smoothing)
    out[:, 3] = np.log1p(seen)
    return out


def features(words: Words, word_rates: np.ndarray, codes: dict[str, int], window: int) -> np.ndarray:
    """The LightGBM matrix: each word's rates and those of its ``window`` neighbours on each side (NaN past
    the row's ends), its position, the row's length, the condition's code, case and punctuation."""
    t = words.table
    position, n = t["position"].to_numpy(), t["n"].to_numpy()
    blocks = [word_rates]
    for d in range(1, window + 1):
        for shift in (-d, d):
            moved = np.full_like(word_rates, np.nan)
            inside = np.flatnonzero((position + shift >= 0) & (position + shift < n))
            moved[inside] = word_rates[inside + shift]
            blocks.append(moved)
    own = np.stack([position, n, position / np.maximum(n - 1, 1), n - 1 - position,
                    t["condition"].map(codes).fillna(-1).to_numpy(), t["length"], t["upper"], t["title"],
                    t["alnum"], t["bang"], t["handle"]], axis=1).astype(np.float32)
    return np.hstack(blocks + [own])


def _fit_rates(prepared: Prepared, train_idx: np.ndarray, smoothing: float, seed: int) -> np.ndarray:
    """The training words' rates, each counted on the other training rows (5 inner folds)."""
    t = prepared.train.table
    mine = np.flatnonzero(np.isin(t["row"].to_numpy(), train_idx))
    rng = np.random.default_rng(seed)
    part = rng.integers(0, 5, len(prepared.train.spans))[t["row"].to_numpy()[mine]]
    out = np.empty((len(mine), 4), dtype=np.float32)
    for k in range(5):
        here, rest = mine[part == k], mine[part != k]
        counts = count(t.iloc[rest], prepared.targets.iloc[rest])
        out[part == k] = rates(t.iloc[here].reset_index(drop=True), counts, smoothing)
    return out


def _lgbm(cfg: ExperimentConfig, seed: int):
    m = cfg.model
    return lgb.LGBMClassifier(n_estimators=m.n_estimators, learning_rate=m.learning_rate, num_leaves=m.num_leaves,
                              min_child_samples=20, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                              random_state=seed, verbose=-1, n_jobs=-1)


def _spread(words: Words, p_start: np.ndarray, p_end: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Word start / end probabilities of the ``chosen`` rows -> their ``(characters, 2)`` predictions."""
    t = words.table
    row = t["row"].to_numpy()
    order = {int(r): i for i, r in enumerate(chosen)}
    out = [np.zeros((words.n_chars[r], 2)) for r in chosen]
    at = np.flatnonzero(np.isin(row, chosen))
    sums = {}
    for j in at:
        r = int(row[j])
        s = sums.setdefault(r, [0.0, 0.0])
        s[0] += p_start[j]
        s[1] += p_end[j]
    begin, end = t["begin"].to_numpy(), t["end"].to_numpy()
    for j in at:
        r = int(row[j])
        i, (s0, s1) = order[r], sums[r]
        out[i][begin[j], 0] += p_start[j] / max(s0, 1e-12)
        out[i][end[j] - 1, 1] += p_end[j] / max(s1, 1e-12)
    return rows(out)


def _predict(models, words: Words, word_rates, codes, window, chosen) -> np.ndarray:
    x = features(words, word_rates, codes, window)
    mask = np.isin(words.table["row"].to_numpy(), chosen)
    p_start, p_end = np.zeros(len(x)), np.zeros(len(x))
    if mask.any():
        p_start[mask] = models[0].predict_proba(x[mask])[:, 1]
        p_end[mask] = models[1].predict_proba(x[mask])[:, 1]
    return _spread(words, p_start, p_end, np.asarray(chosen))


def fit_fold(prepared: Prepared, fold: int, train_idx: np.ndarray, valid_idx: np.ndarray, out_dir: Path,
             tracker, lesson=None) -> FoldResult:
    """Fit the start and end models on the ``train_idx`` rows' words; predict the fold's rows and the test rows."""
    if lesson is not None:
        raise InputError("task span: pseudo-labels and distillation are for row-level tasks; unset pseudo / distill")
    cfg, m = prepared.cfg, prepared.cfg.model
    t, targets = prepared.train.table, prepared.targets
    codes = {c: i for i, c in enumerate(sorted(t["condition"].unique()))}
    mine = np.flatnonzero(np.isin(t["row"].to_numpy(), train_idx))
    word_rates = np.zeros((len(t), 4), dtype=np.float32)
    word_rates[mine] = _fit_rates(prepared, np.asarray(train_idx), m.smoothing, cfg.seed + fold)
    x = features(prepared.train, word_rates, codes, m.window)[mine]
    models = []
    for name in ("start", "end"):
        model = _lgbm(cfg, cfg.seed + fold)
        model.fit(x, targets[name].to_numpy()[mine])
        artifacts.write_text(out_dir / f"{name}.txt", model.booster_.model_to_string())
        models.append(model)
    counts = count(t.iloc[mine], targets.iloc[mine])
    artifacts.write_parquet(out_dir / COUNTS, counts)
    artifacts.write_json(out_dir / INFO, {"codes": codes, "smoothing": m.smoothing, "window": m.window})
    full = rates(t, counts, m.smoothing)
    oof = _predict(models, prepared.train, full, codes, m.window, np.asarray(valid_idx))
    test = None
    if prepared.test is not None:
        test = _predict(models, prepared.test, rates(prepared.test.table, counts, m.smoothing), codes, m.window,
                        np.arange(len(prepared.test.spans)))
    return FoldResult(oof, test, extra={"words": int(len(mine))})


class _Booster:
    """A saved LightGBM model read back, answering ``predict_proba`` as the fitted classifier does."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise InputError(f"{path}: missing; retrain the fold (`comp train exp=<id> --fold <k> --force`)")
        self.booster = lgb.Booster(model_file=str(path))

    def predict_proba(self, x):
        p = self.booster.predict(x)
        return np.stack([1 - p, p], axis=1)


def predict(fold_dir: Path, cfg: ExperimentConfig, data, frame) -> np.ndarray:
    """A fold's start and end models on new rows."""
    fold_dir = Path(fold_dir)
    info = artifacts.read_json(fold_dir / INFO)
    counts = pd.read_parquet(fold_dir / COUNTS)
    words = words_of(data.spec, frame)
    models = [_Booster(fold_dir / "start.txt"), _Booster(fold_dir / "end.txt")]
    return _predict(models, words, rates(words.table, counts, info["smoothing"]), info["codes"], info["window"],
                    np.arange(len(words.spans)))
