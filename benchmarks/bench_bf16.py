"""bf16 mixed-precision training on the CPU (issue 41): 042 (MiniLM, disaster-tweets) in fp32 and in
``train.precision: bf16-mixed``, the same folds trained one after the other in one process (a copy of the
root workspace, ``.work/bf16``: same spec and folds), so the ratio is measured side by side.

Per variant: the folds' training seconds (``done.json``: epochs only, not validation or prediction),
training samples per second, nested OOF F1 over the folds run, and bf16's F1 minus fp32's with a paired
95% bootstrap interval over the same rows. ``BENCH_BF16_FOLDS=0,1,2,3,4`` runs more folds (default 0,1;
folds already trained are kept).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks.bench_quality import REPO, _copy_workspace, _fold_oof, _scored
from benchmarks.common import md_table, shared_data

EXPENSIVE = True
WORK = Path(__file__).parent / ".work" / "bf16"
VARIANTS = {"f32": ("fp32", "train.precision='32'"), "b16": ("bf16-mixed", "train.precision=bf16-mixed")}


def run() -> dict:
    from competition import bootstrap
    from competition.config import load_config
    from competition.data import load
    from competition.models import cpu_has_bf16
    from competition.spec import load_spec
    from competition.train import train

    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    folds = [int(k) for k in os.environ.get("BENCH_BF16_FOLDS", "0,1").split(",")]
    data = load(load_spec(REPO / "competition.yaml"))
    ws = _copy_workspace(WORK)
    out = {}
    for k in folds:                  # fold by fold, alternating: both variants see the same machine state
        for exp, (_, override) in VARIANTS.items():
            ws.experiment_file(exp).write_text((REPO / "experiments" / "042.yaml").read_text())
            started = time.perf_counter()
            train(ws, load_config(ws, exp, ["track.wandb=false", override]), data=data, folds=[k])
            print(f"[bench] bf16 {exp} fold {k}: {time.perf_counter() - started:.0f}s", flush=True)
    scored = {exp: _scored(data, _fold_oof(ws, exp, folds)) for exp in VARIANTS}
    for exp, (what, _) in VARIANTS.items():
        done = [json.loads((ws.fold_dir(exp, k) / "done.json").read_text()) for k in folds]
        seconds = sum(d["seconds"] for d in done)              # training only: no validation, no prediction
        rows = sum(d["n_train"] for d in done)
        epochs = load_config(ws, exp).train.epochs
        out[exp] = {"precision": what, "folds": folds, "f1": round(scored[exp][0], 4),
                    "train_seconds": round(seconds, 1), "samples_per_s": round(rows * epochs / seconds, 1)}
    c = bootstrap.compare("f1", scored["b16"][2], scored["b16"][1], scored["f32"][1], "binary")
    return {"variants": out, "cpu_bf16": bool(cpu_has_bf16()),
            "speedup": round(out["f32"]["train_seconds"] / out["b16"]["train_seconds"], 2),
            "diff": [round(c.diff, 4), round(c.low, 4), round(c.high, 4)], "significant": bool(c.significant)}


def render(r: dict) -> str:
    v = r["variants"]
    rows = [[f"042, {x['precision']}", f"{x['f1']:.4f}", x["train_seconds"], x["samples_per_s"]] for x in v.values()]
    d, lo, hi = r["diff"]
    return "\n".join([
        "## bf16 mixed-precision training on the CPU (issue 41)",
        "",
        f"042 (MiniLM, disaster-tweets) on folds {v['f32']['folds']} in fp32 and in `train.precision: bf16-mixed`, "
        "each fold trained in both one after the other. Seconds: the folds' training epochs (not validation or "
        f"prediction). This CPU {'has' if r['cpu_bf16'] else 'lacks'} bf16 instructions.",
        "",
        md_table(["run", "nested F1 (these folds)", "train seconds", "samples/s"], rows),
        "",
        f"- bf16-mixed: **{r['speedup']:.2f}x** the training speed of fp32; F1 {d:+.4f} [{lo:+.4f}, {hi:+.4f}] "
        f"(paired 95% bootstrap, {'beyond' if r['significant'] else 'within'} noise)",
    ])
