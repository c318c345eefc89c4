"""`comp init` (inference, holdout carving, refusals) and `comp check`, through the library and the CLI."""

from __future__ import annotations

import math
import re

import warnings

import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from competition.commands import check as check_cmd
from competition.commands import init as init_cmd
from competition.data import DataWarning, load
from competition.errors import InputError
from competition.init import init_workspace
from competition.spec import load_spec
from tests.datasets import shared_data

app = typer.Typer()
app.command("init")(init_cmd.command)
app.command("check")(check_cmd.command)
runner = CliRunner()


def flat(text: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def real():
    return shared_data()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        yield


def test_init_infers_disaster_tweets(real, tmp_path):
    src = real / "disaster-tweets"
    spec = init_workspace(tmp_path, train=src / "train.csv", test=src / "test.csv",
                          sample_submission=src / "sample_submission.csv")
    assert spec.id == "id" and spec.targets == ["target"] and spec.task == "binary"
    assert "text" in spec.text and "keyword" not in spec.text and spec.metric == "roc_auc"
    assert spec.labels == [0, 1] and spec.scheme == "stratified" and spec.folds.seed == 42
    # the written file reloads to the same spec, with paths relative to the workspace
    raw = yaml.safe_load((tmp_path / "competition.yaml").read_text())
    assert not raw["data_dir"].startswith("/") and raw["train"] == "train.csv"
    again = load_spec(tmp_path / "competition.yaml")
    assert again.data_path == src.resolve() and again.model_dump() == spec.model_dump()
    for folder in ("folds", "experiments", "submissions"):
        assert (tmp_path / folder).is_dir()
    assert (tmp_path / "experiments/base.yaml").is_file()
    ignore = (tmp_path / ".gitignore").read_text().splitlines()
    assert "experiments/*/" in ignore and "tuning.db" in ignore and "data/" not in ignore


def test_init_reads_two_free_text_columns_as_a_pair_and_says_how_to_glue_them(real, tmp_path):
    src = real / "msrp"
    spec = init_workspace(tmp_path, train=src / "train.csv", test=src / "test.csv",
                          sample_submission=src / "sample_submission.csv")
    assert spec.text_pair == ["sentence1", "sentence2"] and spec.text == ["sentence1", "sentence2"]
    written = (tmp_path / "competition.yaml").read_text()
    assert "text_pair: [sentence1, sentence2]" in written and "glues them into one text" in written
    assert load_spec(tmp_path / "competition.yaml").model_dump() == spec.model_dump()
    glued = init_workspace(tmp_path / "glued", train=src / "train.csv", test=src / "test.csv",
                           text=["sentence1", "sentence2"])
    assert glued.text_pair is None and glued.text == ["sentence1", "sentence2"]


def test_init_refuses_to_overwrite_without_force(real, tmp_path):
    src = real / "titanic"
    spec = init_workspace(tmp_path, train=src / "train.csv", test=src / "test.csv",
                          sample_submission=src / "gender_submission.csv", metric="accuracy")
    assert (spec.id, spec.targets, spec.task) == ("PassengerId", ["Survived"], "binary")
    assert "Age" in spec.features and spec.text == []
    with pytest.raises(InputError, match="already exists; pass force=True") as err:
        init_workspace(tmp_path, train=src / "train.csv")
    assert re.search("already exists; pass --force", err.value.phrased(init_cmd.FLAGS))   # `comp init` says
    spec = init_workspace(tmp_path, train=src / "train.csv", test=src / "test.csv", force=True, name="t2")
    assert spec.name == "t2" and spec.targets == ["Survived"]  # inferred: the one column test lacks


def test_init_without_sample_submission_infers_target_and_inputs(real, tmp_path):
    src = real / "commonlit"
    spec = init_workspace(tmp_path, train=src / "train.csv", test=src / "test.csv")
    assert spec.targets == ["target"] and spec.task == "regression" and spec.metric == "rmse"
    assert spec.text == ["excerpt"] and "standard_error" not in spec.features  # train-only column
    assert spec.scheme == "binned-stratified"


def test_init_errors_write_nothing(real, tmp_path):
    with pytest.raises(InputError, match="file not found"):
        init_workspace(tmp_path, train=tmp_path / "nope.csv")
    src = real / "disaster-tweets"
    with pytest.raises(InputError, match="'nope'"):
        init_workspace(tmp_path, train=src / "train.csv", targets=["nope"])
    with pytest.raises(InputError, match="unknown metric"):
        init_workspace(tmp_path, train=src / "train.csv", targets=["target"], metric="bogus")
    with pytest.raises(InputError, match="unknown field"):
        init_workspace(tmp_path, train=src / "train.csv", colour="red")
    assert list(tmp_path.iterdir()) == []


def test_infer_task_kinds():
    from competition.init import infer_task

    assert infer_task(pd.DataFrame({"y": ["a", "b", "c", "a"]}))[0] == "multiclass"
    assert infer_task(pd.DataFrame({"y": [True, False]}))[0] == "binary"
    assert infer_task(pd.DataFrame({"y": list(range(100))}))[0] == "regression"
    with pytest.raises(InputError, match="pass task") as err:
        infer_task(pd.DataFrame({"y": [f"t{i}" for i in range(200)]}))
    assert re.search("pass --task", err.value.phrased(init_cmd.FLAGS))


# -- CLI -------------------------------------------------------------------------------------------

def test_cli_init_disaster_tweets_then_check(real, tmp_path):
    src = real / "disaster-tweets"
    result = runner.invoke(app, ["init", "--train", str(src / "train.csv"), "--test", str(src / "test.csv"),
                                 "--sample-submission", str(src / "sample_submission.csv"),
                                 "--metric", "f1", "--text", "keyword,text", "-w", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "task: binary" in result.output and "metric: f1" in result.output
    spec = load_spec(tmp_path / "competition.yaml")
    assert spec.text == ["keyword", "text"] and spec.features == [] and spec.metric == "f1"
    result = runner.invoke(app, ["check", "-w", str(tmp_path)])
    out = flat(result.output)
    assert result.exit_code == 0, result.output
    assert "7,613" in out and "3,263" in out and "4,342 (57.0%)" in out
    assert "repeat with different targets" in out and "ok:" in out
    again = runner.invoke(app, ["init", "--train", str(src / "train.csv"), "-w", str(tmp_path)])
    assert again.exit_code == 2 and "--force" in flat(again.output)


def test_cli_sms_holdout_is_stratified_seeded_and_checks(real, tmp_path):
    args = ["init", "--train", str(real / "sms-spam/SMSSpamCollection"), "--sep", "\\t", "--no-header",
            "--names", "label,text", "--quoting", "none", "--holdout", "0.2", "--metric", "average_precision"]
    result = runner.invoke(app, [*args, "-w", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "a/data"
    train, test = pd.read_csv(folder / "train.csv"), pd.read_csv(folder / "test.csv")
    solution, sample = pd.read_csv(folder / "solution.csv"), pd.read_csv(folder / "sample_submission.csv")
    assert len(train) + len(test) == 5574 and len(test) == math.ceil(5574 * 0.2)   # train_test_split's count
    assert abs(int((solution["label"] == "spam").sum()) - 747 * 0.2) <= 1  # stratified: 149 of 747 spam, to a row
    assert list(test.columns) == ["id", "text"] and list(solution.columns) == ["id", "label"]
    assert solution["id"].tolist() == test["id"].tolist() == sample["id"].tolist()
    assert set(train["id"]).isdisjoint(test["id"]) and sample["label"].eq(0.5).all()
    spec = load_spec(tmp_path / "a/competition.yaml")
    assert (spec.data_dir, spec.solution, spec.id) == ("data", "solution.csv", "id")
    assert "data/" in (tmp_path / "a/.gitignore").read_text().splitlines()
    assert len(load(spec).train) == len(train)
    check = runner.invoke(app, ["check", "-w", str(tmp_path / "a")])
    assert check.exit_code == 0 and "ok:" in check.output, check.output
    # seeded: the same seed carves the same rows, another seed other rows
    assert runner.invoke(app, [*args, "-w", str(tmp_path / "b")]).exit_code == 0
    assert runner.invoke(app, [*args, "--seed", "7", "-w", str(tmp_path / "c")]).exit_code == 0
    assert (tmp_path / "b/data/test.csv").read_bytes() == (folder / "test.csv").read_bytes()
    assert (tmp_path / "c/data/test.csv").read_bytes() != (folder / "test.csv").read_bytes()


def test_cli_goemotions_label_list_and_label_names(real, tmp_path):
    src = real / "goemotions"
    result = runner.invoke(app, ["init", "--train", str(src / "dev.tsv"), "--test", str(src / "test.tsv"),
                                 "--sep", "\\t", "--no-header", "--names", "text,labels,comment_id",
                                 "--id", "comment_id", "--label-list", "labels",
                                 "--label-names", str(src / "emotions.txt"), "-w", str(tmp_path)])
    assert result.exit_code == 0, result.output
    spec = load_spec(tmp_path / "competition.yaml")
    assert spec.task == "multilabel" and len(spec.targets) == 28 and spec.targets[-1] == "neutral"
    assert spec.label_list.column == "labels" and spec.text == ["text"] and spec.metric == "macro_f1"
    assert load(spec).y.shape == (5426, 28)


def test_cli_errors_exit_2_with_the_fix(real, tmp_path):
    result = runner.invoke(app, ["init", "--train", str(real / "sms-spam/kaggle-form/spam.csv"),
                                 "-w", str(tmp_path)])
    assert result.exit_code == 2 and "--encoding cp1252" in flat(result.output)
    assert not (tmp_path / "competition.yaml").exists()
    result = runner.invoke(app, ["check", "-w", str(tmp_path)])
    assert result.exit_code == 2 and "comp init" in flat(result.output)
    (tmp_path / "competition.yaml").write_text(
        "name: x\ntrain: train.csv\ntargets: [y]\ntask: binary\nmetric: roc_auc\n")
    (tmp_path / "train.csv").write_text("id,y\n1,0\n1,1\n")
    result = runner.invoke(app, ["check", "-w", str(tmp_path)])
    assert result.exit_code == 2 and "duplicated id" in flat(result.output)


def test_a_binary_task_on_a_target_of_many_values_is_one_short_line_with_the_fix(real, tmp_path):
    """It printed all ~3,300 locations as a pydantic error and no fix."""
    result = runner.invoke(app, ["init", "--train", str(real / "disaster-tweets" / "train.csv"), "--target",
                                 "location", "--task", "binary", "-w", str(tmp_path)])
    text = flat(result.output)
    assert result.exit_code == 2 and "target 'location' has 3,341 values" in text and "--target" in text
    assert len(text) < 400 and not (tmp_path / "competition.yaml").exists()


def test_failed_holdout_leaves_no_files(real, tmp_path):
    with pytest.raises(InputError, match="'spam'"):
        init_workspace(tmp_path, train=real / "sms-spam/SMSSpamCollection", sep="\t", header=False,
                       names=["label", "text"], quoting="none", holdout=0.2, labels=["ham", "eggs"])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="cannot be combined with a test file") as err:
        init_workspace(tmp_path, train=real / "titanic/train.csv", test=real / "titanic/test.csv", holdout=0.2)
    assert re.search("cannot be combined with --test", err.value.phrased(init_cmd.FLAGS))
    with pytest.raises(InputError, match="fraction"):
        init_workspace(tmp_path, train=real / "titanic/train.csv", holdout=1.5)
    assert list(tmp_path.iterdir()) == []


def test_init_refuses_a_text_column_that_test_lacks_and_writes_nothing(real, tmp_path):
    src = real / "disaster-tweets"
    pd.read_csv(src / "test.csv").drop(columns=["text"]).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(InputError, match=r"free-text column\(s\) \['text'\] of train are missing from the test file"):
        init_workspace(tmp_path / "ws", train=src / "train.csv", test=tmp_path / "test.csv")
    assert not (tmp_path / "ws" / "competition.yaml").exists()


def test_test_ids_that_are_train_ids_are_a_warning(real, tmp_path):
    src = real / "disaster-tweets"
    train = pd.read_csv(src / "train.csv").head(300)
    train.to_csv(tmp_path / "train.csv", index=False)
    train.drop(columns=["target"]).to_csv(tmp_path / "test.csv", index=False)   # the train file again
    init_workspace(tmp_path / "ws", train=tmp_path / "train.csv", test=tmp_path / "test.csv")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        load(load_spec(tmp_path / "ws" / "competition.yaml"))
    assert any("300 of 300 test id(s) are also train ids" in str(w.message) for w in seen)


def test_a_stray_label_that_would_make_binary_multiclass_names_its_rows(real, tmp_path):
    train = pd.read_csv(real / "disaster-tweets" / "train.csv").head(2000)
    train.loc[[10, 700], "target"] = 11                 # two shifted rows
    train.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(InputError, match=r"\[11\] appear in only 2 \(id \[.*\]\).*task multiclass") as err:
        init_workspace(tmp_path / "ws", train=tmp_path / "train.csv")
    assert re.search(r"\[11\] appear in only 2 \(id \[.*\]\).*--task multiclass", err.value.phrased(init_cmd.FLAGS))
    assert not (tmp_path / "ws" / "competition.yaml").exists()
