"""CV of every shipped experiment, the stack and the best blend, on every real dataset.

Each example workspace is copied to ``benchmarks/.work/<dataset>/`` (git-ignored, kept
between runs: comp's resume means an expensive encoder run is trained once and only
retrained when its folder is deleted), its folds are made from its spec, and each
experiment is trained with ``comp train``'s library function. disaster-tweets is the
repository root itself (the README's walkthrough workspace, same spec and experiments as
``examples/disaster-tweets``), so runs a user already trained there are resumed, not
repeated. Times are the training seconds per fold recorded in each run's manifest, summed.

Experiments left out, and why, are listed on the page (``SKIP``): the CPU budget of this
machine (2 cores) does not fit every MiniLM fine-tune.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from benchmarks.common import md_table, shared_data

EXPENSIVE = True
REPO = Path(__file__).resolve().parents[1]
WORK = Path(__file__).parent / ".work"
DATASETS = ["disaster-tweets", "sms-spam", "commonlit", "goemotions", "titanic"]
_CPU = "not run yet: over the CPU budget of the session that built this page (2 cores)"
SKIP = {
    ("commonlit", "042"): "MiniLM fine-tune at 256 tokens x 3 epochs (over an hour on 2 cores): " + _CPU,
}


def _workspace(name: str, root: Path | None = None):
    """The example workspace of dataset ``name`` copied to ``root`` (default ``.work/<name>``)."""
    from competition.workspace import Workspace

    if name == "disaster-tweets":
        return Workspace(REPO)
    src = REPO / "examples" / name
    root = root or WORK / name
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "competition.yaml", root / "competition.yaml")
    for file in (src / "experiments").glob("*.yaml"):
        shutil.copy(file, root / "experiments" / file.name)
    return Workspace(root)


def bench_dataset(name: str, only: list[str] | None = None) -> dict:
    from competition import blend, folds, stack
    from competition.config import load_config
    from competition.data import load
    from competition.spec import load_spec
    from competition.train import train

    ws = _workspace(name)
    spec = load_spec(ws.spec_file)
    dataset = load(spec)
    folds.write_folds(ws, dataset)  # identical folds are kept; resume works across runs
    out = {"metric": spec.metric, "rows": len(dataset.train), "experiments": {}, "skipped": {}}
    trained = []
    for exp in ws.experiment_ids():
        if (name, exp) in SKIP or (only and exp not in only):
            out["skipped"][exp] = SKIP.get((name, exp), "not selected")
            continue
        cfg = load_config(ws, exp, ["track.wandb=false"])
        started = time.perf_counter()
        result = train(ws, cfg, data=dataset)
        manifest = ws.run_dir(exp) / "manifest.json"
        recorded = json.loads(manifest.read_text())
        seconds = sum(recorded["seconds_per_fold"].values())
        dones = [json.loads(d.read_text()) for d in sorted(ws.run_dir(exp).glob("fold*/done.json"))]
        fit_only = [d.get("extra", {}).get("train_seconds") for d in dones]
        out["experiments"][exp] = {"family": cfg.model.family, "cv": result.oof_score,
                                   "in_sample_cv": result.in_sample,
                                   "train_seconds": round(seconds, 1),
                                   "prepare_seconds": recorded.get("prepare_seconds"),
                                   "optimisation_seconds": round(sum(fit_only), 1) if None not in fit_only else None,
                                   "wall_seconds_this_run": round(time.perf_counter() - started, 1)}
        trained.append(exp)
        print(f"[bench] {name} {exp} ({cfg.model.family}): {spec.metric} {result.oof_score:.4f}", flush=True)
    if len(trained) >= 2:
        started = time.perf_counter()
        s = stack.stack(ws, inputs=trained, name="bench-stack", force=True)
        out["stack"] = {"cv": s.oof_score, "seconds": round(time.perf_counter() - started, 1),
                        "in_sample_cv": _in_sample(ws, "bench-stack"),
                        "best_input": s.best_input_score, "mean_blend": s.mean_blend_score}
        started = time.perf_counter()
        b = blend.blend(ws, inputs=trained, method="hill-climb", name="bench-blend", force=True)
        out["blend"] = {"method": "hill-climb", "cv": b.oof_score, "seconds": round(time.perf_counter() - started, 1),
                        "in_sample_cv": _in_sample(ws, "bench-blend")}
        for run in ("bench-stack", "bench-blend"):   # figures kept above; the workspace stays the user's
            shutil.rmtree(ws.run_dir(run), ignore_errors=True)
    return out


def _in_sample(ws, name: str) -> float | None:
    """A run's OOF score at the threshold chosen on all its OOF rows (None: the metric has none)."""
    from competition import runs

    return runs.load_run(ws, name).in_sample_score


def run(datasets: list[str] | None = None, previous: dict | None = None) -> dict:
    """Every dataset, or just ``datasets`` with the others kept from ``previous`` (the cached
    results). A re-run dataset records when it ran and, for each run whose CV moved, the CV
    it had before (``previous_cv``), so the page says by how much a change moved it."""
    from datetime import datetime, timezone

    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    previous = {k: v for k, v in (previous or {}).items() if not k.startswith("_")}
    out = dict(previous) if datasets else {}
    for name in (datasets or DATASETS):
        result = bench_dataset(name)
        result["ran_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        before = previous.get(name, {})
        for exp, e in result["experiments"].items():
            old = before.get("experiments", {}).get(exp, {}).get("cv")
            if old is not None and round(old, 4) != round(e["cv"], 4):
                e["previous_cv"] = old
        for part in ("stack", "blend"):
            old = before.get(part, {}).get("cv")
            if part in result and old is not None and round(old, 4) != round(result[part]["cv"], 4):
                result[part]["previous_cv"] = old
        out[name] = result
    return {name: out[name] for name in DATASETS if name in out}


def _cv(entry: dict, bold: bool = False) -> str:
    text = f"**{entry['cv']:.4f}**" if bold else f"{entry['cv']:.4f}"
    return text + (f" (was {entry['previous_cv']:.4f})" if entry.get("previous_cv") is not None else "")


def _in_sample_cell(entry: dict) -> str:
    """The in-sample figure, where it differs from the nested CV (threshold metrics only)."""
    value = entry.get("in_sample_cv")
    return "" if value is None else f"{value:.4f}"


def _blank(value) -> str:
    return "" if value is None else str(round(value, 1))


def render(r: dict) -> str:
    lines = ["## Results on the real datasets", "",
             "CV (out-of-fold, 5 folds from each example's spec) of each shipped experiment, "
             "the LightGBM stack and the hill-climbing blend over them. *fold s*: the folds' wall "
             "seconds summed (fit, validations, OOF and test predictions, saving); *prepare s*: inputs "
             "built once per run and shared by the folds (tokenising; the frozen encoder's embeddings "
             "of every train and test text); *optimisation s*: the torch families' training steps "
             "alone (no validation, no inference). Threshold metrics (f1, accuracy, macro_f1 here) report the "
             "*nested* CV: each fold cut at the threshold chosen on the other folds' OOF; the *in-sample* "
             "column cuts every row at the threshold chosen on all of them (what earlier versions reported, "
             "optimistic); *was*: the CV this page showed before.", ""]
    for name, d in r.items():
        if name.startswith("_"):
            continue
        nested = any(e.get("in_sample_cv") is not None for e in d["experiments"].values())
        extra = (lambda e: [_in_sample_cell(e)]) if nested else (lambda e: [])
        rows = [[exp, e["family"], _cv(e), *extra(e), e["train_seconds"], _blank(e.get("prepare_seconds")),
                 _blank(e.get("optimisation_seconds"))]
                for exp, e in d["experiments"].items()]
        if "stack" in d:
            rows.append(["stack", "lgbm meta-model", _cv(d["stack"], True), *extra(d["stack"]), d["stack"]["seconds"], "", ""])
            rows.append(["blend", "hill-climb", _cv(d["blend"], True), *extra(d["blend"]), d["blend"]["seconds"], "", ""])
        head = [d["metric"] + (" (nested)" if nested else ""), *(["in-sample (optimistic)"] if nested else [])]
        lines += [f"### {name} ({d['metric']}, {d['rows']:,} train rows)", "",
                  md_table(["run", "model", *head, "fold s", "prepare s", "optimisation s"], rows), ""]
        for exp, why in d.get("skipped", {}).items():
            lines.append(f"- {exp}: {why}")
        if d.get("ran_at"):
            lines.append(f"- this dataset re-run alone at {d['ran_at']}" + (
                "; *was*: the CV before it" if any("previous_cv" in e for e in [*d["experiments"].values(),
                                                   d.get("stack", {}), d.get("blend", {})]) else ""))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(json.dumps(run(sys.argv[1:] or None), indent=2, default=str))
