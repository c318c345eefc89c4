"""comp predict on the 3,263 disaster-tweets test rows with the 5-fold MiniLM experiment 042.

Measured side by side in one process, alternately, twice each:

- *training's inference*: what ``comp train`` spends predicting the test set, summed over the 5
  folds: each fold's model already in memory, the test texts already tokenised.
- *comp predict*: the whole replay (:func:`competition.predict.predict`): reading and checking
  the file, loading every fold's weights, tokenising once, predicting, writing the outputs.

Target: comp predict's rows/s >= 0.9x training's inference. Then, in fresh processes:
``comp predict`` peak memory, and an export of the stack over 042 and the TF-IDF 001 whose
bundle's ``predict.py`` runs with ``HF_HUB_OFFLINE=1`` and an empty Hugging Face home, from a
folder with no workspace, and must reproduce the stack's test predictions.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import md_table

EXPENSIVE = True
REPO = Path(__file__).resolve().parents[1]


def _training_inference(ws, cfg, data) -> float:
    """Seconds training's own test inference takes over the 5 folds (models in memory, ids tokenised)."""
    from competition.models import encoder, torch_common

    prepared = encoder.prepare(cfg, data)
    total = 0.0
    for k in range(5):
        fold_dir = ws.fold_dir("042", k)
        models = [torch_common.load_model(fold_dir, d)[0] for d in sorted(fold_dir.glob("seed*"))]
        started = time.perf_counter()
        for model in models:
            torch_common.predict_variants(model, prepared.test, cfg, prepared.tokenizer)
        total += time.perf_counter() - started
    return total


def _predict_seconds(ws, test_file: Path) -> float:
    from competition.predict import predict

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        predict(ws, "042", test_file, out=Path(tmp) / "out")
        return time.perf_counter() - started


def _peak_memory(test_file: Path) -> dict:
    """``comp predict 042`` in a fresh process: its wall time and peak resident memory."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "competition.cli", "predict", "042", "--test", str(test_file),
                        "--out", str(Path(tmp) / "out"), "-w", str(REPO)], check=True, capture_output=True)
        wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(peak, 1)}


def _bundle(ws, test_file: Path) -> dict:
    """Export the stack over 042 and 001, run the bundle's entry point offline, compare."""
    import pandas as pd

    from competition import runs
    from competition.config import load_config
    from competition.export import export
    from competition.stack import stack
    from competition.train import train

    train(ws, load_config(ws, "001", ["track.wandb=false"]))
    stack(ws, inputs=["042", "001"], name="bench-predict-stack", force=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "bundle"
            result = export(ws, "bench-predict-stack", bundle, wheel=False)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("COMP_", "HF_"))}
            env.update(HF_HUB_OFFLINE="1", HF_HOME=str(Path(tmp) / "empty-hf"), WANDB_MODE="disabled")
            elsewhere = Path(tmp) / "elsewhere"
            elsewhere.mkdir()
            started = time.perf_counter()
            subprocess.run([sys.executable, str(bundle / "predict.py"), "--test", str(test_file), "--out",
                            str(Path(tmp) / "pred")], cwd=elsewhere, env=env, check=True, capture_output=True)
            wall = time.perf_counter() - started
            got = pd.read_parquet(Path(tmp) / "pred" / "predictions.parquet")["target"].to_numpy()
            want = runs.load_run(ws, "bench-predict-stack").test()["target"].to_numpy()
            return {"runs": result.runs, "mib_by_part": {k: round(v / 2**20, 2) for k, v in result.sizes.items()},
                    "total_mib": round(sum(result.sizes.values()) / 2**20, 1), "wall_s": round(wall, 1),
                    "max_abs_diff": float(np.abs(got - want).max())}
    finally:
        import shutil

        shutil.rmtree(ws.run_dir("bench-predict-stack"), ignore_errors=True)


def run() -> dict:
    from competition import data as data_mod
    from competition import runs
    from competition.config import load_config
    from competition.spec import load_spec
    from competition.workspace import Workspace

    os.environ["WANDB_MODE"] = "disabled"
    ws = Workspace(REPO)
    if not (ws.run_dir("042") / "manifest.json").is_file() or not runs.load_run(ws, "042", complete=False).complete:
        return {"skipped": "experiment 042 is not trained at the repository root: `comp train exp=042 --fold all`"}
    spec = load_spec(ws.spec_file)
    data = data_mod.load(spec)
    cfg = load_config(ws, "042", ["track.wandb=false"])
    test_file = spec.file(spec.test)
    rows = len(data.test)
    training, predicting = [], []
    for _ in range(2):            # alternately, so both see the same machine
        training.append(_training_inference(ws, cfg, data))
        predicting.append(_predict_seconds(ws, test_file))
    train_s, predict_s = float(np.median(training)), float(np.median(predicting))
    return {
        "rows": rows, "folds": 5,
        "training_inference_s": [round(t, 1) for t in training], "predict_s": [round(t, 1) for t in predicting],
        "training_rows_per_s": round(rows / train_s, 1), "predict_rows_per_s": round(rows / predict_s, 1),
        "ratio": round(train_s / predict_s, 3),
        "fresh_process": _peak_memory(test_file),
        "bundle": _bundle(ws, test_file),
    }


def render(r: dict) -> str:
    title = "## comp predict: replaying the 5-fold MiniLM experiment 042 (disaster-tweets test set)"
    if "skipped" in r:
        return f"{title}\n\n- not run: {r['skipped']}"
    b, f = r["bundle"], r["fresh_process"]
    rows = [
        ["training's own test inference, 5 folds (s, 2 runs)", ", ".join(map(str, r["training_inference_s"]))],
        ["comp predict 042, whole replay (s, 2 runs)", ", ".join(map(str, r["predict_s"]))],
        ["rows/s: training's inference / comp predict", f"{r['training_rows_per_s']} / {r['predict_rows_per_s']}"],
        ["**comp predict / training's inference** (median; target >= 0.9)", f"**{r['ratio']}**"],
        ["`comp predict 042` in a fresh process: wall s (imports included), peak RSS MiB",
         f"{f['wall_s']} s, {f['peak_rss_mib']} MiB"],
        [f"bundle of {', '.join(b['runs'])}: size (MiB)", f"{b['total_mib']} ("
         + ", ".join(f"{k} {v}" for k, v in sorted(b["mib_by_part"].items(), key=lambda kv: -kv[1])) + ")"],
        ["bundle's predict.py offline (HF_HUB_OFFLINE=1, empty HF home, no workspace): wall s, max abs difference "
         "to the stack's test.parquet", f"{b['wall_s']} s, {b['max_abs_diff']:.2e}"],
    ]
    return (f"{title}\n\n{r['rows']} rows. Measured alternately in one process (median of 2); the fresh-"
            "process and bundle figures in subprocesses.\n\n" + md_table(["measure", "value"], rows))
