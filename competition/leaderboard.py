"""``comp leaderboard``: every run of the workspace with its CV, per-fold spread, cost and state.

Each run's state is :mod:`competition.status`'s -- the one submit, stack and blend go by:
*complete*, *stale* (made on other folds, train data or metric; a stack's input retrained),
*partial* (folds missing) or *damaged* (a file it wrote is not the one it recorded), each with
the reason and the fix. Complete runs come first, best CV first (the metric says whether that is
the highest or the lowest), then stale, partial and damaged ones.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from competition import artifacts, bootstrap, metrics, runs, thresholds
from competition import data as data_mod
from competition import folds as folds_mod
from competition.errors import InputError
from competition.score import latest_score
from competition.spec import load_spec
from competition.status import ORDER, Statuses
from competition.workspace import Workspace

STATUS_ORDER = {state: i for i, state in enumerate(ORDER)}

# the mark after a status (CLI table and report page): the run's CV is optimistic
OPTIMISTIC = ("*: something was chosen on folds' own labels (best epoch, tuning): their CV is optimistic; "
              "the note names them and scores the untouched folds alone")


@dataclass(frozen=True)
class Entry:
    """One row of the leaderboard."""

    name: str
    kind: str
    family: str | None
    metric: str | None
    cv: float | None
    fold_mean: float | None
    fold_std: float | None
    folds_done: int
    n_splits: int
    seconds: float | None
    status: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    rank: int | None = None
    in_sample: float | None = None      # threshold metrics: the CV at a threshold chosen on all OOF
    vs_best: dict | None = None         # diff, low, high (95% paired bootstrap), tied: vs rank 1
    scored: float | None = None         # latest `comp score` of its submission (scores.json)
    selected_on: dict | None = None     # kind -> folds whose own labels chose something (manifest), or None
    untouched_folds: tuple[int, ...] | None = None   # with selected_on: the folds nothing was chosen on
    untouched_cv: float | None = None   # the CV of those folds' OOF rows alone (nested thresholds)
    weighted_cv: float | None = None    # with folds.weights: the CV with rows weighted by test-likeness

    def to_dict(self) -> dict:
        out = asdict(self)
        out["notes"] = list(self.notes)
        out["untouched_folds"] = None if self.untouched_folds is None else list(self.untouched_folds)
        return out


def train_seconds(manifest: dict) -> float | None:
    """Total training time: the sum of ``seconds_per_fold`` plus the once-per-run input
    preparation (tokenising, embedding) when the manifest records them.

    >>> train_seconds({"seconds_per_fold": {"0": 1.5, "1": 2.0}, "prepare_seconds": 4.0}), train_seconds({})
    (7.5, None)
    """
    per_fold = manifest.get("seconds_per_fold")
    if not per_fold:
        return None
    values = per_fold.values() if isinstance(per_fold, dict) else per_fold
    return round(float(sum(values)) + float(manifest.get("prepare_seconds") or 0.0), 2)


def folds_text(folds) -> str:
    """Fold numbers, runs of three or more as ranges.

    >>> folds_text([0, 1, 2, 3, 4]), folds_text([0, 2]), folds_text([1, 2])
    ('0-4', '0,2', '1,2')
    """
    folds, parts, i = sorted(folds), [], 0
    while i < len(folds):
        j = i
        while j + 1 < len(folds) and folds[j + 1] == folds[j] + 1:
            j += 1
        parts += [f"{folds[i]}-{folds[j]}"] if j - i >= 2 else [str(f) for f in folds[i:j + 1]]
        i = j + 1
    return ",".join(parts)


def untouched(selected: dict, n_splits: int) -> tuple[int, ...]:
    """The folds no choice was made on.

    >>> untouched({"tuning": [0]}, 3), untouched({"best_epoch": [0, 1, 2], "tuning": [0]}, 3)
    ((1, 2), ())
    """
    touched = {int(f) for folds in selected.values() for f in folds}
    return tuple(k for k in range(n_splits) if k not in touched)


def selection_note(selected: dict, folds: tuple[int, ...], cv_untouched: float | None, cv: float | None) -> str:
    """The note of a run with choices made on scored rows: which, on which folds, and the CV of
    the untouched folds beside the full one.

    >>> selection_note({"tuning": [0]}, (1, 2), 0.81234, 0.82)
    'chosen on scored rows: tuning on fold 0; CV on untouched folds 1,2: 0.8123 (full CV 0.8200)'
    """
    what = {"best_epoch": ("best epoch", " (each by its own validation)"), "tuning": ("tuning", "")}
    parts = [f"{what.get(kind, (kind, ''))[0]} on fold{'s' if len(f) > 1 else ''} {folds_text(f)}"
             f"{what.get(kind, (kind, ''))[1]}" for kind, f in sorted(selected.items())]
    note = "chosen on scored rows: " + "; ".join(parts)
    if not folds:
        hint = " (train.select=inner chooses the epoch on held-out training rows)" if "best_epoch" in selected else ""
        return f"{note}; no fold untouched: the CV is optimistic{hint}"
    if cv_untouched is None:
        return f"{note}; untouched fold{'s' if len(folds) > 1 else ''} {folds_text(folds)}"
    full = "" if cv is None else f" (full CV {cv:.4f})"
    return f"{note}; CV on untouched fold{'s' if len(folds) > 1 else ''} {folds_text(folds)}: {cv_untouched:.4f}{full}"


def cv_on_folds(run, data, folds: tuple[int, ...]) -> float:
    """The run's CV on the OOF rows of ``folds`` alone, by the rule of :func:`thresholds.cv` on those
    rows (each fold cut at the threshold chosen on the others of them). One fold of a threshold
    metric has no other to choose on: it is cut, as in the full CV, at the threshold chosen on
    every other fold of the run (their labels choose a cut, never this fold's)."""
    oof = run.oof()
    metric, task = run.manifest["metric"], run.manifest["task"]
    pred, fold, y = oof[run.pred_columns].to_numpy(dtype=float), oof["fold"].to_numpy(), np.asarray(data.y)
    if len(folds) == 1 and thresholds.takes_threshold(metric, task):
        return thresholds.cv(metric, y, pred, task, fold).folds[folds[0]]
    keep = np.isin(fold, folds)
    return thresholds.cv(metric, y[keep], pred[keep], task, fold[keep]).score


def sort_entries(entries: list[Entry], direction: str) -> list[Entry]:
    """Complete runs best first, then stale ones, then partial ones; ranks on complete runs.

    >>> e = [Entry("a", "experiment", None, "rmse", 0.5, None, None, 5, 5, None, "complete"),
    ...      Entry("b", "experiment", None, "rmse", 0.4, None, None, 5, 5, None, "complete"),
    ...      Entry("c", "experiment", None, "rmse", None, None, None, 2, 5, None, "partial")]
    >>> [(x.name, x.rank) for x in sort_entries(e, "minimize")]
    [('b', 1), ('a', 2), ('c', None)]
    """
    sign = -1 if direction == "maximize" else 1

    def key(entry: Entry):
        has = entry.cv is not None and math.isfinite(entry.cv)
        return (STATUS_ORDER[entry.status], not has, sign * entry.cv if has else 0.0, entry.name)

    ordered = sorted(entries, key=key)
    out, rank = [], 0
    for entry in ordered:
        if entry.status == "complete" and entry.cv is not None:
            rank += 1
            entry = replace(entry, rank=rank)
        out.append(entry)
    return out


def leaderboard(ws: Workspace, *, data=None) -> list[Entry]:
    """Every run of the workspace (:func:`competition.runs.all_runs`), sorted; see the module doc."""
    spec = load_spec(ws.spec_file) if data is None else data.spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # data warnings belong to `comp check`, not here
        data = _load(ws, data)
    # what a fresh run would record now, less what is unknown (no folds yet, unreadable data, no test set)
    current = {k: v for k, v in runs.input_hashes(ws, data).items() if v is not None}
    weights = None if data is None or "folds_hash" not in current else folds_mod.row_weights(ws, data)
    entries, scored, weighted = [], {}, {}
    judge = Statuses(ws, data, spec.metric)
    for run in runs.all_runs(ws):
        m = run.manifest
        n_splits = int(m.get("n_splits") or len(run.metrics.get("folds") or {}) or 0)
        done = len(m.get("folds_done") or run.metrics.get("folds") or ([0] * n_splits if run.complete else []))
        verdict = judge.of(run)
        status = verdict.state
        notes = [] if status == "partial" else list(verdict.reasons)
        if notes and verdict.fix:
            notes[-1] += f". {verdict.fix}"
        test_note = [str(c) for c in runs.changes(m, current) if c.key == "test_hash" and m.get("test_hash")]
        if run.complete and run.trivial:
            notes.append(f"learnt nothing usable: {run.trivial}")
        if status == "partial":
            notes.insert(0, f"{done}/{n_splits} folds done")
            other = m.get("folds_other_config") or {}
            if other:
                notes.insert(1, f"folds {','.join(other)} trained with another config")
        cv, in_sample = run.score if status in ("complete", "stale") else None, run.in_sample_score
        if status == "complete" and data is not None:   # rescored by today's rule, kept for comparing
            result, scored[run.name] = run.cv(data)
            cv, in_sample = result.score, result.in_sample
            if weights is not None:
                weighted[run.name] = float(bootstrap.scores(spec.metric, data.y, scored[run.name], spec.task,
                                                            weights[None, :])[0])
        selected = {k: sorted(v) for k, v in (m.get("selected_on") or {}).items() if v} or None
        clean, clean_cv = None, None
        if selected:
            clean = untouched(selected, n_splits)
            if clean and status == "complete" and data is not None:
                clean_cv = cv_on_folds(run, data, clean)
            notes.append(selection_note(selected, clean, clean_cv, cv))
        entries.append(Entry(
            name=run.name, kind=m.get("kind", "experiment"), family=m.get("family"),
            metric=run.metrics.get("metric") or m.get("metric"),
            cv=cv, in_sample=in_sample, scored=latest_score(run), weighted_cv=weighted.get(run.name),
            selected_on=selected, untouched_folds=clean, untouched_cv=clean_cv,
            fold_mean=run.metrics.get("fold_mean"), fold_std=run.metrics.get("fold_std"),
            folds_done=done, n_splits=n_splits, seconds=train_seconds(m), status=status,
            notes=tuple(notes + [f"{n}: retrain before submitting" for n in test_note]),
        ))
    for name, verdict in judge.orphans().items():
        entries.append(Entry(name=name, kind="experiment", family=None, metric=None, cv=None, fold_mean=None,
                             fold_std=None, folds_done=0, n_splits=0, seconds=None, status=verdict.state,
                             notes=(f"{verdict.reasons[0]}. {verdict.fix}",)))
    entries = sort_entries(entries, metrics.METRICS[spec.metric].direction)
    return with_comparisons(entries, scored, data) if scored else entries


def with_comparisons(entries: list[Entry], decisions: dict, data) -> list[Entry]:
    """Each ranked run's CV minus the best run's, with a 95% paired-bootstrap interval over the
    OOF rows (seeded); ``tied``: the interval holds 0, the gap may be noise."""
    spec = data.spec
    best = next((e for e in entries if e.rank == 1), None)
    if best is None or best.name not in decisions:
        return entries
    out = []
    for e in entries:
        if e.rank is not None and e.name in decisions:
            c = bootstrap.compare(spec.metric, data.y, decisions[e.name], decisions[best.name], spec.task)
            e = replace(e, vs_best={"diff": c.diff, "low": c.low, "high": c.high,
                                    "tied": e.rank > 1 and not c.significant})
        out.append(e)
    return out


def _load(ws: Workspace, data=None):
    """The competition's data, or None when it cannot be read now (the leaderboard still lists runs)."""
    if data is not None:
        return data
    try:
        return data_mod.load(load_spec(ws.spec_file))
    except InputError:
        return None


def to_json(entries: list[Entry], metric: str, direction: str) -> str:
    """The leaderboard as JSON: ``{"metric", "direction", "runs": [entry, ...]}``.

    >>> import json
    >>> json.loads(to_json([], "f1", "maximize"))
    {'metric': 'f1', 'direction': 'maximize', 'runs': []}
    """
    return json.dumps({"metric": metric, "direction": direction, "runs": [e.to_dict() for e in entries]},
                      indent=2)


def _num(value: float | None, fmt: str = ".4f") -> str:
    return "-" if value is None else format(value, fmt)


def _cv_text(e: Entry) -> str:
    """The CV, and for threshold metrics the optimistic in-sample figure beside it, dimmed."""
    return _num(e.cv) + ("" if e.in_sample is None or e.cv is None else f" [dim]({e.in_sample:.4f})[/]")


def _vs_best_text(e: Entry) -> str:
    """``best`` for rank 1; else the gap and its interval, ``tied`` when the interval holds 0.

    >>> _vs_best_text(Entry("a", "experiment", None, "f1", 0.8, None, None, 5, 5, None, "complete", rank=2,
    ...                     vs_best={"diff": -0.003, "low": -0.009, "high": 0.002, "tied": True}))
    '-0.0030 [-0.009, +0.002] tied'
    """
    if e.vs_best is None:
        return "-"
    if e.rank == 1:
        return "best"
    v = e.vs_best
    return f"{v['diff']:+.4f} [{v['low']:+.3f}, {v['high']:+.3f}]" + (" tied" if v["tied"] else "")


def render(entries: list[Entry], metric: str, direction: str):
    """The leaderboard as rich renderables (the caller prints them, :func:`show`): a table of
    figures, and lines under it: one per run that has notes (why it is stale, partial, damaged;
    what to run), then what the columns mean."""
    arrow = "higher" if direction == "maximize" else "lower"
    table = Table(title=f"leaderboard: {metric} ({arrow} is better)", box=box.SIMPLE_HEAD, pad_edge=False)
    optional = {"scored": any(e.scored is not None for e in entries),            # shown when they hold a figure
                "test-weighted": any(e.weighted_cv is not None for e in entries)}
    for column, justify in (("#", "right"), ("run", "left"), ("family", "left"), ("CV", "right"),
                            ("test-weighted", "right"), ("scored", "right"), ("vs best [95%]", "right"),
                            ("folds mean ± sd", "right"), ("train", "right"), ("status", "left")):
        if optional.get(column, True):   # names and figures never wrap (a user copies them); the family does
            table.add_column(column, justify=justify, no_wrap=column != "family", overflow="fold")
    colour = {"complete": "green", "stale": "yellow", "partial": "dim", "damaged": "red"}
    notes = []
    for e in entries:
        spread = "-" if e.fold_mean is None else f"{e.fold_mean:.4f} ± {_num(e.fold_std)}"
        status = f"[{colour[e.status]}]{e.status}[/]" + (f" {e.folds_done}/{e.n_splits}" if e.status == "partial" else "")
        status += "[yellow]*[/]" if e.selected_on else ""
        extra = ([_num(e.weighted_cv)] if optional["test-weighted"] else []) + (
            [_num(e.scored)] if optional["scored"] else [])
        table.add_row("-" if e.rank is None else str(e.rank), e.name, e.family or e.kind, _cv_text(e), *extra,
                      _vs_best_text(e), spread, "-" if e.seconds is None else f"{e.seconds:.0f}s", status)
        if e.notes:
            notes.append(f"[bold]{escape(e.name)}[/]: {escape('; '.join(e.notes))}")
    legend = []
    if any(e.selected_on for e in entries):
        legend.append(OPTIMISTIC)
    if any(e.in_sample is not None for e in entries):
        legend.append("CV: each fold cut at the threshold chosen on the other folds; (in-sample, optimistic)")
    if any(e.vs_best is not None and e.rank and e.rank > 1 for e in entries):
        legend.append("vs best: CV minus the best run's, 95% paired bootstrap over the OOF rows; "
                      "tied: the gap may be noise")
    if optional["test-weighted"]:
        legend.append("test-weighted: the CV with each train row weighted by its odds of being a test row "
                      "(folds.weights, from `comp check --adversarial`): what CV says under the train/test shift")
    if any(e.scored is not None for e in entries):
        legend.append("scored: the latest `comp score` of a submission of the run (experiments/<run>/scores.json)")
    return table, [Text.from_markup(line) for line in notes] + [Text(line, style="dim") for line in legend]


def show(console, entries: list[Entry], metric: str, direction: str) -> None:
    """Print the leaderboard: the table at its natural width even on a narrow terminal (a figure
    cut to fit is worse than a line the terminal wraps), the notes wrapped to the terminal."""
    table, lines = render(entries, metric, direction)
    natural = Measurement.get(console, console.options.update(width=400), table).maximum
    wide = console if natural <= console.width else Console(
        width=natural, color_system=console.color_system, force_terminal=console.is_terminal)
    wide.print(table)
    for line in lines:
        console.print(line)
