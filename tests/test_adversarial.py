"""Adversarial validation (`comp check --adversarial`): chance on a random split, near 1 and the
right culprit on a deliberate shift (text and tabular), the per-row CSV, and the CLI's wiring."""

from __future__ import annotations

import csv
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from competition import adversarial, data, text
from competition.cli import app
from competition.commands.check import FLAGS
from competition.errors import InputError
from competition.spec import load_spec
from competition.workspace import Workspace
from tests.datasets import shared_data
from tests.workspaces import tweets_workspace

runner = CliRunner()
TOKEN = "zqxfeedtag"  # a word no tweet holds, added to shifted test rows


def flat(text: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def real():
    return shared_data()


@pytest.fixture(scope="module")
def tweets(real) -> pd.DataFrame:
    return pd.read_csv(real / "disaster-tweets/train.csv")


def split_workspace(root, train: pd.DataFrame, test: pd.DataFrame, body: str) -> Workspace:
    """A workspace of the given train and test frames; ``body`` is the spec after name/train/test."""
    root.mkdir(parents=True, exist_ok=True)
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    (root / "competition.yaml").write_text(f"name: t\ntrain: train.csv\ntest: test.csv\n{body}")
    return Workspace(root)


def load(ws: Workspace):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.DataWarning)
        return data.load(load_spec(ws.spec_file))


TWEETS = "id: id\ntargets: [target]\ntext: [{text}]\ntask: binary\nmetric: f1\n"


def tweets_split(tweets: pd.DataFrame, root, shift=None, text: str = "keyword, text",
                 n_train: int = 1000, n_test: int = 500) -> Workspace:
    """``n_train`` train and ``n_test`` test rows drawn at random from the same tweets; ``shift`` edits
    the test rows."""
    rows = tweets.sample(n=n_train + n_test, random_state=1)
    train, test = rows.iloc[:n_train], rows.iloc[n_train:].drop(columns="target")
    return split_workspace(root, train, shift(test) if shift else test, TWEETS.format(text=text))


# -- the library -------------------------------------------------------------------------------

def test_bootstrap_interval_is_there():
    """The 95% interval comes from competition.bootstrap.interval (another engineer's module)."""
    from competition.bootstrap import interval

    y = np.array([0, 0, 1, 1, 0, 1, 0, 1] * 10)
    p = np.linspace(0.0, 1.0, len(y))[:, None]
    low, high = interval("roc_auc", y, p, "binary", n=200, seed=0)
    assert 0.0 <= low <= roc_auc_score(y, p[:, 0]) <= high <= 1.0


def test_random_split_of_the_same_tweets_looks_alike(tweets, tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    ds = load(tweets_split(tweets, tmp_path))
    result = adversarial.validate(ds, n_splits=5, seed=0)
    print(f"random split: AUC {result.auc:.3f} ({result.low:.3f}-{result.high:.3f})")
    assert result.low <= 0.5 <= result.high or abs(result.auc - 0.5) < 0.06
    assert result.low <= result.auc <= result.high
    assert adversarial.verdict(result.auc).startswith("train and test look alike")
    # out of fold, not in sample: the same model scoring the rows it was fitted on memorises them
    texts = text.build_texts(ds.train, ds.spec.text) + text.build_texts(ds.test, ds.spec.text)
    is_test = (result.scores["set"] == "test").to_numpy()
    X = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    in_sample = roc_auc_score(is_test, LogisticRegression(max_iter=1000).fit(X, is_test).decision_function(X))
    print(f"random split: in-sample AUC {in_sample:.3f}")
    assert in_sample > result.auc + 0.2


def test_a_token_only_test_rows_hold_is_found(tweets, tmp_path):
    def shift(test):
        return test.assign(text=test["text"] + f" {TOKEN}")

    result = adversarial.validate(load(tweets_split(tweets, tmp_path, shift)), n_splits=5, seed=0)
    print(f"injected token: AUC {result.auc:.3f} ({result.low:.3f}-{result.high:.3f})")
    assert result.auc > 0.9 and result.kind == "tokens"
    assert result.toward_test(1).index[0] == TOKEN and result.toward_test(1).iloc[0] > 0
    assert TOKEN not in result.toward_train(50).index and (result.toward_train(10) < 0).all()
    assert adversarial.verdict(result.auc).startswith("shift")


def test_sms_texts_as_test_rows_are_told_apart(real, tweets, tmp_path):
    sms = pd.read_csv(real / "sms-spam/SMSSpamCollection", sep="\t", header=None, names=["label", "text"],
                      quoting=csv.QUOTE_NONE).sample(n=500, random_state=0)
    test = pd.DataFrame({"id": np.arange(100_000, 100_500), "text": sms["text"].to_numpy()})
    train = tweets.sample(n=1000, random_state=1)[["id", "text", "target"]]
    ws = split_workspace(tmp_path, train, test, TWEETS.format(text="text"))
    result = adversarial.validate(load(ws), n_splits=5, seed=0)
    print(f"sms as test: AUC {result.auc:.3f} ({result.low:.3f}-{result.high:.3f}); "
          f"toward test {list(result.toward_test(5).index)}, toward train {list(result.toward_train(5).index)}")
    assert result.auc > 0.9
    # SMS talk ("ur", "call", "txt") against tweets' links ("http", "co")
    assert {"http", "co", "http co"} & set(result.toward_train(5).index)


TITANIC = ("id: PassengerId\ntargets: [Survived]\nfeatures: [Pclass, Sex, Age, SibSp, Parch, Fare, Embarked]\n"
           "task: binary\nmetric: accuracy\n")


def titanic_split(real, root, shift=None) -> Workspace:
    rows = pd.read_csv(real / "titanic/train.csv").sample(frac=1.0, random_state=0)
    train, test = rows.iloc[:600], rows.iloc[600:].drop(columns="Survived")
    return split_workspace(root, train, shift(test) if shift else test, TITANIC)


def test_tabular_shifted_column_ranks_first(real, tmp_path):
    ws = titanic_split(real, tmp_path, lambda test: test.assign(Fare=test["Fare"] + 100))
    result = adversarial.validate(load(ws), n_splits=5, seed=0)
    print(f"titanic, Fare + 100 in test: AUC {result.auc:.3f} ({result.low:.3f}-{result.high:.3f}); "
          f"gain {result.weights.round(3).to_dict()}")
    assert result.kind == "features" and result.auc > 0.9
    assert result.weights.index[0] == "Fare" and result.weights.iloc[0] > 0.5
    assert result.weights.sum() == pytest.approx(1.0) and result.toward_train().empty


def test_tabular_random_split_looks_alike(real, tmp_path):
    result = adversarial.validate(load(titanic_split(real, tmp_path)), n_splits=5, seed=0)
    print(f"titanic random split: AUC {result.auc:.3f} ({result.low:.3f}-{result.high:.3f})")
    assert result.auc < adversarial.ALIKE


def test_same_seed_same_scores(tweets, tmp_path):
    """Seeded folds and models: the same seed gives the same scores, another seed other folds."""
    ds = load(tweets_split(tweets, tmp_path, n_train=400, n_test=200))
    a = adversarial.validate(ds, n_splits=3, seed=0)
    b = adversarial.validate(ds, n_splits=3, seed=0)
    pd.testing.assert_frame_equal(a.scores, b.scores)
    c = adversarial.validate(ds, n_splits=3, seed=1)
    assert not np.allclose(a.scores["test_likeness"], c.scores["test_likeness"])


def test_more_folds_than_test_rows_is_refused(tweets, tmp_path):
    with pytest.raises(InputError, match=r"\(n_splits\) 501: needs 2 <= folds <= 500") as err:
        adversarial.validate(load(tweets_split(tweets, tmp_path)), n_splits=501)
    assert re.search(r"--folds\) 501: needs 2 <= folds <= 500", err.value.phrased(FLAGS))   # `comp check --folds`


# -- the CSV and the CLI -----------------------------------------------------------------------

def test_cli_prints_the_auc_and_writes_the_scores(real, tmp_path):
    ws = tweets_workspace(tmp_path, n_train=600, n_test=150, folds=False)
    result = runner.invoke(app, ["check", "--adversarial", "--folds", "4", "-w", str(ws.root)])
    out = flat(result.output)
    assert result.exit_code == 0, result.output
    assert "ok:" in out and out.index("ok:") < out.index("adversarial validation")  # after the usual check

    path = ws.folds_dir / "adversarial.csv"
    assert f"wrote {path}" in out
    scores = pd.read_csv(path)
    ds = load(ws)
    assert list(scores.columns) == ["id", "set", "test_likeness"] and len(scores) == 600 + 150
    assert scores["id"].tolist() == ds.train["id"].tolist() + ds.test["id"].tolist()
    assert scores["set"].tolist() == ["train"] * 600 + ["test"] * 150
    # the printed AUC is the AUC of the written scores, computed here from the file alone
    auc = roc_auc_score(scores["set"] == "test", scores["test_likeness"])
    printed = re.search(r"ROC AUC (\d\.\d{3}) \(95% interval (\d\.\d{3})-(\d\.\d{3})", out)
    assert printed and float(printed.group(1)) == pytest.approx(auc, abs=5e-4), out
    assert float(printed.group(2)) <= float(printed.group(1)) <= float(printed.group(3))
    # the file holds the scores the library returns (same folds: --folds 4, the spec's seed 42)
    again = adversarial.validate(ds, n_splits=4, seed=42)
    np.testing.assert_allclose(scores["test_likeness"], again.scores["test_likeness"], rtol=0, atol=1e-12)
    assert again.auc == pytest.approx(auc, abs=1e-12)
    # the five train ids it names are the five train rows of the file with the highest scores
    top = scores[scores["set"] == "train"].sort_values("test_likeness", ascending=False, kind="stable").head(5)
    named = re.search(r"train ids most like test \(test_likeness\): (.*)", out).group(1)
    assert [int(m) for m in re.findall(r"(\d+) \(\d\.\d{3}\)", named)] == top["id"].tolist()
    assert "toward test" in out and "toward train" in out


def test_cli_refuses_a_competition_without_a_test_file(tweets, tmp_path):
    tweets.head(200).to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "competition.yaml").write_text("name: t\ntrain: train.csv\n" + TWEETS.format(text="text"))
    result = runner.invoke(app, ["check", "--adversarial", "-w", str(tmp_path)])
    out = flat(result.output)
    assert result.exit_code == 2, result.output
    assert "no test file" in out and "set `test:` in competition.yaml" in out and "--holdout" in out
    assert str(tmp_path / "competition.yaml") in out and "ok:" not in out  # refused up front
    assert not (tmp_path / "folds" / "adversarial.csv").exists()
    result = runner.invoke(app, ["check", "--folds", "3", "-w", str(tmp_path)])
    assert result.exit_code == 2 and "--adversarial" in flat(result.output)


def test_folds_weights_give_a_test_weighted_cv_in_the_leaderboard(tmp_path):
    """folds.weights: each train row weighted by its odds of being a test row; the leaderboard's
    test-weighted CV is the metric under those weights (sklearn's sample_weight, computed here)."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import f1_score

    from competition import adversarial, data as data_mod, runs, thresholds
    from competition.config import load_config
    from competition.errors import InputError
    from competition.leaderboard import leaderboard
    from competition.spec import load_spec
    from competition.train import train
    from tests.workspaces import tweets_workspace

    ws = tweets_workspace(tmp_path / "ws", n_train=500, n_test=200)
    ds = data_mod.load(load_spec(ws.spec_file))
    train(ws, load_config(ws, "001"), data=ds)
    adversarial.write_scores(adversarial.validate(ds), ws)
    spec_text = ws.spec_file.read_text()
    ws.spec_file.write_text(spec_text.replace("folds: {", "folds: {weights: folds/adversarial.csv, "))
    (entry,) = leaderboard(ws)
    scores = pd.read_csv(ws.folds_dir / "adversarial.csv", dtype={"id": str})
    p = scores[scores["set"] == "train"].set_index("id").loc[ds.train["id"].astype(str), "test_likeness"].to_numpy()
    odds = p / (1 - p)
    w = np.minimum(odds, 20 * np.median(odds))
    oof = runs.load_run(ws, "001").oof()
    labels = thresholds.decisions("f1", ds.y, oof[["target"]].to_numpy(), "binary", oof["fold"])[0]
    assert entry.weighted_cv == pytest.approx(f1_score(ds.y, labels, sample_weight=w))
    assert entry.weighted_cv != pytest.approx(entry.cv)
    scores[scores["set"] == "test"].to_csv(ws.folds_dir / "adversarial.csv", index=False)   # train rows gone
    with pytest.raises(InputError, match="have no test_likeness.*comp check --adversarial"):
        leaderboard(ws)


@pytest.mark.parametrize("n_test", [1, 14])
def test_too_few_rows_to_tell_is_said_not_a_verdict(tweets, tmp_path, n_test):
    """Issue 24 #15: with 14 test rows a verdict ("look alike") came from an interval of 0.000-0.578;
    with 1 the message said "2 <= folds <= 1" and suggested the failing --folds 5."""
    ds = load(tweets_split(tweets, tmp_path, n_train=400, n_test=n_test))
    with pytest.raises(InputError) as err:
        adversarial.validate(ds, n_splits=5)
    message = str(err.value)
    assert f"cannot tell anything here: test has {n_test} row(s)" in message and "fewer than 30" in message, message
    assert "folds <=" not in message
