"""ONNX Runtime against torch int8 on two CPU cores (issue 26 #1: keep ONNX only if it beats torch int8).

042's MiniLM fold models (those trained at the repository root) predict the 3,263 disaster-tweets test
rows five ways, in one process, alternately, three times (rows/s: the median of the three, then of the
fold models), every way on the same sorted batches (``batches.eval_loader``: comp's eval path):

- *torch fp32*: comp's default (``torch_common.predict_ids``);
- *torch bf16*: under bf16 autocast (``--precision bf16``);
- *torch int8*: the encoder's linear layers quantized by torch (``--precision int8``);
- *ONNX Runtime fp32*: the fold model exported as comp exports it (``onnx_runtime.export_fp32``:
  ``torch.onnx.export``, input ids and mask to probabilities, dynamic batch and length), run by
  ``onnxruntime`` (2 intra-op threads);
- *ONNX Runtime int8*: that graph's weights quantized (``onnx_runtime.write``: ``quantize_dynamic``,
  the graph of ``--precision onnx-int8``).

Quality: each fold model predicts its own validation rows each way; nested OOF F1 of each over those
rows and the mean / max absolute probability difference to torch fp32 (issue 26's tolerance: F1
within 0.002, mean |dp| <= 0.01).

    python -m benchmarks.bench_onnx        # needs 042 at the root: comp train exp=042 --fold 0,1 (or all)
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_infer import predict_bf16
from benchmarks.common import md_table

EXPENSIVE = True
REPO = Path(__file__).resolve().parents[1]
EXP = "042"
REPEATS = 3
WAYS = ("torch_fp32", "torch_bf16", "torch_int8", "ort_fp32", "ort_int8")


def _export(model, folder: Path) -> tuple[Path, Path]:
    """(fp32, int8) ONNX files of ``model`` as comp builds them (:mod:`competition.models.onnx_runtime`)."""
    from competition.models import onnx_runtime

    onnx_runtime.export_fp32(model, folder / "model.onnx")
    return folder / "model.onnx", onnx_runtime.write(model, folder)


def run() -> dict:
    import onnxruntime as ort
    import torch

    from competition import runs, thresholds
    from competition.config import load_config
    from competition.data import load
    from competition.models import encoder, int8, onnx_runtime, torch_common
    from competition.spec import load_spec
    from competition.workspace import Workspace

    ws = Workspace(REPO)
    folds = [k for k in range(5) if (ws.fold_dir(EXP, k) / "done.json").is_file()]
    if not folds:
        raise SystemExit(f"train {EXP} at the repository root first: comp train exp={EXP} --fold 0,1")
    data = load(load_spec(ws.spec_file))
    cfg = load_config(ws, EXP)
    threads = cfg.train.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    prepared = encoder.prepare(cfg, data)
    pad, batch = prepared.tokenizer.pad_token_id or 0, cfg.train.eval_batch_size
    test_ids = prepared.test["plain"]
    oof_frame = runs.load_run(ws, EXP).oof() if (ws.run_dir(EXP) / "oof.parquet").is_file() else None
    fold_of = (oof_frame.set_index("id").loc[data.train[data.spec.id_column], "fold"].to_numpy() if oof_frame is not None
               else _fold_column(ws, data))
    rows = np.flatnonzero(np.isin(fold_of, folds))
    speed = {way: [] for way in WAYS}
    oof = {way: np.zeros(len(fold_of)) for way in WAYS}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    for k in folds:
        fold_dir = ws.fold_dir(EXP, k)
        (seed_dir,) = sorted(p for p in fold_dir.glob("seed*") if (p / torch_common.WEIGHTS).is_file())[:1]
        model = torch_common.load_model(fold_dir, seed_dir)[0].eval()
        quant = copy.deepcopy(model)
        quant.encoder = int8(quant.encoder)
        with tempfile.TemporaryDirectory() as tmp:
            files = _export(model, Path(tmp))
            sessions = [ort.InferenceSession(str(f), options, providers=["CPUExecutionProvider"]) for f in files]
        predict = {"torch_fp32": lambda ids: torch_common.predict_ids(model, ids, cfg, pad),
                   "torch_bf16": lambda ids: predict_bf16(model, ids, cfg, pad),
                   "torch_int8": lambda ids: torch_common.predict_ids(quant, ids, cfg, pad),
                   "ort_fp32": lambda ids: onnx_runtime.predict_ids(sessions[0], ids, pad, batch, 1),
                   "ort_int8": lambda ids: onnx_runtime.predict_ids(sessions[1], ids, pad, batch, 1)}
        seconds = {way: [] for way in WAYS}
        for _ in range(REPEATS):                 # alternately: each way once per round
            for way in WAYS:
                started = time.perf_counter()
                predict[way](test_ids)
                seconds[way].append(time.perf_counter() - started)
        for way in WAYS:
            speed[way].append(len(test_ids) / statistics.median(seconds[way]))
        valid = np.flatnonzero(fold_of == k)
        valid_ids = [prepared.train["plain"][i] for i in valid]
        for way in WAYS:
            oof[way][valid] = predict[way](valid_ids)[:, 0]
        print(f"[bench] onnx fold {k}: " + ", ".join(f"{w} {v[-1]:.1f}" for w, v in speed.items()) + " rows/s",
              flush=True)
    y, fold = np.asarray(data.y)[rows], fold_of[rows]
    f1 = {way: thresholds.cv("f1", y, oof[way][rows][:, None], "binary", fold).score for way in WAYS}
    diff = {way: np.abs(oof[way][rows] - oof["torch_fp32"][rows]) for way in WAYS[1:]}
    medians = {way: statistics.median(v) for way, v in speed.items()}
    return {"rows": len(test_ids), "folds": folds, "threads": threads, "repeats": REPEATS,
            "rows_per_s": {w: [round(x, 1) for x in v] for w, v in speed.items()},
            "median_rows_per_s": {w: round(v, 1) for w, v in medians.items()},
            "vs_torch_int8": {w: round(v / medians["torch_int8"], 2) for w, v in medians.items()},
            "oof_f1": {w: round(v, 4) for w, v in f1.items()},
            "prob_diff_mean": {w: round(float(d.mean()), 5) for w, d in diff.items()},
            "prob_diff_max": {w: round(float(d.max()), 4) for w, d in diff.items()}}


def _fold_column(ws, data) -> np.ndarray:
    from competition import folds as folds_mod

    return folds_mod.read_folds(ws, data)["fold"].to_numpy()


NAMES = {"torch_fp32": "torch fp32 (comp's default)", "torch_bf16": "torch bf16 (`--precision bf16`)", "torch_int8": "torch int8 (`--precision int8`)",
         "ort_fp32": "ONNX Runtime fp32", "ort_int8": "ONNX Runtime int8 (quantize_dynamic)"}


def render(r: dict) -> str:
    m, x = r["median_rows_per_s"], r["vs_torch_int8"]
    f1 = r["oof_f1"]
    rows = [[NAMES[w], m[w], f"{x[w]:.2f}x", f"{f1[w]:.4f} ({f1[w] - f1['torch_fp32']:+.4f})",
             "0 (itself)" if w == "torch_fp32" else f"mean {r['prob_diff_mean'][w]:.4f}, max {r['prob_diff_max'][w]:.3f}"]
            for w in WAYS]
    keep_int8 = m["ort_int8"] > m["torch_int8"]
    keep_fp32 = m["ort_fp32"] > m["torch_fp32"]
    verdict = [f"- ONNX Runtime int8 {m['ort_int8']} rows/s against torch int8's {m['torch_int8']}: "
               + ("**kept** as `--precision onnx-int8`" if keep_int8 else "**not kept** (issue 26: only if faster)"),
               f"- ONNX Runtime fp32 {m['ort_fp32']} rows/s against torch fp32's {m['torch_fp32']}: "
               + ("faster" if keep_fp32 else "**not offered** (slower than comp's default, and no closer)")]
    return "\n".join([
        "## ONNX Runtime against torch int8 (MiniLM 042, disaster-tweets)", "",
        f"042's fold models {', '.join(map(str, r['folds']))} predict the {r['rows']:,} test tweets {len(WAYS)} ways on "
        f"the same sorted batches, alternately, {r['repeats']} times in one process ({r['threads']} threads each); "
        "rows/s: the median of the repeats, then of the fold models. F1: nested OOF F1 over those folds' "
        "validation rows, each predicted by its fold model that way; |dp|: the probabilities minus torch fp32's.", "",
        md_table(["way", "rows/s (median)", "vs torch int8", "OOF F1 (vs fp32)", "|dp| vs torch fp32"], rows), "",
        f"- rows/s per fold model: {r['rows_per_s']}",
        *verdict,
    ])


if __name__ == "__main__":
    import json

    result = run()
    print(json.dumps(result, indent=2))
    print(render(result))
