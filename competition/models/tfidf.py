"""Family ``tfidf``: TF-IDF of word and char_wb n-grams with logistic / ridge regression or LightGBM.

The input texts are built once per run (:func:`prepare`); each fold fits its own
vectoriser on its training rows only, so neither the vocabulary nor the idf
weights see the fold's valid rows (honest CV). What a fold saves::

    fold0/
        vocabulary.json each analyzer's terms (in column order) and idf weights: with the config,
                        all a fitted vectoriser is (:func:`load_vectorizer`)
        head/           the estimator (estimators.save_head: head.json + LightGBM text / skops files)
        tfidf.json      estimator, n-gram ranges, vocabulary sizes, labels (human-readable)

Example experiment (``comp new 043 --template tfidf``)::

    model: {family: tfidf, word_ngrams: [1, 2], char_ngrams: [2, 5], estimator: logistic, C: 4.0}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition import artifacts
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.text import input_texts
from competition.models import FoldResult, classical

VOCABULARY = "vocabulary.json"


@dataclass
class Prepared:
    cfg: ExperimentConfig
    data: object                 # competition.data.Dataset
    texts: list[str]             # one input text per train row
    test_texts: list[str] | None


def prepare(cfg: ExperimentConfig, data) -> Prepared:
    """Build every train and test input text once."""
    m = cfg.model
    if m.word_ngrams is None and m.char_ngrams is None:
        raise InputError("model.word_ngrams and model.char_ngrams are both null: there would be no "
                         "features; set at least one, e.g. model.word_ngrams=[1,2]")
    for key, rng in (("word_ngrams", m.word_ngrams), ("char_ngrams", m.char_ngrams)):
        if rng is not None and not 1 <= rng[0] <= rng[1]:
            raise InputError(f"model.{key}: {list(rng)} is not an n-gram range; write [low, high] "
                             "with 1 <= low <= high, e.g. [1, 2]")
    if m.estimator == "logistic" and data.spec.task == "regression":
        raise InputError("model.estimator: logistic regression cannot fit the regression target "
                         f"{data.spec.targets}; set model.estimator=ridge (or lgbm)")
    test = input_texts(cfg, data.spec, data.test) if data.test is not None else None
    return Prepared(cfg, data, input_texts(cfg, data.spec, data.train), test)


def make_vectorizer(cfg: ExperimentConfig):
    """Word and char_wb TfidfVectorizers side by side (their columns hstacked), unfitted."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    m = cfg.model
    common = dict(min_df=m.min_df, max_features=m.max_features, sublinear_tf=m.sublinear_tf, dtype=np.float32)
    parts = []
    if m.word_ngrams is not None:
        parts.append(("word", TfidfVectorizer(analyzer="word", ngram_range=tuple(m.word_ngrams), **common)))
    if m.char_ngrams is not None:
        parts.append(("char", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(m.char_ngrams), **common)))
    return FeatureUnion(parts)


def _fit_vectorizer(cfg: ExperimentConfig, texts: list[str]):
    vectorizer = make_vectorizer(cfg)
    try:
        X = vectorizer.fit_transform(texts)
    except ValueError as err:  # "After pruning, no terms remain" / "empty vocabulary"
        raise InputError(f"model.min_df={cfg.model.min_df}: the TF-IDF vocabulary of the {len(texts)} "
                         f"training texts is empty ({err}); lower model.min_df or check the text columns "
                         "hold text") from None
    return vectorizer, X.tocsr()


def fit_fold(prepared: Prepared, fold: int, train_idx: np.ndarray, valid_idx: np.ndarray,
             out_dir: Path, tracker=None) -> FoldResult:
    """Fit the vectoriser and the estimator on ``train_idx``; predict ``valid_idx`` and the test set."""
    cfg, data, texts = prepared.cfg, prepared.data, prepared.texts
    m = cfg.model
    vectorizer, X_train = _fit_vectorizer(cfg, [texts[i] for i in train_idx])
    test = None if prepared.test_texts is None else vectorizer.transform(prepared.test_texts).tocsr()
    features = classical.Features(X_train, vectorizer.transform([texts[i] for i in valid_idx]).tocsr(), test)
    head, result = classical.fit_fold(prepared, train_idx, features, out_dir, tracker, m.estimator,
                                      C=m.C, alpha=m.alpha, lgbm=m.lgbm)
    sizes = {name: len(v.vocabulary_) for name, v in vectorizer.transformer_list}
    _save(out_dir, vectorizer, cfg, data, sizes)
    result.extra = {"vocabulary": sizes, "n_features": int(X_train.shape[1])}
    if len(head.best_iterations) > 1:
        result.extra["best_iterations"] = head.best_iterations
    return result


def _save(out_dir: Path, vectorizer, cfg: ExperimentConfig, data, sizes: dict) -> None:
    out_dir = Path(out_dir)
    artifacts.write_json(out_dir / VOCABULARY, {
        name: {"terms": sorted(v.vocabulary_, key=v.vocabulary_.get), "idf": v.idf_.tolist()}
        for name, v in vectorizer.transformer_list})
    artifacts.write_json(out_dir / "tfidf.json", {
        "family": "tfidf", "estimator": cfg.model.estimator, "task": data.spec.task,
        "word_ngrams": cfg.model.word_ngrams, "char_ngrams": cfg.model.char_ngrams,
        "vocabulary": sizes, "labels": data.labels,
    })


def load_vectorizer(fold_dir: Path, cfg: ExperimentConfig):
    """The fold's fitted vectoriser: the config's analyzers with the saved vocabulary and idf."""
    path = Path(fold_dir) / VOCABULARY
    if not path.is_file():
        classical.load(fold_dir, "tfidf")    # names an old pickled fold, if it is one
        raise InputError(f"{path}: missing. {artifacts.rebuild(path)}")
    saved = artifacts.read_json(path)
    vectorizer = make_vectorizer(cfg)
    for name, part in vectorizer.transformer_list:
        terms = saved[name]["terms"]
        part.vocabulary_ = {term: i for i, term in enumerate(terms)}
        part.idf_ = np.asarray(saved[name]["idf"], dtype=np.float64)
    return vectorizer


def predict(fold_dir: Path, cfg: ExperimentConfig, data, frame) -> np.ndarray:
    """Predict ``frame`` (e.g. a hidden test set) with fold ``fold_dir``'s vectoriser and estimator."""
    head = classical.load(fold_dir, "tfidf")
    X = load_vectorizer(fold_dir, cfg).transform(input_texts(cfg, data.spec, frame)).tocsr()
    return head.predict(X)
