"""comp's training against Hugging Face's ``Trainer`` (issue 26 #2): MiniLM fine-tuned on disaster-tweets
fold 0, the same texts, 2 epochs, batch 16, learning rate 5e-5, 64 tokens, in one process, one
after the other (comp first, then the Trainer; then again in the other order when ``REPEATS`` is 2).

- *comp*: the encoder family's fit (``torch_common.fit_seed``: Lightning, length-bucketed batches,
  the 042 recipe), with ``train.select: last`` so both keep their last epoch's weights.
- *Trainer*: what a user writes from the transformers docs: ``AutoModelForSequenceClassification``
  (2 labels), ``DataCollatorWithPadding``, ``TrainingArguments`` with batch 16, 2 epochs, the same
  learning rate and weight decay, evaluation once per epoch, everything else default.

samples/s: training rows x epochs / wall seconds of the fit (each validates once per epoch on the
fold). F1: fold 0's rows predicted by the final model, at 0.5 and at the threshold best on the fold
(the same rule for both), and comp's minus the Trainer's F1 at 0.5 with its 95% paired bootstrap
interval over the fold's rows. Target: comp >= 1.3x the Trainer's samples/s at equal or better F1.

Then the same pair in bf16 (issue 41): comp with ``train.precision: bf16-mixed``, the Trainer with its own
``bf16=True`` (autocast on the CPU through accelerate). Target: comp >= 1.5x the Trainer's samples/s.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import md_table

EXPENSIVE = True
REPEATS = 1


def _f1s(y: np.ndarray, p: np.ndarray) -> dict:
    from sklearn.metrics import f1_score

    cuts = np.linspace(0.05, 0.95, 91)
    best = max(cuts, key=lambda c: f1_score(y, p >= c))
    return {"f1_at_0.5": round(float(f1_score(y, p >= 0.5)), 4), "f1_best": round(float(f1_score(y, p >= best)), 4),
            "best_threshold": round(float(best), 2), "p": p}     # p: for the paired interval, not kept


def _comp(prepared, train_idx, valid_idx) -> dict:
    from competition.models import torch_common
    from competition.track import Tracker

    started = time.perf_counter()
    model, _ = torch_common.fit_seed(prepared, 42, train_idx, valid_idx, Tracker())
    seconds = time.perf_counter() - started
    p = torch_common.predict_ids(model, [prepared.train["plain"][i] for i in valid_idx], prepared.cfg,
                                 prepared.tokenizer.pad_token_id or 0)[:, 0]
    return {"seconds": round(seconds, 1), "samples_per_s": round(2 * len(train_idx) / seconds, 2),
            **_f1s(np.asarray(prepared.data.y)[valid_idx].ravel(), p)}


def _trainer(texts: list[str], y: np.ndarray, train_idx, valid_idx, name: str, cfg, bf16: bool = False) -> dict:
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments)

    from competition.models.pretrained import resolve_pretrained

    path = resolve_pretrained(name)
    tokenizer = AutoTokenizer.from_pretrained(path)

    def rows(idx):
        enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=cfg.model.max_length)
        return [{"input_ids": enc["input_ids"][j], "attention_mask": enc["attention_mask"][j],
                 "labels": int(y[i])} for j, i in enumerate(idx)]

    train_rows, valid_rows = rows(train_idx), rows(valid_idx)   # tokenised once, as comp's prepare does
    started = time.perf_counter()                              # from here, as comp's fit: load the model, fit
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=cfg.train.batch_size,
                                 per_device_eval_batch_size=cfg.train.eval_batch_size,
                                 num_train_epochs=cfg.train.epochs, learning_rate=cfg.model.lr,
                                 weight_decay=cfg.model.weight_decay, eval_strategy="epoch", save_strategy="no",
                                 logging_strategy="epoch", report_to=[], seed=42, use_cpu=True, disable_tqdm=True,
                                 bf16=bf16)
        trainer = Trainer(model=model, args=args, train_dataset=train_rows, eval_dataset=valid_rows,
                          data_collator=DataCollatorWithPadding(tokenizer))
        trainer.train()
        seconds = time.perf_counter() - started
        logits = trainer.predict(valid_rows).predictions
    p = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=1)[:, 1].numpy()
    return {"seconds": round(seconds, 1), "samples_per_s": round(cfg.train.epochs * len(train_idx) / seconds, 2),
            **_f1s(y[valid_idx], p)}


def run() -> dict:
    import torch

    from benchmarks.bench_train import _workspace
    from competition.config import load_config
    from competition.folds import read_folds
    from competition.models import encoder
    from competition.text import input_texts

    with tempfile.TemporaryDirectory() as tmp:
        ws, data = _workspace(Path(tmp) / "trainer", {"042": "template: minilm\ntrain: {select: last}\n"})
        cfg = load_config(ws, "042", ["train.precision='32'"])      # fp32 first; bf16 below
        torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
        prepared = encoder.prepare(cfg, data)
        prepared_bf16 = dataclasses.replace(prepared, cfg=load_config(ws, "042", ["train.precision=bf16-mixed"]))
        fold = read_folds(ws, data)["fold"].to_numpy()
        train_idx, valid_idx = np.flatnonzero(fold != 0), np.flatnonzero(fold == 0)
        if os.environ.get("BENCH_TRAINER_ROWS"):       # a quick check of the script itself, not a figure
            n = int(os.environ["BENCH_TRAINER_ROWS"])
            train_idx, valid_idx = train_idx[:n], valid_idx[: n // 4]
        texts = input_texts(cfg, data.spec, data.train)
        y = np.asarray(data.y).ravel()
        out = {"comp": [], "trainer": [], "comp_bf16": [], "trainer_bf16": []}
        for r in range(REPEATS):
            order = ["comp", "trainer"] if r % 2 == 0 else ["trainer", "comp"]
            for bf16 in (False, True):
                for who in order:
                    result = (_comp(prepared_bf16 if bf16 else prepared, train_idx, valid_idx) if who == "comp"
                              else _trainer(texts, y, train_idx, valid_idx, cfg.model.name, cfg, bf16))
                    key = who + ("_bf16" if bf16 else "")
                    print(f"[bench] trainer {key}: {result}", flush=True)
                    out[key].append(result)
    from competition import bootstrap

    y_valid = y[valid_idx]
    ratios = {}
    for tag in ("", "_bf16"):
        comp, hf = out["comp" + tag], out["trainer" + tag]
        for c, h in zip(comp, hf):    # the same rows: comp's F1 at 0.5 minus the Trainer's, 95% paired interval
            diff = bootstrap.compare("f1", y_valid, (c.pop("p") >= 0.5).astype(int), (h.pop("p") >= 0.5).astype(int),
                                     "binary")
            c["f1_vs_trainer"] = [round(diff.diff, 4), round(diff.low, 4), round(diff.high, 4)]
            c["f1_vs_trainer_significant"] = bool(diff.significant)
        ratios[tag] = np.median([c["samples_per_s"] for c in comp]) / np.median([h["samples_per_s"] for h in hf])
    return {"threads": torch.get_num_threads(), "train_rows": len(train_idx), "valid_rows": len(valid_idx),
            **out, "ratio": round(float(ratios[""]), 2), "ratio_bf16": round(float(ratios["_bf16"]), 2)}


def render(r: dict) -> str:
    def row(who, label):
        runs = r[who]
        return [label, ", ".join(str(x["samples_per_s"]) for x in runs), ", ".join(str(x["seconds"]) for x in runs),
                ", ".join(str(x["f1_at_0.5"]) for x in runs), ", ".join(f"{x['f1_best']} (at {x['best_threshold']})"
                                                                    for x in runs)]
    return "\n".join([
        "## Training: comp against Hugging Face's Trainer (MiniLM, disaster-tweets fold 0)",
        "",
        f"Both fine-tune all-MiniLM-L6-v2 on the same {r['train_rows']:,} rows for 2 epochs (batch 16, lr 5e-5, "
        f"64 tokens, {r['threads']} torch threads) and validate on fold 0's {r['valid_rows']:,} rows once per "
        "epoch; the Trainer as the transformers docs write it (AutoModelForSequenceClassification, "
        "DataCollatorWithPadding, defaults otherwise), comp with the 042 recipe and `train.select: last`. "
        "F1 of the final model on fold 0.",
        "",
        md_table(["loop", "samples/s", "seconds", "F1 at 0.5", "F1 at the fold's best threshold"],
                 [row("comp", "comp (Lightning, bucketed batches), fp32"), row("trainer", "HF Trainer, fp32"),
                  *([row("comp_bf16", "comp, `train.precision: bf16-mixed`"),
                     row("trainer_bf16", "HF Trainer, `bf16=True`")] if r.get("comp_bf16") else [])]),
        "",
        f"- **comp / Trainer samples/s, fp32: {r['ratio']}x** (target >= 1.3x at equal or better F1)",
        *([f"- **comp / Trainer samples/s, both in bf16: {r['ratio_bf16']}x** (target >= 1.5x)"]
          if "ratio_bf16" in r else []),
        *[f"- F1 at 0.5, comp minus Trainer{label} on the same {r['valid_rows']:,} rows: {d[0]:+.4f} "
          f"[{d[1]:+.4f}, {d[2]:+.4f}] (95% paired bootstrap): "
          f"{'a real difference' if c['f1_vs_trainer_significant'] else 'noise'}"
          for key, label in (("comp", ""), ("comp_bf16", ", both in bf16")) for c in r.get(key, [])
          if "f1_vs_trainer" in c for d in [c["f1_vs_trainer"]]],
    ])
