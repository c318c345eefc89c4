"""The report's plots of the best runs' out-of-fold predictions against the truth: a confusion
matrix (per-label precision / recall / F1 for multilabel), predicted vs true with residuals
(regression) and calibration (binary).

Each is a plot function of :mod:`competition.plots`: ``(ctx, folder) -> list[Plot]``, or
:class:`~competition.plots.Skip` where the task has no such plot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from competition import metrics
from competition.plots import Context, Plot, Skip, figure, save

MAX_CALIBRATION = 3    # reliability curves on one axes
MAX_POINTS = 5000      # scatter points in predicted-vs-true (a seeded sample beyond that)


def _threshold_text(threshold) -> str:
    """How a stored decision threshold reads in a title.

    >>> _threshold_text(None), _threshold_text(0.25), _threshold_text([0.3, 0.55])
    ('0.5', '0.250', 'per label, 0.30-0.55')
    """
    if threshold is None:
        return "0.5"
    values = np.atleast_1d(np.asarray(threshold, dtype=float))
    return f"{values[0]:.3f}" if values.size == 1 else f"per label, {values.min():.2f}-{values.max():.2f}"


def plot_confusion(ctx: Context, folder: Path) -> list[Plot]:
    """Best run: confusion matrix (binary at its threshold, multiclass argmax); multilabel P/R/F1."""
    # scikit-learn submodules take ~1 s each: loaded where used
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    task, best = ctx.spec.task, ctx.runs[0]
    if task == "regression":
        raise Skip("a confusion matrix needs classes; this task is regression (see predicted vs true)")
    if ctx.spec.per_unit:
        raise Skip(f"a confusion matrix needs a class per row; a {task} task predicts every unit of a row")
    y, threshold = ctx.data.y, best.run.threshold
    if task == "multilabel":
        labels = metrics.to_needed("f1", best.oof, task, threshold)
        p, r, f, support = precision_recall_fscore_support(y, labels, average=None, zero_division=0)
        names = [str(t) for t in ctx.spec.targets]
        fig = figure(9, 1.6 + 0.32 * len(names))
        ax = fig.subplots()
        pos = np.arange(len(names))[::-1]
        for shift, values, name in ((0.27, p, "precision"), (0, r, "recall"), (-0.27, f, "F1")):
            ax.barh(pos + shift, values, height=0.27, label=name)
        ax.set_yticks(pos, labels=[f"{n} ({s})" for n, s in zip(names, support)])
        ax.set_xlim(0, 1)
        ax.set_xlabel("score on the OOF predictions")
        fig.legend(loc="outside right upper", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(f"Per-label precision, recall and F1: {best.name} (threshold {_threshold_text(threshold)})")
        caption = (f"Per label (number of positive rows in brackets), how {best.name} -- the best run -- does "
                   "once its OOF probabilities are cut at its stored threshold(s).")
        return [Plot("confusion", "Per-label precision / recall / F1", save(fig, folder, "confusion.png"), caption)]
    classes = [str(c) for c in (ctx.data.labels or range(best.oof.shape[1] if task == "multiclass" else 2))]
    if task == "binary":
        cut = float(np.atleast_1d(threshold)[0]) if threshold is not None else 0.5
        pred, how = (best.oof[:, 0] >= cut).astype(np.int64), f"P({classes[-1]}) >= {cut:.3f}"
    else:
        pred, how = best.oof.argmax(axis=1), "most probable class"
    counts = confusion_matrix(y, pred, labels=list(range(len(classes))))
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(2.8 + 0.55 * len(classes), 11.0)
    fig = figure(size + 1.2, size)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    short = [c if len(c) <= 18 else c[:17] + "…" for c in classes]
    ax.set_xticks(range(len(classes)), labels=short, rotation=45 if len(classes) > 3 else 0,
                  ha="right" if len(classes) > 3 else "center")
    ax.set_yticks(range(len(classes)), labels=short)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 15:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=9,
                        color="white" if share[i, j] > 0.6 else "black")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    ax.set_title(f"Confusion matrix: {best.name}\n(OOF, {how})")
    caption = (f"Out-of-fold predictions of {best.name}, the best run, against the truth: rows are true "
               f"classes, columns predicted ones ({how}); each cell holds the count and the share of its row.")
    return [Plot("confusion", "Confusion matrix", save(fig, folder, "confusion.png"), caption)]


def plot_pred_vs_true(ctx: Context, folder: Path) -> list[Plot]:
    if ctx.spec.task != "regression":
        raise Skip(f"applies to regression; this task is {ctx.spec.task}"
                   + ("" if ctx.spec.per_unit else " (see the confusion matrix)"))
    best, target = ctx.runs[0], ctx.spec.targets[0]
    y = ctx.data.y if ctx.data.y.ndim == 1 else ctx.data.y[:, 0]
    pred = best.oof[:, 0]
    show = np.arange(len(y))
    if len(y) > MAX_POINTS:
        show = np.sort(np.random.default_rng(0).choice(len(y), MAX_POINTS, replace=False))
    alpha = float(np.clip(300 / len(show), 0.15, 0.8))
    fig = figure(11, 4.8)
    left, right = fig.subplots(1, 2)
    left.scatter(y[show], pred[show], s=10, alpha=alpha, edgecolor="none")
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    left.plot([lo, hi], [lo, hi], color="crimson", lw=1.2, label="predicted = true")
    left.set_aspect("equal")
    left.set_xlabel(f"true {target}")
    left.set_ylabel(f"predicted {target}")
    rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    r2 = 1 - float(np.sum((pred - y) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
    left.set_title(f"{best.name}: predicted vs true (RMSE {rmse:.3f}, R² {r2:.3f})", fontsize=10)
    left.legend(loc="upper left", fontsize=9)
    residual = pred - y
    right.scatter(pred[show], residual[show], s=10, alpha=alpha, edgecolor="none")
    right.axhline(0, color="crimson", lw=1.2)
    right.set_xlabel(f"predicted {target}")
    right.set_ylabel("residual (predicted - true)")
    right.set_title("residuals vs predicted", fontsize=10)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    caption = (f"Out-of-fold predictions of {best.name}, the best run"
               + (f", for the first target ({target})" if len(ctx.spec.targets) > 1 else "")
               + (f", {MAX_POINTS} rows sampled" if len(show) < len(y) else "")
               + ". Left: points off the red line are errors; a cloud flatter than the line means the model "
               "shrinks toward the mean. Right: residuals should scatter evenly around zero; a trend or a "
               "funnel shows where the model is systematically off.")
    return [Plot("pred_vs_true", "Predicted vs true", save(fig, folder, "pred_vs_true.png"), caption)]


def plot_calibration(ctx: Context, folder: Path) -> list[Plot]:
    # scikit-learn submodules take ~1 s each: loaded where used
    from sklearn.calibration import calibration_curve

    if ctx.spec.task != "binary":
        raise Skip(f"applies to binary tasks; this task is {ctx.spec.task}")
    shown = ctx.runs[:MAX_CALIBRATION]
    fig = figure(7, 7)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    for i, rd in enumerate(shown):
        p = np.clip(rd.oof[:, 0], 0, 1)
        true_share, mean_pred = calibration_curve(ctx.data.y, p, n_bins=10, strategy="uniform")
        brier = float(np.mean((p - ctx.data.y) ** 2))
        colour = f"C{i}"
        top.plot(mean_pred, true_share, marker="o", color=colour, label=f"{rd.name} (Brier {brier:.3f})")
        bottom.hist(p, bins=20, range=(0, 1), histtype="step", lw=1.5, color=colour)
    positive = (ctx.data.labels or [0, 1])[-1]
    top.set_ylabel(f"share of {positive} (true)")
    top.set_title("Calibration of OOF probabilities")
    top.legend(loc="upper left", fontsize=9)
    top.grid(alpha=0.3)
    bottom.set_xlabel(f"predicted P({positive})")
    bottom.set_ylabel("rows")
    bottom.set_xlim(0, 1)
    who = "the best run" if len(shown) == 1 else f"the {len(shown)} best runs"
    caption = (f"For {who}: within each of 10 bins of predicted probability, the share of "
               "rows that really are positive. On the dashed line a predicted 0.8 is right 80% of the "
               "time; metrics such as log loss reward that, F1 and AUC do not. Below: how the predictions spread.")
    return [Plot("calibration", "Calibration", save(fig, folder, "calibration.png"), caption)]
