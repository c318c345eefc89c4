"""Paired bootstrap over OOF rows: is one run's CV really better than another's, or noise?

Drawing the train rows with replacement ``n`` times (seeded) and scoring both runs on each draw
gives the distribution of their score difference; its 2.5 and 97.5 percentiles are a 95%
interval. Both runs are scored on the *same* draws (paired), so the rows' shared difficulty
cancels and the interval is far narrower than the two CVs' own spreads would suggest.

A draw is a row-weight vector (how many times each row was drawn), and every metric of
:mod:`competition.metrics` is written here as a function of weighted sums, so a thousand
draws of 40,000 rows are matrix products, not a thousand sklearn calls. Threshold metrics are
scored on a run's nested decisions (:func:`thresholds.decisions`): the threshold is part of the
model, not re-chosen per draw.

Binary ROC AUC over more than :data:`DELONG_ROWS` rows is compared by DeLong's method instead
(DeLong, DeLong & Clarke-Pearson 1988, in Sun & Xu's O(n log n) form): the normal interval of
the paired AUC difference from its structural components, which the bootstrap's interval
approaches as rows grow. A thousand draws of a million rows cost minutes; DeLong costs a sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from competition import metrics, spans, tokens

N_DRAWS = 1000
_CHUNK = 100          # draws scored at once: (100, n_rows) weights
DELONG_ROWS = 100_000  # binary roc_auc compared over more rows than this: DeLong's interval


@dataclass(frozen=True)
class Comparison:
    """``a``'s score minus ``b``'s on the same rows, with a 95% paired-bootstrap interval.

    ``better``: the difference in the metric's favourable direction (> 0: ``a`` is better).
    """

    diff: float
    low: float
    high: float
    maximize: bool

    @property
    def significant(self) -> bool:
        """The interval leaves out 0: the difference is more than resampling noise."""
        return self.low > 0 or self.high < 0

    @property
    def better(self) -> float:
        return self.diff if self.maximize else -self.diff

    def text(self) -> str:
        """``+0.0123 [+0.0040, +0.0210]``: the difference and its interval.

        >>> Comparison(0.01, -0.002, 0.02, True).text()
        '+0.0100 [-0.0020, +0.0200]'
        """
        return f"{self.diff:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def draws(n_rows: int, n: int = N_DRAWS, seed: int = 0):
    """Row-weight matrices of ``n`` bootstrap draws, ``_CHUNK`` at a time: ``(c, n_rows)`` counts.

    >>> w = next(draws(5, n=3, seed=1))
    >>> w.shape, w.sum(axis=1).tolist()
    ((3, 5), [5.0, 5.0, 5.0])
    """
    rng = np.random.default_rng(seed)
    for start in range(0, n, _CHUNK):
        c = min(_CHUNK, n - start)
        rows = rng.integers(0, n_rows, (c, n_rows)) + np.arange(c)[:, None] * n_rows
        yield np.bincount(rows.ravel(), minlength=c * n_rows).reshape(c, n_rows).astype(np.float64)


def scores(name: str, y, needed, task: str, W: np.ndarray) -> np.ndarray:
    """Metric ``name`` of predictions ``needed`` (in the form :func:`metrics.to_needed` gives)
    under each row-weight vector of ``W`` (c, n): ``(c,)`` scores. A row of ones gives the plain
    score; integer counts give the score of the rows drawn that many times."""
    if task == "tokens":     # entity F1 of the drawn rows: their entity counts summed
        tp, predicted, true = (W @ tokens.row_counts(y, needed)).T
        return np.divide(2 * tp, predicted + true, out=np.zeros_like(tp), where=predicted + true > 0)
    if task == "span":       # the mean of the drawn rows' scores
        return _mean(W, spans.row_scores(name, y, needed))
    y, p = np.asarray(y), np.asarray(needed)
    if task == "regression":
        y = y.reshape(len(y), -1).astype(float)
        p = p.reshape(len(p), -1).astype(float)
        if name == "rmse":
            return np.mean([np.sqrt(_mean(W, (y[:, t] - p[:, t]) ** 2)) for t in range(y.shape[1])], axis=0)
        return _mean(W, np.abs(y - p).mean(axis=1))                                    # mae
    if name == "accuracy":
        return _mean(W, (p == y).astype(float))
    if name == "log_loss":
        return _mean(W, _row_log_loss(y, p, task))
    if name in ("roc_auc", "mean_auc", "average_precision"):
        fn = _auc if name != "average_precision" else _ap
        if task == "binary":
            return fn(W, y.astype(float), p.astype(float))
        y01 = np.eye(p.shape[1])[y] if task == "multiclass" else y.astype(float)
        cols = [j for j in range(p.shape[1]) if 0 < y01[:, j].sum() < len(y01)]
        return np.nanmean([fn(W, y01[:, j], p[:, j].astype(float)) for j in cols], axis=0)
    return _label_metric(name, y, p, task, W)


def _mean(W: np.ndarray, v: np.ndarray) -> np.ndarray:
    return W @ v / W.sum(axis=1)


def _f1(W, y01: np.ndarray, l01: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F1, defined) of one 0/1 column under each weight row; defined: the class was seen at all."""
    tp, pred, pos = W @ (y01 * l01), W @ l01, W @ y01
    den = pred + pos
    return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0), den > 0


def _label_metric(name: str, y, labels, task: str, W) -> np.ndarray:
    if name == "micro_f1":   # one confusion count over every (row, label)
        tp, pred, pos = W @ (y * labels).sum(1), W @ labels.sum(1), W @ y.sum(1)
        return np.divide(2 * tp, pred + pos, out=np.zeros_like(tp), where=pred + pos > 0)
    if name == "jaccard":    # per row |true & pred| / |true | pred|, both empty counts as 1
        inter, union = (y * labels).sum(1), ((y + labels) > 0).sum(1)
        return _mean(W, np.divide(inter, union, out=np.ones(len(y)), where=union > 0))
    if task == "multilabel":  # f1, macro_f1, mean_f1: the mean per-label F1, every label counted
        return np.mean([_f1(W, y[:, j].astype(float), labels[:, j].astype(float))[0]
                        for j in range(y.shape[1])], axis=0)
    if name == "f1":          # binary: the positive class
        return _f1(W, y.astype(float), labels.astype(float))[0]
    classes = [0, 1] if task == "binary" else range(int(max(y.max(), labels.max())) + 1)
    per_class = [_f1(W, (y == k).astype(float), (labels == k).astype(float)) for k in classes]
    f1 = np.array([f for f, _ in per_class])
    seen = np.array([s for _, s in per_class])   # as sklearn: classes in neither y nor labels don't count
    return (f1 * seen).sum(axis=0) / seen.sum(axis=0)


def _row_log_loss(y, p, task: str) -> np.ndarray:
    """Each row's log loss, clipped as sklearn clips (float64 machine epsilon)."""
    eps = np.finfo(np.float64).eps
    p = np.asarray(p, dtype=np.float64)
    if task == "binary":
        p = np.clip(p, eps, 1 - eps)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    if task == "multiclass":
        p = np.clip(p / p.sum(axis=1, keepdims=True), eps, 1 - eps)
        p = p / p.sum(axis=1, keepdims=True)
        return -np.log(p[np.arange(len(y)), y])
    p = np.clip(p, eps, 1 - eps)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)


def _groups(p: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """The row order by score and the start of each run of tied scores in it."""
    order = np.argsort(-p if descending else p, kind="stable")
    s = p[order]
    return order, np.r_[0, np.flatnonzero(np.diff(s)) + 1]


def _auc(W, y01: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Weighted ROC AUC: P(a positive scores above a negative), ties counting one half."""
    order, starts = _groups(p, descending=False)
    wpos = np.add.reduceat(W[:, order] * y01[order], starts, axis=1)
    wneg = np.add.reduceat(W[:, order] * (1 - y01[order]), starts, axis=1)
    below = np.cumsum(wneg, axis=1) - wneg
    total_pos, total_neg = wpos.sum(axis=1), wneg.sum(axis=1)
    num = (wpos * (below + wneg / 2)).sum(axis=1)
    den = total_pos * total_neg
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


def _ap(W, y01: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Weighted average precision as sklearn computes it: sum over score cuts of
    (recall gained) x (precision there)."""
    order, starts = _groups(p, descending=True)
    tp = np.cumsum(np.add.reduceat(W[:, order] * y01[order], starts, axis=1), axis=1)
    seen = np.cumsum(np.add.reduceat(W[:, order], starts, axis=1), axis=1)
    total = tp[:, -1:]
    precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    gained = np.diff(np.c_[np.zeros(len(tp)), tp], axis=1)
    out = (gained * precision).sum(axis=1)
    return np.divide(out, total[:, 0], out=np.full(len(tp), np.nan), where=total[:, 0] > 0)


def compare(name: str, y, a, b, task: str, *, n: int = N_DRAWS, seed: int = 0) -> Comparison:
    """Score of ``a`` minus score of ``b`` (both in the form the metric takes, e.g. from
    :func:`thresholds.decisions`) with its 95% paired-bootstrap interval."""
    if name == "roc_auc" and task == "binary" and len(y) > DELONG_ROWS:
        return delong(y, a, b)
    diff = float(scores(name, y, a, task, np.ones((1, len(y))))[0] - scores(name, y, b, task, np.ones((1, len(y))))[0])
    parts = [scores(name, y, a, task, W) - scores(name, y, b, task, W) for W in draws(len(y), n, seed)]
    low, high = np.nanpercentile(np.concatenate(parts), [2.5, 97.5])
    return Comparison(diff, float(low), float(high), metrics.greater_is_better(name))


def delong(y, a, b, z: float = 1.959963984540054) -> Comparison:
    """ROC AUC of ``a`` minus that of ``b`` (binary ``y``, scores of the same rows) with DeLong's 95%
    interval: the two AUCs' structural components (per positive: the share of negatives it
    outranks; per negative: the share of positives outranking it; ties one half), their paired
    covariance, a normal interval around the difference.

    >>> c = delong(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.1, 0.4, 0.35, 0.8]))
    >>> c.diff, c.low, c.high
    (0.0, 0.0, 0.0)
    """
    # scipy (~1 s): loaded where used
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool).ravel()
    scores_ = np.stack([np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()])   # (2, n)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return Comparison(float("nan"), float("nan"), float("nan"), True)
    all_ranks = rankdata(scores_, axis=1)                    # midranks: ties count one half
    pos_ranks = rankdata(scores_[:, y], axis=1)
    neg_ranks = rankdata(scores_[:, ~y], axis=1)
    v10 = (all_ranks[:, y] - pos_ranks) / n                  # (2, m): negatives each positive outranks
    v01 = 1 - (all_ranks[:, ~y] - neg_ranks) / m             # (2, n): positives outranking each negative
    auc = v10.mean(axis=1)
    cov = np.cov(v10) / m + np.cov(v01) / n
    diff = float(auc[0] - auc[1])
    sd = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    return Comparison(diff, diff - z * sd, diff + z * sd, True)


def interval(name: str, y, pred, task: str, *, threshold=None, n: int = N_DRAWS, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of one set of predictions' score (``pred`` as ``metrics.score``
    takes it, (n, k); ``threshold`` as there)."""
    needed = metrics.to_needed(name, pred, task, threshold)
    parts = [scores(name, y, needed, task, W) for W in draws(len(y), n, seed)]
    low, high = np.nanpercentile(np.concatenate(parts), [2.5, 97.5])
    return float(low), float(high)
