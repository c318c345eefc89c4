"""Pseudo-labelling and distillation (competition.teach) keep the CV honest.

The permutation tests build a workspace whose labels are coin flips, so nothing can be learnt and an
honest CV is at chance. Every text appears twice in train (in different folds, mostly) with its own
coin flip, and once more in test. A model that memorises its training rows then carries fold k's
labels to the copies in other folds and in test: a lesson built from any model that saw fold k leaks
them back into fold k's score. Each test runs the fold-safe lesson (at chance) and, as the control
that shows the test can fail, the naive one (the sources' averaged test predictions; the teacher's
OOF), which must score above chance on the same data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from competition import runs, teach
from competition.config import load_config
from competition.errors import InputError
from competition.train import train
from tests.tiny import tiny_bert
from tests.workspaces import tweets_workspace

N_TEXTS = 100
# AUC of a random scorer on 2 x N_TEXTS rows with ~half positives: sd ~ sqrt((n + 1) / (12 n1 n0)) ~ 0.041
CHANCE = 0.14    # ~3.5 sd


@pytest.fixture(scope="module")
def coin_flips(tmp_path_factory):
    """Train: N_TEXTS tweets twice each, every row's label a coin flip; test: the same texts once.
    001 is a TF-IDF model that memorises (C = 1000): the source and teacher of the lessons."""
    from competition import data, folds as folds_mod
    from competition.spec import load_spec

    root = tmp_path_factory.mktemp("teach")
    ws = tweets_workspace(root / "ws", n_train=N_TEXTS, n_test=10, n_splits=3, experiments={}, folds=False)
    texts = pd.read_csv(ws.root / "train.csv")
    rng = np.random.default_rng(0)
    doubled = pd.concat([texts, texts.assign(id=texts["id"] + 100_000)], ignore_index=True)
    doubled["target"] = rng.integers(0, 2, len(doubled))
    doubled.to_csv(ws.root / "train.csv", index=False)
    test = texts.drop(columns="target").assign(id=texts["id"] + 200_000)
    test.to_csv(ws.root / "test.csv", index=False)
    test[["id"]].assign(target=0).to_csv(ws.root / "sample_submission.csv", index=False)
    folds_mod.write_folds(ws, data.load(load_spec(ws.spec_file)))
    tiny = tiny_bert(root, texts["text"].astype(str).tolist(), hidden=64, vocab_size=800)
    (ws.root / "experiments" / "001.yaml").write_text("template: tfidf\nmodel: {C: 1000.0}\n")
    student = (f"model: {{family: encoder, name: {tiny}, max_length: 40, lr: 2.0e-3, dropout: 0.0}}\n"
               "train: {epochs: 8, batch_size: 16, eval_batch_size: 64, select: last, warmup: 0.0}\n")
    (ws.root / "experiments" / "010.yaml").write_text(student + "pseudo: {from: '001', weight: 2.0}\n")
    (ws.root / "experiments" / "011.yaml").write_text(student + "distill: {teacher: '001', alpha: 0.0}\n")
    assert train(ws, load_config(ws, "001")).complete
    return ws


def _auc(ws, name: str) -> float:
    from competition.data import load
    from competition.spec import load_spec

    y = load(load_spec(ws.spec_file)).y
    oof = runs.load_run(ws, name).oof()
    return roc_auc_score(y, oof["target"].to_numpy())


def _leaky_pseudo(self, k):
    """The naive protocol: every fold takes the sources' averaged test predictions (all folds' models)."""
    probs = np.mean([run.test()[["target"]].to_numpy(np.float64) for run in self.pseudo], axis=0)
    return np.arange(len(probs)), probs


def _leaky_distill(self, k):
    """The naive protocol: the teacher's OOF predictions as the soft targets of every fold."""
    lesson = teach.Lesson(alpha=self.cfg.distill.alpha, temperature=self.cfg.distill.temperature)
    lesson.teacher = np.mean([run.oof()[["target"]].to_numpy(np.float64) for run in self.teachers], axis=0)
    return lesson


def test_the_memorising_source_is_at_chance_on_its_own_cv(coin_flips):
    assert abs(_auc(coin_flips, "001") - 0.5) < CHANCE


@pytest.mark.parametrize("lesson, exp, leak", [("pseudo", "010", "_pseudo"), ("distill", "011", "lesson")])
@pytest.mark.parametrize("protocol", ["fold-safe", "leaky"])
def test_a_taught_run_on_coin_flip_labels_scores_at_chance(coin_flips, monkeypatch, lesson, exp, leak, protocol):
    """pseudo: 010 (pseudo-labelled test rows); distill: 011 (all weight on the teacher)."""
    if protocol == "leaky":
        monkeypatch.setattr(teach.Teacher, leak, _leaky_pseudo if lesson == "pseudo" else _leaky_distill)
        (coin_flips.root / "experiments" / f"{exp}-leaky.yaml").write_text(
            (coin_flips.root / "experiments" / f"{exp}.yaml").read_text())
        exp = f"{exp}-leaky"
    train(coin_flips, load_config(coin_flips, exp))
    auc = _auc(coin_flips, exp)
    if protocol == "fold-safe":
        assert abs(auc - 0.5) < CHANCE, auc
    else:
        assert auc > 0.5 + CHANCE, auc     # the control: the test sees a leak when there is one


def test_fold_k_pseudo_targets_are_the_sources_fold_k_test_predictions(coin_flips):
    from competition.data import load
    from competition.runs import input_hashes
    from competition.spec import load_spec

    data = load(load_spec(coin_flips.spec_file))
    teacher = teach.Teacher(coin_flips, load_config(coin_flips, "010"), data, input_hashes(coin_flips, data))
    test = runs.load_run(coin_flips, "001").test()
    for k in range(3):
        lesson = teacher.lesson(k)
        assert lesson.pseudo_weight == 2.0 and lesson.teacher is None
        np.testing.assert_array_equal(lesson.pseudo_targets[:, 0], test[f"target__fold{k}"].to_numpy())
    confident = teach.Teacher(coin_flips, load_config(coin_flips, "010", ["pseudo.select=confident",
                                                                        "pseudo.confidence=0.8"]),
                              data, input_hashes(coin_flips, data)).lesson(1)
    p = test["target__fold1"].to_numpy()
    assert confident.pseudo_rows.tolist() == np.flatnonzero((p >= 0.8) | (p <= 0.2)).tolist()
    assert set(confident.pseudo_targets.ravel()) <= {0.0, 1.0}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_lesson_with_unit_weights_and_no_teacher_is_the_plain_loss(task):
    from competition.models.textmodel import TextModel
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32))
    n_out = 3 if task == "multiclass" else 1
    model = TextModel(encoder, task, n_out, label_smoothing=0.1 if task != "regression" else 0.0)
    logits = torch.randn(8, n_out)
    if task == "multiclass":
        codes = torch.randint(0, 3, (8,))
        plain, probs = model.loss(logits, codes), torch.nn.functional.one_hot(codes, 3).float()
    else:
        probs = torch.randint(0, 2, (8, 1)).float() if task == "binary" else torch.randn(8, 1)
        plain = model.loss(logits, probs)
    taught = model.loss(logits, probs, torch.ones(8))
    assert torch.allclose(plain, taught, atol=1e-6)
    # all the weight on the teacher: the loss is the teacher's term alone, T² x soft CE at temperature T
    model.distill = (0.0, 2.0)
    teacher = torch.rand(8, n_out) if task != "multiclass" else torch.rand(8, 3).softmax(-1)
    mixed = model.loss(logits, probs, torch.ones(8), teacher)
    if task == "binary":
        soft = torch.sigmoid(torch.logit(teacher) / 2)
        expected = 4 * torch.nn.functional.binary_cross_entropy_with_logits(logits / 2, soft)
    elif task == "multiclass":
        soft = (teacher.log() / 2).softmax(-1)
        expected = 4 * -(soft * (logits / 2).log_softmax(-1)).sum(-1).mean()
    else:
        expected = ((logits - teacher) ** 2).mean()
    assert torch.allclose(mixed, expected, atol=1e-5)
    # a row of weight 0 does not count
    weight = torch.ones(8)
    weight[0] = 0
    assert torch.allclose(model.loss(logits, probs, weight, teacher), model.loss(logits[1:], probs[1:], torch.ones(7),
                                                                                  teacher[1:]), atol=1e-6)


@pytest.mark.parametrize("overrides, message", [
    (["model.family=tfidf", "pseudo.from=['001']"], "applies to the torch families"),
    (["pseudo.from=['012']"], "is this experiment itself"),
    (["pseudo.from=['nope']"], "no run named 'nope'"),
    (["pseudo.from=['s1']"], "is a stack"),
    (["distill.teacher=[1]"], "was read as a number"),
])
def test_bad_sources_are_refused_before_any_fold_trains(coin_flips, overrides, message):
    from competition.stack import stack

    experiments = coin_flips.root / "experiments"
    if not (coin_flips.run_dir("s1") / "manifest.json").is_file():
        (experiments / "002.yaml").write_text("template: tfidf\nmodel: {word_ngrams: null}\n")
        train(coin_flips, load_config(coin_flips, "002"))
        stack(coin_flips, inputs=["001", "002"], name="s1")
    (experiments / "012.yaml").write_text((experiments / "010.yaml").read_text())
    with pytest.raises(InputError, match=message):
        train(coin_flips, load_config(coin_flips, "012", ["pseudo=null", *overrides]))
    assert not coin_flips.run_dir("012").exists()


def test_comp_tune_searches_the_lesson_keys_with_the_workspace_sources(coin_flips):
    from competition import search
    from competition.tune import tune

    params = search.parse_space({"distill.alpha": {"type": "float", "low": 0.2, "high": 0.8},
                                 "distill.temperature": {"type": "categorical", "choices": [1.0, 2.0]}}, "011.yaml")
    search.check_space(coin_flips, "011", params)
    bad = search.parse_space({"distill.alpha": {"type": "float", "low": 0.2, "high": 1.5}}, "011.yaml")
    with pytest.raises(InputError, match="distill.alpha"):
        search.check_space(coin_flips, "011", bad)
    # a trial's own run lives in the study's scratch folder, its teacher (001) is the workspace's
    experiments = coin_flips.root / "experiments"
    (experiments / "014.yaml").write_text((experiments / "011.yaml").read_text()
                                          + "search:\n  distill.alpha: {type: grid, values: [0.3, 0.7]}\n")
    result = tune(coin_flips, "014", sampler="grid", overrides=["train.epochs=1"], export=False)
    assert result.ran == 2 and result.states.get("COMPLETE") == 2, result.states
    assert result.best_value is not None and not coin_flips.run_dir("014").exists()


def test_a_source_retrained_since_makes_the_taught_folds_stale(coin_flips):
    experiments = coin_flips.root / "experiments"
    (experiments / "003.yaml").write_text("template: tfidf\nmodel: {C: 10.0}\n")
    train(coin_flips, load_config(coin_flips, "003"))
    (experiments / "013.yaml").write_text((experiments / "010.yaml").read_text())
    overrides = ["pseudo.from=['003']", "train.epochs=1"]
    assert train(coin_flips, load_config(coin_flips, "013", overrides), folds=[0]).folds[0].status == "trained"
    assert train(coin_flips, load_config(coin_flips, "013", overrides), folds=[0]).folds[0].status == "skipped"
    train(coin_flips, load_config(coin_flips, "003", ["model.C=1.0"]), force=True)
    with pytest.raises(InputError, match="pseudo-label / teacher runs changed"):
        train(coin_flips, load_config(coin_flips, "013", overrides), folds=[0])
    assert train(coin_flips, load_config(coin_flips, "013", overrides), folds=[0], force=True).folds[0].status == "trained"


def test_a_partly_trained_source_teaches_the_folds_it_has(coin_flips):
    experiments = coin_flips.root / "experiments"
    (experiments / "004.yaml").write_text("template: tfidf\n")
    train(coin_flips, load_config(coin_flips, "004"), folds=[0])
    (experiments / "015.yaml").write_text((experiments / "010.yaml").read_text())
    overrides = ["pseudo.from=['004']", "distill.teacher=['004']", "train.epochs=1"]
    assert train(coin_flips, load_config(coin_flips, "015", overrides), folds=[0]).folds[0].status == "trained"
    with pytest.raises(InputError, match=r"no finished fold 1 .*comp train exp=004 --fold 1"):
        train(coin_flips, load_config(coin_flips, "015", overrides), folds=[1])
    assert not (coin_flips.run_dir("015") / "fold1").exists()
