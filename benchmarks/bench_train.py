"""Training speed, inference speed and memory of the encoder family, on disaster-tweets with MiniLM.

- speed: samples/s of comp's training (Lightning, the `encoder` family) against a minimal
  hand-written PyTorch loop on the same model, the same batches and threads, in the same
  process, alternated (hand, comp, hand, comp) so machine noise hits both alike.
- inference: sorted dynamic padding (comp's eval path) against padding every batch to 128
  tokens in file order, on the 3,263 test tweets.
- memory: resident memory after each of 5 folds of a `comp train` run (small budget per
  fold): it must not grow fold over fold.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import md_table, peak_rss_mib, shared_data

EXPENSIVE = True
STEPS = 40          # timed training steps per measurement (batch 16 -> 640 samples)
WARMUP_STEPS = 3


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def _workspace(root: Path, experiments: dict[str, str]):
    from competition import data, folds
    from competition.spec import load_spec
    from competition.workspace import Workspace

    src = shared_data() / "disaster-tweets"
    root.mkdir(parents=True, exist_ok=True)
    (root / "competition.yaml").write_text(
        f"name: disaster-tweets\ndata_dir: {src}\ntrain: train.csv\ntest: test.csv\n"
        "sample_submission: sample_submission.csv\nid: id\ntargets: [target]\nlabels: [0, 1]\n"
        "text: [keyword, text]\ntask: binary\nmetric: f1\nfolds: {scheme: stratified, n_splits: 5, seed: 42}\n")
    (root / "experiments").mkdir(exist_ok=True)
    (root / "experiments" / "base.yaml").write_text("text:\n  template: '{keyword} | {text}'\ntrack:\n  wandb: false\n")
    for exp, text in experiments.items():
        (root / "experiments" / f"{exp}.yaml").write_text(text)
    ws = Workspace(root)
    dataset = data.load(load_spec(ws.spec_file))
    folds.write_folds(ws, dataset, force=True)
    return ws, dataset


class _BatchTimer:
    """A Lightning callback timing the training batches after a warm-up (validation excluded)."""

    def __new__(cls):
        import pytorch_lightning as pl

        class Timer(pl.Callback):
            def __init__(self):
                self.start = self.end = None
                self.samples = 0

            # One epoch only: batch_idx restarts each epoch, and the hand loop runs one epoch.
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if batch_idx == WARMUP_STEPS and trainer.current_epoch == 0:
                    self.start = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                if batch_idx >= WARMUP_STEPS and trainer.current_epoch == 0:
                    self.samples += len(batch["input_ids"])
                    self.end = time.perf_counter()

        return Timer()


def _comp_speed(prepared, train_idx, valid_idx) -> float:
    from competition.models import torch_common
    from competition.track import Tracker

    timer = _BatchTimer()
    token = torch_common.EXTRA_CALLBACKS.set((timer,))
    try:
        torch_common.fit_seed(prepared, 42, train_idx, valid_idx, Tracker())
    finally:
        torch_common.EXTRA_CALLBACKS.reset(token)
    return timer.samples / (timer.end - timer.start)


def _hand_speed(prepared, train_idx) -> float:
    """The minimal loop: same encoder, mean pooling + linear head, AdamW (the fused kernel, as comp
    uses on the CPU, so the ratio measures the framework, not the optimizer), linear warmup, clipping."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from competition.models.batches import train_loader
    from competition.models.textmodel import drop_pooler

    cfg = prepared.cfg
    torch.manual_seed(42)
    encoder = drop_pooler(prepared.new_encoder())  # comp drops the unused pooler too
    encoder.train()
    head = torch.nn.Linear(encoder.config.hidden_size, 1)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.model.lr, weight_decay=cfg.model.weight_decay, fused=True)
    loader = train_loader([prepared.train["plain"][i] for i in train_idx], prepared.targets[train_idx],
                          prepared.tokenizer.pad_token_id, cfg.train.batch_size, 42, cfg.train.bucket)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * len(loader)), len(loader))
    dropout = torch.nn.Dropout(cfg.model.dropout)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    samples, start = 0, None
    for step, batch in enumerate(loader):
        if step == WARMUP_STEPS:
            start = time.perf_counter()
        mask = batch["attention_mask"]
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state  # (B, T, H)
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)                 # (B, H)
        loss = loss_fn(head(dropout(pooled)), batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step >= WARMUP_STEPS:
            samples += len(batch["input_ids"])
    return samples / (time.perf_counter() - start)


def _inference(prepared) -> dict:
    import torch

    from competition.models import torch_common

    model = torch_common.new_model(prepared, prepared.new_encoder()).eval()
    ids = prepared.test["plain"]
    pad = prepared.tokenizer.pad_token_id
    started = time.perf_counter()
    sorted_pred = torch_common.predict_ids(model, ids, prepared.cfg, pad)
    sorted_s = time.perf_counter() - started
    fixed = torch.full((len(ids), 128), pad, dtype=torch.long)
    for i, row in enumerate(ids):
        fixed[i, : len(row)] = row
    mask = (fixed != pad).long()
    started = time.perf_counter()
    out = []
    with torch.inference_mode():
        for b in range(0, len(ids), prepared.cfg.train.eval_batch_size):
            sl = slice(b, b + prepared.cfg.train.eval_batch_size)
            out.append(model.probabilities(model(fixed[sl], mask[sl])).numpy())
    padded_s = time.perf_counter() - started
    same = bool(np.allclose(np.concatenate(out), sorted_pred, atol=1e-4))
    return {"rows": len(ids), "sorted_dynamic_s": round(sorted_s, 2), "pad128_s": round(padded_s, 2),
            "sorted_rows_per_s": round(len(ids) / sorted_s, 1), "pad128_rows_per_s": round(len(ids) / padded_s, 1),
            "speedup": round(padded_s / sorted_s, 2), "same_predictions": same}


def _live_rss_mib() -> float:
    """Resident memory after a full collection and handing freed heap pages back to the OS, so
    what is left is what the process still holds (not what glibc keeps cached)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:   # not glibc
        pass
    return _rss_mib()


def _memory_child(root: str) -> None:
    """Train 5 folds in this (fresh) process; print the live RSS after each fold and the peak."""
    import json

    from competition.config import load_config
    from competition.train import train

    ws, dataset = _workspace(Path(root), {"042": "template: minilm\ntrain:\n  epochs: 1\n  limit_rows: 160\n"})
    rss = []
    train(ws, load_config(ws, "042"), data=dataset, force=True,
          on_fold=lambda row: rss.append(round(_live_rss_mib(), 1)))
    print(json.dumps({"rss": rss, "peak": round(peak_rss_mib(), 1)}))


def _memory(root: Path) -> dict:
    """5 folds in a fresh process, so the speed and inference runs before leave no trace in it."""
    import json
    import subprocess
    import sys

    code = f"from benchmarks.bench_train import _memory_child; _memory_child({str(root / 'memory')!r})"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], check=True,
                         capture_output=True, text=True).stdout
    child = json.loads(out.strip().splitlines()[-1])
    rss = child["rss"]
    growth = [round(b - a, 1) for a, b in zip(rss, rss[1:])]
    return {"rss_after_fold_mib": rss, "growth_mib": growth, "peak_rss_mib": child["peak"]}


def run() -> dict:
    import torch

    from competition.config import load_config
    from competition.models import encoder

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ws, dataset = _workspace(root / "speed", {"042": "template: minilm\ntrain:\n  epochs: 1\n"})
        cfg = load_config(ws, "042")
        prepared = encoder.prepare(cfg, dataset)
        rng = np.random.default_rng(0)
        n = (STEPS + WARMUP_STEPS) * cfg.train.batch_size
        train_idx = np.sort(rng.choice(len(dataset.train), n, replace=False))
        valid_idx = np.setdiff1d(np.arange(len(dataset.train)), train_idx)[:32]
        hand, comp = [], []
        for _ in range(3):  # alternate so drifting machine load hits both; median of 3
            hand.append(_hand_speed(prepared, train_idx))
            comp.append(_comp_speed(prepared, train_idx, valid_idx))
        speed = {"threads": torch.get_num_threads(), "batch_size": cfg.train.batch_size,
                 "max_length": cfg.model.max_length, "timed_steps": STEPS,
                 "hand_samples_per_s": [round(v, 2) for v in hand], "comp_samples_per_s": [round(v, 2) for v in comp],
                 "ratio": round(statistics.median(comp) / statistics.median(hand), 3)}
        inference = _inference(prepared)
        memory = _memory(root)
    return {"speed": speed, "inference": inference, "memory": memory}


def render(r: dict) -> str:
    s, i, m = r["speed"], r["inference"], r["memory"]
    rows = [
        ["training samples/s, comp train (Lightning)", ", ".join(map(str, s["comp_samples_per_s"]))],
        ["training samples/s, hand-written loop", ", ".join(map(str, s["hand_samples_per_s"]))],
        ["**ratio comp / hand** (median; target >= 0.95)", f"**{s['ratio']}**"],
        [f"inference, sorted dynamic padding ({i['rows']} test tweets)", f"{i['sorted_dynamic_s']} s ({i['sorted_rows_per_s']} rows/s)"],
        ["inference, padded to 128 tokens, file order", f"{i['pad128_s']} s ({i['pad128_rows_per_s']} rows/s)"],
        ["**inference speed-up** (target >= 3x)", f"**{i['speedup']}x** (same predictions: {i['same_predictions']})"],
        ["live RSS after each of 5 folds, fresh process (MiB)", ", ".join(map(str, m["rss_after_fold_mib"]))],
        ["growth fold over fold (MiB)", ", ".join(map(str, m["growth_mib"]))],
        ["peak RSS of that process (MiB)", m.get("peak_rss_mib", "")],
    ]
    return ("## Training and inference speed, memory (MiniLM-L6, disaster-tweets)\n\n"
            f"Batch {s['batch_size']}, max_length {s['max_length']}, {s['threads']} torch threads, "
            f"{s['timed_steps']} timed steps after {WARMUP_STEPS} warm-up steps, measured alternately in one process; "
            "both loops step AdamW's fused kernel.\n\n"
            + md_table(["measure", "value"], rows))


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
