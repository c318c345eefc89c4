"""The span-extraction peer (issue 39): what a user writes from the transformers docs' question-answering
guide for Tweet Sentiment Extraction, the sentiment as the question and the tweet as the context.

MiniLM through ``AutoModelForQuestionAnswering`` and ``Trainer``: the guide's preprocessing (question and
context tokenised as a pair, ``truncation="only_second"``, the answer's first and last context tokens found
through the offset mapping, (0, 0) where the answer is not inside), its training arguments (lr 2e-5, batch
16, weight decay 0.01) for 2 epochs (the guide's 3 cost 50% more; comp's recipe trains 2 as well), batches
padded to their longest (``DataCollatorWithPadding``: the guide pads every row to 384, which changes no
prediction and costs ~10x on tweets), and the course's post-processing (the 20 best start and end logits,
end >= start, at most 30 tokens, the answer cut from the context by the offsets).

Run on the 5 folds of ``examples/tweet-spans`` (its ``folds/folds.csv``; KFold with shuffle, seed 42, as
comp's kfold splits, when the workspace has none yet). A fold takes ~20 minutes on 2 cores, so each
finished fold's answers are kept (``results/spans_peer_folds.json``, committed) and a later run goes on
from the folds not yet done. Writes every row's OOF answer (``results/spans_peer_oof.json``) so comp's runs
are compared with it row by row (paired bootstrap).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

EXPENSIVE = True
HERE = Path(__file__).parent
WORKSPACE = HERE.parent / "examples" / "tweet-spans"
OOF_FILE = HERE / "results" / "spans_peer_oof.json"
FOLDS_FILE = HERE / "results" / "spans_peer_folds.json"
EPOCHS = 2


def jaccard(a: str, b: str) -> float:
    """The competition's word-level Jaccard, as its evaluation page defines it (both empty: 1)."""
    x, y = set(str(a).lower().split()), set(str(b).lower().split())
    if not x and not y:
        return 1.0
    return len(x & y) / (len(x) + len(y) - len(x & y))


def _frame():
    import os

    import pandas as pd

    data = Path(os.environ.get("COMP_DATA", HERE.parent.parent / "shared" / "data")) / "tweet-spans"
    train = pd.read_csv(data / "train.csv", dtype=str, keep_default_na=False)
    return train


def folds_of(train) -> np.ndarray:
    """Fold of every row: the workspace's folds file, else KFold(5, shuffle, seed 42) on row order."""
    import pandas as pd

    path = WORKSPACE / "folds" / "folds.csv"
    if path.is_file():
        table = pd.read_csv(path, dtype={"textID": str, "id": str})
        key = "textID" if "textID" in table.columns else "id"
        by_id = dict(zip(table[key], table["fold"]))
        return np.array([by_id[i] for i in train["textID"]])
    from sklearn.model_selection import KFold

    fold = np.zeros(len(train), dtype=int)
    for k, (_, valid) in enumerate(KFold(5, shuffle=True, random_state=42).split(np.arange(len(train)))):
        fold[valid] = k
    return fold


def fit_predict(train, train_idx, valid_idx, epochs: int = EPOCHS) -> tuple[list[str], float]:
    """The guide's recipe fitted on ``train_idx`` rows; the answers of ``valid_idx`` rows and the
    samples/s of the fit."""
    from transformers import (AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from competition.models.pretrained import resolve_pretrained

    path = resolve_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    questions, contexts, answers = (train["sentiment"].tolist(), train["text"].tolist(),
                                    train["selected_text"].tolist())

    def encode(idx, with_labels: bool):
        enc = tokenizer([questions[i] for i in idx], [contexts[i] for i in idx], max_length=384,
                        truncation="only_second", return_offsets_mapping=True)
        rows = []
        for j, i in enumerate(idx):
            offsets, seq = enc["offset_mapping"][j], enc.sequence_ids(j)
            row = {"input_ids": enc["input_ids"][j], "attention_mask": enc["attention_mask"][j],
                   "token_type_ids": enc["token_type_ids"][j]}
            if with_labels:
                start_char = contexts[i].find(answers[i])
                end_char = start_char + len(answers[i])
                first = seq.index(1)
                last = len(seq) - 1 - seq[::-1].index(1)
                if start_char < 0 or offsets[first][0] > start_char or offsets[last][1] < end_char:
                    row["start_positions"], row["end_positions"] = 0, 0
                else:
                    s = first
                    while s <= last and offsets[s][0] <= start_char:
                        s += 1
                    e = last
                    while e >= first and offsets[e][1] >= end_char:
                        e -= 1
                    row["start_positions"], row["end_positions"] = s - 1, e + 1
            rows.append(row)
        return rows, enc

    train_rows, _ = encode(train_idx, True)
    valid_rows, valid_enc = encode(valid_idx, False)
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=16, per_device_eval_batch_size=64,
                                 num_train_epochs=epochs, learning_rate=2e-5, weight_decay=0.01,
                                 save_strategy="no", logging_strategy="no", report_to=[], seed=42, use_cpu=True,
                                 disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=train_rows,
                          data_collator=DataCollatorWithPadding(tokenizer))
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        start_logits, end_logits = trainer.predict(valid_rows).predictions
    out = []
    for j, i in enumerate(valid_idx):
        offsets, seq = valid_enc["offset_mapping"][j], valid_enc.sequence_ids(j)
        n = len(offsets)
        starts = np.argsort(start_logits[j][:n])[-1:-21:-1]
        ends = np.argsort(end_logits[j][:n])[-1:-21:-1]
        best, answer = -np.inf, ""
        for s in starts:
            for e in ends:
                if seq[s] != 1 or seq[e] != 1 or e < s or e - s + 1 > 30:
                    continue
                score = start_logits[j][s] + end_logits[j][e]
                if score > best:
                    best, answer = score, contexts[i][offsets[s][0]:offsets[e][1]]
        out.append(answer)
    return out, epochs * len(train_idx) / seconds


def run() -> dict:
    from competition.artifacts import write_text

    train = _frame()
    fold = folds_of(train)
    oof: list = [""] * len(train)
    per_fold, speeds = {}, []
    truth = train["selected_text"].tolist()
    done = json.loads(FOLDS_FILE.read_text()) if FOLDS_FILE.is_file() else {}
    for k in range(int(fold.max()) + 1):
        train_idx, valid_idx = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        if str(k) not in done or done[str(k)]["ids"] != train["textID"].iloc[valid_idx].tolist():
            answers, speed = fit_predict(train, train_idx, valid_idx)
            done[str(k)] = {"ids": train["textID"].iloc[valid_idx].tolist(), "answers": answers,
                            "samples_per_s": round(speed, 2)}
            write_text(FOLDS_FILE, json.dumps(done) + "\n")      # a fold kept whole, or not at all
        answers, speed = done[str(k)]["answers"], done[str(k)]["samples_per_s"]
        for i, a in zip(valid_idx, answers):
            oof[i] = a
        per_fold[k] = round(float(np.mean([jaccard(truth[i], a) for i, a in zip(valid_idx, answers)])), 4)
        speeds.append(round(speed, 2))
        print(f"[bench] spans_peer fold {k}: Jaccard {per_fold[k]} · {speed:.1f} samples/s", flush=True)
    scores = np.array([jaccard(t, a) for t, a in zip(truth, oof)])
    sentiment = train["sentiment"].to_numpy()
    OOF_FILE.write_text(json.dumps({"ids": train["textID"].tolist(), "answers": oof}) + "\n")
    return {"oof_jaccard": round(float(scores.mean()), 4),
            "by_sentiment": {s: round(float(scores[sentiment == s].mean()), 4) for s in sorted(set(sentiment))},
            "folds": per_fold, "samples_per_s": speeds, "epochs": EPOCHS, "rows": len(train)}


def render(r: dict) -> str:
    return "\n".join([
        "## Span extraction: the transformers-docs peer on tweet-spans (MiniLM, Trainer)",
        "",
        "AutoModelForQuestionAnswering + Trainer, the sentiment as the question: the docs' preprocessing, lr 2e-5, "
        f"batch 16, weight decay 0.01, {r['epochs']} epochs, batches padded to their longest; the course's "
        "post-processing (20 best starts and ends, at most 30 tokens). Word-level Jaccard.",
        "",
        f"- OOF Jaccard on examples/tweet-spans' 5 folds: **{r['oof_jaccard']}** (folds {r['folds']})",
        f"- by sentiment: {r['by_sentiment']}",
        f"- samples/s per fold: {r['samples_per_s']}",
    ])
