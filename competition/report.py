"""The report stage: plots of the workspace's runs and one HTML page that shows them.

``comp report`` calls :func:`report`. What it writes (a new folder each time, built in a temp
folder and renamed into place, so a report is whole or absent)::

    reports/20261124-120243/          (UTC time; or --out DIR)
        index.html                    competition, metric, leaderboard table, every plot with a caption
        manifest.json                 kind report, runs plotted, plots written, plots skipped and why
        fold_scores.png               each run's score per fold, the fold mean and the OOF CV
        cv_vs_scored.png              CV against the latest `comp score` of each run (only when recorded)
        oof_correlation.png           correlation of the runs' OOF predictions (what stacking feeds on)
        confusion.png                 best run: confusion matrix; multilabel: per-label P / R / F1
        pred_vs_true.png              best run (regression): predicted vs true, residuals
        calibration.png               binary: reliability curves of the best runs
        learning_curves.png           loss (and score) per fold from each fold's done.json history
        importance_<stack>.png        a stack's meta-model feature importance

A plot that does not apply (a regression has no confusion matrix, one run has no correlations)
is skipped with a note on the page. Figures use matplotlib's ``Figure`` directly (the Agg
renderer, no pyplot state), so the report runs headless and leaves the caller's backend alone.
"""

from __future__ import annotations

import html
import os
import shutil
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from competition import artifacts, metrics
from competition.errors import InputError
from competition.workspace import Workspace

DPI = 110
MAX_CURVE_RUNS = 6     # learning-curve rows; more would make an unreadably tall figure
MAX_CALIBRATION = 3    # reliability curves on one axes
MAX_FEATURES = 25      # bars in an importance plot
MAX_POINTS = 5000      # scatter points in predicted-vs-true (a seeded sample beyond that)


class Skip(Exception):
    """A plot that does not apply to these runs; the message says why, on the page."""


@dataclass(frozen=True)
class Plot:
    """One section of the page: a written PNG (``file``) or a skipped plot (``file`` None)."""

    key: str
    title: str
    file: str | None
    caption: str
    failed: bool = False


@dataclass
class RunData:
    """A run (:class:`competition.runs.Run`) with its OOF predictions in train-file order, (n, k)."""

    run: object
    oof: np.ndarray

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def label(self) -> str:
        family = self.run.manifest.get("family")
        return f"{self.name} ({family})" if family else self.name


@dataclass
class Context:
    """What every plot function reads."""

    ws: Workspace
    spec: object
    data: object
    runs: list[RunData]   # leaderboard order: the best first

    @property
    def metric_label(self) -> str:
        better = "higher" if metrics.greater_is_better(self.spec.metric) else "lower"
        return f"{self.spec.metric} ({better} is better)"


@dataclass
class ReportResult:
    """Where the report went and what it holds."""

    dir: Path
    index: Path
    runs: list[str]
    plots: list[Plot] = field(default_factory=list)

    @property
    def written(self) -> list[Plot]:
        return [p for p in self.plots if p.file]

    @property
    def skipped(self) -> list[Plot]:
        return [p for p in self.plots if not p.file]


# -- plots: each takes the context and the output folder, returns its Plot(s) or raises Skip ---

def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained", dpi=DPI)


def _save(fig, folder: Path, name: str) -> str:
    fig.savefig(folder / name, dpi=DPI, facecolor="white")
    return name


def _fold_colour(k: int):
    import matplotlib

    return matplotlib.colormaps["tab10"](k % 10)


def plot_fold_scores(ctx: Context, folder: Path) -> list[Plot]:
    """Dots per fold, a bar at the fold mean and a diamond at the OOF CV, one row per run."""
    rows = [(rd, sorted((int(k), float(v)) for k, v in (rd.run.metrics.get("folds") or {}).items()))
            for rd in ctx.runs]
    rows = [(rd, folds) for rd, folds in rows if folds]
    if not rows:
        raise Skip("no run has per-fold scores in its metrics.json")
    fig = _figure(9, 1.5 + 0.45 * len(rows))
    ax = fig.subplots()
    for i, (rd, folds) in enumerate(rows):
        y = len(rows) - 1 - i   # the best run on top
        for k, score in folds:
            ax.scatter(score, y, s=45, color=_fold_colour(k), zorder=3, label=f"fold {k}")
        mean = float(np.mean([s for _, s in folds]))
        ax.plot([mean, mean], [y - 0.3, y + 0.3], color="black", lw=2, zorder=2, label="fold mean")
        if rd.run.score is not None:
            ax.scatter(rd.run.score, y, s=70, marker="D", facecolor="none", edgecolor="crimson", lw=1.5,
                       zorder=4, label="OOF CV")
    ax.set_yticks(range(len(rows)), labels=[rd.label for rd, _ in reversed(rows)])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(ctx.metric_label)
    ax.set_title(f"{ctx.spec.metric} per fold")
    ax.grid(axis="x", alpha=0.3)
    handles = dict(zip(*reversed(ax.get_legend_handles_labels())))  # one handle per label
    fig.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize=9)
    caption = ("Each run's score on every fold (dots), their mean (black bar) and the score of the whole "
               "out-of-fold prediction (red diamond). A wide spread means the CV is noisy: differences "
               "between runs smaller than it are not real.")
    return [Plot("fold_scores", "Per-fold scores", _save(fig, folder, "fold_scores.png"), caption)]


def plot_cv_vs_scored(ctx: Context, folder: Path) -> list[Plot]:
    """Each run's OOF CV against its latest recorded score (``comp score``), with the y = x line.
    Nothing at all (not even a skip note) until some run has a recorded score."""
    from competition.score import latest_score

    points = [(rd, rd.run.score, latest_score(rd.run)) for rd in ctx.runs]
    points = [(rd, cv, scored) for rd, cv, scored in points if cv is not None and scored is not None]
    if not points:
        return []
    xs, ys = [cv for _, cv, _ in points], [scored for _, _, scored in points]
    lo, hi = min(xs + ys), max(xs + ys)
    pad = 0.08 * (hi - lo) if hi > lo else 0.01 * max(abs(hi), 1.0)
    fig = _figure(6.5, 6)
    ax = fig.subplots()
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", ls="--", lw=1, label="scored = CV")
    ax.scatter(xs, ys, s=45, color="#4C72B0", zorder=3)
    for rd, cv, scored in points:
        ax.annotate(rd.name, (cv, scored), xytext=(5, 4), textcoords="offset points", fontsize=9)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"CV (out-of-fold {ctx.spec.metric})")
    ax.set_ylabel(f"scored ({ctx.spec.metric}, comp score)")
    ax.set_title("CV vs scored")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    below = metrics.greater_is_better(ctx.spec.metric)
    gaps = ", ".join(f"{rd.name} {scored - cv:+.4f}" for rd, cv, scored in points)
    missing = [rd.name for rd in ctx.runs if rd.name not in {p[0].name for p in points}]
    caption = ("Each run's out-of-fold CV against the latest score of its submission (`comp score`, "
               "experiments/<run>/scores.json); the dashed line is scored = CV. Points "
               f"{'below' if below else 'above'} it mean CV was optimistic: the submission scored "
               f"{'lower' if below else 'higher'} than CV promised. Scored minus CV: {gaps}."
               + (f" No recorded score: {', '.join(missing)}." if missing else ""))
    return [Plot("cv_vs_scored", "CV vs scored", _save(fig, folder, "cv_vs_scored.png"), caption)]


def oof_correlation(ctx: Context) -> np.ndarray:
    """(m, m) Pearson correlation of the runs' OOF predictions, averaged over prediction columns."""
    preds = np.stack([rd.oof for rd in ctx.runs], axis=1)          # (n, m, k)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)           # a constant column: NaN, shown n/a
        per_column = [np.corrcoef(preds[:, :, c], rowvar=False) for c in range(preds.shape[2])]
        return np.atleast_2d(np.nanmean(per_column, axis=0))


def plot_correlation(ctx: Context, folder: Path) -> list[Plot]:
    m = len(ctx.runs)
    if m < 2:
        raise Skip(f"needs at least two runs to compare; there is one ({ctx.runs[0].name})")
    corr = oof_correlation(ctx)
    size = min(3.0 + 0.6 * m, 11.0)
    fig = _figure(size + 1.2, size)
    ax = fig.subplots()
    finite = corr[np.isfinite(corr)]
    low = min(0.9, np.floor(finite.min() * 10) / 10) if finite.size else 0.0
    image = ax.imshow(corr, cmap="viridis", vmin=low, vmax=1.0)
    names = [rd.name for rd in ctx.runs]
    ax.set_xticks(range(m), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(m), labels=names)
    if m <= 20:
        for i in range(m):
            for j in range(m):
                value = corr[i, j]
                dark = np.isfinite(value) and value < low + 0.6 * (1 - low)
                ax.text(j, i, "n/a" if not np.isfinite(value) else f"{value:.2f}", ha="center", va="center",
                        fontsize=9, color="white" if dark else "black")
    fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson r")
    columns = len(ctx.spec.pred_columns)
    ax.set_title("Correlation of OOF predictions" + (f"\n(mean over {columns} columns)" if columns > 1 else ""))
    caption = ("Pearson correlation between the runs' out-of-fold predictions"
               + (f", averaged over the {columns} prediction columns" if columns > 1 else "")
               + ". Runs with a similar CV but a lower correlation make different mistakes: those are "
               "the ones a stack or blend gains most from.")
    return [Plot("oof_correlation", "OOF correlation", _save(fig, folder, "oof_correlation.png"), caption)]


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
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    task, best = ctx.spec.task, ctx.runs[0]
    if task == "regression":
        raise Skip("a confusion matrix needs classes; this task is regression (see predicted vs true)")
    y, threshold = ctx.data.y, best.run.threshold
    if task == "multilabel":
        labels = metrics.to_needed("f1", best.oof, task, threshold)
        p, r, f, support = precision_recall_fscore_support(y, labels, average=None, zero_division=0)
        names = [str(t) for t in ctx.spec.targets]
        fig = _figure(9, 1.6 + 0.32 * len(names))
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
        return [Plot("confusion", "Per-label precision / recall / F1", _save(fig, folder, "confusion.png"), caption)]
    classes = [str(c) for c in (ctx.data.labels or range(best.oof.shape[1] if task == "multiclass" else 2))]
    if task == "binary":
        cut = float(np.atleast_1d(threshold)[0]) if threshold is not None else 0.5
        pred, how = (best.oof[:, 0] >= cut).astype(np.int64), f"P({classes[-1]}) >= {cut:.3f}"
    else:
        pred, how = best.oof.argmax(axis=1), "most probable class"
    counts = confusion_matrix(y, pred, labels=list(range(len(classes))))
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(2.8 + 0.55 * len(classes), 11.0)
    fig = _figure(size + 1.2, size)
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
    return [Plot("confusion", "Confusion matrix", _save(fig, folder, "confusion.png"), caption)]


def plot_pred_vs_true(ctx: Context, folder: Path) -> list[Plot]:
    if ctx.spec.task != "regression":
        raise Skip(f"applies to regression; this task is {ctx.spec.task} (see the confusion matrix)")
    best, target = ctx.runs[0], ctx.spec.targets[0]
    y = ctx.data.y if ctx.data.y.ndim == 1 else ctx.data.y[:, 0]
    pred = best.oof[:, 0]
    show = np.arange(len(y))
    if len(y) > MAX_POINTS:
        show = np.sort(np.random.default_rng(0).choice(len(y), MAX_POINTS, replace=False))
    alpha = float(np.clip(300 / len(show), 0.15, 0.8))
    fig = _figure(11, 4.8)
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
    return [Plot("pred_vs_true", "Predicted vs true", _save(fig, folder, "pred_vs_true.png"), caption)]


def plot_calibration(ctx: Context, folder: Path) -> list[Plot]:
    from sklearn.calibration import calibration_curve

    if ctx.spec.task != "binary":
        raise Skip(f"applies to binary tasks; this task is {ctx.spec.task}")
    shown = ctx.runs[:MAX_CALIBRATION]
    fig = _figure(7, 7)
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
    return [Plot("calibration", "Calibration", _save(fig, folder, "calibration.png"), caption)]


def fold_histories(ws: Workspace, rd: RunData) -> dict[int, list[dict]]:
    """Each fold's learning curve (``history`` of its done.json), folds without one left out."""
    out = {}
    for k in range(int(rd.run.manifest.get("n_splits") or 0)):
        done = ws.fold_dir(rd.name, k) / "done.json"
        if done.is_file():
            history = [row for row in artifacts.read_json(done).get("history") or [] if isinstance(row, dict)]
            if any(row.get("val/loss") is not None or row.get("val/score") is not None for row in history):
                out[k] = history
    return out


def _curve(ax, rows: list[dict], key: str, **style) -> None:
    points = [(row["epoch"], row[key]) for row in rows if row.get(key) is not None and row.get("epoch") is not None]
    if points:
        ax.plot(*zip(*points), **style)


def plot_learning_curves(ctx: Context, folder: Path) -> list[Plot]:
    from matplotlib.ticker import MaxNLocator

    curves = [(rd, h) for rd in ctx.runs if (h := fold_histories(ctx.ws, rd))]
    if not curves:
        raise Skip("no run has a learning curve in its folds' done.json (linear heads fit in one go; "
                   "encoder, scratch and LightGBM-headed runs record one)")
    left_out = [rd.name for rd, _ in curves[MAX_CURVE_RUNS:]]
    curves = curves[:MAX_CURVE_RUNS]
    with_score = any(row.get("val/score") is not None for _, h in curves for rows in h.values() for row in rows)
    fig = _figure(11 if with_score else 7, 0.6 + 2.9 * len(curves))
    axes = np.atleast_2d(fig.subplots(len(curves), 2 if with_score else 1, squeeze=False))
    for (rd, history), row_axes in zip(curves, axes):
        rows_all = [row for rows in history.values() for row in rows]
        x_label = "epoch" if any("step" in row for row in rows_all) else "boosting round"
        has_train = any(row.get("train/loss") is not None for row in rows_all)
        for k, rows in sorted(history.items()):
            seeds = sorted({row.get("seed") for row in rows}, key=str)
            for i, seed in enumerate(seeds):   # later seeds of a fold: the same colour, paler
                part = [row for row in rows if row.get("seed") == seed]
                style = dict(color=_fold_colour(k), alpha=1.0 if i == 0 else 0.5)
                tag = f"fold {k}" + (f" seed {seed}" if len(seeds) > 1 else "")
                _curve(row_axes[0], part, "val/loss", lw=1.6, label=tag, **style)
                _curve(row_axes[0], part, "train/loss", lw=1.2, ls="--", **style)
                if with_score:
                    _curve(row_axes[1], part, "val/score", lw=1.6, marker=".", label=tag, **style)
        row_axes[0].set_title(f"{rd.label}: loss" + (" (solid valid, dashed train)" if has_train else
                                                     " on the valid fold"), fontsize=10)
        row_axes[0].set_ylabel("loss")
        if with_score:
            row_axes[1].set_title(f"{rd.name}: validation {ctx.spec.metric}", fontsize=10)
            row_axes[1].set_ylabel(ctx.spec.metric)
        whole = all(float(row["epoch"]).is_integer() for row in rows_all if row.get("epoch") is not None)
        for ax in row_axes:
            ax.set_xlabel(x_label)
            ax.grid(alpha=0.3)
            if whole:   # whole epochs / rounds: no 1.2, 1.4 ... ticks
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.has_data():
                ax.legend(fontsize=7, ncol=2 if len(history) > 3 else 1)
    caption = ("Loss on the validation fold (solid) and, where recorded, on the training batches (dashed), "
               "for every fold as training went on, from each fold's done.json"
               + (", with the validation score on the right" if with_score else "")
               + ". A validation loss that turns up again is overfitting: fewer epochs or early stopping."
               + (f" Not shown (room for {MAX_CURVE_RUNS}): {', '.join(left_out)}." if left_out else ""))
    return [Plot("learning_curves", "Learning curves", _save(fig, folder, "learning_curves.png"), caption)]


def plot_importance(ctx: Context, folder: Path) -> list[Plot]:
    stacks = [rd for rd in ctx.runs if rd.run.manifest.get("kind") == "stack"
              and (rd.run.dir / "importance.json").is_file()]
    if not stacks:
        raise Skip("no stack among these runs (`comp stack` fits one)")
    out = []
    for rd in stacks:
        saved = artifacts.read_json(rd.run.dir / "importance.json")
        shares = saved.get("features") or {}
        top = sorted(shares, key=shares.get, reverse=True)[:MAX_FEATURES]
        fig = _figure(8, 1.4 + 0.36 * len(top))
        ax = fig.subplots()
        pos = np.arange(len(top))[::-1]
        ax.barh(pos, [shares[f] for f in top], color="#4C72B0", label="mean over folds")
        for k, fold_shares in sorted((saved.get("folds") or {}).items(), key=lambda kv: int(kv[0])):
            ax.scatter([fold_shares.get(f, np.nan) for f in top], pos, s=14, color="black", zorder=3,
                       label="one fold" if k in ("0", 0) else None)
        ax.set_yticks(pos, labels=top)
        what = "gain" if saved.get("kind") == "gain" else "|coefficient|"
        ax.set_xlabel(f"share of the meta-model's {what}")
        ax.set_title(f"Meta-model feature importance: {rd.label}")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower right", fontsize=9, scatterpoints=1)
        caption = (f"What the meta-model of stack {rd.name} relies on: each input run's share of its {what} "
                   f"(bars: mean over folds, dots: single folds)"
                   + (f"; the top {MAX_FEATURES} of {len(shares)}" if len(shares) > len(top) else "")
                   + ". An input with a tiny share adds little beyond the others.")
        name = f"importance_{rd.name}.png"
        out.append(Plot(f"importance_{rd.name}", f"Stack importance: {rd.name}", _save(fig, folder, name), caption))
    return out


PLOTS = (
    ("fold_scores", "Per-fold scores", plot_fold_scores),
    ("cv_vs_scored", "CV vs scored", plot_cv_vs_scored),
    ("oof_correlation", "OOF correlation", plot_correlation),
    ("confusion", "Confusion matrix", plot_confusion),
    ("pred_vs_true", "Predicted vs true", plot_pred_vs_true),
    ("calibration", "Calibration", plot_calibration),
    ("learning_curves", "Learning curves", plot_learning_curves),
    ("importance", "Stack importance", plot_importance),
)


# -- the stage --------------------------------------------------------------------------------

def _aligned(run, spec, data) -> RunData:
    """The run's OOF predictions in train-file order; InputError when its rows differ."""
    import pandas as pd

    cols = spec.pred_columns
    if run.pred_columns != cols:
        raise InputError(f"{run.dir}: run {run.name} predicts {run.pred_columns}, this competition needs "
                         f"{cols}; it belongs to another competition or task. Leave it out with --runs.")
    frame = run.oof()
    ids = data.train[spec.id_column].astype(str)
    pos = pd.Index(frame["id"].astype(str)).get_indexer(ids)
    if len(frame) != len(ids) or (pos < 0).any():
        raise InputError(f"{run.dir / 'oof.parquet'}: its ids do not match the current train data "
                         f"({len(frame)} rows, {int((pos < 0).sum())} current id(s) missing). Retrain it "
                         f"(`comp train exp={run.name} --force`) or leave it out with --runs.")
    return RunData(run, frame[cols].to_numpy(dtype=float)[pos])


def choose_runs(ws: Workspace, entries: list, names: list[str] | None) -> list:
    """Runs in leaderboard order (the best first): the named ones (each must be complete), else
    every complete run on the current folds and data."""
    from competition import runs

    order = {e.name: i for i, e in enumerate(entries)}
    if names:
        picked = [runs.load_run(ws, n) for n in dict.fromkeys(names)]   # InputError: unknown / partial
        picked.sort(key=lambda r: order[r.name])
    else:
        picked = [runs.load_run(ws, e.name) for e in entries if e.status == "complete"]
        if not picked:
            raise InputError(f"{ws.experiments_dir}: no complete run on the current folds and data to report "
                             "on. Train one first: `comp train exp=001 --fold all` (`comp leaderboard` "
                             "shows what is there).")
    return picked


def _output_folder(ws: Workspace, out: Path | str | None, force: bool) -> Path:
    if out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        path, i = ws.reports_dir / stamp, 2
        while path.exists():
            path, i = ws.reports_dir / f"{stamp}-{i}", i + 1
        return path
    path = Path(out).expanduser().resolve()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        manifest = path / "manifest.json"
        is_report = manifest.is_file() and artifacts.read_json(manifest).get("kind") == "report"
        if not (force and is_report):
            raise InputError(f"--out {path}: it exists and is not empty. Pick a new folder"
                             + (", or --force to replace this report." if is_report else
                                " (only an earlier report is ever replaced, with --force)."))
    return path


def report(ws: Workspace, *, out: Path | str | None = None, runs: list[str] | None = None,
           force: bool = False, data=None) -> ReportResult:
    """Plot the workspace's runs and write them with the leaderboard as one HTML page.

    Args:
        ws: the workspace.
        out: the report folder (default ``reports/<UTC time>/`` in the workspace).
        runs: run names to plot (and to list); default every complete run on the current folds and data.
        force: replace ``out`` when it holds an earlier report.
        data: a loaded dataset (loaded from the spec when None).

    Returns:
        A :class:`ReportResult`: the folder, its ``index.html`` and every plot written or skipped.
    """
    from competition import data as data_mod
    from competition.leaderboard import leaderboard
    from competition.spec import load_spec

    spec = load_spec(ws.spec_file) if data is None else data.spec
    if data is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # data warnings belong to `comp check`, not here
            data = data_mod.load(spec)
    entries = leaderboard(ws, data=data)
    ctx = Context(ws, spec, data, [_aligned(run, spec, data) for run in choose_runs(ws, entries, runs)])
    target = _output_folder(ws, out, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        plots = []
        for key, title, fn in PLOTS:
            try:
                plots += fn(ctx, tmp)
            except Skip as why:
                plots.append(Plot(key, title, None, str(why)))
            except Exception as err:  # noqa: BLE001 -- one broken plot must not cost the others
                warnings.warn(f"report: plot {key} failed: {type(err).__name__}: {err}", stacklevel=2)
                plots.append(Plot(key, title, None, f"failed: {type(err).__name__}: {err}", failed=True))
        table = [e for e in entries if not runs or e.name in runs]
        artifacts.write_text(tmp / "index.html", render_html(ctx, table, plots))
        artifacts.write_json(tmp / "manifest.json", {
            "kind": "report", "competition": spec.name, "task": spec.task, "metric": spec.metric,
            "runs": [rd.name for rd in ctx.runs], "plots": {p.key: p.file for p in plots if p.file},
            "skipped": {p.key: p.caption for p in plots if not p.file}, **artifacts.environment()})
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ReportResult(target, target / "index.html", [rd.name for rd in ctx.runs], plots)


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished folder to ``target``; an earlier report there goes only once the new one is in."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- the page ---------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1f2328; background: #f6f8fa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; background: white; }
h1 { margin: 0 0 4px; font-size: 1.8em; }
h2 { margin-top: 36px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.meta { color: #57606a; margin: 0 0 8px; }
nav a { margin-right: 14px; color: #0969da; text-decoration: none; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { padding: 6px 10px; border-bottom: 1px solid #d8dee4; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.plotted td:nth-child(2) { font-weight: 600; }
.status { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 0.85em; }
.complete { background: #dafbe1; color: #116329; }
.stale { background: #fff8c5; color: #7d4e00; }
.partial { background: #eaeef2; color: #57606a; }
.notes { color: #57606a; font-size: 0.85em; }
figure { margin: 24px 0; padding: 12px; border: 1px solid #d8dee4; border-radius: 6px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { margin-top: 8px; color: #444c56; }
.skipped li { color: #57606a; margin: 4px 0; }
.failed { color: #cf222e; }
footer { margin-top: 40px; color: #8c959f; font-size: 0.85em; }
"""


def _num(value, fmt: str = ".4f") -> str:
    return "-" if value is None else format(value, fmt)


def _table(entries: list, plotted: set[str]) -> str:
    head = "".join(f'<th class="{c}">{t}</th>' if c else f"<th>{t}</th>" for t, c in (
        ("#", "num"), ("run", ""), ("kind", ""), ("CV", "num"), ("scored", "num"), ("fold mean ± std", "num"), ("folds", "num"),
        ("train time", "num"), ("status", "")))
    rows = []
    for e in entries:
        spread = "-" if e.fold_mean is None else f"{e.fold_mean:.4f} ± {_num(e.fold_std)}"
        kind = e.kind + (f" ({e.family})" if e.family else "")
        notes = f'<div class="notes">{html.escape("; ".join(e.notes))}</div>' if e.notes else ""
        cells = [
            f'<td class="num">{"-" if e.rank is None else e.rank}</td>', f"<td>{html.escape(e.name)}</td>",
            f"<td>{html.escape(kind)}</td>", f'<td class="num">{_num(e.cv)}</td>',
            f'<td class="num">{_num(e.scored)}</td>',
            f'<td class="num">{spread}</td>', f'<td class="num">{e.folds_done}/{e.n_splits}</td>',
            f'<td class="num">{"-" if e.seconds is None else f"{e.seconds:.1f}s"}</td>',
            f'<td><span class="status {e.status}">{e.status}</span>{notes}</td>',
        ]
        mark = ' class="plotted"' if e.name in plotted else ""
        rows.append(f"<tr{mark} data-run=\"{html.escape(e.name)}\">{''.join(cells)}</tr>")
    return (f'<table id="leaderboard"><thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows)
            + "\n</tbody></table>")


def render_html(ctx: Context, entries: list, plots: list[Plot]) -> str:
    """The self-contained page: inline CSS, images by relative path, every dynamic text escaped."""
    spec, esc = ctx.spec, html.escape
    written = [p for p in plots if p.file]
    figures = "\n".join(
        f'<figure id="{esc(p.key)}"><img src="{esc(p.file)}" alt="{esc(p.title)}">'
        f"<figcaption><b>{esc(p.title)}.</b> {esc(p.caption)}</figcaption></figure>" for p in written)
    skipped = "\n".join(f'<li{" class=failed" if p.failed else ""}><b>{esc(p.title)}</b>: {esc(p.caption)}</li>'
                        for p in plots if not p.file)
    nav = " ".join(f'<a href="#{esc(p.key)}">{esc(p.title)}</a>' for p in written)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = [rd.name for rd in ctx.runs]
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(spec.name)}: comp report</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<h1>{esc(spec.name)}</h1>
<p class="meta">task <b>{esc(spec.task)}</b> · metric <b>{esc(ctx.metric_label)}</b> ·
{len(ctx.data.train)} train rows, {0 if ctx.data.test is None else len(ctx.data.test)} test rows ·
{ctx.runs[0].run.manifest.get("n_splits", "?")} folds · generated {stamp}</p>
<p class="meta">plotted: {esc(", ".join(names))}</p>
<nav><a href="#leaderboard">Leaderboard</a> {nav}</nav>
<h2>Leaderboard</h2>
{_table(entries, set(names))}
<h2>Plots</h2>
{figures}
{f'<h2>Not shown</h2><ul class="skipped">{skipped}</ul>' if skipped else ""}
<footer>written by <code>comp report</code> from the workspace {esc(str(ctx.ws.root))}</footer>
</main>
</body>
</html>
"""
