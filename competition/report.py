"""The report stage: the workspace's runs, plotted, on one HTML page.

``comp report`` calls :func:`report`. It collects the runs (leaderboard order, their OOF
predictions aligned to the train file), draws every plot of :data:`PLOTS`
(:mod:`competition.plots`, :mod:`competition.plots_best`) and renders the page from the
Jinja2 template ``templates/report.html.j2``. What it writes (a new folder each time, built
in a temp folder and renamed into place, so a report is whole or absent)::

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
is skipped with a note on the page.
"""

from __future__ import annotations

import functools
import html
import os
import shutil
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from markupsafe import Markup

from competition import artifacts, predictions, runs
from competition import data as data_mod
from competition.errors import InputError
from competition.leaderboard import OPTIMISTIC, leaderboard
from competition.plots import (
    Context,
    Plot,
    RunData,
    Skip,
    plot_correlation,
    plot_cv_vs_scored,
    plot_fold_scores,
    plot_importance,
    plot_learning_curves,
)
from competition.plots_best import plot_calibration, plot_confusion, plot_pred_vs_true
from competition.spec import load_spec
from competition.tables import positions
from competition.workspace import MANIFEST, OOF, Workspace

TEMPLATE = "report.html.j2"     # in competition/templates/


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


# the page's plots in order: (key, title, function); a function returns its Plot(s) or raises Skip
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
    cols = spec.pred_columns
    if run.pred_columns != cols:
        raise InputError(f"{run.dir}: run {run.name} predicts {run.pred_columns}, this competition needs "
                         f"{cols}; it belongs to another competition or task. Leave it out with {{runs}}.",
                         runs="runs=[...]")
    frame = run.oof()
    ids = data.train[spec.id_column]
    pos = positions(ids, frame["id"])
    if len(frame) != len(ids) or (pos < 0).any():
        raise InputError(f"{run.dir / OOF}: its ids do not match the current train data "
                         f"({len(frame)} rows, {int((pos < 0).sum())} current id(s) missing). Retrain it "
                         f"(`comp train exp={run.name} --force`) or leave it out with {{runs}}.", runs="runs=[...]")
    if spec.per_unit:      # every unit of every row, rows in train order: what the correlations compare
        return RunData(run, predictions.flat(predictions.matrix(frame, cols)[pos]))
    return RunData(run, frame[cols].to_numpy(dtype=float)[pos])


def choose_runs(ws: Workspace, entries: list, names: list[str] | None) -> list:
    """Runs in leaderboard order (the best first): the named ones (each must be complete), else
    every complete run on the current folds and data."""
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
        manifest = path / MANIFEST
        is_report = manifest.is_file() and artifacts.read_json(manifest).get("kind") == "report"
        if not (force and is_report):
            raise InputError(f"{{out}} {path}: it exists and is not empty. Pick a new folder"
                             + (", or {force} to replace this report." if is_report else
                                " (only an earlier report is ever replaced, with {force})."),
                             out="out", force="force=True")
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
    spec = load_spec(ws.spec_file) if data is None else data.spec
    if data is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # data warnings belong to `comp check`, not here
            data = data_mod.load(spec)
    entries = leaderboard(ws, data=data)
    ctx = Context(ws, spec, data, [_aligned(run, spec, data) for run in choose_runs(ws, entries, runs)])
    target = _output_folder(ws, out, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = artifacts.temp_folder(target, "write elsewhere with {out}", out="out=DIR")
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
        artifacts.write_json(tmp / MANIFEST, {
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

def _escaped(value):
    """Autoescape as :func:`html.escape` does (quotes too, as ``&quot;`` and ``&#x27;``, the way
    earlier reports wrote them); markup the code marked safe passes through."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value)))


@functools.cache
def _environment():
    # jinja2: only the report
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("competition", "templates"), autoescape=True,
                              finalize=_escaped, undefined=jinja2.StrictUndefined)


def _num(value, fmt: str = ".4f") -> str:
    return "-" if value is None else format(value, fmt)


def _row(e) -> dict:
    """A leaderboard entry as the table's cells read."""
    return {"rank": "-" if e.rank is None else e.rank, "name": e.name,
            "kind": e.kind + (f" ({e.family})" if e.family else ""), "cv": _num(e.cv), "scored": _num(e.scored),
            "spread": "-" if e.fold_mean is None else f"{e.fold_mean:.4f} ± {_num(e.fold_std)}",
            "folds": f"{e.folds_done}/{e.n_splits}", "seconds": "-" if e.seconds is None else f"{e.seconds:.1f}s",
            "status": e.status, "optimistic": bool(e.selected_on), "notes": "; ".join(e.notes)}


def render_html(ctx: Context, entries: list, plots: list[Plot]) -> str:
    """The self-contained page: inline CSS, images by relative path, every dynamic text escaped."""
    return _environment().get_template(TEMPLATE).render(
        spec=ctx.spec, metric_label=ctx.metric_label, n_train=len(ctx.data.train),
        n_test=0 if ctx.data.test is None else len(ctx.data.test),
        n_splits=ctx.runs[0].run.manifest.get("n_splits", "?"),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        plotted=[rd.name for rd in ctx.runs], rows=[_row(e) for e in entries], optimistic=OPTIMISTIC,
        written=[p for p in plots if p.file], skipped=[p for p in plots if not p.file], root=str(ctx.ws.root))
