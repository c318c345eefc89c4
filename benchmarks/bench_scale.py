"""Scale out on this machine: 5 folds sequential vs as Ray tasks on a local Ray, and Ray's start-up.

Two copies of the disaster-tweets workspace (the repository root's spec, folds and experiment
files; no runs) train the same experiments: one with ``train()`` fold after fold, one with
``comp train --ray local``'s library call (:func:`competition.dispatch.train_on_ray`, 2 CPUs,
one task per fold, each in a fresh worker process). Side by side in one process, so the ratio
is measured under the same load. The runs must be identical (checked).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import machine, md_table, shared_data

EXPENSIVE = True
REPO = Path(__file__).resolve().parents[1]
WORK = Path(__file__).parent / ".work" / "scale"
EXPERIMENTS = {"001": "TF-IDF + logistic (liblinear, one thread)",
               "002-lgbm": "TF-IDF + LightGBM (2 threads alone, 1 per Ray task)"}
FILES = {"001": "template: tfidf\n",
         "002-lgbm": "template: tfidf\nmodel: {estimator: lgbm, max_features: 20000, lgbm: {num_boost_round: 300}}\n"}


def _copy(name: str):
    from competition.workspace import Workspace

    root = WORK / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "experiments").mkdir(parents=True)
    shutil.copy(REPO / "competition.yaml", root / "competition.yaml")
    shutil.copytree(REPO / "folds", root / "folds", ignore=shutil.ignore_patterns("adversarial.csv"))
    shutil.copy(REPO / "experiments" / "base.yaml", root / "experiments" / "base.yaml")
    for exp, text in FILES.items():
        (root / "experiments" / f"{exp}.yaml").write_text(text)
    return Workspace(root)


def run() -> dict:
    import ray

    from competition.config import load_config
    from competition.data import load
    from competition.dispatch import train_on_ray
    from competition.spec import load_spec
    from competition.train import train

    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.shutdown()
    startup = time.perf_counter() - started
    out = {"machine": machine(), "ray_start_s": round(startup, 1), "experiments": {}}
    local, remote = _copy("sequential"), _copy("ray")
    data = load(load_spec(local.spec_file))
    for exp in FILES:
        t0 = time.perf_counter()
        train(local, load_config(local, exp), data=data)
        sequential = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = train_on_ray(remote, [load_config(remote, exp)], data=data, ray_init={"num_cpus": 2})
        on_ray = time.perf_counter() - t0
        same = all(pd.read_parquet(local.run_dir(exp) / f).equals(pd.read_parquet(remote.run_dir(exp) / f))
                   for f in ("oof.parquet", "test.parquet"))
        out["experiments"][exp] = {"what": EXPERIMENTS[exp], "sequential_s": round(sequential, 1),
                                   "ray_s": round(on_ray, 1), "speedup": round(sequential / on_ray, 2),
                                   "identical": same, "failed": len(result.failed)}
        print(f"[bench] scale {exp}: sequential {sequential:.1f}s, ray {on_ray:.1f}s, identical {same}", flush=True)
    shutil.rmtree(WORK, ignore_errors=True)
    return out


def render(r: dict) -> str:
    rows = [[exp, e["what"], e["sequential_s"], e["ray_s"], f"{e['speedup']:.2f}x", "yes" if e["identical"] else "**no**"]
            for exp, e in r["experiments"].items()]
    return "\n".join([
        "## Scale out: folds as Ray tasks (`comp train --ray local`, 2 cores)", "",
        "5 folds of disaster-tweets, sequential `comp train` vs every fold a Ray task on a local Ray with 2 CPUs "
        "(one CPU per task: two folds at once), wall seconds of the whole command including Ray's start; "
        f"ideal 2x. Starting and stopping a local Ray alone: {r['ray_start_s']} s. Each task is a fresh worker "
        "process that imports comp and its stack before it trains, so folds of a few seconds gain little; "
        "the OOF and test predictions are identical to the sequential run's.", "",
        md_table(["exp", "model", "sequential s", "Ray s", "speed-up", "identical"], rows)])
