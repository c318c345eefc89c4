"""Family ``tfidf``: TF-IDF of word and char_wb n-grams with logistic / ridge regression or LightGBM.

The input texts are built once per run (:func:`prepare`); each fold fits its own
vectoriser on its training rows only, so neither the vocabulary nor the idf
weights see the fold's valid rows (honest CV). What a fold saves::

    fold0/
        vocabulary.json each analyzer's terms (in column order) and idf weights: with the config,
                        all a fitted vectoriser is (:func:`load_vectorizer`)
        head/           the estimator (saving.save_head: head.json + LightGBM text / skops files)
        tfidf.json      estimator, n-gram ranges, vocabulary sizes, labels (human-readable)

A text pair (the spec's ``text_pair``) is read side by side: one vectoriser fitted on both sides
of the training rows, and the features ``[a, b, a * b, |a - b|]`` of the two sides' TF-IDF rows
(``a * b``: the terms both share, weighted; ``|a - b|``: those only one has) plus their cosine
similarity and length difference (:func:`pair_features`): a bag of words over the glued string
cannot see which words the two sides share.

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
from competition.models import FoldResult, classical
from competition.text import Pairs, model_inputs

VOCABULARY = "vocabulary.json"


@dataclass
class Prepared:
    cfg: ExperimentConfig
    data: object                 # competition.data.Dataset
    texts: list[str] | Pairs     # one input text (or text pair) per train row
    test_texts: list[str] | Pairs | None


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
    test = model_inputs(cfg, data.spec, data.test) if data.test is not None else None
    return Prepared(cfg, data, model_inputs(cfg, data.spec, data.train), test)


def pair_features(vectorizer, pairs: Pairs):
    """(n, 4V + 2) features of text pairs: each side's TF-IDF row a and b, a * b, |a - b|, then the
    cosine similarity of a and b (the mean over the analyzers, each L2-normalised) and the difference
    of the two sides' lengths in words, as a share of the longer."""
    # scipy (~1 s): loaded where used
    import scipy.sparse as sp

    a, b = vectorizer.transform(pairs.first).tocsr(), vectorizer.transform(pairs.second).tocsr()
    shared = a.multiply(b).tocsr()
    cosine = np.asarray(shared.sum(axis=1)).ravel() / len(vectorizer.transformer_list)
    words_a = np.array([len(t.split()) for t in pairs.first], dtype=np.float32)
    words_b = np.array([len(t.split()) for t in pairs.second], dtype=np.float32)
    length = np.abs(words_a - words_b) / np.maximum(np.maximum(words_a, words_b), 1)
    dense = sp.csr_matrix(np.column_stack([cosine, length]).astype(np.float32))
    return sp.hstack([a, b, shared, abs(a - b), dense], format="csr", dtype=np.float32)


def features(vectorizer, texts: list[str] | Pairs):
    """The model's input matrix of ``texts`` (rows of one text, or of text pairs: :func:`pair_features`)."""
    if isinstance(texts, Pairs):
        return pair_features(vectorizer, texts)
    return vectorizer.transform(texts).tocsr()


def _rows(texts: list[str] | Pairs, idx) -> list[str] | Pairs:
    return texts.take(idx) if isinstance(texts, Pairs) else [texts[i] for i in idx]


def make_vectorizer(cfg: ExperimentConfig):
    """Word and char_wb TfidfVectorizers side by side (their columns hstacked), unfitted."""
    # scikit-learn submodules take ~1 s each: loaded where used
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


def _fit_vectorizer(cfg: ExperimentConfig, texts: list[str] | Pairs):
    """The vectoriser fitted on the training texts (both sides of pairs, one vocabulary), and their matrix."""
    vectorizer = make_vectorizer(cfg)
    corpus = texts.first + texts.second if isinstance(texts, Pairs) else texts
    try:
        X = vectorizer.fit_transform(corpus)
    except ValueError as err:  # "After pruning, no terms remain" / "empty vocabulary"
        raise InputError(f"model.min_df={cfg.model.min_df}: the TF-IDF vocabulary of the {len(corpus)} "
                         f"training texts is empty ({err}); lower model.min_df or check the text columns "
                         "hold text") from None
    return vectorizer, (features(vectorizer, texts) if isinstance(texts, Pairs) else X.tocsr())


def fit_fold(prepared: Prepared, fold: int, train_idx: np.ndarray, valid_idx: np.ndarray,
             out_dir: Path, tracker=None) -> FoldResult:
    """Fit the vectoriser and the estimator on ``train_idx``; predict ``valid_idx`` and the test set."""
    cfg, data, texts = prepared.cfg, prepared.data, prepared.texts
    m = cfg.model
    vectorizer, X_train = _fit_vectorizer(cfg, _rows(texts, train_idx))
    test = None if prepared.test_texts is None else features(vectorizer, prepared.test_texts)
    matrices = classical.Features(X_train, features(vectorizer, _rows(texts, valid_idx)), test)
    head, result = classical.fit_fold(prepared, train_idx, matrices, out_dir, tracker, m.estimator,
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
    return head.predict(features(load_vectorizer(fold_dir, cfg), model_inputs(cfg, data.spec, frame)))
