"""Metrics: agree with scikit-learn, thresholds found exactly and fast, bad names refused."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from competition import metrics, thresholds
from competition.errors import InputError

N = 400


def _binary(n=N, seed=0, step=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    p = p if step is None else np.round(p / step) * step  # few distinct scores: ties, fast brute force
    return y, p[:, None]


def _multiclass(n=N, k=4, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p


def _multilabel(n=N, k=5, seed=2, step=None):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=(n, k)) < np.linspace(0.05, 0.5, k)).astype(np.int64)
    p = np.clip(0.4 * y + rng.uniform(0, 0.6, (n, k)), 0, 1)
    return y, (p if step is None else np.round(p / step) * step)


def test_every_metric_names_its_tasks_and_direction():
    assert set(metrics.METRICS) >= {"accuracy", "f1", "macro_f1", "roc_auc", "average_precision", "log_loss",
                                    "rmse", "mae", "mean_f1", "mean_auc", "micro_f1", "jaccard"}
    for m in metrics.METRICS.values():
        assert m.direction in ("maximize", "minimize") and m.needs in ("labels", "probs", "values")
        assert set(m.tasks) <= {"binary", "multiclass", "multilabel", "regression", "tokens", "span"} and m.tasks


def test_binary_metrics_match_sklearn():
    y, p = _binary()
    labels = (p[:, 0] >= 0.5).astype(int)
    assert metrics.score("accuracy", y, p, "binary") == pytest.approx(skm.accuracy_score(y, labels))
    assert metrics.score("f1", y, p, "binary") == pytest.approx(skm.f1_score(y, labels))
    assert metrics.score("macro_f1", y, p, "binary") == pytest.approx(skm.f1_score(y, labels, average="macro"))
    assert metrics.score("roc_auc", y, p, "binary") == pytest.approx(skm.roc_auc_score(y, p[:, 0]))
    assert metrics.score("average_precision", y, p, "binary") == pytest.approx(
        skm.average_precision_score(y, p[:, 0]))
    assert metrics.score("log_loss", y, p, "binary") == pytest.approx(skm.log_loss(y, p[:, 0]))


def test_multiclass_metrics_match_sklearn():
    y, p = _multiclass()
    assert metrics.score("accuracy", y, p, "multiclass") == pytest.approx(skm.accuracy_score(y, p.argmax(1)))
    assert metrics.score("macro_f1", y, p, "multiclass") == pytest.approx(
        skm.f1_score(y, p.argmax(1), average="macro"))
    assert metrics.score("roc_auc", y, p, "multiclass") == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert metrics.score("log_loss", y, p, "multiclass") == pytest.approx(skm.log_loss(y, p))


def test_multiclass_log_loss_rescales_rows_like_kaggle():
    """float32 rows off 1 by rounding (or unnormalised scores) are rescaled, without sklearn's warning."""
    y, p = _multiclass()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = metrics.score("log_loss", y, (3 * p).astype(np.float32), "multiclass")
    assert got == pytest.approx(skm.log_loss(y, p), rel=1e-5)


def test_multilabel_metrics_are_per_label_means():
    y, p = _multilabel()
    per_label_f1 = [skm.f1_score(y[:, j], p[:, j] >= 0.5) for j in range(y.shape[1])]
    per_label_auc = [skm.roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1])]
    for name in ("f1", "macro_f1", "mean_f1"):
        assert metrics.score(name, y, p, "multilabel") == pytest.approx(np.mean(per_label_f1))
    for name in ("roc_auc", "mean_auc"):
        assert metrics.score(name, y, p, "multilabel") == pytest.approx(np.mean(per_label_auc))
    assert metrics.score("average_precision", y, p, "multilabel") == pytest.approx(
        np.mean([skm.average_precision_score(y[:, j], p[:, j]) for j in range(y.shape[1])]))


def test_multilabel_auc_skips_labels_with_one_class():
    y, p = _multilabel()
    y[:, 0] = 0  # label 0 never occurs in this fold: its AUC is undefined, not 0
    expected = np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in range(1, y.shape[1])])
    assert metrics.score("mean_auc", y, p, "multilabel") == pytest.approx(expected)


def test_regression_metrics_one_and_many_targets():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    v = np.array([[1.5], [2.0], [2.0], [4.0]])
    assert metrics.score("rmse", y, v, "regression") == pytest.approx(np.sqrt((0.25 + 1) / 4))
    assert metrics.score("mae", y, v, "regression") == pytest.approx(1.5 / 4)
    y2 = np.stack([y, 2 * y], axis=1)
    v2 = np.concatenate([v, 2 * v], axis=1)
    assert metrics.score("mae", y2, v2, "regression") == pytest.approx((1.5 / 4 + 3 / 4) / 2)


@pytest.mark.parametrize("name", ["f1", "accuracy", "macro_f1"])
def test_best_binary_threshold_beats_every_other_cut(name):
    y, p = _binary(seed=3, step=0.02)
    thr = thresholds.best_threshold(name, y, p, "binary")
    best = metrics.score(name, y, p, "binary", threshold=thr)
    brute = max(metrics.score(name, y, p, "binary", threshold=t) for t in np.unique(p))
    assert best == pytest.approx(brute)
    assert thresholds.evaluate(name, y, p, "binary") == (best, thr)


def test_best_threshold_per_label_for_multilabel():
    y, p = _multilabel(seed=4, step=0.02)
    thr = thresholds.best_threshold("mean_f1", y, p, "multilabel")
    assert isinstance(thr, list) and len(thr) == y.shape[1]
    for j, t in enumerate(thr):
        brute = max(skm.f1_score(y[:, j], p[:, j] >= c) for c in np.unique(p[:, j]))
        assert skm.f1_score(y[:, j], p[:, j] >= t) == pytest.approx(brute)
    score, used = thresholds.evaluate("mean_f1", y, p, "multilabel")
    assert used == thr and score >= metrics.score("mean_f1", y, p, "multilabel")


def test_no_threshold_where_none_applies():
    y, p = _multiclass()
    assert thresholds.best_threshold("macro_f1", y, p, "multiclass") is None
    yb, pb = _binary()
    assert thresholds.best_threshold("roc_auc", yb, pb, "binary") is None
    assert thresholds.evaluate("log_loss", yb, pb, "binary")[1] is None


def test_threshold_edge_cases():
    y = np.array([0, 0, 1, 1])
    # every score equal: the best cut predicts all positive or none, never crashes
    thr = thresholds.best_threshold("accuracy", y, np.full((4, 1), 0.7), "binary")
    assert metrics.score("accuracy", y, np.full((4, 1), 0.7), "binary", threshold=thr) == 0.5
    # no positives at all: predicting none is the best accuracy, with a threshold above every score
    p = np.array([[0.2], [0.9], [0.4], [0.1]])
    thr = thresholds.best_threshold("accuracy", np.zeros(4, int), p, "binary")
    assert thr > 0.9 and metrics.score("accuracy", np.zeros(4, int), p, "binary", threshold=thr) == 1.0


def test_best_threshold_is_fast_on_a_million_rows():
    y, p = _binary(n=1_000_000, seed=5)
    start = time.perf_counter()
    thr = thresholds.best_threshold("f1", y, p, "binary")
    assert time.perf_counter() - start < 5 and 0 < thr < 1


def test_unknown_metric_lists_the_valid_ones():
    with pytest.raises(InputError, match=r"unknown metric 'f2'.*accuracy.*rmse"):
        metrics.score("f2", np.array([0, 1]), np.array([[0.1], [0.9]]), "binary")
    with pytest.raises(InputError, match="unknown metric"):
        metrics.greater_is_better("nope")


def test_wrong_task_or_shape_is_refused():
    with pytest.raises(InputError, match="does not score task 'regression'"):
        metrics.score("f1", np.array([0.5, 1.0]), np.array([[0.1], [0.9]]), "regression")
    with pytest.raises(InputError, match="2-D array"):
        metrics.score("f1", np.array([0, 1]), np.array([0.1, 0.9]), "binary")
    with pytest.raises(InputError, match="one column"):
        metrics.score("f1", np.array([0, 1]), np.array([[0.9, 0.1], [0.1, 0.9]]), "binary")
    y, p = _multilabel()
    with pytest.raises(InputError, match="5 labels"):
        metrics.score("mean_f1", y, p, "multilabel", threshold=[0.5, 0.5])


def test_direction_helpers():
    assert metrics.is_better("f1", 0.8, 0.7) and not metrics.is_better("f1", 0.7, 0.7)
    assert metrics.is_better("log_loss", 0.3, 0.4) and not metrics.greater_is_better("mae")


def test_spec_validates_metric_against_task():
    from competition.spec import Spec
    from competition.submission import output_kind

    with pytest.raises(ValueError, match="does not fit task 'multiclass'"):
        Spec(name="x", train="t.csv", targets=["y"], task="multiclass", metric="f1")
    with pytest.raises(ValueError, match="unknown metric"):
        Spec(name="x", train="t.csv", targets=["y"], task="binary", metric="f_one")
    for name in ("jaccard", "micro_f1"):       # multilabel only; a submission of 0/1 labels
        Spec(name="x", train="t.csv", targets=["a", "b"], task="multilabel", metric=name)
        with pytest.raises(ValueError, match="does not fit task 'binary'"):
            Spec(name="x", train="t.csv", targets=["y"], task="binary", metric=name)
        assert output_kind("multilabel", name) == "labels"


# -- nested thresholds: a fold's decisions never see its own labels ---------------------------

@pytest.mark.parametrize("name, prevalence", [("accuracy", 0.5), ("f1", 0.15), ("macro_f1", 0.5)])
def test_in_sample_thresholds_flatter_pure_noise_and_nested_ones_do_not(name, prevalence):
    """Predictions independent of the labels: no rule can score more on new rows than the best
    threshold fixed in advance. The in-sample CV beats that by choosing on the rows it scores; the
    nested CV does not."""
    grid = np.linspace(0, 1, 21)
    nested, in_sample, fixed = [], [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y, p = (rng.random(200) < prevalence).astype(int), rng.random((200, 1))
        r = thresholds.cv(name, y, p, "binary", np.arange(200) % 5)
        nested.append(r.score)
        in_sample.append(r.in_sample)
        fixed.append([metrics.score(name, y, p, "binary", threshold=t) for t in grid])
    best_fixed = np.mean(fixed, axis=0).max()       # the best rule chosen knowing the truth
    assert np.mean(in_sample) > best_fixed + 0.015, (np.mean(in_sample), best_fixed)
    assert np.mean(nested) < best_fixed + 0.005, (np.mean(nested), best_fixed)


def test_a_folds_threshold_and_score_use_nothing_of_that_fold_but_its_labels_for_scoring():
    rng = np.random.default_rng(3)
    y, folds = rng.integers(0, 2, 300), np.arange(300) % 3
    p = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)[:, None]
    before = thresholds.cv("f1", y, p, "binary", folds)
    shuffled = y.copy()
    shuffled[folds == 0] = rng.permutation(y[folds == 0])[::-1]        # fold 0's labels changed
    after = thresholds.cv("f1", shuffled, p, "binary", folds)
    assert after.fold_thresholds[0] == before.fold_thresholds[0]       # chosen without fold 0
    assert after.fold_thresholds[1] != before.fold_thresholds[1] or after.fold_thresholds[2] != before.fold_thresholds[2]
    # fold 0's score: its rows cut at its threshold, scored against its labels
    cut = (p[folds == 0, 0] >= before.fold_thresholds[0]).astype(int)
    assert before.folds[0] == pytest.approx(skm.f1_score(y[folds == 0], cut))
    assert after.folds[0] == pytest.approx(skm.f1_score(shuffled[folds == 0], cut))
    assert before.threshold == thresholds.best_threshold("f1", y, p, "binary")   # submissions: all OOF


def test_multilabel_thresholds_are_nested_per_label():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, (240, 3))
    p = np.clip(y * 0.25 + rng.random((240, 3)) * 0.75, 0, 1)
    folds = np.arange(240) % 4
    r = thresholds.cv("mean_f1", y, p, "multilabel", folds)
    for k in range(4):
        rest = folds != k
        expect = [thresholds.best_threshold("mean_f1", y[rest][:, [j]], p[rest][:, [j]], "multilabel")[0] for j in range(3)]
        assert r.fold_thresholds[k] == expect
    labels = np.vstack([p[folds == k] >= r.fold_thresholds[k] for k in range(4)])
    order = np.concatenate([np.flatnonzero(folds == k) for k in range(4)])
    assert r.score == pytest.approx(skm.f1_score(y[order], labels, average="macro", zero_division=0))
    assert r.in_sample >= r.score and len(r.threshold) == 3


def test_metrics_without_a_threshold_report_one_cv():
    rng = np.random.default_rng(0)
    y, p, folds = rng.integers(0, 2, 100), rng.random((100, 1)), np.arange(100) % 4
    r = thresholds.cv("roc_auc", y, p, "binary", folds)
    assert r.in_sample is None and r.threshold is None and r.fold_thresholds is None
    assert r.score == pytest.approx(metrics.score("roc_auc", y, p, "binary"))


# -- pooled multilabel metrics: micro_f1 and sample-wise jaccard, one shared threshold --------

def _jaccard_by_hand(y, labels) -> float:
    """Per row |true & predicted| / |true | predicted|, a row with neither counting 1."""
    rows = []
    for t, l in zip(y, labels):
        truth, pred = set(np.flatnonzero(t)), set(np.flatnonzero(l))
        rows.append(len(truth & pred) / len(truth | pred) if truth | pred else 1.0)
    return float(np.mean(rows))


def _with_an_empty_row(seed=6):
    y, p = _multilabel(seed=seed)
    y[0], p[0] = 0, 0.1               # no true label and, at every threshold used, no prediction
    return y, p


def test_pooled_multilabel_metrics_match_sklearn_and_their_definition():
    y, p = _with_an_empty_row()
    for threshold in (None, [0.3, 0.45, 0.5, 0.6, 0.7]):
        labels = (p >= (0.5 if threshold is None else np.array(threshold))).astype(int)
        assert labels[0].sum() == 0 and (labels.sum(1) > 0).any() and (labels.sum(1) > 1).any()
        jaccard = metrics.score("jaccard", y, p, "multilabel", threshold=threshold)
        assert jaccard == pytest.approx(skm.jaccard_score(y, labels, average="samples", zero_division=1.0))
        assert jaccard == pytest.approx(_jaccard_by_hand(y, labels))
        tp, pred, pos = (y * labels).sum(), labels.sum(), y.sum()
        micro = metrics.score("micro_f1", y, p, "multilabel", threshold=threshold)
        assert micro == pytest.approx(skm.f1_score(y, labels, average="micro"))
        assert micro == pytest.approx(2 * tp / (pred + pos))
    # the empty row is right: it scores 1 and lifts the mean
    assert metrics.score("jaccard", y[:1], p[:1], "multilabel") == 1.0
    rest = metrics.score("jaccard", y[1:], p[1:], "multilabel")
    assert metrics.score("jaccard", y, p, "multilabel") == pytest.approx((rest * (len(y) - 1) + 1) / len(y))


def _brute(name, y, p, cuts) -> np.ndarray:
    """Each cut's score, computed from the definition with every label cut there."""
    labels = p[None] >= np.asarray(cuts)[:, None, None]          # (cuts, n, L)
    inter, pred = (labels & (y[None] > 0)).sum(2), labels.sum(2)
    if name == "micro_f1":
        tp, pred_all = inter.sum(1), pred.sum(1)
        return 2 * tp / (pred_all + y.sum())
    union = y.sum(1)[None] + pred - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean(1)


@pytest.mark.parametrize("name", ["micro_f1", "jaccard"])
def test_pooled_threshold_is_one_for_every_label_and_no_cut_beats_it(name):
    for seed, step in ((7, None), (8, 0.02)):       # distinct scores; many ties in and across rows
        y, p = _multilabel(n=300, seed=seed, step=step)
        y[:5], p[:5] = 0, p[:5] * 0.5                            # some rows with no true label
        thr = thresholds.best_threshold(name, y, p, "multilabel")
        assert isinstance(thr, list) and len(thr) == y.shape[1] and len(set(thr)) == 1
        best = metrics.score(name, y, p, "multilabel", threshold=thr)
        assert best == pytest.approx(_brute(name, y, p, thr[:1])[0], abs=1e-12)
        fine = np.linspace(0, 1, 2001)
        assert _brute(name, y, p, fine).max() <= best + 1e-12
        # exact: every cut that can change a label (each distinct score, and above them all)
        every = np.r_[np.unique(p), 1.01]
        assert _brute(name, y, p, every).max() == pytest.approx(best, abs=1e-12)
        assert thresholds.evaluate(name, y, p, "multilabel") == (best, thr)


def test_jaccard_threshold_beats_a_coarse_grid_and_finds_a_cut_far_from_half():
    y, p = _multilabel(n=500, seed=9)
    thr = thresholds.best_threshold("jaccard", y, p, "multilabel")
    coarse = np.linspace(0, 1, 51)
    chosen = metrics.score("jaccard", y, p, "multilabel", threshold=thr)
    assert chosen >= _brute("jaccard", y, p, coarse).max() - 1e-3
    squashed = 0.3 * p                              # every score in [0, 0.3]: 0.5 predicts nothing
    thr = thresholds.best_threshold("jaccard", y, squashed, "multilabel")
    assert thr[0] < 0.3
    at_half = metrics.score("jaccard", y, squashed, "multilabel")
    assert metrics.score("jaccard", y, squashed, "multilabel", threshold=thr) > at_half + 0.1
    assert metrics.score("jaccard", y, squashed, "multilabel", threshold=thr) >= (
        _brute("jaccard", y, squashed, coarse * 0.3).max() - 1e-12)


@pytest.mark.parametrize("name", ["micro_f1", "jaccard"])
def test_pooled_thresholds_are_nested(name):
    rng = np.random.default_rng(10)
    y = (rng.random((240, 4)) < 0.3).astype(int)
    p = np.clip(y * 0.25 + rng.random((240, 4)) * 0.75, 0, 1)
    folds = np.arange(240) % 4
    r = thresholds.cv(name, y, p, "multilabel", folds)
    for k in range(4):
        rest = folds != k
        assert r.fold_thresholds[k] == thresholds.best_threshold(name, y[rest], p[rest], "multilabel")
    labels = np.vstack([p[folds == k] >= r.fold_thresholds[k] for k in range(4)]).astype(int)
    order = np.concatenate([np.flatnonzero(folds == k) for k in range(4)])
    expect = (skm.f1_score(y[order], labels, average="micro") if name == "micro_f1"
              else skm.jaccard_score(y[order], labels, average="samples", zero_division=1.0))
    assert r.score == pytest.approx(expect)
    assert r.threshold == thresholds.best_threshold(name, y, p, "multilabel") and r.in_sample >= r.score


def test_jaccard_threshold_is_fast_on_goemotions_size():
    rng = np.random.default_rng(11)
    y = (rng.random((43_410, 28)) < 0.06).astype(np.int64)
    p = np.clip(0.3 * y + 0.7 * rng.random(y.shape), 0, 1).astype(np.float32)
    start = time.perf_counter()
    thr = thresholds.best_threshold("jaccard", y, p, "multilabel")
    elapsed = time.perf_counter() - start
    print(f"jaccard best_threshold on 43,410 x 28: {elapsed:.3f} s")
    assert elapsed < 3 and 0 < thr[0] < 1
