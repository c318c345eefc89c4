"""Quality techniques (issue 18), each against its baseline on the same folds.

Every variant is the baseline experiment plus one option, trained in a copy of the workspace (same
spec and folds, so OOF rows pair up); the figure is the nested CV metric, the paired difference to
the baseline with a 95% bootstrap interval over the rows (:func:`competition.bootstrap.compare`) and
the training seconds. The TF-IDF baseline (001) with the text options; the MiniLM variants in
``MINILM`` against the root's 042 (~15-20 min per 5-fold run on an idle 2-core machine, so some
are measured on folds 0-1 only, resumed from ``.work/quality-minilm``); the closest recipe on the
other datasets in ``OTHER`` (``.work/quality-<dataset>``). ``BENCH_QUALITY_TRAINED_ONLY=1`` collects
the MiniLM variants trained ahead (``python -m benchmarks.bench_quality qwl ...``) and lists the others
as not run, training none. ``python -m benchmarks.bench_quality qfgm`` alone trains (resuming) and merges
its rows into ``results/quality.json`` (:func:`merge`), keeping the other rows, and rebuilds BENCHMARKS.md.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.common import md_table, shared_data

EXPENSIVE = True
REPO = Path(__file__).resolve().parents[1]
WORK = Path(__file__).parent / ".work" / "quality"
BASE = "template: tfidf\n"
VARIANTS = {
    "001 (baseline)": [],
    "text.clean: ftfy, html, urls, users": ["text.clean=[ftfy,html,urls,users]"],
    "data.conflicts: majority": ["data.conflicts=majority"],
    "data.conflicts: drop": ["data.conflicts=drop"],
    "clean + conflicts majority": ["text.clean=[ftfy,html,urls,users]", "data.conflicts=majority"],
}
MINILM = {  # experiment id in .work/quality-minilm -> (what it is, overrides of 042)
    "q042": ("042 + text.clean + data.conflicts majority", ["text.clean=[ftfy,html,urls,users]",
                                                             "data.conflicts=majority"]),
    "qwl": ("042 + pooling weighted_layers (last 4)", ["model.pooling=weighted_layers"]),
    "qpl": ("042 + pseudo-labelled test rows from 042 (soft)", ["pseudo.from=['042']"]),
    # cheaper: folds 0-1 only (3,045 rows), against 042 on the same rows
    "qkd": ("042 + distilled from 042 (alpha 0.5, T 2)", ["distill.teacher=['042']", "distill.alpha=0.5",
                                                          "distill.temperature=2.0"], [0, 1]),
    "qmsd": ("042 + multi-sample dropout (5)", ["model.msd=5"], [0, 1]),
    "qls": ("042 + label smoothing 0.1", ["model.label_smoothing=0.1"], [0, 1]),
    "qri": ("042 + re-initialised top layer", ["model.reinit_layers=1"], [0, 1]),
    "qatt": ("042 + pooling attention", ["model.pooling=attention"], [0, 1]),
    "qplc": ("042 + pseudo-labelled test rows from 042 (confident >= 0.9)",
             ["pseudo.from=['042']", "pseudo.select=confident"], [0, 1]),
    "qfgm": ("042 + adversarial training (FGM, eps 1.0)", ["train.fgm=1.0"], [0, 1]),
    "qfgm1": ("042 + FGM eps 1.0 in the second epoch only", ["train.fgm=1.0", "train.fgm_start=1"], [0, 1])}
MINILM_WORK = Path(__file__).parent / ".work" / "quality-minilm"   # kept: a re-run resumes its folds
# the other datasets: sms-spam has no test rows (no pseudo-labelling); commonlit's MiniLM (256 tokens,
# 3 epochs) takes over an hour per 5-fold run on 2 cores
OTHER = {"sms-spam": {
    "qkd": ("042 + distilled from 042 (alpha 0.5, T 2)", ["distill.teacher=['042']", "distill.alpha=0.5",
                                                          "distill.temperature=2.0"], [0, 1])}}
NOT_RUN = ["commonlit: its MiniLM (256 tokens, 3 epochs) takes over an hour per 5-fold run on these 2 cores, "
           "and its test file has 7 rows (nothing to pseudo-label)"]


def run() -> dict:
    from competition import bootstrap, runs, thresholds
    from competition.config import load_config
    from competition.data import load
    from competition.spec import load_spec
    from competition.train import train

    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    shutil.rmtree(WORK, ignore_errors=True)
    ws = _copy_workspace(WORK)
    data = load(load_spec(ws.spec_file))
    out, decisions = {}, {}
    for i, (name, overrides) in enumerate(VARIANTS.items()):
        exp = f"q{i}"
        (ws.experiments_dir / f"{exp}.yaml").write_text(BASE)
        started = time.perf_counter()
        result = train(ws, load_config(ws, exp, ["track.wandb=false", *overrides]), data=data)
        seconds = time.perf_counter() - started
        oof = runs.load_run(ws, exp).oof()
        decisions[name] = thresholds.decisions("f1", data.y, oof[["target"]].to_numpy(float), "binary",
                                               oof["fold"].to_numpy())[0]
        base = next(iter(VARIANTS))
        c = bootstrap.compare("f1", data.y, decisions[name], decisions[base], "binary")
        out[name] = {"overrides": overrides, "f1": result.oof_score, "diff": [c.diff, c.low, c.high],
                     "significant": c.significant, "seconds": round(seconds, 1)}
        print(f"[bench] quality {name}: f1 {result.oof_score:.4f} {c.text()}", flush=True)
    shutil.rmtree(WORK, ignore_errors=True)
    only, not_run, other = None, list(NOT_RUN), list(OTHER)
    if os.environ.get("BENCH_QUALITY_TRAINED_ONLY"):   # collect what was trained ahead, train nothing more
        only = [exp for exp, spec in MINILM.items() if _trained(MINILM_WORK, exp, spec)]
        not_run += [f"{MINILM[exp][0]} (not trained yet)" for exp in MINILM if exp not in only]
        other = [name for name in OTHER if all(_trained(MINILM_WORK.parent / f"quality-{name}", exp, spec, "042")
                                               for exp, spec in OTHER[name].items())]
        not_run += [f"{name} (not trained yet)" for name in OTHER if name not in other]
    return {"variants": out, "minilm": run_minilm(data, only=only),
            "other": {name: run_other(name) for name in other}, "not_run": not_run}


def _trained(root: Path, exp: str, spec: tuple, *names: str) -> bool:
    """Whether every fold that variant ``exp`` (a ``MINILM`` / ``OTHER`` entry ``spec``) uses is done under
    ``root``, for it and for the runs ``names`` (another dataset's own 042)."""
    folds = spec[2] if len(spec) > 2 else range(5)
    return all((root / "experiments" / name / f"fold{k}" / "done.json").is_file() for name in (exp, *names)
               for k in folds)


def _copy_workspace(root: Path):
    """The repository root's spec, folds and experiment files (no runs) in ``root``."""
    from competition.workspace import Workspace

    (root / "experiments").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "competition.yaml", root / "competition.yaml")
    shutil.copytree(REPO / "folds", root / "folds", ignore=shutil.ignore_patterns("adversarial.csv"),
                    dirs_exist_ok=True)
    for name in ("base.yaml", "042.yaml"):
        shutil.copy(REPO / "experiments" / name, root / "experiments" / name)
    return Workspace(root)


def run_minilm(data, only: list[str] | None = None) -> list[dict]:
    """Each MiniLM variant (or those in ``only``): 042's file plus its overrides, 5 folds, against the
    root's 042 run on the same folds (paired interval over the rows). Skipped when 042 is not trained
    at the root. Finished folds are kept, so ``python -m benchmarks.bench_quality qwl qmsd`` trains
    variants ahead (one at a time in the background) and ``make bench`` then only collects them."""
    from competition import runs
    from competition.workspace import Workspace

    root = Workspace(REPO)
    if not (root.run_dir("042") / "oof.parquet").is_file():
        return []
    ws = _copy_workspace(MINILM_WORK)
    source = ws.run_dir("042")        # the sources of pseudo labels and distillation: the root's 042 run
    if not source.exists():
        source.symlink_to(root.run_dir("042").resolve(), target_is_directory=True)
    base_oof = runs.load_run(root, "042").oof()
    return [_variant(ws, data, base_oof, exp, *spec) for exp, spec in MINILM.items()
            if only is None or exp in only]


def run_other(name: str, only: list[str] | None = None) -> dict:
    """The variants of ``OTHER[name]`` on another dataset's example workspace (``.work/<name>``, as the
    datasets benchmark makes it), against its own 042 (trained first when it is not there yet)."""
    from benchmarks.bench_datasets import _workspace
    from competition import folds
    from competition.workspace import OOF
    from competition.config import load_config
    from competition.data import load
    from competition.spec import load_spec
    from competition.train import train

    ws = _workspace(name, MINILM_WORK.parent / f"quality-{name}")
    data = load(load_spec(ws.spec_file))
    folds.write_folds(ws, data)
    chosen = sorted({k for spec in OTHER[name].values() for k in (spec[2] if len(spec) > 2 else range(5))})
    if not only or "042" in only:
        train(ws, load_config(ws, "042", ["track.wandb=false"]), data=data, folds=chosen)
    if not all((ws.fold_dir("042", k) / OOF).is_file() for k in chosen):
        return {}
    base_oof = _fold_oof(ws, "042", chosen)
    return {"metric": data.spec.metric, "folds": chosen,
            "base": _scored(data, base_oof)[0],
            "base_seconds": round(5 * float(np.median([_fold_seconds(ws.fold_dir("042", k)) for k in chosen])), 1),
            "variants": [_variant(ws, data, base_oof, exp, *spec) for exp, spec in OTHER[name].items()
                         if not only or exp in only]}


def _fold_oof(ws, exp: str, folds: list[int]):
    import pandas as pd

    from competition.workspace import OOF

    return pd.concat([pd.read_parquet(ws.fold_dir(exp, k) / OOF) for k in folds])


def _scored(data, oof) -> tuple[float, np.ndarray, np.ndarray]:
    """(the nested CV metric, what the bootstrap compares, the rows' y) of OOF rows, in the train file's
    order: the decisions at each fold's nested threshold for threshold metrics, else the predictions."""
    from competition import thresholds

    spec = data.spec
    ids = data.train[spec.id_column].astype(str).to_numpy()
    oof = oof.assign(id=oof["id"].astype(str)).set_index("id")
    keep = np.isin(ids, oof.index)
    oof, y = oof.loc[ids[keep]], data.y[keep]
    pred, fold = oof[spec.pred_columns].to_numpy(float), oof["fold"].to_numpy()
    score = thresholds.cv(spec.metric, y, pred, spec.task, fold).score
    if thresholds.takes_threshold(spec.metric, spec.task):
        pred = thresholds.decisions(spec.metric, y, pred, spec.task, fold)[0]
    elif spec.task == "binary":
        pred = pred[:, 0]                         # P(positive), as the bootstrap's ranking metrics take it
    return score, pred, y


def _variant(ws, data, base_oof, exp: str, name: str, overrides: list[str], folds: list[int] | None = None) -> dict:
    """Train 042's file plus ``overrides`` as ``exp`` (resuming), compared row by row with 042's OOF
    ``base_oof`` (:func:`_scored`). With ``folds``, only those folds are trained and both runs are
    scored on their rows alone."""
    from competition import bootstrap
    from competition.config import load_config
    from competition.train import train

    spec = data.spec
    shutil.copy(ws.experiment_file("042"), ws.experiment_file(exp))
    started = time.perf_counter()
    train(ws, load_config(ws, exp, ["track.wandb=false", *overrides]), data=data, folds=folds or "all")
    chosen = folds or sorted(base_oof["fold"].unique().tolist())
    score, pred, y = _scored(data, _fold_oof(ws, exp, chosen))
    base_score, base_pred, _ = _scored(data, base_oof[base_oof["fold"].isin(chosen)])
    c = bootstrap.compare(spec.metric, y, pred, base_pred, spec.task)
    print(f"[bench] quality {spec.name} {name}: {spec.metric} {score:.4f} {c.text()}", flush=True)
    per_fold = [_fold_seconds(ws.fold_dir(exp, k)) for k in chosen]
    return {"variant": name, "overrides": overrides, "f1": score, "base_f1": base_score,
            "folds": chosen if folds else None, "diff": [c.diff, c.low, c.high], "significant": c.significant,
            "seconds": round(5 * float(np.median(per_fold)), 1), "wall": round(time.perf_counter() - started, 1)}


def merge(entries: list[dict]) -> None:
    """Variants trained ahead (``python -m benchmarks.bench_quality qfgm``) into the committed results,
    replacing their earlier rows and keeping the others' (whose runs may be gone); BENCHMARKS.md rebuilt."""
    import json
    from datetime import datetime, timezone

    from benchmarks.run import RESULTS, render as render_page
    from competition.artifacts import write_text

    path = RESULTS / "quality.json"
    if not entries or not path.is_file():
        return
    result = json.loads(path.read_text())
    ran_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    names = {e["variant"] for e in entries}
    result["minilm"] = [e for e in result.get("minilm", []) if e["variant"] not in names] + [
        {**e, "ran_at": ran_at} for e in entries]
    write_text(path, json.dumps(result, indent=2, default=str) + "\n")
    render_page()


def _fold_seconds(fold_dir: Path) -> float:
    """A fold's wall seconds, from its ``done.json``."""
    import json

    return float(json.loads((fold_dir / "done.json").read_text())["seconds"])


def render(r: dict) -> str:
    rows = []
    for name, v in r["variants"].items():
        d, lo, hi = v["diff"]
        gap = "-" if name.endswith("(baseline)") else f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]" + (
            " **holds**" if v["significant"] and d > 0 else " noise" if not v["significant"] else " worse")
        rows.append([name, f"{v['f1']:.4f}", gap, v["seconds"]])
    return "\n".join([
        "## Quality techniques (disaster-tweets, TF-IDF 001 on the 5 folds of 042)", "",
        "Nested OOF F1 of the baseline plus one option at a time, the paired difference to the baseline "
        "with its 95% bootstrap interval over the 7,613 rows (*holds*: the interval is above 0; *noise*: it "
        "holds 0), and the command's wall seconds.", "",
        md_table(["variant", "f1", "vs baseline [95%]", "seconds"], rows), "",
        *_minilm(r.get("minilm") or []),
        *[line for name, o in (r.get("other") or {}).items() for line in _other(name, o)],
        "- not run: " + "; ".join(r["not_run"])])


def _other(name: str, o: dict) -> list[str]:
    """Another dataset's variants against its own 042."""
    if not o:
        return []
    rows = [["042", f"{o['base']:.4f}", "-", o["base_seconds"]]]
    for e in o["variants"]:
        d, lo, hi = e["diff"]
        verdict = " **holds**" if e["significant"] and d > 0 else " noise" if not e["significant"] else " worse"
        rows.append([e["variant"], f"{e['f1']:.4f}", f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]{verdict}", e["seconds"]])
    return [f"{name} ({o['metric']}), the closest recipe that applies, against its 042 on the same folds "
            f"({', '.join(map(str, o['folds']))}; *seconds*: 5 x the median fold's):", "",
            md_table(["variant", o["metric"], "vs 042 [95%]", "seconds"], rows), ""]


def _minilm(entries: list[dict]) -> list[str]:
    """MiniLM variants measured against 042 (:func:`run_minilm`, one 5-fold fine-tune each)."""
    if not entries:
        return []
    rows = []
    for e in entries:
        d, lo, hi = e["diff"]
        verdict = " **holds**" if e["significant"] and d > 0 else " noise" if not e["significant"] else " worse"
        where = f" (folds {', '.join(map(str, e['folds']))})" if e.get("folds") else ""
        where += f" (run {e['ran_at'][:10]})" if e.get("ran_at") else ""
        rows.append([e["variant"] + where, f"{e['f1']:.4f}", f"{e['base_f1']:.4f}",
                     f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]{verdict}", e["seconds"]])
    return ["MiniLM (042, 2 epochs) with the same options, against 042 on the same folds (*seconds*: 5 x the "
            "median fold's wall seconds, the folds trained beside other work on the 2 cores; the first row's "
            "5 folds took 865 s on an idle machine; *(folds 0, 1)*: trained on those two "
            "folds only and both runs scored on their 3,045 rows):", "",
            md_table(["variant", "f1", "042 f1", "vs 042 [95%]", "seconds"], rows), ""]


if __name__ == "__main__":
    import sys

    from competition.data import load
    from competition.spec import load_spec

    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    if sys.argv[1:2] and sys.argv[1] in OTHER:         # python -m benchmarks.bench_quality sms-spam 042 qkd
        run_other(sys.argv[1], only=sys.argv[2:])
    else:
        merge(run_minilm(load(load_spec(REPO / "competition.yaml")), only=sys.argv[1:] or None))
