"""Paired bootstrap: weighted scores equal the scores of the rows drawn; intervals cover the
true difference at the stated rate."""

from __future__ import annotations

import numpy as np
import pytest

from competition import bootstrap, metrics

CASES = [  # (metric, task)
    ("accuracy", "binary"), ("f1", "binary"), ("macro_f1", "binary"), ("roc_auc", "binary"),
    ("average_precision", "binary"), ("log_loss", "binary"),
    ("accuracy", "multiclass"), ("macro_f1", "multiclass"), ("roc_auc", "multiclass"),
    ("average_precision", "multiclass"), ("log_loss", "multiclass"),
    ("f1", "multilabel"), ("macro_f1", "multilabel"), ("mean_f1", "multilabel"), ("roc_auc", "multilabel"),
    ("mean_auc", "multilabel"), ("average_precision", "multilabel"), ("log_loss", "multilabel"),
    ("micro_f1", "multilabel"), ("jaccard", "multilabel"),
    ("rmse", "regression"), ("mae", "regression"),
]


def sample(task: str, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Targets and (n, k) predictions with signal, some of them tied (rounded to 2 decimals)."""
    if task == "binary":
        y = rng.integers(0, 2, n)
        return y, np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2)[:, None]
    if task == "multiclass":
        y = rng.integers(0, 4, n)
        p = rng.random((n, 4)) + np.eye(4)[y] * 0.8
        return y, np.round(p / p.sum(1, keepdims=True), 2)
    if task == "multilabel":
        y = rng.integers(0, 2, (n, 3))
        return y, np.round(np.clip(0.3 * y + 0.7 * rng.random((n, 3)), 0, 1), 2)
    y = rng.normal(size=(n, 2))
    return y, y + rng.normal(scale=0.5, size=(n, 2))


@pytest.mark.parametrize("name, task", CASES)
def test_weights_give_the_score_of_the_rows_drawn(name, task):
    rng = np.random.default_rng(0)
    y, p = sample(task, 300, rng)
    needed = metrics.to_needed(name, p, task, threshold=0.45)
    ones = bootstrap.scores(name, y, needed, task, np.ones((1, len(y))))[0]
    assert ones == pytest.approx(metrics.score(name, y, p, task, threshold=0.45), rel=1e-9, abs=1e-12)
    W = next(bootstrap.draws(len(y), n=4, seed=3))
    got = bootstrap.scores(name, y, needed, task, W)
    for w, value in zip(W, got):
        rows = np.repeat(np.arange(len(y)), w.astype(int))          # each row as often as drawn
        assert value == pytest.approx(metrics.score(name, y[rows], p[rows], task, threshold=0.45),
                                      rel=1e-9, abs=1e-12)


def test_paired_intervals_cover_the_true_difference_at_the_stated_rate():
    """Two classifiers right on a row with probability 0.80 and 0.77, their errors correlated
    through a shared row difficulty: the true difference in accuracy is 0.03."""
    covered, excludes_zero, widths = 0, 0, []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        hard = rng.random(400)
        a = (hard < 0.80).astype(int)                                    # right on the easiest 80%
        b = np.where(rng.random(400) < 0.5, hard < 0.77, rng.random(400) < 0.77).astype(int)
        y = np.ones(400, dtype=int)
        c = bootstrap.compare("accuracy", y, a, b, "binary", n=300, seed=seed)
        truth = 0.80 - 0.77
        covered += c.low <= truth <= c.high
        excludes_zero += c.significant
        widths.append(c.high - c.low)
    assert 0.90 <= covered / 200 <= 0.99, covered
    # pairing: the shared difficulty cancels, so the interval is narrower than two independent
    # scores' intervals would make it (normal approximation of the unpaired difference's width)
    unpaired = 2 * 1.96 * np.sqrt((0.80 * 0.20 + 0.77 * 0.23) / 400)
    assert np.mean(widths) < 0.8 * unpaired, (np.mean(widths), unpaired)
    assert excludes_zero > 20


def test_a_run_compared_with_itself_is_tied_and_the_interval_is_seeded():
    rng = np.random.default_rng(1)
    y, p = sample("binary", 500, rng)
    c = bootstrap.compare("roc_auc", y, p[:, 0], p[:, 0], "binary", n=200)
    assert c.diff == c.low == c.high == 0 and not c.significant
    noisy = np.clip(p[:, 0] + rng.normal(scale=0.2, size=500), 0, 1)
    first = bootstrap.compare("roc_auc", y, p[:, 0], noisy, "binary", n=200, seed=7)
    assert first == bootstrap.compare("roc_auc", y, p[:, 0], noisy, "binary", n=200, seed=7)
    assert first.diff > 0 and first.better == first.diff
    loss = bootstrap.compare("log_loss", y, p[:, 0], noisy, "binary", n=200)
    assert loss.better == -loss.diff


def test_the_interval_of_one_score_holds_its_value():
    rng = np.random.default_rng(2)
    y, p = sample("binary", 800, rng)
    low, high = bootstrap.interval("roc_auc", y, p, "binary", n=300)
    assert low < metrics.score("roc_auc", y, p, "binary") < high and high - low < 0.1


def test_delong_agrees_with_the_bootstrap_and_serves_large_auc_comparisons(monkeypatch):
    """DeLong's AUC difference is the AUC difference sklearn computes (ties counted one half) and
    its interval matches the paired bootstrap's on the same rows; above DELONG_ROWS, compare uses it."""
    rng = np.random.default_rng(5)
    n = 6000
    y = (rng.random(n) < 0.3).astype(int)
    shared = rng.normal(size=n)
    a = np.round(1 / (1 + np.exp(-(0.8 * (2 * y - 1 + shared) + 0.5 * rng.normal(size=n)))), 3)   # ties
    b = np.round(1 / (1 + np.exp(-(0.7 * (2 * y - 1 + shared) + 0.5 * rng.normal(size=n)))), 3)
    d = bootstrap.delong(y, a, b)
    truth = metrics.score("roc_auc", y, a[:, None], "binary") - metrics.score("roc_auc", y, b[:, None], "binary")
    assert d.diff == pytest.approx(truth, abs=1e-12)
    boot = bootstrap.compare("roc_auc", y, a, b, "binary")
    assert boot.diff == pytest.approx(d.diff, abs=1e-12)
    assert abs(d.low - boot.low) < 0.15 * (boot.high - boot.low)       # the same interval, within draw noise
    assert abs(d.high - boot.high) < 0.15 * (boot.high - boot.low)
    assert d.significant == boot.significant
    monkeypatch.setattr(bootstrap, "DELONG_ROWS", n - 1)
    assert bootstrap.compare("roc_auc", y, a, b, "binary") == d
    assert bootstrap.compare("roc_auc", y, a, a, "binary").text() == "+0.0000 [+0.0000, +0.0000]"
