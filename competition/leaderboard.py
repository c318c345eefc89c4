"""``comp leaderboard``: every run of the workspace with its CV, per-fold spread, cost and state.

A run is *complete* when every fold is done, *partial* while some are missing, and *stale*
when it was trained on other folds or other train data than the current ones (its
``folds_hash`` / ``data_hash`` differ): a stale run may not be stacked or blended with
current ones. Complete runs come first, best CV first (the metric says whether that is
the highest or the lowest), then stale ones, then partial ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

from competition.workspace import Workspace

STATUS_ORDER = {"complete": 0, "stale": 1, "partial": 2, "damaged": 3}


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

    def to_dict(self) -> dict:
        out = asdict(self)
        out["notes"] = list(self.notes)
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


def stale_reasons(manifest: dict, current: dict) -> list[str]:
    """What changed since the run was trained, for each hash the current state knows.

    >>> stale_reasons({"folds_hash": "a", "data_hash": "b"}, {"folds_hash": "a", "data_hash": "c"})
    ['train data changed (data_hash b != c)']
    """
    what = {"folds_hash": "folds changed", "data_hash": "train data changed", "test_hash": "test data changed"}
    return [f"{what[k]} ({k} {manifest.get(k)} != {v})"
            for k, v in current.items() if v is not None and manifest.get(k) != v]


def changed_inputs(ws: Workspace, name: str, manifest: dict, file_hash=None) -> list[str]:
    """For a stack or blend: inputs retrained (their OOF changed) or removed since it was built.

    ``file_hash`` may be a memoised :func:`competition.artifacts.file_hash`, so an input that
    several stacks share is read once.
    """
    from competition import artifacts, runs

    file_hash = file_hash or artifacts.file_hash
    notes = []
    for source, recorded in (manifest.get("input_hashes") or {}).items():
        oof = ws.run_dir(source) / "oof.parquet"
        if not oof.is_file():
            notes.append(f"input {source} is gone")
        elif file_hash(oof) != recorded:
            notes.append(f"input {source} changed since")
    if notes:
        notes[-1] += f": rebuild with `{runs.remake_command(name, manifest)}`"
    return notes


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


def current_hashes(ws: Workspace, data=None) -> dict:
    """The hashes a fresh run would record now (None where unknown: no folds yet, unreadable data)."""
    from competition import artifacts
    from competition import data as data_mod
    from competition.errors import InputError
    from competition.spec import load_spec

    hashes = {"folds_hash": artifacts.file_hash(ws.folds_file) if ws.folds_file.is_file() else None,
              "data_hash": None, "test_hash": None}
    try:
        data = data if data is not None else data_mod.load(load_spec(ws.spec_file))
    except InputError:
        return hashes
    hashes.update(data_hash=data.train_hash, test_hash=data.test_hash)
    return hashes


def leaderboard(ws: Workspace, *, data=None) -> list[Entry]:
    """Every run of the workspace (:func:`competition.runs.all_runs`), sorted; see the module doc."""
    import functools
    import warnings

    from competition import artifacts, metrics, runs
    from competition.spec import load_spec

    spec = load_spec(ws.spec_file) if data is None else data.spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # data warnings belong to `comp check`, not here
        current = current_hashes(ws, data)
    entries = []
    file_hash = functools.cache(artifacts.file_hash)
    for run in runs.all_runs(ws):
        m = run.manifest
        n_splits = int(m.get("n_splits") or len(run.metrics.get("folds") or {}) or 0)
        done = len(m.get("folds_done") or run.metrics.get("folds") or ([0] * n_splits if run.complete else []))
        notes = stale_reasons(m, {k: current[k] for k in ("folds_hash", "data_hash")})
        test_note = stale_reasons(m, {"test_hash": current["test_hash"]}) if m.get("test_hash") else []
        if m.get("metric") and m["metric"] != spec.metric:
            notes.append(f"scored with {m['metric']}, not {spec.metric}")
        status = "partial" if not run.complete else "stale" if notes else "complete"
        if run.complete and not run.readable():
            status = "damaged"
            notes.insert(0, f"its predictions cannot be read: remake it: `{runs.remake_command(run.name, m)}`")
        if status == "partial":
            notes.insert(0, f"{done}/{n_splits} folds done")
            other = m.get("folds_other_config") or {}
            if other:
                notes.insert(1, f"folds {','.join(other)} trained with another config")
        entries.append(Entry(
            name=run.name, kind=m.get("kind", "experiment"), family=m.get("family"),
            metric=run.metrics.get("metric") or m.get("metric"),
            cv=run.score if status in ("complete", "stale") else None,
            fold_mean=run.metrics.get("fold_mean"), fold_std=run.metrics.get("fold_std"),
            folds_done=done, n_splits=n_splits, seconds=train_seconds(m), status=status,
            notes=tuple(notes + [f"{n}: retrain before submitting" for n in test_note]
                        + changed_inputs(ws, run.name, m, file_hash)),
        ))
    return sort_entries(entries, metrics.METRICS[spec.metric].direction)


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


def render(entries: list[Entry], metric: str, direction: str):
    """A rich Table of the leaderboard (the caller prints it)."""
    from rich.markup import escape
    from rich.table import Table

    arrow = "higher" if direction == "maximize" else "lower"
    table = Table(title=f"leaderboard: {metric} ({arrow} is better)")
    for column, justify in (("#", "right"), ("run", "left"), ("kind", "left"), ("CV", "right"),
                            ("fold mean ± std", "right"), ("folds", "right"), ("train time", "right"),
                            ("status", "left")):
        table.add_column(column, justify=justify)
    colour = {"complete": "green", "stale": "yellow", "partial": "dim", "damaged": "red"}
    for e in entries:
        spread = "-" if e.fold_mean is None else f"{e.fold_mean:.4f} ± {_num(e.fold_std)}"
        kind = e.kind + (f" ({e.family})" if e.family else "")
        status = f"[{colour[e.status]}]{e.status}[/]" + (f": {escape('; '.join(e.notes))}" if e.notes else "")
        table.add_row("-" if e.rank is None else str(e.rank), e.name, kind, _num(e.cv), spread,
                      f"{e.folds_done}/{e.n_splits}", "-" if e.seconds is None else f"{e.seconds:.1f}s",
                      status)
    return table
