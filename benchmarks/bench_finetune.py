"""Fine-tuning speed on the CPU (issue 41): 042 (MiniLM, disaster-tweets) in fp32, in
``train.precision: bf16-mixed``, and in bf16 above ``train.freeze_layers: k`` cached frozen layers
(k = 1, 2, 3 of MiniLM's 6), the same folds trained one variant after the other in one process (a copy
of the root workspace, ``.work/finetune``: same spec and folds), so the ratios are measured side by side.

Per variant: the folds' seconds (``done.json``: training, validation and prediction, plus the
preparation each fold's call paid -- tokenising, and for frozen layers reading or building their cache),
training samples per second (epochs only), nested OOF F1 over the folds run, and its F1 minus fp32's
with a paired 95% bootstrap interval over the same rows. ``BENCH_FINETUNE_FOLDS=0,1`` runs fewer folds
(default all 5; folds already trained are kept).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks.bench_quality import REPO, _copy_workspace, _fold_oof, _scored
from benchmarks.common import md_table, shared_data

EXPENSIVE = True
WORK = Path(__file__).parent / ".work" / "finetune"
VARIANTS = {      # name: (what, overrides of 042's file)
    "f32": ("fp32", ["train.precision='32'"]),
    "b16": ("bf16-mixed", ["train.precision=bf16-mixed"]),
    **{f"bz{k}": (f"bf16-mixed, freeze_layers {k}", ["train.precision=bf16-mixed", f"train.freeze_layers={k}"])
       for k in (1, 2, 3)},
}


def run() -> dict:
    from competition import bootstrap
    from competition.config import load_config
    from competition.data import load
    from competition.models import cpu_has_bf16
    from competition.spec import load_spec
    from competition.train import train

    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    folds = [int(k) for k in os.environ.get("BENCH_FINETUNE_FOLDS", "0,1,2,3,4").split(",")]
    data = load(load_spec(REPO / "competition.yaml"))
    ws = _copy_workspace(WORK)
    for k in folds:                  # fold by fold, alternating: every variant sees the same machine state
        for exp, (_, overrides) in VARIANTS.items():
            ws.experiment_file(exp).write_text((REPO / "experiments" / "042.yaml").read_text())
            started = time.perf_counter()
            train(ws, load_config(ws, exp, ["track.wandb=false", *overrides]), data=data, folds=[k])
            print(f"[bench] finetune {exp} fold {k}: {time.perf_counter() - started:.0f}s", flush=True)
    scored = {exp: _scored(data, _fold_oof(ws, exp, folds)) for exp in VARIANTS}
    out = {}
    for exp, (what, _) in VARIANTS.items():
        done = [json.loads((ws.fold_dir(exp, k) / "done.json").read_text()) for k in folds]
        training = sum(d["extra"]["train_seconds"] for d in done)          # the epochs alone
        rows = sum(d["n_train"] for d in done)
        epochs = load_config(ws, exp).train.epochs
        c = bootstrap.compare("f1", scored[exp][2], scored[exp][1], scored["f32"][1], "binary")
        out[exp] = {"what": what, "f1": round(scored[exp][0], 4),
                    "vs_f32": [round(c.diff, 4), round(c.low, 4), round(c.high, 4)], "significant": bool(c.significant),
                    "fold_seconds": round(sum(d["seconds"] + d.get("prepare_seconds", 0.0) for d in done), 1),
                    "train_seconds": round(training, 1), "samples_per_s": round(rows * epochs / training, 1)}
    for v in out.values():
        v["speedup"] = round(out["f32"]["fold_seconds"] / v["fold_seconds"], 2)
    return {"variants": out, "folds": folds, "cpu_bf16": bool(cpu_has_bf16())}


def render(r: dict) -> str:
    v = r["variants"]
    rows = [[f"042, {x['what']}", f"{x['f1']:.4f}",
             "-" if n == "f32" else f"{x['vs_f32'][0]:+.4f} [{x['vs_f32'][1]:+.4f}, {x['vs_f32'][2]:+.4f}]",
             x["fold_seconds"], f"{x['fold_seconds'] / 60 * 5 / len(r['folds']):.1f}", f"{x['speedup']:.2f}x",
             x["samples_per_s"]] for n, x in v.items()]
    return "\n".join([
        "## Fine-tuning speed on the CPU (issue 41)",
        "",
        f"042 (MiniLM, disaster-tweets, 2 epochs) on folds {r['folds']}: fp32, `train.precision: bf16-mixed`, and "
        "bf16 above `train.freeze_layers: k` cached frozen layers; each fold trained in every variant one after the "
        "other. Seconds: the folds' own (training, validation, prediction) plus the preparation each paid "
        "(tokenising; the frozen layers' cache, built by the first fold and read by the others); samples/s: the "
        f"training epochs alone. F1 against fp32: paired 95% bootstrap over the same rows. This CPU "
        f"{'has' if r['cpu_bf16'] else 'lacks'} bf16 instructions. Target: 5 folds within 15 minutes at fp32's F1 "
        "within noise.",
        "",
        md_table(["run", "nested F1", "minus fp32", "seconds", "minutes for 5 folds", "speed vs fp32",
                  "training samples/s"], rows),
    ])
