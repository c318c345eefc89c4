"""The token-level peer (issue 38): what a user writes from the transformers docs for NER on wnut17.

MiniLM through ``AutoModelForTokenClassification``, ``DataCollatorForTokenClassification`` and
``Trainer``: the first sub-token of each word labelled (the others -100), batch 16, 3 epochs, lr 5e-5,
everything else default. Run on the 5 folds of ``examples/wnut17`` (its ``folds/folds.csv``; KFold with
shuffle, seed 42, when the workspace has none yet) and on the corpus's own protocol (fit on ``part ==
train``, score ``part == dev``). A word's tag is the argmax at its first sub-token, as the docs decode.

Writes the OOF tags of every row (``results/tokens_peer_oof.json``) so the comp runs of
``bench_tokens`` are compared with it row by row (paired bootstrap), and times each fit (samples/s =
training sentences x epochs / seconds of ``trainer.train()``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

EXPENSIVE = True
HERE = Path(__file__).parent
WORKSPACE = HERE.parent / "examples" / "wnut17"
OOF_FILE = HERE / "results" / "tokens_peer_oof.json"


def _frame():
    import os

    import pandas as pd

    data = Path(os.environ.get("COMP_DATA", HERE.parent.parent / "shared" / "data")) / "wnut17"
    train = pd.read_csv(data / "train.csv", dtype={"id": str})
    train["tokens"] = train["tokens"].map(json.loads)
    train["tags"] = train["tags"].map(json.loads)
    return train


def folds_of(train) -> np.ndarray:
    """Fold of every row: the workspace's folds file, else KFold(5, shuffle, seed 42) on row order."""
    import pandas as pd

    path = WORKSPACE / "folds" / "folds.csv"
    if path.is_file():
        table = pd.read_csv(path, dtype={"id": str})
        by_id = dict(zip(table["id"], table["fold"]))
        return np.array([by_id[i] for i in train["id"]])
    from sklearn.model_selection import KFold

    fold = np.zeros(len(train), dtype=int)
    for k, (_, valid) in enumerate(KFold(5, shuffle=True, random_state=42).split(np.arange(len(train)))):
        fold[valid] = k
    return fold


def fit_predict(tokens, tags, train_idx, valid_idx, labels: list[str], epochs: int = 3
                ) -> tuple[list[list[str]], float]:
    """The docs' recipe fitted on ``train_idx`` rows; the predicted tags of ``valid_idx`` rows and the
    samples/s of the fit."""
    import torch
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments)

    from competition.models.pretrained import resolve_pretrained

    path = resolve_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    code = {label: i for i, label in enumerate(labels)}

    def rows(idx, with_labels=True):
        enc = tokenizer([tokens[i] for i in idx], is_split_into_words=True, truncation=True)
        out = []
        for j, i in enumerate(idx):
            words, previous, labelled = enc.word_ids(j), None, []
            for w in words:
                labelled.append(-100 if w is None or w == previous else code[tags[i][w]])
                previous = w
            out.append({"input_ids": enc["input_ids"][j], "attention_mask": enc["attention_mask"][j],
                        "labels": labelled, "_words": words})
        return out

    train_rows, valid_rows = rows(train_idx), rows(valid_idx)
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=code)
    strip = [{k: v for k, v in r.items() if k != "_words"} for r in train_rows]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=16, num_train_epochs=epochs,
                                 learning_rate=5e-5, save_strategy="no", logging_strategy="no", report_to=[],
                                 seed=42, use_cpu=True, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=strip,
                          data_collator=DataCollatorForTokenClassification(tokenizer))
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        logits = trainer.predict([{k: v for k, v in r.items() if k != "_words"} for r in valid_rows]).predictions
    predicted = []
    for j, i in enumerate(valid_idx):
        out, words, previous = ["O"] * len(tokens[i]), valid_rows[j]["_words"], None
        for position, w in enumerate(words):
            if w is not None and w != previous:
                out[w] = labels[int(np.argmax(logits[j][position]))]
            previous = w
        predicted.append(out)
    del torch
    return predicted, epochs * len(train_idx) / seconds


def run() -> dict:
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    train = _frame()
    tokens, tags = train["tokens"].tolist(), train["tags"].tolist()
    types = sorted({t[2:] for row in tags for t in row if t != "O"})
    labels = ["O"] + [f"{p}-{t}" for t in types for p in "BI"]
    fold = folds_of(train)
    oof: list = [None] * len(train)
    per_fold, speeds = {}, []
    for k in range(int(fold.max()) + 1):
        train_idx, valid_idx = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        predicted, speed = fit_predict(tokens, tags, train_idx, valid_idx, labels)
        for i, p in zip(valid_idx, predicted):
            oof[i] = p
        per_fold[k] = round(f1_score([tags[i] for i in valid_idx], predicted, mode="strict", scheme=IOB2), 4)
        speeds.append(round(speed, 2))
        print(f"[bench] tokens_peer fold {k}: entity F1 {per_fold[k]} · {speed:.1f} samples/s", flush=True)
    part = train["part"].to_numpy()
    tr, dev = np.flatnonzero(part == "train"), np.flatnonzero(part == "dev")
    dev_pred, dev_speed = fit_predict(tokens, tags, tr, dev, labels)
    dev_f1 = f1_score([tags[i] for i in dev], dev_pred, mode="strict", scheme=IOB2)
    OOF_FILE.write_text(json.dumps({"ids": train["id"].tolist(), "tags": oof}) + "\n")
    return {"oof_f1": round(float(f1_score(tags, oof, mode="strict", scheme=IOB2)), 4), "folds": per_fold,
            "samples_per_s": speeds, "dev_f1": round(float(dev_f1), 4), "dev_samples_per_s": round(dev_speed, 2),
            "rows": len(train)}


def render(r: dict) -> str:
    return "\n".join([
        "## Token level: the transformers-docs peer on wnut17 (MiniLM, Trainer)",
        "",
        "AutoModelForTokenClassification + DataCollatorForTokenClassification + Trainer: first sub-token "
        "labelled, batch 16, 3 epochs, lr 5e-5, defaults otherwise; a word's tag is the argmax at its first "
        "sub-token. Entity F1 (seqeval, strict IOB2).",
        "",
        f"- OOF entity F1 on examples/wnut17's 5 folds: **{r['oof_f1']}** (folds {r['folds']})",
        f"- corpus protocol (fit on part train, score part dev): **{r['dev_f1']}**",
        f"- samples/s per fold: {r['samples_per_s']} (dev fit {r['dev_samples_per_s']}): measured beside other work, "
        "so not a speed figure; the side-by-side speed is in the wnut17 section",
    ])
