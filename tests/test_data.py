"""Loading and validation: the five real datasets with exact counts, and every bad-input error."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition import data
from competition.data import DataWarning
from competition.errors import InputError
from competition.spec import ReadOptions, load_spec
from competition.tables import read_table
from competition.text import build_texts
from tests.datasets import shared_data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write_spec(folder: Path, text: str, data_dir: Path | str = ".") -> Path:
    """A competition.yaml in ``folder`` (YAML body without name/data_dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "competition.yaml"
    path.write_text(f"name: t\ndata_dir: {data_dir}\n{text}", encoding="utf-8")
    return path


def quiet_load(spec, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return data.load(spec, **kwargs)


# -- the five real datasets --------------------------------------------------------------------

@pytest.fixture(scope="module")
def real() -> Path:
    return shared_data()


def test_disaster_tweets(real, tmp_path):
    spec = load_spec(write_spec(tmp_path, """\
train: train.csv
test: test.csv
sample_submission: sample_submission.csv
targets: [target]
text: [keyword, text]
features: [location]
task: binary
metric: f1
""", real / "disaster-tweets"))
    ds = quiet_load(spec)
    assert any("18 text(s) in column 'text' repeat with different targets" in w for w in ds.warnings)
    assert (len(ds.train), len(ds.test)) == (7613, 3263)
    assert ds.labels == [0, 1] and ds.y.dtype == np.int64 and int(ds.y.sum()) == 3271
    assert ds.train["id"].dtype == np.int64 and list(ds.train.index) == list(range(7613))
    assert int(ds.train["keyword"].isna().sum()) == 61 and int(ds.train["location"].isna().sum()) == 2533
    assert int(ds.train["text"].str.contains("\n").sum()) == 435  # newlines inside quoted fields
    assert any("mojibake" in w and "614" in w for w in ds.warnings)
    assert any("78 text(s)" in w for w in ds.warnings)  # test texts also in train
    again = quiet_load(spec)
    assert (again.train_hash, again.test_hash) == (ds.train_hash, ds.test_hash)
    sample = ds.sample_submission()
    assert list(sample.columns) == ["id", "target"] and len(sample) == 3263
    assert sample["id"].tolist()[:3] == ["0", "2", "3"]  # as written, for a byte-compatible write-back


def test_sms_spam_collection_needs_quoting_none(real, tmp_path):
    body = """\
train: SMSSpamCollection
read: {{sep: "\\t", header: false, names: [label, text]{quoting}}}
id: null
targets: [label]
text: [text]
task: binary
metric: average_precision
"""
    spec = load_spec(write_spec(tmp_path / "a", body.format(quoting=", quoting: none"), real / "sms-spam"))
    ds = quiet_load(spec)
    assert len(ds.train) == 5574 and ds.test is None and ds.test_hash is None
    assert ds.labels == ["ham", "spam"] and int(ds.y.sum()) == 747
    assert ds.train["id"].tolist() == list(range(5574))
    # default quoting: unescaped quotes merge rows, which is reported
    merged = load_spec(write_spec(tmp_path / "b", body.format(quoting=""), real / "sms-spam"))
    ds = quiet_load(merged)
    assert len(ds.train) == 5572 and any("quoting: none" in w for w in ds.warnings)


def test_sms_spam_kaggle_form(real, tmp_path):
    body = """\
train: spam.csv
read: {{encoding: {encoding}}}
id: null
targets: [Response]
text: [Message, "Unnamed: 2", "Unnamed: 3", "Unnamed: 4"]
task: binary
metric: average_precision
"""
    with pytest.raises(InputError, match=r"read.encoding: cp1252"):
        data.load(load_spec(write_spec(tmp_path / "a", body.format(encoding="utf-8"), real / "sms-spam/kaggle-form")))
    spec = load_spec(write_spec(tmp_path / "b", body.format(encoding="cp1252"), real / "sms-spam/kaggle-form"))
    ds = quiet_load(spec)
    # 5,572 rows (CRLF, quoted fields); the three nameless columns hold 68 cells of spill-over text in 50 rows
    assert len(ds.train) == 5572 and int(ds.y.sum()) == 747
    spill = ds.train[["Unnamed: 2", "Unnamed: 3", "Unnamed: 4"]]
    assert int(spill.notna().sum().sum()) == 68 and int(spill.notna().any(axis=1).sum()) == 50
    row = int(np.flatnonzero(spill["Unnamed: 4"].notna())[0])
    text = build_texts(ds.train, spec.text, sep=",")[row]
    assert ds.train.loc[row, "Unnamed: 4"] in text and ds.train.loc[row, "Message"] in text


def test_commonlit(real, tmp_path):
    spec = load_spec(write_spec(tmp_path, """\
train: train.csv
test: test.csv
sample_submission: sample_submission.csv
targets: [target]
text: [excerpt]
task: regression
metric: rmse
""", real / "commonlit"))
    ds = quiet_load(spec)
    assert (len(ds.train), len(ds.test)) == (2834, 7)
    assert ds.y.dtype == np.float64 and ds.y.shape == (2834,) and ds.labels is None
    assert round(float(ds.y.min()), 2) == -3.68 and round(float(ds.y.max()), 2) == 1.71
    assert ds.train["excerpt"].str.contains("\n").any()
    assert ds.train["id"].map(type).eq(str).all()


def test_titanic(real, tmp_path):
    spec = load_spec(write_spec(tmp_path, """\
train: train.csv
test: test.csv
sample_submission: gender_submission.csv
id: PassengerId
targets: [Survived]
features: [Pclass, Sex, Age, SibSp, Parch, Fare, Embarked]
task: binary
metric: accuracy
""", real / "titanic"))
    ds = quiet_load(spec)
    assert (len(ds.train), len(ds.test)) == (891, 418)
    missing = ds.train.isna().sum()
    assert (missing["Age"], missing["Cabin"], missing["Embarked"]) == (177, 687, 2)
    assert int(ds.test["Fare"].isna().sum()) == 1
    assert list(ds.sample_submission().columns) == ["PassengerId", "Survived"]


def test_goemotions(real, tmp_path):
    names = (real / "goemotions/emotions.txt").read_text().split()
    spec = load_spec(write_spec(tmp_path, f"""\
train: train.tsv
test: test.tsv
read: {{sep: "\\t", header: false, names: [text, labels, comment_id]}}
id: comment_id
targets: [{", ".join(names)}]
label_list: {{column: labels}}
text: [text]
task: multilabel
metric: macro_f1
""", real / "goemotions"))
    ds = quiet_load(spec)
    assert len(names) == 28 and (len(ds.train), len(ds.test)) == (43410, 5427)
    assert ds.y.shape == (43410, 28) and ds.y.dtype == np.int64 and ds.labels == names
    per_row = ds.y.sum(axis=1)
    assert per_row.min() == 1 and per_row.max() <= 5
    assert ds.train["comment_id"].map(type).eq(str).all()
    assert (ds.train[names].to_numpy() == ds.y).all()
    sample = ds.sample_submission()  # none in the spec: built from test ids + targets
    assert list(sample.columns) == ["comment_id", *names] and len(sample) == 5427
    assert sample["comment_id"].tolist() == ds.test["comment_id"].tolist()


@pytest.mark.parametrize("spec_file", [
    "competition.yaml", *(f"examples/{d}/competition.yaml" for d in
                          ("disaster-tweets", "sms-spam", "commonlit", "titanic", "goemotions"))])
def test_shipped_specs_load(real, spec_file, monkeypatch):
    monkeypatch.setenv("COMP_DATA", str(real))
    spec = load_spec(EXAMPLES.parent / spec_file)
    ds = quiet_load(spec)
    assert len(ds.train) > 0 and ds.y.shape[0] == len(ds.train)


def test_example_specs_find_data_without_env(real, monkeypatch):
    monkeypatch.delenv("COMP_DATA", raising=False)
    if real.resolve() != (EXAMPLES.parents[1] / "shared" / "data").resolve():
        pytest.skip("shared data is not at the default ../shared/data")
    assert load_spec(EXAMPLES / "titanic/competition.yaml").data_path == (real / "titanic").resolve()


# -- bad input: each an InputError naming file, column and fix -----------------------------------

SPEC = """\
train: train.csv
{extra}targets: [target]
text: [text]
task: {task}
metric: {metric}
"""


def bad(tmp_path, train: str | bytes, *, extra="", task="binary", metric="roc_auc", files=None):
    """Write train.csv (and other files) + a spec into tmp_path; return the loaded spec."""
    raw = train.encode("utf-8") if isinstance(train, str) else train
    (tmp_path / "train.csv").write_bytes(raw)
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return load_spec(write_spec(tmp_path, SPEC.format(extra=extra, task=task, metric=metric)))


def test_missing_file(tmp_path):
    spec = load_spec(write_spec(tmp_path, SPEC.format(extra="", task="binary", metric="roc_auc")))
    with pytest.raises(InputError, match=r"train.csv \(train\): file not found"):
        data.load(spec)


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match="the file is empty"):
        data.load(bad(tmp_path, ""))
    with pytest.raises(InputError, match="has a header .* but no rows"):
        data.load(bad(tmp_path, "id,text,target\n"))


def test_wrong_encoding_suggests_one_that_decodes(tmp_path):
    spec = bad(tmp_path, "id,text,target\n1,caf\xe9 \u2019ok,0\n2,b,1\n".encode("cp1252"))
    with pytest.raises(InputError, match=r"not valid utf-8.*line 2.*read.encoding: cp1252"):
        data.load(spec)
    # bytes cp1252 leaves undefined decode only as latin-1
    spec = bad(tmp_path, b"id,text,target\n1,\x81x,0\n2,b,1\n")
    with pytest.raises(InputError, match=r"read.encoding: latin-1"):
        data.load(spec)


def test_missing_column_lists_the_columns(tmp_path):
    spec = bad(tmp_path, "id,txt,target\n1,a,0\n2,b,1\n")
    with pytest.raises(InputError, match=r"column 'text' \(named by `text`.*'id', 'txt', 'target'.*Did you mean 'txt'"):
        data.load(spec)
    spec = bad(tmp_path, "id\ttext\ttarget\n1\ta\t0\n")
    with pytest.raises(InputError, match=r"whole header is one column\. The file looks '\\t'-separated: set `read.sep"):
        data.load(spec)


def test_duplicate_ids(tmp_path):
    spec = bad(tmp_path, "id,text,target\n1,a,0\n2,b,1\n1,c,1\n3,d,0\n3,e,0\n")
    with pytest.raises(InputError, match=r"2 duplicated id\(s\) in 4 rows, e.g. 1, 3"):
        data.load(spec)


def test_nan_and_inf_targets(tmp_path):
    spec = bad(tmp_path, "id,text,target\n1,a,0\n2,b,\n3,c,1\n4,d,\n")
    with pytest.raises(InputError, match=r"target column 'target' is missing or infinite in 2 row\(s\), first at id 2, 4"):
        data.load(spec)
    spec = bad(tmp_path, "id,text,target\n1,a,0.5\n2,b,inf\n3,c,1.5\n", task="regression", metric="rmse")
    with pytest.raises(InputError, match=r"missing or infinite in 1 row\(s\), first at id 2"):
        data.load(spec)
    spec = bad(tmp_path, "id,text,target\n1,a,0.5\n2,b,n/a\n", task="regression", metric="rmse")
    with pytest.raises(InputError, match=r"non-numbers 'n/a'"):
        data.load(spec)


def test_unknown_labels(tmp_path):
    spec = bad(tmp_path, "id,text,target\n1,a,ham\n2,b,spam\n3,c,eggs\n", extra="labels: [ham, spam]\n")
    with pytest.raises(InputError, match=r"value\(s\) 'eggs' that are not in `labels: \['ham', 'spam'\]`"):
        data.load(spec)
    spec = bad(tmp_path, "id,text,target\n1,a,0\n2,b,1\n3,c,2\n")
    with pytest.raises(InputError, match="task binary, but target 'target' has 3 values.*multiclass"):
        data.load(spec)
    spec = bad(tmp_path, "id,text,target\n1,a,1\n2,b,1\n")
    with pytest.raises(InputError, match="single value"):
        data.load(spec)


def test_labels_order_sets_the_codes(tmp_path):
    spec = bad(tmp_path, "id,text,target\n1,a,spam\n2,b,ham\n", extra="labels: [spam, ham]\n")
    ds = quiet_load(spec)
    assert ds.labels == ["spam", "ham"] and ds.y.tolist() == [0, 1]
    spec = bad(tmp_path, "id,text,target\n1,a,1\n2,b,0\n", extra="labels: ['0', '1']\n")
    assert quiet_load(spec).y.tolist() == [1, 0]  # YAML strings match CSV integers


def test_test_ids_differ_from_sample_submission(tmp_path):
    spec = bad(tmp_path, "id,text,target\n1,a,0\n2,b,1\n",
               extra="test: test.csv\nsample_submission: sample.csv\n",
               files={"test.csv": "id,text\n10,x\n11,y\n12,z\n", "sample.csv": "id,target\n10,0\n11,0\n13,0\n"})
    with pytest.raises(InputError, match=r"1 sample id\(s\) missing from test \('13'\), 1 test id\(s\) not in the sample \('12'\)"):
        data.load(spec)
    assert quiet_load(spec, with_test=False).test is None  # train-only stages do not need the test file


def test_multilabel_label_id_out_of_range(tmp_path):
    (tmp_path / "train.csv").write_text("id,text,labels\n1,a,\"0,1\"\n2,b,2\n3,c,5\n")
    spec = load_spec(write_spec(tmp_path, """\
train: train.csv
targets: [x, y, z]
label_list: {column: labels}
text: [text]
task: multilabel
metric: macro_f1
"""))
    with pytest.raises(InputError, match=r"label\(s\) '5' in 1 row\(s\), first at id\(s\) 3; ids must be 0..2"):
        data.load(spec)
    (tmp_path / "train.csv").write_text("id,text,labels\n1,a,\"0,1\"\n2,b,z\n3,c,\n")
    ds = quiet_load(spec)
    assert ds.y.tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0]] and ds.labels == ["x", "y", "z"]


def test_rows_with_more_fields_than_the_header(tmp_path):
    spec = bad(tmp_path, "id,text,target\n1,a,0\n2,b,1,extra\n")
    with pytest.raises(InputError, match="Expected 3 fields in line 3, saw 4. Check read.sep"):
        data.load(spec)
    spec = bad(tmp_path, "id,text,target\n1,a,0,extra\n2,b,1\n")  # pandas would shift it into the index
    with pytest.raises(InputError, match="more fields than the header"):
        data.load(spec)


def test_warning_for_conflicting_duplicates(tmp_path):
    spec = bad(tmp_path, "id,text,target\n1,same text,0\n2,same text,1\n3,other,0\n4,other,0\n5,x,1\n")
    with pytest.warns(DataWarning, match=r"1 text\(s\) in column 'text' repeat with different targets \(2 repeated"):
        ds = data.load(spec)
    assert len(ds.warnings) == 1


def test_ids_and_na_strings_read_as_written(tmp_path):
    (tmp_path / "t.csv").write_text("id,text\n007,NA\n8,null\n9,\n")
    frame = read_table(tmp_path / "t.csv", ReadOptions(), role="train", ids="id")
    assert frame["id"].tolist() == ["007", "8", "9"]  # leading zeros keep ids as strings
    assert frame["text"].tolist()[:2] == ["NA", "null"] and pd.isna(frame["text"][2])


def test_id_null_with_an_id_column_is_refused(tmp_path):
    spec = bad(tmp_path, "id,text,target\n1,a,0\n2,b,1\n", extra="id: null\n")
    with pytest.raises(InputError, match="set `id: id`"):
        data.load(spec)


# -- build_texts ---------------------------------------------------------------------------------

def test_build_texts_template_drop_and_errors():
    df = pd.DataFrame({"keyword": ["fire", np.nan, "flood"], "text": ["a", "b", np.nan], "n": [1.5, 2.0, np.nan]})
    assert build_texts(df, ["keyword", "text"]) == ["fire | a", "b", "flood"]
    assert build_texts(df, ["keyword", "text"], sep=" ") == ["fire a", "b", "flood"]
    assert build_texts(df, [], template="{keyword} | {text}") == ["fire | a", " | b", "flood | "]
    assert build_texts(df, ["keyword", "text"], template="{keyword} | {text}", drop=("keyword",)) == [" | a", " | b", " | "]
    assert build_texts(df, ["n", "text"]) == ["1.5 | a", "2.0 | b", ""]
    with pytest.raises(InputError, match=r"field\(s\) \['kw'\] are not columns"):
        build_texts(df, ["text"], template="{kw}: {text}")
    with pytest.raises(InputError, match="no text columns"):
        build_texts(df, [])


def test_build_texts_is_fast_on_50k_rows():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"keyword": rng.choice(["fire", "flood", None], 50_000),
                       "text": [f"tweet number {i}" for i in range(50_000)]})
    started = time.perf_counter()
    out = build_texts(df, ["keyword", "text"])
    build_texts(df, ["keyword", "text"], template="{keyword}: {text}", drop=("keyword",))
    assert len(out) == 50_000 and time.perf_counter() - started < 2.0


def test_label_list_with_single_ids_and_blanks(tmp_path):
    (tmp_path / "train.csv").write_text("id,text,labels\n1,a,2\n2,b,\n3,c,0\n")  # pandas reads 2.0, NaN, 0.0
    spec = load_spec(write_spec(tmp_path, """\
train: train.csv
targets: [x, y, z]
label_list: {column: labels}
text: [text]
task: multilabel
metric: macro_f1
"""))
    assert quiet_load(spec).y.tolist() == [[0, 0, 1], [0, 0, 0], [1, 0, 0]]


@pytest.mark.parametrize("kind,content,message", [
    ("gzip", lambda: __import__("gzip").compress(b"id,text\n1,a\n"), "gzip-compressed, not a CSV; gunzip it"),
    ("zip", lambda: b"PK\x03\x04rest", "a zip archive, not a CSV; unzip it"),
    ("semicolons", lambda: b"id;text\n1;a\n", "looks ';'-separated: re-save it with the competition's separator ','"),
])
def test_compressed_or_misseparated_files_say_what_they_are(tmp_path, kind, content, message):
    from competition.data import read_inputs
    from competition.spec import Spec

    (tmp_path / "rows.csv").write_bytes(content())
    spec = Spec(name="x", train="t.csv", targets=["y"], text=["text"], task="binary", metric="f1",
                data_dir=str(tmp_path))
    with pytest.raises(InputError, match=re.escape(message)):
        read_inputs(spec, tmp_path / "rows.csv")


def test_a_missing_file_says_where_its_path_came_from(tmp_path):
    from competition.spec import Spec

    spec = Spec(name="x", train="nope.csv", targets=["y"], text=["text"], task="binary", metric="f1",
                data_dir=str(tmp_path))
    with pytest.raises(InputError, match="file not found. Check the path you gave on the command line"):
        read_table(tmp_path / "given.csv", ReadOptions(), role="submission", given=True)
    with pytest.raises(InputError, match="file not found. Fix the path in competition.yaml"):
        data.load(spec)


@pytest.mark.parametrize("sep,shown", [(";", ";"), ("\t", "\\t")])
def test_a_file_with_another_separator_that_fails_to_parse_names_it(tmp_path, sep, shown):
    """Issue 24 #14: a ';' or tab file whose texts hold commas failed with "cannot parse it with
    sep ','... check read.sep": the message names the separator the file uses. A file of rows to predict
    is re-saved (issue 40: read.sep would change how train is read); the spec's own test file is the
    spec's to fix."""
    from competition.data import read_inputs
    from competition.spec import Spec

    rows = ["id", "keyword", "text"], ["1", "fire", "Forest fire, near La Ronge, Sask"], \
        ["2", "", "calm, quiet, sunny, day, here, now"]
    (tmp_path / "rows.csv").write_text("\n".join(sep.join(r) for r in rows) + "\n")
    spec = Spec(name="x", train="t.csv", targets=["y"], text=["text"], task="binary", metric="f1",
                data_dir=str(tmp_path))
    with pytest.raises(InputError) as err:
        read_inputs(spec, tmp_path / "rows.csv")
    assert f"looks '{shown}'-separated: re-save it with the competition's separator ','" in str(err.value)
    spec = Spec(name="x", train="t.csv", test="rows.csv", targets=["y"], text=["text"], task="binary",
                metric="f1", data_dir=str(tmp_path))
    with pytest.raises(InputError) as err:
        read_inputs(spec, tmp_path / "rows.csv", "test")
    assert f"looks '{shown}'-separated: set `read.sep: '{shown}'`" in str(err.value), str(err.value)


def test_comp_init_on_semicolon_files_names_the_separator(tmp_path):
    """The issue's second case: a ';' file read as one column said only "first column 'id' is not a
    train column"."""
    from competition.init import init_workspace

    (tmp_path / "train.csv").write_text("id;text;target\n1;fire here now;1\n2;calm day;0\n3;more fire;1\n")
    (tmp_path / "test.csv").write_text("id;text\n4;a fire;\n5;quiet;\n")
    (tmp_path / "sample_submission.csv").write_text("id,target\n4,0\n5,0\n")
    with pytest.raises(InputError, match=r"is not a train column.*header of train was read as one column\. "
                                         r"The file looks ';'-separated: set `read.sep: ';'`"):
        init_workspace(tmp_path / "ws", train=tmp_path / "train.csv", test=tmp_path / "test.csv",
                       sample_submission=tmp_path / "sample_submission.csv")


def _spec_at(root: Path, data_dir: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "competition.yaml"
    path.write_text(f"name: t\ndata_dir: {data_dir}\ntrain: train.csv\ntargets: [y]\ntask: binary\nmetric: f1\n")
    return path


def test_a_missing_data_folder_names_comp_data_where_the_spec_reads_it(tmp_path, monkeypatch):
    """The shipped specs find their data through ${oc.env:COMP_DATA,...}: the message says so, and what
    COMP_DATA is now."""
    spec = _spec_at(tmp_path / "ws", "${oc.env:COMP_DATA,../nowhere}/tweets")
    monkeypatch.delenv("COMP_DATA", raising=False)
    with pytest.raises(InputError, match=r"nowhere/tweets, which does not exist \(COMP_DATA is not set.*"
                                         r"Set COMP_DATA to the folder"):
        data.load(load_spec(spec))
    monkeypatch.setenv("COMP_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(InputError, match=rf"COMP_DATA={re.escape(str(tmp_path / 'elsewhere'))}\)"):
        data.load(load_spec(spec))
    plain = _spec_at(tmp_path / "plain", "../gone")
    with pytest.raises(InputError, match=r"data_dir '../gone' .* does not exist\. Fix data_dir") as err:
        data.load(load_spec(plain))
    assert "COMP_DATA" not in str(err.value)


def test_a_folder_where_the_csv_belongs_is_named_as_a_folder(tmp_path):
    (tmp_path / "mydata" / "train.csv").mkdir(parents=True)
    (tmp_path / "mydata" / "train.csv" / "part.csv").write_text("id,y\n1,0\n")
    with pytest.raises(InputError, match=r"train.csv \(train\): this is a folder, not a file; point at the CSV "
                                         r"file itself \(it holds part.csv\)"):
        data.load(load_spec(_spec_at(tmp_path / "ws", "../mydata")))


def test_a_missing_pair_column_is_not_told_to_use_the_pairs_other_side(tmp_path):
    from competition.tables import require_columns

    frame = pd.DataFrame({"id": [1], "sentence1": ["a"], "label": [0]})
    with pytest.raises(InputError, match=r"column 'sentence2' .* is missing; the columns are: 'id', 'sentence1', "
                                         r"'label'\.$"):
        require_columns(frame, ["sentence1", "sentence2"], tmp_path / "test.csv", "test", "text_pair")
    with pytest.raises(InputError, match=r"Did you mean 'sentence_2'\?"):
        require_columns(frame.assign(sentence_2="b"), ["sentence1", "sentence2"], tmp_path / "t.csv", "test",
                        "text_pair")


def test_the_api_names_each_column_it_needs_once():
    """disaster-tweets reads keyword as text and as a feature: the refusal listed it twice."""
    spec = load_spec(Path(__file__).parents[1] / "examples" / "disaster-tweets" / "competition.yaml")
    with pytest.raises(InputError, match=r"columns of the test file \(id, keyword, text, location\)$"):
        data.frame_inputs(spec, pd.DataFrame())


def test_rows_to_predict_in_another_separator_are_told_to_be_re_saved_not_to_change_the_spec(tmp_path):
    """read.sep also reads train and test: a file named at `comp predict` is re-saved instead."""
    spec = load_spec(Path(__file__).parents[1] / "examples" / "disaster-tweets" / "competition.yaml")
    rows = tmp_path / "new.csv"
    rows.write_text("id;keyword;text;location\n1;fire;a fire;here\n2;;calm;there\n")
    with pytest.raises(InputError, match=r"new.csv \(rows to predict\): column 'id' .*The whole header is "
                                         r"one column\. The file looks ';'-separated: re-save it with the "
                                         r"competition's separator ','") as err:
        data.read_inputs(spec, rows)
    assert "set `read.sep" not in str(err.value)


def test_pair_data_is_checked_for_duplicates_and_overlap_on_the_pair_not_one_side():
    """SICK-like pairs: one side repeating with other partners (and other labels) is the data's shape;
    only the same pair with two labels, or a test pair seen in train, is worth a warning."""
    from competition.quality import data_warnings
    from competition.spec import Spec

    spec = Spec(name="x", train="train.csv", test="test.csv", targets=["y"], text=["s1", "s2"],
                text_pair=["s1", "s2"], task="binary", metric="f1")
    train = pd.DataFrame({"id": range(6), "s1": ["a dog runs"] * 4 + ["a cat", "a cat"],
                          "s2": ["a dog is running", "a cat sleeps", "nobody runs", "a dog runs", "x", "x"]})
    test = pd.DataFrame({"id": range(10, 13), "s1": ["a dog runs", "a dog runs", "a cat"],
                         "s2": ["something new", "a cat sleeps", "y"]})
    y = np.array([1, 0, 0, 1, 1, 0])
    notes = data_warnings(spec, train, test, y, [0, 1])
    assert [n for n in notes if "repeat" in n] == [
        "train.csv: 1 pair(s) of ['s1', 's2'] repeat with different targets (1 repeated in all), e.g. "
        "'a cat | x'; one input with two answers: fix or drop them if the labels are noise."]
    assert [n for n in notes if "also appear" in n] == [
        "test.csv: 1 pair(s) of ['s1', 's2'] also appear in train, where their labels are known."]
