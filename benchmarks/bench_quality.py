"""Quality techniques on disaster-tweets, each against its baseline on the same 5 folds.

Every variant is the baseline experiment plus one option (or the combination), trained in a
copy of the repository root's workspace (same spec and folds, so OOF rows pair up); the
figure is the nested OOF F1, the paired difference to the baseline with a 95% bootstrap
interval over the rows (:func:`competition.bootstrap.compare`), and the training seconds. So far
the TF-IDF baseline (001), and the MiniLM variants in ``MINILM`` against 042 (its run at the
root; ~15 min each on an idle 2-core machine, resumed from ``.work/quality-minilm``). Variants
not run yet are listed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

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
    "qkd": ("042 + distilled from 042 (alpha 0.5, T 2)", ["distill.teacher=['042']", "distill.alpha=0.5",
                                                          "distill.temperature=2.0"]),
    "qmsd": ("042 + multi-sample dropout (5)", ["model.msd=5"]),
    "qls": ("042 + label smoothing 0.1", ["model.label_smoothing=0.1"]),
    "qri": ("042 + re-initialised top layer", ["model.reinit_layers=1"]),
    "qatt": ("042 + pooling attention", ["model.pooling=attention"])}
MINILM_WORK = Path(__file__).parent / ".work" / "quality-minilm"   # kept: a re-run resumes its folds
NOT_RUN = ["encoder pooling attention / weighted_layers", "multi-sample dropout", "re-initialised top layers",
           "label smoothing", "pseudo-labelling", "distillation"]


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
    return {"variants": out, "minilm": run_minilm(data), "not_run": NOT_RUN}


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
    from competition import bootstrap, runs, thresholds
    from competition.config import load_config
    from competition.train import train
    from competition.workspace import Workspace

    root = Workspace(REPO)
    if not (root.run_dir("042") / "oof.parquet").is_file():
        return []
    ws = _copy_workspace(MINILM_WORK)
    source = ws.run_dir("042")        # the sources of pseudo labels and distillation: the root's 042 run
    if not source.exists():
        source.symlink_to(root.run_dir("042").resolve(), target_is_directory=True)

    def decided(run):
        oof = run.oof()
        return thresholds.decisions("f1", data.y, oof[["target"]].to_numpy(float), "binary", oof["fold"].to_numpy())[0]

    base_run = runs.load_run(root, "042")
    out = []
    for exp, (name, overrides) in MINILM.items():
        if only and exp not in only:
            continue
        shutil.copy(ws.experiment_file("042"), ws.experiment_file(exp))
        started = time.perf_counter()
        result = train(ws, load_config(ws, exp, ["track.wandb=false", *overrides]), data=data)
        run = runs.load_run(ws, exp)
        c = bootstrap.compare("f1", data.y, decided(run), decided(base_run), "binary")
        out.append({"variant": name, "overrides": overrides, "f1": result.oof_score,
                    "base_f1": base_run.cv(data)[0].score, "diff": [c.diff, c.low, c.high],
                    "significant": c.significant, "seconds": typical_seconds(run),
                    "wall": round(time.perf_counter() - started, 1)})
        print(f"[bench] quality MiniLM {name}: f1 {result.oof_score:.4f} {c.text()}", flush=True)
    return out


def typical_seconds(run) -> float:
    """The run's training time as n_folds x its median fold's wall seconds: the folds were trained over
    sessions, some beside other work on the same 2 cores, and the median fold is the least disturbed
    figure that still counts everything a fold does (teachers' predictions included)."""
    import statistics

    per_fold = list(run.manifest["seconds_per_fold"].values())
    return round(len(per_fold) * statistics.median(per_fold), 1)


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
        "- not run yet (MiniLM, ~27 min per 5-fold run on 2 cores): " + "; ".join(r["not_run"])])


def _minilm(entries: list[dict]) -> list[str]:
    """MiniLM variants measured against 042 (:func:`run_minilm`, one 5-fold fine-tune each)."""
    if not entries:
        return []
    rows = []
    for e in entries:
        d, lo, hi = e["diff"]
        verdict = " **holds**" if e["significant"] and d > 0 else " noise" if not e["significant"] else " worse"
        rows.append([e["variant"], f"{e['f1']:.4f}", f"{e['base_f1']:.4f}", f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]{verdict}",
                     e["seconds"]])
    return ["MiniLM (042, 2 epochs) with the same options, against 042 on the same folds (*seconds*: 5 x the "
            "median fold's wall seconds; 042 itself: 865 s on an idle machine):", "",
            md_table(["variant", "f1", "042 f1", "vs 042 [95%]", "seconds"], rows), ""]


if __name__ == "__main__":
    import sys

    from competition.data import load
    from competition.spec import load_spec

    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    run_minilm(load(load_spec(REPO / "competition.yaml")), only=sys.argv[1:])
