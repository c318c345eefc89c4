"""Inference on two CPU cores (issue 26 #1): 042's five MiniLM fold models over the 3,263 disaster-tweets
test rows, four ways, in one process, alternately (per fold: pad-128, sorted fp32, bf16, int8):

- *pad-128*: every row padded to 128 tokens, file order (what a plain notebook loop does);
- *sorted fp32*: comp's eval path (rows sorted by length, each batch padded to its longest row);
- *sorted bf16*: the same under bf16 autocast (``comp predict --precision bf16``);
- *sorted int8*: the encoder's linear layers quantized to int8 (``--precision int8``).

rows/s: the median over the five fold models. Quality: each fold model predicts its own validation
rows (the OOF rows) in each precision; the nested OOF F1 of each, and the mean and max absolute
probability difference to fp32. Targets (issue 26): >= 6x pad-128 rows/s, F1 within 0.002 of fp32,
mean |dp| <= 0.01. Needs 042 trained at the repository root (``comp train exp=042 --fold all``).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import md_table

EXPENSIVE = True
REPO = Path(__file__).resolve().parents[1]
EXP = "042"


def _pad128(model, ids, pad: int, batch_size: int) -> np.ndarray:
    import torch

    fixed = torch.full((len(ids), 128), pad, dtype=torch.long)
    for i, row in enumerate(ids):
        fixed[i, : min(len(row), 128)] = row[:128]
    mask = (fixed != pad).long()
    out = []
    with torch.inference_mode():
        for b in range(0, len(ids), batch_size):
            out.append(model.probabilities(model(fixed[b:b + batch_size], mask[b:b + batch_size])).numpy())
    return np.concatenate(out)


def predict_bf16(model, ids, cfg, pad: int) -> np.ndarray:
    """``torch_common.predict_ids`` under bf16 autocast (``--precision bf16``)."""
    from competition.models import PRECISION, torch_common

    token = PRECISION.set("bf16")
    try:
        return torch_common.predict_ids(model, ids, cfg, pad)
    finally:
        PRECISION.reset(token)


def _timed(fn) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def run() -> dict:
    import copy

    import torch

    from competition import runs, thresholds
    from competition.config import load_config
    from competition.data import load
    from competition.models import encoder, int8, torch_common
    from competition.spec import load_spec
    from competition.workspace import Workspace

    ws = Workspace(REPO)
    if not (ws.run_dir(EXP) / "oof.parquet").is_file():
        raise SystemExit(f"train {EXP} at the repository root first: comp train exp={EXP} --fold all")
    data = load(load_spec(ws.spec_file))
    cfg = load_config(ws, EXP)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    prepared = encoder.prepare(cfg, data)
    pad, batch = prepared.tokenizer.pad_token_id or 0, cfg.train.eval_batch_size
    test_ids = prepared.test["plain"]
    fold = runs.load_run(ws, EXP).oof().set_index("id").loc[data.train[data.spec.id_column], "fold"].to_numpy()
    speed = {"pad128": [], "sorted_fp32": [], "sorted_bf16": [], "sorted_int8": []}
    oof = {"fp32": np.zeros(len(fold)), "bf16": np.zeros(len(fold)), "int8": np.zeros(len(fold))}

    def bf16(ids):
        return predict_bf16(model, ids, cfg, pad)

    same_test = []
    for k in range(int(fold.max()) + 1):
        fold_dir = ws.fold_dir(EXP, k)
        (seed_dir,) = sorted(p for p in fold_dir.glob("seed*") if (p / torch_common.WEIGHTS).is_file())[:1]
        model = torch_common.load_model(fold_dir, seed_dir)[0]
        quant = copy.deepcopy(model)
        quant.encoder = int8(quant.encoder)
        p128, s128 = _timed(lambda: _pad128(model, test_ids, pad, batch))
        p32, s32 = _timed(lambda: torch_common.predict_ids(model, test_ids, cfg, pad))
        p16, s16 = _timed(lambda: bf16(test_ids))
        p8, s8 = _timed(lambda: torch_common.predict_ids(quant, test_ids, cfg, pad))
        for key, seconds in (("pad128", s128), ("sorted_fp32", s32), ("sorted_bf16", s16), ("sorted_int8", s8)):
            speed[key].append(len(test_ids) / seconds)
        same_test.append(float(np.abs(p128 - p32).max()))
        valid = np.flatnonzero(fold == k)
        valid_ids = [prepared.train["plain"][i] for i in valid]
        oof["fp32"][valid] = torch_common.predict_ids(model, valid_ids, cfg, pad)[:, 0]
        oof["int8"][valid] = torch_common.predict_ids(quant, valid_ids, cfg, pad)[:, 0]
        oof["bf16"][valid] = bf16(valid_ids)[:, 0]
        print(f"[bench] infer fold {k}: " + ", ".join(f"{key} {v[-1]:.1f}" for key, v in speed.items()) + " rows/s",
              flush=True)
    f1 = {key: thresholds.cv("f1", data.y, p[:, None], "binary", fold).score for key, p in oof.items()}
    diff = {key: np.abs(oof[key] - oof["fp32"]) for key in ("bf16", "int8")}
    medians = {key: statistics.median(v) for key, v in speed.items()}
    return {"rows": len(test_ids), "folds": len(speed["pad128"]), "threads": torch.get_num_threads(),
            "rows_per_s": {key: [round(x, 1) for x in v] for key, v in speed.items()},
            "median_rows_per_s": {key: round(v, 1) for key, v in medians.items()},
            "speedup_vs_pad128": {key: round(v / medians["pad128"], 2) for key, v in medians.items()},
            "oof_f1": {key: round(v, 4) for key, v in f1.items()},
            "f1_diff": {key: round(f1[key] - f1["fp32"], 4) for key in diff},
            "prob_diff_mean": {key: round(float(d.mean()), 5) for key, d in diff.items()},
            "prob_diff_max": {key: round(float(d.max()), 4) for key, d in diff.items()},
            "pad128_equals_sorted_max_diff": round(max(same_test), 6)}


def render(r: dict) -> str:
    m, x = r["median_rows_per_s"], r["speedup_vs_pad128"]
    rows = [
        ["padded to 128 tokens, file order", m["pad128"], "1.00x", f"{r['oof_f1']['fp32']:.4f}", "-"],
        ["sorted dynamic padding, fp32 (comp's default)", m["sorted_fp32"], f"{x['sorted_fp32']:.2f}x",
         f"{r['oof_f1']['fp32']:.4f}", "0 (same predictions)"],
    ] + [[f"sorted, {key} (`--precision {key}`)", m[f"sorted_{key}"], f"**{x[f'sorted_{key}']:.2f}x**",
          f"{r['oof_f1'][key]:.4f} ({r['f1_diff'][key]:+.4f})",
          f"mean {r['prob_diff_mean'][key]:.4f}, max {r['prob_diff_max'][key]:.3f}"] for key in ("bf16", "int8")]
    return "\n".join([
        "## Inference on two CPU cores: pad-128, sorted fp32, bf16 and int8 (MiniLM 042, disaster-tweets)",
        "",
        f"Each of 042's {r['folds']} fold models predicts the {r['rows']:,} test tweets four ways, alternately in "
        f"one process ({r['threads']} torch threads); rows/s is the median over the fold models. F1: nested OOF F1 "
        "when each fold model predicts its own validation rows in that precision; |dp|: the probabilities in that precision "
        "minus the fp32 ones on those rows.",
        "",
        md_table(["way", "rows/s (median)", "vs pad-128 (target >= 6x)", "OOF F1 (target within 0.002)",
                  "|dp| vs fp32 (target mean <= 0.01)"], rows),
        "",
        f"- rows/s per fold model: {r['rows_per_s']}",
        f"- pad-128 and sorted fp32 agree to {r['pad128_equals_sorted_max_diff']} (max |dp|); bf16 needs a CPU "
        "with bf16 instructions (this one has avx512_bf16; without them comp warns that bf16 is slow there)",
    ])
