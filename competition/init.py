"""``comp init``: write a workspace's ``competition.yaml`` from its data files, inferring what it can.

What :func:`init_workspace` writes::

    <root>/
        competition.yaml        the spec; paths relative to this folder
        .gitignore              run artifacts (experiments/*/, tuning.db, ...) and data/ when carved
        folds/                  empty: `comp folds` fills it
        experiments/base.yaml   defaults for every experiment
        submissions/            empty
        data/                   only with holdout=: train.csv, test.csv (no targets),
                                sample_submission.csv, solution.csv (the held-out targets)

Inference, each step overridden by an explicit field: the id and target columns come
from the sample submission (first column id, the rest targets), else from column
names (``id``, ``*_id``; ``target``, ``label``, ...) and the columns train has but test
lacks; the task from the target's values; the metric from the task; text columns
are the string columns holding long free text, and every other column that test
also has is a feature.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from competition import artifacts, span_data, token_data
from competition.data import expand_label_list, load, placeholder
from competition.errors import InputError, explain
from competition.quality import examples
from competition.spec import ReadOptions, Spec, load_spec
from competition.splitters import quantile_bins, stratified_sample
from competition.tables import read_table, sep_hint, strings
from competition.workspace import Workspace

DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "multilabel": "macro_f1", "regression": "rmse",
                  "tokens": "entity_f1", "span": "word_jaccard"}
TARGET_NAMES = ("target", "label", "labels", "y", "class", "response", "category", "sentiment", "score")
MAX_CLASSES = 50
GITIGNORE = ["experiments/*/", "tuning.db", "reports/", "wandb/", "*.lock"]
BASE_YAML = ("# Defaults for every experiment of this workspace; experiments/<id>.yaml holds only what\n"
             "# it changes. Start one with `comp new 001 --template tfidf`.\nseed: 42\n")
_READ_KEYS = ("sep", "encoding", "header", "names", "quoting")
_FOLD_KEYS = ("scheme", "n_splits", "group", "time", "bins")


def read_options(read: ReadOptions | dict | None = None, **flat) -> ReadOptions:
    """ReadOptions from a dict and/or flat CLI values; ``'\\t'`` typed as two characters is a tab.

    >>> read_options(sep="\\\\t", header=False, names=["label", "text"]).sep == "\\t"
    True
    """
    base = read.model_dump() if isinstance(read, ReadOptions) else dict(read or {})
    base.update({k: v for k, v in flat.items() if v is not None})
    if base.get("sep") in ("\\t", "tab", "TAB"):
        base["sep"] = "\t"
    try:
        return ReadOptions.model_validate(base)
    except ValidationError as err:
        raise explain(err, "read options", ReadOptions) from None


def infer_task(values: pd.DataFrame) -> tuple[str, str]:
    """Task from the target column(s) values, with the reason.

    >>> infer_task(pd.DataFrame({"y": [0, 1, 1]}))[0], infer_task(pd.DataFrame({"y": [0.5, 1.2]}))[0]
    ('binary', 'regression')
    >>> infer_task(pd.DataFrame({"a": [0, 1], "b": [1, 1]}))[0], infer_task(pd.DataFrame({"y": list("abcab")}))[0]
    ('multilabel', 'multiclass')
    """
    if values.shape[1] > 1:
        if all(set(pd.unique(values[c].dropna())) <= {0, 1} for c in values):
            return "multilabel", f"{values.shape[1]} target columns of 0/1"
        if all(pd.api.types.is_numeric_dtype(values[c]) for c in values):
            return "regression", f"{values.shape[1]} numeric target columns"
        raise InputError(f"targets {list(values.columns)}: cannot tell the task; pass {{task}}", task="task")
    column = values.columns[0]
    v = values[column].dropna()
    n = v.nunique()
    numeric = pd.api.types.is_numeric_dtype(v) and not pd.api.types.is_bool_dtype(v)
    if numeric and not np.all(np.mod(v.to_numpy(dtype=float), 1) == 0):
        return "regression", f"target {column!r} holds non-integer numbers"
    if n == 2:
        return "binary", f"target {column!r} has 2 values"
    if n <= MAX_CLASSES and (not numeric or n <= 20):
        return "multiclass", f"target {column!r} has {n} discrete values"
    if numeric:
        return "regression", f"target {column!r} has {n} distinct integers"
    raise InputError(f"target {column!r} has {n} distinct text values: too many classes to guess the task; "
                     "pass {task} (binary, multiclass, multilabel or regression)", task="task")


def _stray_labels(train: pd.DataFrame, column: str, id_column: str | None) -> None:
    """Two common labels and a few rows of others: almost always a typo or a shifted row that
    made a binary task multiclass. Refused, naming the rows, before a wrong task is written."""
    counts = train[column].value_counts()
    if len(counts) < 3:
        return
    stray = counts.index[2:].tolist()
    rows = train.index[train[column].isin(stray)]
    if len(rows) > max(3, 0.001 * len(train)):      # real classes, however rare
        return
    where = (f"{id_column} {train.loc[rows[:5], id_column].tolist()}" if id_column else
             f"line(s) {[int(r) + 2 for r in rows[:5]]}")
    raise InputError(f"target {column!r}: {counts.index[0]!r} and {counts.index[1]!r} fill "
                     f"{counts.iloc[:2].sum()} rows but {stray[:5]} appear in only {len(rows)} ({where}), which "
                     "would make the task multiclass. Fix or drop those rows, or pass {task} multiclass if "
                     "they are real classes.", task="task")


def _is_text(values: pd.Series) -> bool:
    """Free text: strings averaging 30+ characters and 4+ words (not keywords, codes or URLs), or
    the nameless columns a text spills into when its commas went unquoted (``Unnamed: 2``)."""
    v = values.dropna()
    if v.empty or not (pd.api.types.is_string_dtype(v) or pd.api.types.is_object_dtype(v)):
        return False
    if str(values.name).startswith("Unnamed: "):
        return True
    v = strings(v)
    return v.str.len().mean() >= 30 and v.str.split().str.len().mean() >= 4


def _infer_id(train: pd.DataFrame, test: pd.DataFrame | None, sample: pd.DataFrame | None) -> str | None:
    if sample is not None:
        first = str(sample.columns[0])
        if first not in train.columns:
            hint = ""
            for what, frame in (("train", train), ("the sample submission", sample)):
                if len(frame.columns) == 1 and sep_hint(str(frame.columns[0]), ""):
                    hint = f" The header of {what} was read as one column." + sep_hint(str(frame.columns[0]), "")
                    break
            raise InputError(f"the sample submission's first column {first!r} is not a train column "
                             f"({', '.join(map(str, train.columns))}); pass {{id}} COLUMN (or {{id}} none).{hint}",
                             id="id")
        return first
    for column in train.columns:
        name = str(column)
        looks = name.lower() == "id" or name.lower().endswith("_id") or name.endswith("Id")
        if looks and train[column].is_unique and (test is None or column in test.columns):
            return name
    return None


def _infer_targets(train, test, sample, id_column) -> list[str]:
    if sample is not None:
        rest = [str(c) for c in sample.columns[1:]]
        if rest and all(c in train.columns for c in rest):
            return rest
    candidates = [str(c) for c in train.columns if c != id_column and (test is None or c not in test.columns)]
    named = [str(c) for c in train.columns if str(c).lower() in TARGET_NAMES and c != id_column]
    if test is not None and len(candidates) == 1:
        return candidates
    for pool in ([c for c in named if c in candidates], named):
        if len(pool) == 1:
            return pool
    raise InputError(f"cannot tell the target column (train columns: {', '.join(map(str, train.columns))}); "
                     "pass {targets} COLUMN (or several: {targets} a,b)", targets="targets")


def _columns(train, test, exclude, fields, notes) -> tuple[list[str], list[str]]:
    """Text and feature columns: given, else inferred (only columns test has too)."""
    usable = [str(c) for c in train.columns if c not in exclude and (test is None or c in test.columns)]
    unused = [str(c) for c in train.columns if c not in exclude and c not in usable]
    text = fields.get("text")
    if text is None:
        text = [c for c in usable if _is_text(train[c])]
        train_only = [c for c in unused if _is_text(train[c])]
        if not text and train_only:
            raise InputError(f"the free-text column(s) {train_only} of train are missing from the test file "
                             f"(its columns: {[str(c) for c in test.columns]}): a model could not read them at "
                             "test time. Use the test file that has them, or name the inputs with {text} / {features} "
                             "if the competition really has no text at test time.", text="text", features="features")
        notes.append(f"text: {text or 'none'} (free text: 30+ characters on average, or spill-over)")
    features = fields.get("features")
    if features is None:
        features = [c for c in usable if c not in text]
        notes.append(f"features: {features or 'none'} (the other columns)")
    if unused:
        notes.append(f"not inputs (train only, test lacks them): {unused}")
    return list(text), list(features)


def _carve(root: Path, frame: pd.DataFrame, spec_fields: dict, fraction: float, seed: int,
           force: bool, written: list[Path]) -> None:
    """Split train into data/{train,test,sample_submission,solution}.csv, adding each to ``written``."""
    data_dir = root / "data"
    names = ["train.csv", "test.csv", "sample_submission.csv", "solution.csv"]
    existing = [n for n in names if (data_dir / n).exists()]
    if existing and not force:
        raise InputError(f"{data_dir} already holds {existing}; pass {{force}} to carve a new holdout over them",
                         force="force=True")
    id_column, targets, task = spec_fields["id"] or "id", spec_fields["targets"], spec_fields["task"]
    if spec_fields["id"] is None:
        frame.insert(0, "id", np.arange(len(frame), dtype=np.int64))
        spec_fields["id"] = "id"
    label_column = (spec_fields.get("label_list") or {}).get("column")
    if task in ("binary", "multiclass"):
        strata = strings(frame[targets[0]]).to_numpy()
    elif task == "regression":
        strata = quantile_bins(frame[targets[0]].to_numpy(dtype=float), 10)
    else:
        strata = np.zeros(len(frame))
    hold = stratified_sample(strata, fraction, seed)
    is_hold = np.zeros(len(frame), dtype=bool)
    is_hold[hold] = True
    train, test = frame[~is_hold], frame[is_hold]
    answer_columns = [label_column] if label_column else targets
    probe = Spec.model_validate({**spec_fields, "train": "train.csv"})
    sample = test[[id_column]].copy()
    for column, value in placeholder(probe, spec_fields.get("labels")).items():
        sample[column] = value
    solution = test[[id_column, *answer_columns]]
    if label_column:  # the solution holds what a submission holds: one 0/1 column per label
        expanded = _label_columns(test, probe)
        solution = pd.concat([test[[id_column]], expanded], axis=1)
    outputs = [train, test.drop(columns=answer_columns), sample, solution]
    for name, out in zip(names, outputs):
        written.append(artifacts.write_csv(data_dir / name, out))
    spec_fields.update(data_dir="data", train="train.csv", test="test.csv",
                       sample_submission="sample_submission.csv", solution="solution.csv", read={})


def _label_columns(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """One 0/1 column per target from a label_list column (the same parse as data.load)."""
    part = frame.reset_index(drop=True)
    expanded = expand_label_list(part, spec, Path(spec.train))
    return expanded[spec.targets].set_axis(frame.index)


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive (Windows)
        return path.as_posix()


def _spec_yaml(spec: Spec, notes: list[str]) -> str:
    """The spec as YAML, keys in reading order, defaults left out where they add nothing."""
    data = spec.model_dump(mode="json")
    out: dict[str, Any] = {k: data[k] for k in ("name", "data_dir", "train")}
    out.update({k: data[k] for k in ("test", "sample_submission", "solution") if data[k]})
    read = spec.read.model_dump(mode="json", exclude_defaults=True)
    if read:
        out["read"] = read
    out.update(id=data["id"], targets=data["targets"])
    out.update({k: data[k] for k in ("labels", "label_list") if data[k] is not None})
    out.update({"text_pair": data["text_pair"]} if data["text_pair"] else {"text": data["text"]})
    out.update({k: data[k] for k in ("features", "task", "metric")})
    if spec.task == "tokens":
        out["tokens"] = spec.tokens.model_dump(mode="json")
    if spec.task == "span":
        out["span"] = spec.span.model_dump(mode="json", exclude_defaults=True) or {"condition": []}
    folds = {"scheme": spec.scheme, "n_splits": spec.folds.n_splits, "seed": spec.folds.seed}
    folds.update({k: data["folds"][k] for k in ("group", "time") if data["folds"][k]})
    out["folds"] = folds
    header = [f"# {spec.name}: written by `comp init` on {date.today().isoformat()}; edit freely.",
              "# Paths: files are relative to data_dir, data_dir to this file.", *(f"# {n}" for n in notes)]
    body = yaml.safe_dump(out, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    return "\n".join(header) + "\n" + body


def _write_gitignore(root: Path, extra: list[str]) -> None:
    path = root / ".gitignore"
    have = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    missing = [line for line in [*GITIGNORE, *extra] if line not in have]
    if missing:
        lead = ["# comp run artifacts (experiment yaml files and folds/ are tracked)"] if not have else []
        text = "\n".join([*have, *lead, *missing]) + "\n"
        artifacts.write_text(path, text)


def infer_fields(train: pd.DataFrame, test: pd.DataFrame | None, sample: pd.DataFrame | None,
                 fields: dict, folds: dict, notes: list[str]) -> dict:
    """The spec's id, targets, task, labels, metric, text and features: given, else inferred
    (each inference explained in ``notes``)."""
    id_column = fields["id"] if "id" in fields else _infer_id(train, test, sample)
    if "id" not in fields:
        notes.append(f"id: {id_column!r}" + (" (none found: rows are numbered 0..n-1)" if id_column is None else ""))
    label_column = (fields.get("label_list") or {}).get("column")
    if label_column and not fields.get("targets"):
        raise InputError(f"label_list column {label_column!r} holds label ids; name the labels with "
                         "{label_names}", label_names="targets (one name per label id, in id order)")
    targets = fields.get("targets") or _infer_targets(train, test, sample, id_column)
    shape = None
    if not label_column and fields.get("task") in (None, "tokens", "span") and len(targets) == 1 \
            and targets[0] in train.columns:
        others = [c for c in train.columns if c not in {id_column, *targets}]
        if fields.get("task") != "span":
            shape = token_data.infer(train, targets[0], fields.get("text") or others)
        if shape is None and fields.get("task") in (None, "span"):
            shape = span_data.infer(train, targets[0], fields.get("text") or others)
    if shape is not None:      # tags per token or character spans (tokens); an answer inside the text (span)
        notes.append(shape.pop("note"))
        fields = {**shape, **fields}
        task = fields["task"]
    elif label_column:
        task = fields.get("task") or "multilabel"
    elif fields.get("task"):
        task = fields["task"]
    else:
        missing = [t for t in targets if t not in train.columns]
        if missing:
            raise InputError(f"train: target column(s) {missing} not found; columns: "
                             f"{', '.join(map(str, train.columns))}")
        task, why = infer_task(train[targets])
        notes.append(f"task: {task} ({why})")
        if task == "multiclass":
            _stray_labels(train, targets[0], id_column)
    labels = fields.get("labels")
    if labels is None and task in ("binary", "multiclass") and targets[0] in train.columns:
        values = train[targets[0]].dropna().unique()
        labels = sorted(v.item() if isinstance(v, np.generic) else v for v in values)
        if task == "binary" and len(labels) != 2:
            raise InputError(f"train: --task binary, but target {targets[0]!r} has {len(labels):,} values "
                             f"({examples(labels, 3)}); a binary target has two. Name the column to predict "
                             "with --target, or the task that fits this one with --task.")
        notes.append(f"labels: {labels}" + (" (the last is the positive class)" if task == "binary" else ""))
    metric = fields.get("metric") or DEFAULT_METRIC[task]
    if not fields.get("metric"):
        notes.append(f"metric: {metric} (the default for {task}; set the competition's own)")
    exclude = {id_column, *targets, label_column, folds.get("group"), folds.get("time")} - {None}
    if task in ("tokens", "span"):
        return {**fields, "id": id_column, "targets": list(targets), "labels": fields.get("labels"),
                "text": fields["text"], "features": [], "task": task, "metric": metric}
    text, features = _columns(train, test, exclude, fields, notes)
    pair = fields.get("text_pair")
    if pair is None and "text" not in fields and len(text) == 2:
        pair = list(text)
        notes.append(f"text_pair: {pair} (two free-text columns: every text model reads them as a pair; "
                     f"`text: {pair}` without text_pair glues them into one text)")

    return {**fields, "id": id_column, "targets": list(targets), "labels": labels, "text": text,
            "text_pair": pair, "features": features, "task": task, "metric": metric}


def init_workspace(root: Path | str, *, train: Path | str, test: Path | str | None = None,
                   sample_submission: Path | str | None = None, holdout: float | None = None,
                   seed: int = 42, force: bool = False, **fields) -> Spec:
    """Write ``<root>/competition.yaml`` (and the workspace folders) for the given data files.

    Args:
        root: the workspace folder (created if missing).
        train, test, sample_submission: data files, absolute or relative to the current folder.
        holdout: carve this fraction of train, stratified and seeded, into a test set with its
            solution under ``<root>/data/`` (for data without a test file).
        seed: seed of the holdout and of the folds.
        force: overwrite an existing competition.yaml (and carved data).
        **fields: any spec key (``name, read, id, targets, labels, label_list, text, features,
            task, metric, folds``), or flat read options (``sep, encoding, header, names, quoting``)
            and fold options (``scheme, n_splits, group, time, bins``). ``id=None`` numbers the rows.

    Returns:
        The validated spec; its data was loaded and checked before anything was written.
    """
    root = Path(root).resolve()
    ws = Workspace(root)
    if ws.spec_file.exists() and not force:
        raise InputError(f"{ws.spec_file} already exists; pass {{force}} to overwrite it "
                         "(folds and experiments are kept)", force="force=True")
    valid = {*Spec.model_fields, *_READ_KEYS, *_FOLD_KEYS} - {"data_dir", "train", "test",
                                                              "sample_submission", "solution"}
    if set(fields) - valid:
        raise InputError(f"init_workspace: unknown field(s) {sorted(set(fields) - valid)}; "
                         f"valid: {', '.join(sorted(valid))}")
    read = read_options(fields.pop("read", None), **{k: fields.pop(k, None) for k in _READ_KEYS})
    folds = {"seed": seed, **(fields.pop("folds", None) or {})}
    folds.update({k: v for k in _FOLD_KEYS if (v := fields.pop(k, None)) is not None})
    if isinstance(fields.get("label_list"), str):
        fields["label_list"] = {"column": fields["label_list"]}
    if holdout is not None and test is not None:
        raise InputError("{holdout} carves a test set out of train; it cannot be combined with {test}",
                         holdout="a holdout", test="a test file")
    if holdout is not None and not 0 < holdout < 1:
        raise InputError(f"{{holdout}} {holdout}: give the fraction of train rows to hold out, e.g. 0.2",
                         holdout="holdout")

    paths = {"train": Path(train).resolve(), "test": test and Path(test).resolve(),
             "sample_submission": sample_submission and Path(sample_submission).resolve()}
    train_frame = read_table(paths["train"], read, role="train", given=True)
    test_frame = read_table(paths["test"], read, role="test", given=True) if paths["test"] else None
    sample = (read_table(paths["sample_submission"], ReadOptions(), role="sample submission", dtype=str,
                         given=True)
              if paths["sample_submission"] else None)

    notes: list[str] = []
    spec_fields = infer_fields(train_frame, test_frame, sample, fields, folds, notes)
    spec_fields.update(name=fields.get("name") or root.name, read=read.model_dump(), folds=folds)
    files = {k: p for k, p in paths.items() if p}
    common = Path(os.path.commonpath([p.parent for p in files.values()]))
    spec_fields["data_dir"] = _relative(common, root)
    spec_fields.update({k: p.relative_to(common).as_posix() for k, p in files.items()})

    written: list[Path] = []
    data_dir_existed = (root / "data").exists()
    try:
        if holdout is not None:
            frame = read_table(paths["train"], read, role="train", ids=spec_fields["id"])
            _carve(root, frame, spec_fields, holdout, seed, force, written)
            notes.append(f"holdout: {holdout:.0%} of {paths['train'].name} carved into data/ "
                         f"(stratified, seed {seed}); data/solution.csv holds its answers")
        try:
            spec = Spec.model_validate(spec_fields)
        except ValidationError as err:
            raise explain(err, "comp init", Spec) from None
        object.__setattr__(spec, "_root", root)
        load(spec)  # refuse a spec its own data fails
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        carved = root / "data"
        if not data_dir_existed and carved.is_dir() and not any(carved.iterdir()):
            carved.rmdir()
        raise
    artifacts.write_text(ws.spec_file, _spec_yaml(spec, notes))
    for folder in (ws.folds_dir, ws.experiments_dir, ws.submissions_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if not ws.base_config.exists():
        artifacts.write_text(ws.base_config, BASE_YAML)
    _write_gitignore(root, ["data/"] if holdout is not None else [])
    return load_spec(ws.spec_file)  # what the file says, e.g. the fold scheme made explicit
