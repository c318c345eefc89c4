"""The report's plots of the runs side by side: per-fold scores, CV vs scored, OOF correlation,
learning curves and stack importance; and what every plot shares (:class:`Context`, :class:`Plot`,
:class:`Skip`, the figure helpers).

Each plot is a function ``(ctx, folder) -> list[Plot]`` that writes its PNG into ``folder``
or raises :class:`Skip` saying why it does not apply. Figures use matplotlib's ``Figure``
directly (the Agg renderer, no pyplot state), so plotting runs headless and leaves the
caller's backend alone. The best run's predictions against the truth are plotted by
:mod:`competition.plots_best`; :mod:`competition.report` puts every plot on the page.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition import artifacts, metrics
from competition.score import latest_score
from competition.workspace import DONE, IMPORTANCE, Workspace

DPI = 110
MAX_CURVE_RUNS = 6     # learning-curve rows; more would make an unreadably tall figure
MAX_FEATURES = 25      # bars in an importance plot


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


# -- figures ----------------------------------------------------------------------------------

def figure(width: float, height: float):
    # matplotlib (~0.7 s): only the plots
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained", dpi=DPI)


def save(fig, folder: Path, name: str) -> str:
    fig.savefig(folder / name, dpi=DPI, facecolor="white")
    return name


def _fold_colour(k: int):
    # matplotlib (~0.7 s): only the plots
    import matplotlib

    return matplotlib.colormaps["tab10"](k % 10)


def plot_fold_scores(ctx: Context, folder: Path) -> list[Plot]:
    """Dots per fold, a bar at the fold mean and a diamond at the OOF CV, one row per run."""
    rows = [(rd, sorted((int(k), float(v)) for k, v in (rd.run.metrics.get("folds") or {}).items()))
            for rd in ctx.runs]
    rows = [(rd, folds) for rd, folds in rows if folds]
    if not rows:
        raise Skip("no run has per-fold scores in its metrics.json")
    fig = figure(9, 1.5 + 0.45 * len(rows))
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
    return [Plot("fold_scores", "Per-fold scores", save(fig, folder, "fold_scores.png"), caption)]


def plot_cv_vs_scored(ctx: Context, folder: Path) -> list[Plot]:
    """Each run's OOF CV against its latest recorded score (``comp score``), with the y = x line.
    Nothing at all (not even a skip note) until some run has a recorded score."""
    points = [(rd, rd.run.score, latest_score(rd.run)) for rd in ctx.runs]
    points = [(rd, cv, scored) for rd, cv, scored in points if cv is not None and scored is not None]
    if not points:
        return []
    xs, ys = [cv for _, cv, _ in points], [scored for _, _, scored in points]
    lo, hi = min(xs + ys), max(xs + ys)
    pad = 0.08 * (hi - lo) if hi > lo else 0.01 * max(abs(hi), 1.0)
    fig = figure(6.5, 6)
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
    return [Plot("cv_vs_scored", "CV vs scored", save(fig, folder, "cv_vs_scored.png"), caption)]


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
    fig = figure(size + 1.2, size)
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
    return [Plot("oof_correlation", "OOF correlation", save(fig, folder, "oof_correlation.png"), caption)]


def fold_histories(ws: Workspace, rd: RunData) -> dict[int, list[dict]]:
    """Each fold's learning curve (``history`` of its done.json), folds without one left out."""
    out = {}
    for k in range(int(rd.run.manifest.get("n_splits") or 0)):
        done = ws.fold_dir(rd.name, k) / DONE
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
    # matplotlib (~0.7 s): only the plots
    from matplotlib.ticker import MaxNLocator

    curves = [(rd, h) for rd in ctx.runs if (h := fold_histories(ctx.ws, rd))]
    if not curves:
        raise Skip("no run has a learning curve in its folds' done.json (linear heads fit in one go; "
                   "encoder, scratch and LightGBM-headed runs record one)")
    left_out = [rd.name for rd, _ in curves[MAX_CURVE_RUNS:]]
    curves = curves[:MAX_CURVE_RUNS]
    with_score = any(row.get("val/score") is not None for _, h in curves for rows in h.values() for row in rows)
    fig = figure(11 if with_score else 7, 0.6 + 2.9 * len(curves))
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
    return [Plot("learning_curves", "Learning curves", save(fig, folder, "learning_curves.png"), caption)]


def plot_importance(ctx: Context, folder: Path) -> list[Plot]:
    stacks = [rd for rd in ctx.runs if rd.run.manifest.get("kind") == "stack"
              and (rd.run.dir / IMPORTANCE).is_file()]
    if not stacks:
        raise Skip("no stack among these runs (`comp stack` fits one)")
    out = []
    for rd in stacks:
        saved = artifacts.read_json(rd.run.dir / IMPORTANCE)
        shares = saved.get("features") or {}
        top = sorted(shares, key=shares.get, reverse=True)[:MAX_FEATURES]
        fig = figure(8, 1.4 + 0.36 * len(top))
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
        out.append(Plot(f"importance_{rd.name}", f"Stack importance: {rd.name}", save(fig, folder, name), caption))
    return out
