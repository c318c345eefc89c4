"""Adversarial validation: can a model tell the train rows from the test rows?

If it cannot (out-of-fold ROC AUC near 0.5), train and test come from one distribution and a
CV score on train predicts the test score. If it can, CV may mislead, and what the model leans
on says what changed. :func:`validate` labels train rows 0 and test rows 1, predicts every row
out of fold (stratified, seeded folds) and returns an :class:`AdversarialResult`.

The model follows the competition's inputs:

- text (``spec.text``, joined as :func:`competition.text.build_texts` joins them): TF-IDF word
  1-2 grams + logistic regression; the vectoriser is fitted per fold on its training rows only;
- tabular (``spec.features`` and no text): LightGBM, non-numeric columns cast to categories
  with :mod:`competition.models.lgbm`'s code book (LightGBM refuses pandas string columns).

The ranking of tokens or features comes from one more fit on every row: logistic
coefficients (positive: toward test) or each feature's share of the total gain. What
``comp check --adversarial`` writes (:func:`write_scores`)::

    folds/
        adversarial.csv   id, set (train|test), test_likeness (OOF P(test)); train rows, then test rows
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition import artifacts
from competition.bootstrap import interval
from competition.errors import InputError
from competition.models import estimators
from competition.models.lgbm import encode, fit_categories
from competition.text import build_texts
from competition.workspace import ADVERSARIAL

ALIKE, SHIFT = 0.6, 0.7  # AUC cut-offs of :func:`verdict`
MIN_ROWS = 30            # fewer rows in train or test: the AUC's interval spans every verdict


@dataclass(frozen=True)
class AdversarialResult:
    """A train-vs-test classifier's out-of-fold verdict.

    Attributes:
        auc: OOF ROC AUC, test rows the positive class; 0.5 is chance.
        low: lower end of its 95% bootstrap interval.
        high: upper end.
        kind: ``"tokens"`` (text competitions) or ``"features"`` (tabular).
        weights: per token, its logistic coefficient (> 0 toward test, < 0 toward train); per
            feature, its share of the total gain; largest first.
        scores: ``id``, ``set`` (train|test), ``test_likeness`` (OOF P(test)): train rows, then test rows.
        n_splits: number of folds.
        seed: the splitter's seed.
    """

    auc: float
    low: float
    high: float
    kind: str
    weights: pd.Series
    scores: pd.DataFrame
    n_splits: int
    seed: int

    def toward_test(self, k: int = 10) -> pd.Series:
        """The ``k`` tokens (features) that most mark a row as test."""
        return (self.weights[self.weights > 0] if self.kind == "tokens" else self.weights).head(k)

    def toward_train(self, k: int = 10) -> pd.Series:
        """The ``k`` tokens that most mark a row as train (empty for features: gain has no sign)."""
        if self.kind != "tokens":
            return self.weights.iloc[:0]
        return self.weights[self.weights < 0].iloc[::-1].head(k)

    def train_most_like_test(self, k: int = 5) -> pd.DataFrame:
        """The ``k`` train rows with the highest test-likeness (ties: file order)."""
        train = self.scores[self.scores["set"] == "train"]
        return train.sort_values("test_likeness", ascending=False, kind="stable").head(k)


def verdict(auc: float) -> str:
    """What an adversarial AUC says about trusting CV. A little under 0.5 is chance too: with nothing
    to learn, out-of-fold scores tend to dip below it.

    >>> verdict(0.52).startswith("train and test look alike")
    True
    >>> verdict(0.65).startswith("mild shift"), verdict(0.91).startswith("shift")
    (True, True)
    """
    if auc < ALIKE:
        return (f"train and test look alike (AUC < {ALIKE}; 0.5 is chance, and so is a dip below it): "
                "CV on train should transfer to the test set")
    if auc < SHIFT:
        return (f"mild shift ({ALIKE} <= AUC < {SHIFT}): CV is probably still a fair guide; check the "
                "top tokens/features below")
    return (f"shift (AUC >= {SHIFT}): a model tells test rows from train rows, so CV may mislead; look at "
            "the tokens/features below (fix or drop them, or validate on the train rows most like test)")


def require_test(spec) -> None:
    """Refuse a competition without a test file: there is nothing to compare train with."""
    if not spec.test:
        raise InputError(f"{spec.root / 'competition.yaml'}: competition {spec.name!r} has no test file, so "
                         "adversarial validation has nothing to compare train with; set `test:` in "
                         "competition.yaml, or carve a holdout with `comp init --holdout 0.2`")


def validate(dataset, n_splits: int = 5, seed: int = 0) -> AdversarialResult:
    """Train a train-vs-test classifier with ``n_splits`` stratified folds; score it out of fold.

    Raises:
        InputError: no test file, no text or feature columns, or ``n_splits`` out of range.
    """
    # scikit-learn submodules take ~1 s each: loaded where used
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    spec, train, test = dataset.spec, dataset.train, dataset.test
    if test is None:   # a dataset split in code (data.split) has a test set its spec does not name
        require_test(spec)
    smaller = min(len(train), len(test))
    if smaller < MIN_ROWS:
        which = "test" if len(test) <= len(train) else "train"
        raise InputError(f"adversarial validation cannot tell anything here: {which} has {smaller} row(s), and "
                         f"with fewer than {MIN_ROWS} in train or in test the AUC's 95% interval spans every "
                         "verdict (alike to shifted). Run it when both sets hold more rows.")
    if not 2 <= n_splits <= smaller:
        raise InputError(f"number of folds ({{n_splits}}) {n_splits}: needs 2 <= folds <= {smaller} (rows of the "
                         "smaller of train and test); use e.g. {n_splits} 5", n_splits="n_splits")
    if spec.text:
        texts = build_texts(train, spec.text) + build_texts(test, spec.text)
        X, fit, kind = np.array(texts, dtype=object), _fit_tokens, "tokens"
    elif spec.features:
        X, fit, kind = _feature_frame(train, test, spec.features), _fit_lgbm, "features"
    else:
        raise InputError(f"{spec.root / 'competition.yaml'}: no `text:` or `features:` columns, so there is "
                         "nothing to tell train from test by; list them in competition.yaml")

    is_test = np.r_[np.zeros(len(train), np.int64), np.ones(len(test), np.int64)]
    oof = np.empty(len(is_test))
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for fit_rows, valid_rows in splitter.split(np.zeros((len(is_test), 1)), is_test):
        predict, _ = fit(_rows(X, fit_rows), is_test[fit_rows], seed)
        oof[valid_rows] = predict(_rows(X, valid_rows))
    _, weights = fit(X, is_test, seed)  # the ranking: one fit on every row

    low, high = interval("roc_auc", is_test, oof[:, None], "binary", n=1000, seed=0)
    ids = pd.concat([train[spec.id_column], test[spec.id_column]], ignore_index=True)
    scores = pd.DataFrame({"id": ids, "set": np.where(is_test == 1, "test", "train"), "test_likeness": oof})
    return AdversarialResult(float(roc_auc_score(is_test, oof)), float(low), float(high), kind,
                             weights, scores, n_splits, seed)


def write_scores(result: AdversarialResult, ws) -> Path:
    """Write ``result.scores`` to the workspace's ``folds/adversarial.csv`` atomically; return its path."""
    return artifacts.write_csv(ws.folds_dir / ADVERSARIAL, result.scores)


def _rows(X, idx: np.ndarray):
    return X.iloc[idx] if isinstance(X, pd.DataFrame) else X[idx]


def _fit_tokens(texts: np.ndarray, y: np.ndarray, seed: int) -> tuple[Callable, pd.Series]:
    """TF-IDF word 1-2 grams + logistic regression: (P(test) of new texts, coefficient per token)."""
    # scikit-learn submodules take ~1 s each: loaded where used
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32)
    try:
        X = vectorizer.fit_transform(texts)
    except ValueError as err:  # "empty vocabulary": no word occurs in two texts
        raise InputError(f"text columns: the TF-IDF vocabulary of {len(texts)} texts is empty ({err}); "
                         "check that `text:` in competition.yaml names columns holding text") from None
    model = estimators.fit_linear("logistic", "binary", X, y, 1,
                                  defaults={"C": 1.0, "max_iter": 1000, "random_state": seed})
    weights = pd.Series(model.coef_[0], index=vectorizer.get_feature_names_out())
    return (lambda new: estimators.predict_model(model, vectorizer.transform(new), "binary", 2),
            weights.sort_values(ascending=False, kind="stable"))


def _feature_frame(train: pd.DataFrame, test: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Train rows then test rows of ``columns`` as LightGBM takes them: floats and categories
    (categorical: the columns not numeric in train; their code book is built from every row)."""
    both = pd.concat([train[columns], test[columns]], ignore_index=True)
    types = pd.api.types
    categorical = [c for c in columns if not (types.is_numeric_dtype(train[c]) or types.is_bool_dtype(train[c]))]
    return encode(both, columns, fit_categories(both, categorical))


def _fit_lgbm(X: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[Callable, pd.Series]:
    """A seeded LightGBM classifier of 200 rounds: (P(test) of new rows, share of total gain per feature)."""
    params = estimators.lgbm_params("binary", 2, {"learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 20},
                                    seed, None, len(X))
    booster, _ = estimators.fit_booster(params, X, y, np.arange(len(X)), None, rounds=200)
    gain = estimators.importance(booster)
    share = pd.Series(gain / max(gain.sum(), 1e-12), index=list(X.columns))
    return (lambda new: estimators.predict_model(booster, new, "binary", 2),
            share.sort_values(ascending=False, kind="stable"))
