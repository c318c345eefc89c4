"""Tiny encoders and datasets for the torch-family tests: built on the fly, nothing downloaded.

``tiny_bert(tmp_path, texts)`` saves a randomly initialised 2-layer BERT (hidden 32) and a
BPE vocabulary trained on ``texts`` into a folder usable as ``model.name``.
``tweets(task, n)`` is a :class:`~competition.data.Dataset` of the first ``n`` disaster
tweets with a target made up for ``task``, so every head and loss can run on real text.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from competition.data import Dataset
from competition.spec import Spec
from tests.datasets import shared_data

METRIC = {"binary": "f1", "multiclass": "accuracy", "multilabel": "macro_f1", "regression": "rmse"}


def tiny_bert(tmp_path, texts: list[str], *, hidden: int = 32, layers: int = 2, heads: int = 2,
              intermediate: int = 64, vocab_size: int = 600, max_length: int = 128) -> str:
    """Save a tiny random BERT + its tokenizer under ``tmp_path/tiny-bert``; returns the folder."""
    import torch
    from transformers import BertModel

    from competition.models.scratch import bert_config, train_tokenizer

    folder = Path(tmp_path) / "tiny-bert"
    tokenizer = train_tokenizer(texts, vocab_size)
    config = bert_config(len(tokenizer), d_model=hidden, heads=heads, layers=layers, ff=intermediate,
                         dropout=0.1, max_length=max_length, pad_token_id=tokenizer.pad_token_id)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _targets(frame: pd.DataFrame, task: str) -> tuple[pd.DataFrame, list[str], np.ndarray, list | None]:
    """Targets made up from the tweets: learnable enough that the heads have something to fit."""
    text = frame["text"].astype(str)
    if task == "binary":
        return frame, ["target"], frame["target"].to_numpy(dtype=np.int64), [0, 1]
    if task == "multiclass":
        y = np.clip(text.str.len().to_numpy() // 50, 0, 2).astype(np.int64)  # short / medium / long
        return frame.assign(size=y), ["size"], y, [0, 1, 2]
    if task == "multilabel":
        names = ["target", "hashtag", "link"]
        frame = frame.assign(hashtag=text.str.contains("#").astype(int), link=text.str.contains("http").astype(int))
        return frame, names, frame[names].to_numpy(dtype=np.int64), names
    y = text.str.len().to_numpy(dtype=np.float64) / 100.0
    return frame.assign(length=y), ["length"], y, None


def tweets(task: str = "binary", n: int = 96, n_test: int = 40) -> Dataset:
    """A Dataset of ``n`` train tweets (keyword + text) and ``n_test`` test tweets."""
    root = shared_data() / "disaster-tweets"
    train = pd.read_csv(root / "train.csv", nrows=n)
    test = pd.read_csv(root / "test.csv", nrows=n_test)
    train, targets, y, labels = _targets(train, task)
    spec = Spec(name="tiny-tweets", train="train.csv", test="test.csv", targets=targets,
                labels=labels if task in ("binary", "multiclass") else None,
                text=["keyword", "text"], task=task, metric=METRIC[task])
    digest = hashlib.sha256(train.to_csv().encode()).hexdigest()[:16]
    return Dataset(spec, train, test, y, labels, digest, "test")


def all_texts(data: Dataset) -> list[str]:
    return data.train["text"].astype(str).tolist() + data.test["text"].astype(str).tolist()
