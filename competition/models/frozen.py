"""Frozen bottom layers, computed once: ``train.freeze_layers: k``.

A base-size encoder (12 layers x 768) costs ~5x MiniLM per training step on a CPU. With the
embeddings and the bottom ``k`` layers frozen, their output for a text never changes: it is
computed once per text (per model, token ids, ``k`` and storage dtype) and every fold, epoch,
seed and prediction of the run starts from it, running only the top ``L - k`` layers.

What "frozen" means here, so that the cached and the live paths are one function:

* every encoder parameter outside the top layers ``layer[k:]`` stops learning (embeddings, the
  bottom layers, and tables the layers share such as MPNet's relative position bias);
* the bottom runs in eval mode (no dropout), so its output is a function of the text alone;
* its output is rounded to ``train.freeze_dtype`` (float16 by default, as it is stored) before
  the top layers read it, in training and in every prediction, cached or not.

So a fold's model predicts a new file (``comp predict``, a bundle) from raw text with the same
numbers its run produced from the cache. The cache::

    <comp cache>/states/<key>/      key: sha256 of the frozen weights, k, dtype and the token ids
        states.npy    (total tokens, H) the states of every row's real tokens, rows one after another
        offsets.npy   (rows + 1,)       row i is states[offsets[i]:offsets[i+1]]
        meta.json     rows, tokens, hidden size, k, dtype, seconds it took

It is built by the same batches prediction uses (``batches.eval_loader``: longest first, padded
per batch), so replaying a file gives the very states that were cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from competition.errors import InputError
from competition.models import Steps
from competition.models.batches import eval_loader, lengths_of, segments
from competition.workspace import cache_dir

DTYPES = {"float16": torch.float16, "float32": torch.float32}


def layer_list(encoder: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """(the module holding the layers, the layer list) of a BERT-style encoder (BERT, RoBERTa, MPNet,
    DeBERTa, ELECTRA: ``encoder.encoder.layer``)."""
    stack = getattr(encoder, "encoder", None)
    layers = getattr(stack, "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise InputError(f"train.freeze_layers: {type(encoder).__name__} has no BERT-style layer list "
                         "(encoder.encoder.layer); set train.freeze_layers=0 for this model")
    return stack, layers


def check_depth(encoder: nn.Module, k: int, pool_layers: int | None = None, reinit: int = 0) -> None:
    """Refuse a ``k`` the encoder cannot freeze, and settings that would train frozen layers."""
    n = len(layer_list(encoder)[1])
    if k > n:
        raise InputError(f"train.freeze_layers={k}: this encoder has {n} layers; choose 0 to {n}")
    if reinit > n - k:
        raise InputError(f"model.reinit_layers={reinit} would re-initialise frozen layers (train.freeze_layers={k} "
                         f"of {n}): choose reinit_layers <= {n - k}")
    if pool_layers is not None and pool_layers > n - k:
        raise InputError(f"model.pool_layers={pool_layers} mixes layers below the frozen boundary "
                         f"(train.freeze_layers={k} of {n}); choose pool_layers <= {n - k}")


def _top_ids(encoder: nn.Module, k: int) -> set[int]:
    """ids of the parameters of the top layers ``layer[k:]``: the only ones that learn."""
    return {id(p) for layer in list(layer_list(encoder)[1])[k:] for p in layer.parameters()}


def freeze(encoder: nn.Module, k: int) -> None:
    """Stop every encoder parameter but those of the top layers ``layer[k:]`` from learning."""
    top = _top_ids(encoder, k)
    for p in encoder.parameters():
        if id(p) not in top:
            p.requires_grad_(False)


class _Given(nn.Module):
    """Stands in for the embeddings: the hidden states passed as ``inputs_embeds`` go on unchanged."""

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
        return inputs_embeds


@contextmanager
def _only(encoder: nn.Module, layers: list[nn.Module], embeddings: bool):
    """The encoder running just ``layers`` (and its embeddings, or the given states instead)."""
    stack, full = layer_list(encoder)
    saved = encoder.embeddings
    stack.layer = nn.ModuleList(layers)
    if not embeddings:
        encoder.embeddings = _Given()
    try:
        yield
    finally:
        stack.layer = full
        encoder.embeddings = saved


@torch.no_grad()
def bottom(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int,
           dtype: str, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, H) hidden states after layer ``k`` (eval mode, no gradient), rounded to ``dtype``."""
    was_training = encoder.training
    encoder.eval()
    types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
    try:
        with _only(encoder, list(layer_list(encoder)[1])[:k], embeddings=True):
            hidden = encoder(input_ids=input_ids, attention_mask=attention_mask, **types).last_hidden_state
    finally:
        encoder.train(was_training)
    return hidden.to(DTYPES[dtype])


def top(encoder: nn.Module, states: torch.Tensor, attention_mask: torch.Tensor, k: int,
        output_hidden_states: bool = False):
    """The encoder's output from the states after layer ``k``: only ``layer[k:]`` run (B, T, H)."""
    dtype = next(encoder.parameters()).dtype
    with _only(encoder, list(layer_list(encoder)[1])[k:], embeddings=False):
        return encoder(inputs_embeds=states.to(dtype), attention_mask=attention_mask,
                       output_hidden_states=output_hidden_states)


# -- the cache ------------------------------------------------------------------------------

def frozen_digest(encoder: nn.Module, k: int, dtype: str) -> str:
    """sha256 of what the states depend on besides the texts: the architecture, the frozen weights,
    ``k`` and the dtype (hashed once per run, shared by its splits and text variants)."""
    # the architecture, less what cannot change eval-mode states (dropout) or names a copy (its path)
    config = {key: value for key, value in encoder.config.to_dict().items()
              if "dropout" not in key and key not in ("_name_or_path", "transformers_version")}
    digest = hashlib.sha256(json.dumps({"k": k, "dtype": dtype, "config": config}, sort_keys=True,
                                       default=str).encode())
    top = _top_ids(encoder, k)
    for name, p in encoder.state_dict(keep_vars=True).items():
        if id(p) not in top:
            digest.update(name.encode())
            digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(frozen: str, ids: list[torch.Tensor]) -> str:
    """sha256 of :func:`frozen_digest` and every row's token ids (which carry the tokenizer, the text
    settings and max_length)."""
    digest = hashlib.sha256(frozen.encode())
    for row in ids:
        digest.update(np.int64(len(row)).tobytes())
        digest.update(row.numpy().astype(np.int64).tobytes())
    return digest.hexdigest()


def cached_states(encoder: nn.Module, ids: list[torch.Tensor], k: int, dtype: str, pad_id: int,
                  batch_size: int, what: str, progress=None, root: Path | None = None,
                  frozen: str | None = None, sep_id: int | None = None) -> list[torch.Tensor]:
    """Every row's states after layer ``k``, (length, H) each: read from the cache, or computed once
    (batched as prediction batches them), written whole and read back memory-mapped. A row of windows
    (a list of id tensors) gets the list of its windows' states.

    ``progress``: called with a line per step of a computing pass (rows/s, time left); ``frozen``: the
    encoder's :func:`frozen_digest`, when the caller has it already; ``sep_id``: rows are text pairs
    whose second segment starts after this token (:func:`competition.models.batches.segments`).
    """
    if not ids:
        return []
    if isinstance(ids[0], list):    # rows of windows (truncation: windows): every window is a sequence
        flat = cached_states(encoder, [w for row in ids for w in row], k, dtype, pad_id, batch_size, what,
                             progress, root, frozen, sep_id)
        ends = np.cumsum([len(row) for row in ids])
        return [flat[end - len(row):end] for row, end in zip(ids, ends)]   # each row: its windows' states
    root = root or cache_dir("states")
    folder = root / cache_key((frozen or frozen_digest(encoder, k, dtype)) + (f"/pair{sep_id}" if sep_id is not None else ""),
                              ids)[:32]
    if not (folder / "meta.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            if not (folder / "meta.json").is_file():
                _write(folder, encoder, ids, k, dtype, pad_id, batch_size, what, progress, sep_id)
    return _read(folder)


def _write(folder: Path, encoder: nn.Module, ids: list[torch.Tensor], k: int, dtype: str, pad_id: int,
           batch_size: int, what: str, progress, sep_id: int | None = None) -> None:
    lengths = lengths_of(ids)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    hidden = encoder.config.hidden_size
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".caching-") as tmp:
        out = np.lib.format.open_memmap(Path(tmp) / "states.npy", mode="w+",
                                        dtype=np.float16 if dtype == "float16" else np.float32,
                                        shape=(int(offsets[-1]), hidden))
        steps = Steps(f"caching layer-{k} states of {what}", len(ids), progress)
        for batch in eval_loader(ids, None, pad_id, batch_size):
            types = None if sep_id is None else segments(batch["input_ids"], batch["attention_mask"], sep_id)
            states = bottom(encoder, batch["input_ids"], batch["attention_mask"], k, dtype, types).numpy()  # (B, T, H)
            for row, state in zip(batch["index"].tolist(), states):
                out[offsets[row]:offsets[row + 1]] = state[:lengths[row]]
            steps.advance(len(batch["index"]))
        out.flush()
        del out
        np.save(Path(tmp) / "offsets.npy", offsets)
        (Path(tmp) / "meta.json").write_text(json.dumps({
            "rows": len(ids), "tokens": int(offsets[-1]), "hidden": hidden, "freeze_layers": k, "dtype": dtype,
            "seconds": round(time.perf_counter() - started, 1)}, indent=1))
        shutil.rmtree(folder, ignore_errors=True)    # a half folder of a killed run (no meta.json)
        os.replace(tmp, folder)
        os.makedirs(tmp)                            # for TemporaryDirectory's own clean-up


def _read(folder: Path) -> list[torch.Tensor]:
    """The rows of a cache folder as tensors viewing one memory map (nothing is loaded up front)."""
    states = np.load(folder / "states.npy", mmap_mode="c")   # copy-on-write: torch wants writable arrays
    offsets = np.load(folder / "offsets.npy")
    whole = torch.from_numpy(states)
    return [whole[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
