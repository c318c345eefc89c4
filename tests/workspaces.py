"""Small real workspaces for tests: a seeded subset of a shared dataset, written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.datasets import shared_data

TWEETS_SPEC = """\
name: tweets-mini
train: train.csv
test: test.csv
sample_submission: sample_submission.csv
id: id
targets: [target]
text: [keyword, text]
task: binary
metric: f1
folds: {{scheme: stratified, n_splits: {n_splits}, seed: 42}}
"""


def tweets_workspace(root: Path, n_train: int = 600, n_test: int = 150, n_splits: int = 3,
                     experiments: dict[str, str] | None = None, folds: bool = True):
    """A disaster-tweets workspace with ``n_train`` / ``n_test`` rows; folds written when asked."""
    return _sample_workspace(root, "disaster-tweets", TWEETS_SPEC.format(n_splits=n_splits), "target",
                             "text:\n  template: '{keyword} | {text}'\ntrack:\n  wandb: false\n",
                             n_train, n_test, experiments or {"001": "template: tfidf\n"}, folds)


def _sample_workspace(root: Path, dataset: str, spec: str, target: str, base: str, n_train: int, n_test: int,
                      experiments: dict[str, str], folds: bool, id_column: str = "id"):
    """A seeded sample of a shared dataset's train rows and its first test rows, with ``spec``,
    ``base`` (base.yaml) and ``experiments``; folds written when asked."""
    from competition import data, folds as folds_mod
    from competition.spec import load_spec
    from competition.workspace import Workspace

    src = shared_data() / dataset
    train = pd.read_csv(src / "train.csv").sample(n=n_train, random_state=0).sort_values(id_column)
    test = pd.read_csv(src / "test.csv").head(n_test)
    root.mkdir(parents=True, exist_ok=True)
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    test[[id_column]].assign(**{target: 0}).to_csv(root / "sample_submission.csv", index=False)
    (root / "competition.yaml").write_text(spec)
    exp_dir = root / "experiments"
    exp_dir.mkdir(exist_ok=True)
    (exp_dir / "base.yaml").write_text(base)
    for exp, text in experiments.items():
        (exp_dir / f"{exp}.yaml").write_text(text)
    ws = Workspace(root)
    if folds:
        folds_mod.write_folds(ws, data.load(load_spec(ws.spec_file)))
    return ws

MSRP_SPEC = """\
name: msrp-mini
train: train.csv
test: test.csv
sample_submission: sample_submission.csv
id: id
targets: [label]
text_pair: [sentence1, sentence2]
task: binary
metric: f1
folds: {{scheme: stratified, n_splits: {n_splits}, seed: 42}}
"""


def msrp_workspace(root: Path, n_train: int = 400, n_test: int = 100, n_splits: int = 3,
                   experiments: dict[str, str] | None = None, folds: bool = True):
    """A text-pair workspace: ``n_train`` / ``n_test`` rows of the paraphrase corpus (msrp), its spec
    naming ``text_pair: [sentence1, sentence2]``; folds written when asked."""
    return _sample_workspace(root, "msrp", MSRP_SPEC.format(n_splits=n_splits), "label",
                             "track:\n  wandb: false\n", n_train, n_test, experiments or {}, folds)

WNUT_SPEC = """\
name: wnut17-mini
train: train.csv
test: test.csv
sample_submission: sample_submission.csv
id: id
task: tokens
text: [tokens]
targets: [tags]
labels: [corporation, creative-work, group, location, person, product]
metric: entity_f1
folds: {{scheme: kfold, n_splits: {n_splits}, seed: 42}}
"""


def wnut_workspace(root: Path, n_train: int = 300, n_test: int = 60, n_splits: int = 3,
                   experiments: dict[str, str] | None = None, folds: bool = True):
    """A token-task workspace: ``n_train`` / ``n_test`` sentences of WNUT-17 (JSON token and tag lists)."""
    return _sample_workspace(root, "wnut17", WNUT_SPEC.format(n_splits=n_splits), "tags",
                             "track:\n  wandb: false\n", n_train, n_test, experiments or {"001": "model: {family: crf}\n"},
                             folds)

SPANS_SPEC = """\
name: tweet-spans-mini
train: train.csv
test: test.csv
sample_submission: sample_submission.csv
id: textID
task: span
text: [text]
span: {{condition: [sentiment]}}
targets: [selected_text]
metric: word_jaccard
folds: {{scheme: kfold, n_splits: {n_splits}, seed: 42}}
"""


def spans_workspace(root: Path, n_train: int = 400, n_test: int = 80, n_splits: int = 3,
                    experiments: dict[str, str] | None = None, folds: bool = True):
    """A span-task workspace: ``n_train`` / ``n_test`` tweets of Tweet Sentiment Extraction (the answer a
    substring of the text, the sentiment its condition)."""
    return _sample_workspace(root, "tweet-spans", SPANS_SPEC.format(n_splits=n_splits), "selected_text",
                             "track:\n  wandb: false\n", n_train, n_test,
                             experiments or {"001": "model: {family: words, n_estimators: 40}\n"}, folds,
                             id_column="textID")
