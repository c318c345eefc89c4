"""The competition spec (``competition.yaml``): what the data is and how it is scored.

Example (the disaster-tweets workspace at the repository root)::

    name: disaster-tweets
    data_dir: ${oc.env:COMP_DATA,../shared/data}/disaster-tweets   # relative to this file
    train: train.csv
    test: test.csv
    sample_submission: sample_submission.csv
    id: id
    targets: [target]
    text: [keyword, text]
    task: binary
    metric: f1
    folds: {scheme: stratified, n_splits: 5, seed: 42}

Paths are relative to ``data_dir``, which is relative to the spec file, so a
workspace may keep its data anywhere. ``${oc.env:VAR,default}`` reads an
environment variable (OmegaConf interpolation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from competition import metrics
from competition.errors import InputError, explain

Task = Literal["binary", "multiclass", "multilabel", "regression", "tokens", "span"]
UNIT_TASKS = ("tokens", "span")     # a prediction per unit of the row (competition.predictions' ragged shape)
Scheme = Literal[
    "kfold", "stratified", "group", "stratified-group",
    "multilabel-stratified", "binned-stratified", "time-ordered",
]
SCHEMES: tuple[str, ...] = Scheme.__args__


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadOptions(_Strict):
    """How to parse a data file (passed on to ``pandas.read_csv``)."""

    sep: str = Field(",", description="field separator; '\\t' for TSV")
    encoding: str = Field("utf-8", description="text encoding, e.g. utf-8, latin-1, cp1252")
    header: bool = Field(True, description="first line holds column names")
    names: list[str] | None = Field(None, description="column names when header is false")
    quoting: Literal["minimal", "none", "all", "nonnumeric"] = Field(
        "minimal", description="CSV quoting; 'none' for files with unescaped quotes")

    @model_validator(mode="after")
    def _names_without_header(self):
        if not self.header and not self.names:
            raise ValueError("read.header is false, so read.names must list the column names")
        return self


class LabelList(_Strict):
    """A multilabel target stored as one column of separated label ids, e.g. ``"3,27"``."""

    column: str = Field(description="column holding the separated label ids")
    sep: str = Field(",", description="separator between label ids")
    # ids are positions in the spec's ``targets`` list (goemotions: 0..27); names match themselves


class TokenSpec(_Strict):
    """A ``task: tokens`` competition: a tag for every unit of a row (NER and friends).

    ``unit: token``: ``text`` names a column of token lists (JSON in a CSV, as wnut17) or the train
    file is CoNLL (``token<TAB>tag`` lines, a blank line between sentences; ``.conll`` files), and the
    target column holds one tag per token. ``unit: char``: ``text`` names a text column and the target
    holds character spans ``[[start, end, label], ...]`` (the NBME / Feedback Prize shape).
    """

    unit: Literal["token", "char"] = Field("token", description="token: the data's own tokens; char: the "
                                                                "characters of a text with entity spans")
    scheme: Literal["iob2", "iob1", "bioes", "io"] = Field("iob2", description="the tags' scheme, read into IOB2")
    invalid: Literal["repair", "refuse"] = Field(
        "repair", description="an I- tag that continues no entity: read as B- with a warning, or refused")


class SpanSpec(_Strict):
    """A ``task: span`` competition: the answer is one substring of the text (``text``'s one column).

    The target column holds the answer as the text has it (Tweet Sentiment Extraction's
    ``selected_text``, SQuAD's answer text); an empty answer is a row without one. ``condition``: the
    columns the answer depends on (a sentiment, a question), read by models as the first segment of a
    pair, the text as the second.
    """

    condition: list[str] = Field(default_factory=list, description="columns the answer is conditioned on "
                                                                    "(sentiment, question)")
    start: str | None = Field(None, description="column of the answer's first character offset (SQuAD's "
                                                "answer_start); None: where the answer first occurs")


class FoldSpec(_Strict):
    """How train rows are assigned to folds."""

    scheme: Scheme | None = Field(None, description="None: stratified for classification, "
                                  "binned-stratified for regression, multilabel-stratified for multilabel")
    n_splits: int = Field(5, ge=2, description="number of folds")
    seed: int = Field(42, description="random seed of the splitter")
    group: str | None = Field(None, description="column whose equal values never straddle folds")
    time: str | None = Field(None, description="column ordering rows in time (time-ordered scheme)")
    bins: int = Field(10, ge=2, description="target bins for binned-stratified")
    weights: str | None = Field(
        None, description="CSV of per-row test-likeness (id, test_likeness; `comp check --adversarial` writes "
                          "folds/adversarial.csv), relative to the workspace: the leaderboard adds each run's "
                          "CV with train rows weighted by how test-like they are")


class Spec(_Strict):
    """A competition: files, columns, task, metric and fold scheme."""

    name: str = Field(description="competition name")
    data_dir: str = Field(".", description="folder of the data files, relative to the spec file")
    train: str = Field(description="training file")
    test: str | None = Field(None, description="test file (None: no test set)")
    sample_submission: str | None = Field(
        None, description="sample submission (None: built from test ids and target columns)")
    solution: str | None = Field(None, description="hidden test labels for `comp score`")
    read: ReadOptions = Field(default_factory=ReadOptions, description="how to parse train/test")
    id: str | None = Field("id", description="id column; None numbers the rows 0..n-1 as 'id'")
    targets: list[str] = Field(min_length=1, description="target column(s)")
    labels: list[Any] | None = Field(
        None, description="class labels in order (binary: the last one is the positive class)")
    label_list: LabelList | None = Field(None, description="multilabel target as one column of ids")
    text: list[str] = Field(default_factory=list, description="text column(s)")
    text_pair: list[str] | None = Field(
        None, description="two text columns the models read as a pair, e.g. [sentence1, sentence2] "
                          "(paraphrase, entailment, query-document); text defaults to them")
    features: list[str] = Field(default_factory=list, description="other feature columns")
    task: Task = Field(description="binary, multiclass, multilabel, regression, tokens or span")
    tokens: TokenSpec = Field(default_factory=TokenSpec, description="task tokens: units, tag scheme, repairs")
    span: SpanSpec = Field(default_factory=SpanSpec, description="task span: condition columns, answer offsets")
    metric: str = Field(description="competition metric, e.g. f1, roc_auc, rmse")
    folds: FoldSpec = Field(default_factory=FoldSpec, description="fold scheme")

    @model_validator(mode="before")
    @classmethod
    def _pair_is_text(cls, raw):
        if isinstance(raw, dict) and raw.get("text_pair") and not raw.get("text"):
            raw = {**raw, "text": list(raw["text_pair"])}   # what reads the text columns reads both sides
        return raw

    @model_validator(mode="after")
    def _consistent(self):
        if self.metric not in metrics.METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; valid: {', '.join(sorted(metrics.METRICS))}")
        allowed = metrics.METRICS[self.metric].tasks
        if self.task not in allowed:
            raise ValueError(f"metric {self.metric!r} does not fit task {self.task!r}; "
                             f"it scores {', '.join(allowed)}")
        if self.task in ("binary", "multiclass") and len(self.targets) != 1:
            raise ValueError(f"task {self.task} takes one target column, got {self.targets}")
        if self.task == "multiclass" and not self.labels:
            raise ValueError("task multiclass needs 'labels': list the classes in order, e.g. "
                             "labels: [business, sport, tech] (comp init writes them)")
        if self.task == "binary" and self.labels is not None and len(self.labels) != 2:
            raise ValueError(f"binary task needs exactly 2 labels, got {self.labels}")
        if self.text_pair is not None and (len(self.text_pair) != 2 or self.text_pair[0] == self.text_pair[1]):
            raise ValueError(f"text_pair names two different text columns, [first, second]; got {self.text_pair}")
        if self.task == "tokens" and (len(self.targets) != 1 or len(self.text) != 1 or not self.labels):
            raise ValueError("task tokens takes one target column (the tags or spans), one text column (the "
                             "tokens or the text) and `labels`: the entity types, e.g. labels: [location, person] "
                             "(comp init writes them)")
        if self.task == "span" and (len(self.targets) != 1 or len(self.text) != 1 or self.text_pair):
            raise ValueError("task span takes one target column (the answer), one text column (the text the "
                             "answer is cut from) and its conditions as span.condition, e.g. "
                             "text: [text], span: {condition: [sentiment]} (comp init writes them)")
        if self.task == "span" and self.labels:
            raise ValueError("task span has no labels: the answer is a substring of the text; drop labels")
        if self.label_list is not None and self.task != "multilabel":
            raise ValueError("label_list only makes sense for task multilabel")
        return self

    # -- derived --------------------------------------------------------------------------
    _root: Path = Path(".")  # folder of the spec file, set by load_spec
    _data_dir_written: str = "."   # data_dir as the file writes it (before ${oc.env:...} is resolved)

    def check_data_folder(self) -> None:
        """The data folder exists, or an InputError that says how the spec finds it and how to point it
        elsewhere (``COMP_DATA`` where the spec reads it, as the shipped examples do)."""
        if self.data_path.is_dir():
            return
        written = self._data_dir_written
        where = f"{self.root / 'competition.yaml'}: data_dir {written!r} is {self.data_path}, which does not exist"
        if "COMP_DATA" in written:
            now = os.environ.get("COMP_DATA")
            told = f"COMP_DATA={now}" if now else "COMP_DATA is not set, so its default is used"
            raise InputError(f"{where} ({told}). Set COMP_DATA to the folder that holds the competition's data "
                             "(e.g. `export COMP_DATA=/path/to/data`), or edit data_dir.")
        raise InputError(f"{where}. Fix data_dir (relative to the spec's folder) or move the data there.")

    @property
    def root(self) -> Path:
        return self._root

    @property
    def data_path(self) -> Path:
        return (self._root / self.data_dir).resolve()

    def file(self, name: str | None) -> Path | None:
        """A data file's absolute path (relative names are under ``data_dir``)."""
        return None if name is None else (self.data_path / name)

    @property
    def id_column(self) -> str:
        return self.id or "id"

    @property
    def per_unit(self) -> bool:
        """A prediction per unit of the row (tokens, span): ragged predictions (competition.predictions)."""
        return self.task in UNIT_TASKS

    @property
    def inputs(self) -> list[str]:
        """Every column a model reads, once each: the texts, the span's conditions, the features."""
        return list(dict.fromkeys([*self.text, *self.span.condition, *self.features]))

    @property
    def scheme(self) -> str:
        """The fold scheme, defaulted from the task when the spec names none."""
        if self.folds.scheme:
            return self.folds.scheme
        if self.folds.group:
            return "group" if self.task in ("regression", "multilabel") else "stratified-group"
        return {"binary": "stratified", "multiclass": "stratified", "tokens": "kfold", "span": "kfold",
                "multilabel": "multilabel-stratified", "regression": "binned-stratified"}[self.task]

    @property
    def pred_columns(self) -> list[str]:
        """Prediction columns of oof/test parquet files.

        binary: P(positive) under the target's name; multiclass: one probability per
        class, ``<target>_<label>``; multilabel: P(label) per target; regression: the value; tokens: one
        list column per IOB2 tag, ``<target>_<tag>``, the tag's probability at each unit of the row; span:
        ``<target>_start`` and ``<target>_end``, the probability that the answer starts / ends at each
        character of the text.
        """
        if self.task == "span":
            return [f"{self.targets[0]}_start", f"{self.targets[0]}_end"]
        if self.task == "tokens":
            return [f"{self.targets[0]}_{tag}" for tag in ["O"] + [f"{p}-{t}" for t in self.labels or [] for p in "BI"]]
        if self.task == "multiclass":
            return [f"{self.targets[0]}_{label}" for label in (self.labels or [])]
        return list(self.targets)

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_defaults=False)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def load_spec(path: Path | str) -> Spec:
    """Read and validate a spec file; every problem becomes an InputError naming key and fix."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: spec file not found. Create it with `comp init --train ...`.")
    try:
        loaded = OmegaConf.load(path)
        written = OmegaConf.to_container(loaded, resolve=False)
        raw = OmegaConf.to_container(loaded, resolve=True)
    except (OmegaConfBaseException, yaml.YAMLError) as err:
        raise InputError(f"{path}: cannot read the spec: {err}") from err
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the spec must be a YAML mapping of keys (name, train, targets, ...)")
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as err:
        raise explain(err, path, Spec) from None
    object.__setattr__(spec, "_root", path.resolve().parent)
    object.__setattr__(spec, "_data_dir_written", str(written.get("data_dir", ".")))
    return spec
