"""Family ``embed``: frozen pretrained-encoder sentence embeddings with a logistic / ridge / LightGBM head.

Every train and test text is embedded once per run in :func:`prepare` (the encoder
never trains, so the folds share one embedding matrix); each fold then fits only
the head on its training rows. Linear heads standardise the embedding dimensions
first (fitted on the fold's training rows), so ``C`` / ``alpha`` mean the same for
any encoder. What a fold saves::

    fold0/
        head/           the head (saving.save_head: head.json + LightGBM text / skops files)
        embed.json      the encoder {name, pooling, max_length, truncation, ...: reading()}, the head, the
                        embedding size

:func:`predict` re-embeds the new frame with the encoder named in the fold (resolved again,
so a hub id finds the offline copy), or with the run's own copy in ``<run>/encoder/`` when
there is one: ``comp export`` puts the frozen encoder there, so a bundle needs no hub.

A text pair (the spec's ``text_pair``) embeds each side alone, u and v, and the head reads
``[u, v, |u - v|, u * v]`` (Sentence-BERT's features for pair classification; :func:`pair_matrix`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition import artifacts
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models import PRECISION, FoldResult, Steps, autocast, classical, estimators, int8
from competition.models.batches import encode, eval_loader, pool, pool_windows
from competition.models.pretrained import check_tokenizer, loading, no_progress_bar, resolve_pretrained
from competition.text import Pairs, model_inputs


@dataclass
class Prepared:
    cfg: ExperimentConfig
    data: object                      # competition.data.Dataset
    train: np.ndarray                 # (n_train, d) float32 embeddings
    test: np.ndarray | None           # (n_test, d) or None


def load_encoder(name: str):
    """(tokenizer, model) of a hub id or local folder, in eval mode, on the CPU."""
    # torch stack (~3 s to import): only the torch families load it
    from transformers import AutoModel, AutoTokenizer

    path = resolve_pretrained(name)
    with loading(name, path), no_progress_bar():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    model.eval()
    return tokenizer, model


def embed_texts(texts: list[str], tokenizer, model, *, pooling: str, max_length: int, batch_size: int,
                truncation: str = "head", head_tokens: int | None = None, stride: int | None = None,
                window_pool: str = "mean") -> np.ndarray:
    """(n, d) float32 sentence vectors: [CLS] or masked mean of the last hidden states.

    Texts are tokenised once (cut to ``max_length`` as ``truncation`` says, :func:`batches.encode`) and
    batched by length, each batch padded only to its own longest row (``batches.eval_loader``); rows
    come back in input order. ``truncation: windows`` embeds every window of a text and pools them
    (``window_pool``: mean or max per dimension, :func:`batches.pool_windows`).
    """
    # torch stack (~3 s to import): only the torch families load it
    import torch

    ids = encode(tokenizer, texts, max_length, truncation, head_tokens=head_tokens, stride=stride)
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    steps = Steps(f"embedding {len(texts):,} texts", len(texts))   # a line per step, on a terminal or not
    with torch.inference_mode(), autocast():
        for batch in eval_loader(ids, None, tokenizer.pad_token_id or 0, batch_size):
            mask = batch["attention_mask"]                                       # (b, t)
            hidden = model(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state  # (b, t, d)
            vectors = pool(hidden, mask, pooling).float()                        # (b, d): rows, or windows
            if "windows" in batch:
                vectors = pool_windows(vectors, batch["windows"], window_pool)   # (rows, d)
            out[batch["index"].numpy()] = vectors.numpy()
            steps.advance(len(batch["index"]))
    return out


def reading(m) -> dict:
    """How the model config ``m`` reads a text: what an embedding depends on besides the encoder."""
    return {"pooling": m.pooling, "max_length": m.max_length, "truncation": m.truncation,
            "head_tokens": m.head_tokens, "stride": m.stride, "window_pool": m.window_pool}


_CACHE: dict[tuple, np.ndarray] = {}   # one entry: predicting several folds embeds the frame once


def embeddings(cfg: ExperimentConfig, texts: list[str], name: str | None = None) -> np.ndarray:
    """Embeddings of ``texts`` with the config's encoder (or ``name``), remembered for the next call."""
    # torch stack (~3 s to import): only the torch families load it
    import torch

    m = cfg.model
    name = name or m.name
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
    precision = "int8" if PRECISION.get() == "onnx-int8" else PRECISION.get()   # torch's int8 here
    how = reading(m)
    key = (name, *how.values(), digest, precision)
    if key not in _CACHE:
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        tokenizer, model = load_encoder(name)
        model = int8(model) if precision == "int8" else model
        check_tokenizer(name, name, tokenizer, texts)
        _CACHE.clear()
        _CACHE[key] = embed_texts(texts, tokenizer, model, batch_size=m.batch_size, **how)
    return _CACHE[key]


def prepare(cfg: ExperimentConfig, data) -> Prepared:
    """Embed every train and test text once (in one pass, so the encoder loads once)."""
    if cfg.model.head == "logistic" and data.spec.task == "regression":
        raise InputError("model.head: logistic regression cannot fit the regression target "
                         f"{data.spec.targets}; set model.head=ridge (or lgbm)")
    texts = model_inputs(cfg, data.spec, data.train)
    test_texts = model_inputs(cfg, data.spec, data.test) if data.test is not None else None
    if isinstance(texts, Pairs) and cfg.model.truncation != "head":
        raise InputError(f"model.truncation: {cfg.model.truncation} reads one long text, but this experiment reads "
                         f"the text pair {data.spec.text_pair} (each side embedded alone, cut at its head); "
                         "set model.truncation=head")
    if isinstance(texts, Pairs):     # one pass over every side of every row
        n, t = len(texts), len(test_texts or [])
        sides = embeddings(cfg, texts.first + texts.second + (test_texts.first + test_texts.second if t else []))
        train = pair_matrix(sides[:n], sides[n:2 * n])
        test = pair_matrix(sides[2 * n:2 * n + t], sides[2 * n + t:]) if test_texts is not None else None
        return Prepared(cfg, data, train, test)
    both = embeddings(cfg, texts + (test_texts or []))
    n = len(texts)
    return Prepared(cfg, data, both[:n], both[n:] if data.test is not None else None)


def pair_matrix(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``[u, v, |u - v|, u * v]`` of the two sides' embeddings, (n, 4d).

    >>> pair_matrix(np.array([[1.0, 2.0]]), np.array([[3.0, -1.0]])).tolist()
    [[1.0, 2.0, 3.0, -1.0, 2.0, 3.0, 3.0, -2.0]]
    """
    return np.hstack([u, v, np.abs(u - v), u * v]).astype(np.float32)


def fit_fold(prepared: Prepared, fold: int, train_idx: np.ndarray, valid_idx: np.ndarray,
             out_dir: Path, tracker=None) -> FoldResult:
    """Fit the head on the ``train_idx`` embeddings; predict ``valid_idx`` and the test set."""
    m = prepared.cfg.model
    features = classical.Features(prepared.train[train_idx], prepared.train[valid_idx], prepared.test)
    head, result = classical.fit_fold(prepared, train_idx, features, out_dir, tracker, m.head, C=m.C,
                                      alpha=m.alpha, lgbm=m.lgbm, scale=True, key="model.head")
    encoder = {"name": m.name, **reading(m)}
    dim = int(prepared.train.shape[1])
    chosen = [c for c in map(estimators.chosen_c, head.models) if c is not None]   # C auto: per target
    head_c = {"C": chosen[0] if len(chosen) == 1 else chosen} if chosen else {}
    artifacts.write_json(Path(out_dir) / "embed.json", {"family": "embed", "head": head.estimator, **head_c,
                                                        "task": head.task, "dim": dim, "encoder": encoder, **encoder})
    result.extra = {"dim": dim, **head_c, **encoder}
    return result


def bundle(cfg: ExperimentConfig, target: Path, precision: str = "fp32") -> None:
    """What ``comp export`` adds to a run's copy in a bundle: its frozen encoder (``<run>/encoder/``),
    which :func:`predict` prefers to the hub id or folder the run was trained with."""
    tokenizer, model = load_encoder(cfg.model.name)
    model.save_pretrained(Path(target) / "encoder")
    tokenizer.save_pretrained(Path(target) / "encoder")


def predict(fold_dir: Path, cfg: ExperimentConfig, data, frame) -> np.ndarray:
    """Re-embed ``frame`` with the fold's encoder and apply its head."""
    head = classical.load(fold_dir, "embed")
    enc = artifacts.read_json(Path(fold_dir) / "embed.json")["encoder"]
    bundled = Path(fold_dir).parent / "encoder"          # the frozen encoder, copied by comp export
    name = str(bundled) if (bundled / "config.json").is_file() else enc["name"]
    settings = cfg.model_copy(update={"model": cfg.model.model_copy(   # as the fold read its texts
        update={key: value for key, value in enc.items() if key in reading(cfg.model)})})
    texts = model_inputs(cfg, data.spec, frame)
    if isinstance(texts, Pairs):
        sides = embeddings(settings, texts.first + texts.second, name=name)
        return head.predict(pair_matrix(sides[:len(texts)], sides[len(texts):]))
    return head.predict(embeddings(settings, texts, name=name))
