"""``comp stack`` at scale: 1,000,000 train rows x 20 input runs, LightGBM meta-model, 5 folds.

    .venv/bin/python -m benchmarks.bench_stack

The workspace and its 20 synthetic input runs (binary task, AUC, each input a noisy view of
the label: a shared error, as real models make the same mistakes, plus noise of its own) are
built first, untimed. The stack then runs in a fresh
process, so its wall time and peak RSS (``ru_maxrss``) are the stack's alone, not the set-up's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

EXPENSIVE = True
N_TRAIN, N_TEST, N_INPUTS, N_SPLITS = 1_000_000, 100_000, 20, 5
TARGET_SECONDS, TARGET_MIB, TARGET_AUC = 60, 1024, 0.9198   # issue 26; the AUC of the stack before it
SPEC = f"""\
name: bench-stack
train: train.csv
test: test.csv
id: id
targets: [target]
task: binary
metric: roc_auc
folds: {{n_splits: {N_SPLITS}, seed: 0}}
"""


def build(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST, n_inputs: int = N_INPUTS, seed: int = 0) -> None:
    """Write the workspace, its folds and ``n_inputs`` complete runs of float32 predictions."""
    from competition import artifacts, runs
    from competition import data as data_mod
    from competition import folds as folds_mod
    from competition.spec import load_spec
    from competition.workspace import Workspace

    rng = np.random.default_rng(seed)
    y, y_test = (rng.random(n_train) < 0.3).astype(np.int8), (rng.random(n_test) < 0.3).astype(np.int8)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": np.arange(n_train), "target": y}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": np.arange(n_train, n_train + n_test)}).to_csv(root / "test.csv", index=False)
    (root / "competition.yaml").write_text(SPEC)
    ws = Workspace(root)
    data = data_mod.load(load_spec(ws.spec_file))
    folds_mod.write_folds(ws, data)
    fold = folds_mod.read_folds(ws, data)["fold"].to_numpy()
    hashes = {"folds_hash": artifacts.file_hash(ws.folds_file), "data_hash": data.train_hash,
              "test_hash": data.test_hash}

    shared, shared_test = rng.normal(0, 1, n_train), rng.normal(0, 1, n_test)

    def view(labels, common, strength):  # a noisy model of the label, float32 like a real run's
        z = strength * (2 * labels - 1 + common) + 0.5 * rng.normal(0, 1, len(labels))
        return (1 / (1 + np.exp(-z))).astype(np.float32)

    for j in range(n_inputs):
        strength = 0.5 + 0.05 * j
        oof = pd.DataFrame({"id": data.train["id"].to_numpy(), "fold": fold, "target": view(y, shared, strength)})
        test = pd.DataFrame({"id": data.test["id"].to_numpy(), "target": view(y_test, shared_test, strength)})
        runs.write_run(ws, f"{j:03d}", spec=data.spec, data=data, oof=oof, test=test,
                       manifest={"kind": "experiment", "family": "synthetic", **hashes, "n_splits": N_SPLITS,
                                 "folds_done": list(range(N_SPLITS))})


def timed_stack(root: str) -> None:
    """Run in a fresh process: the stack, then one JSON line with its time and peak memory."""
    import resource

    from competition.stack import stack
    from competition.workspace import Workspace

    started = time.perf_counter()
    result = stack(Workspace(Path(root)))
    seconds = time.perf_counter() - started
    print(json.dumps({
        "seconds": round(seconds, 1), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "oof_auc": round(result.oof_score, 4), "best_input_auc": round(result.best_input_score, 4),
        "mean_blend_auc": round(result.mean_blend_score, 4),
        "fold_aucs": [round(s, 4) for s in result.fold_scores.values()],
    }))


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        started = time.perf_counter()
        build(Path(tmp) / "ws")
        setup = time.perf_counter() - started
        out = subprocess.run([sys.executable, "-c", f"from benchmarks.bench_stack import timed_stack; "
                              f"timed_stack({str(Path(tmp) / 'ws')!r})"],
                             cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"the timed stack failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"n_train": N_TRAIN, "n_test": N_TEST, "n_inputs": N_INPUTS, "n_splits": N_SPLITS, "meta": "lgbm",
            "setup_seconds": round(setup, 1), **result}


def render(result: dict) -> str:
    from benchmarks.common import md_table

    return "\n".join([
        "## Stack: LightGBM meta-model at scale", "",
        f"`comp stack` over {result['n_inputs']} runs on {result['n_train']:,} train rows "
        f"({result['n_test']:,} test rows), {result['n_splits']} folds, in a fresh process.", "",
        md_table(["wall time (s)", "peak RSS (MiB)", "stack AUC", "best input AUC", "mean-blend AUC"],
                 [[result["seconds"], result["peak_rss_mib"], result["oof_auc"], result["best_input_auc"],
                   result["mean_blend_auc"]]]), "",
        f"- targets (issue 26): wall time <= {TARGET_SECONDS} s: **{_met(result['seconds'] <= TARGET_SECONDS)}**; "
        f"peak RSS <= {TARGET_MIB} MiB: **{_met(result['peak_rss_mib'] <= TARGET_MIB)}**; stack AUC "
        f"{TARGET_AUC} as before the speed work: **{_met(result['oof_auc'] >= TARGET_AUC)}**",
    ])


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


if __name__ == "__main__":
    figures = run()
    print(json.dumps(figures, indent=2))
    print(render(figures))
