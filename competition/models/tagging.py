"""The token head of the encoder family (``task: tokens``): a tag distribution at every sub-token,
read back as the token task's per-unit prediction (:mod:`competition.tokens`).

A row is read as the model sees it: tokenised rows as their tokens joined by one space, character
rows as their text; the fast tokenizer's offset mapping ties each sub-token to a unit
(:func:`competition.tokens.subtoken_units`). A row longer than ``model.max_length`` is read as
windows of that many ids every ``model.stride`` sub-tokens (half a window by default), each window a
training example of its own; at prediction a sub-token's probabilities are the mean over the windows
that hold it, so nothing is cut off. ``model.label_subtokens``: ``first`` teaches a unit's tag at its
first sub-token and reads the unit back from it; ``all`` teaches every sub-token (a B continuing as
I) and reads back their mean. Character rows teach each sub-token its first character's tag and are
read back through :func:`competition.tokens.spread_to_chars`.

Training is :class:`~competition.models.textmodel.TextModel` with its head on every token (AdamW,
layer-wise LR decay, warmup schedule, precision, accumulation, SWA, seeds as for rows), for
``train.epochs`` epochs, keeping the last weights (``train.select: last``): the decoder's setting,
chosen on the other folds' OOF, is the only choice made by validation. A fold folder holds what
the row-level encoder's does (tokenizer, encoder config, one ``seed<k>/model.safetensors`` per seed).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch

from competition import align
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models import PRECISION, PROGRESS, FoldResult, int8
from competition.models.batches import eval_loader, train_loader, window_starts
from competition.models.callbacks import WeightAverage
from competition.models.torch_common import (WEIGHTS, _autocast, _quiet_lightning, load_model, make_trainer,
                                             new_model, precision_of, save_model)
from competition.predictions import mean, rows as ragged


@dataclass
class Encoded:
    """Rows of a frame as windows of ids, and how their sub-tokens map back to units."""

    windows: list[torch.Tensor]        # ids of each window, special tokens included
    owner: np.ndarray                  # (windows,) the row of each window
    start: np.ndarray                  # (windows,) the row's sub-token the window's content starts at
    units: list[np.ndarray]            # per row: the unit of each content sub-token (-1: none)
    offsets: list[np.ndarray]          # per row: (sub-tokens, 2) character offsets
    n_units: list[int]
    labels: list[torch.Tensor] | None  # per window: a code per id, -100 where nothing is taught
    specials: tuple[int, int]          # special ids before and after each window's content
    chars: bool                        # the units are characters (read back by spread_to_chars)


@dataclass
class Prepared:
    cfg: ExperimentConfig
    data: Any                                   # competition.data.Dataset
    tokenizer: Any
    new_encoder: Callable[[], torch.nn.Module]
    train: Encoded
    test: Encoded | None
    n_out: int


def _specials(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids a model puts before and after a sequence (BERT: [CLS], [SEP]; RoBERTa: <s>, </s>):
    those around an empty text, as :func:`competition.models.batches.windows` reads them."""
    specials = tokenizer("")["input_ids"]
    lead = 1 if specials and specials[0] in (tokenizer.cls_token_id, tokenizer.bos_token_id) else 0
    return specials[:lead], specials[lead:]


def whole_rows(tokenizer, texts: list[str]):
    """Every text's sub-tokens and their character offsets, no special tokens, none cut off (windows cut
    them later), without the tokenizer's warning about sequences over its length."""
    limit = tokenizer.model_max_length
    tokenizer.model_max_length = 1 << 30
    try:
        return tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    finally:
        tokenizer.model_max_length = limit


def encode(cfg: ExperimentConfig, spec, tokenizer, frame, codes=None) -> Encoded:
    """Every row of ``frame`` as windows (labelled from ``codes``, the rows' unit tag codes, when given)."""
    m = cfg.model
    prefix, suffix = _specials(tokenizer)
    room = m.max_length - len(prefix) - len(suffix)
    stride = m.stride or max(room // 2, 1)
    if stride > room:
        raise InputError(f"model.stride {stride}: a window holds {room} sub-tokens (model.max_length {m.max_length} "
                         f"less {len(prefix) + len(suffix)} special tokens); set model.stride={room // 2}")
    chars = spec.tokens.unit == "char"
    column = spec.text[0]
    texts, spans = [], []
    for value in frame[column]:
        text, unit_spans = (value, None) if chars else align.join_tokens(list(value))
        texts.append(text)
        spans.append(unit_spans)
    enc = whole_rows(tokenizer, texts)
    windows, owner, start, units, offsets, n_units, labels = [], [], [], [], [], [], [] if codes is not None else None
    for r, text in enumerate(texts):
        ids, offs = enc["input_ids"][r], np.asarray(enc["offset_mapping"][r], dtype=np.int64).reshape(-1, 2)
        # character rows: the sub-tokens are the units the model predicts (spread to characters later)
        u = align.subtoken_units(offs, offs if chars else spans[r])
        if chars:
            u = np.where(offs[:, 1] > offs[:, 0], np.arange(len(offs)), -1)
        units.append(u), offsets.append(offs), n_units.append(len(text) if chars else len(spans[r]))
        if codes is not None:
            unit_codes = codes[r] if not chars else np.array([codes[r][s] if e > s else 0 for s, e in offs])
            taught = align.subtoken_labels(u, unit_codes, label_all=m.label_subtokens == "all")
        for s in window_starts(len(ids), room, stride):
            windows.append(torch.tensor(prefix + ids[s:s + room] + suffix, dtype=torch.long))
            owner.append(r), start.append(s)
            if codes is not None:
                labels.append(torch.tensor([-100] * len(prefix) + taught[s:s + room].tolist() + [-100] * len(suffix),
                                           dtype=torch.long))
    return Encoded(windows, np.array(owner, dtype=np.int64), np.array(start, dtype=np.int64), units, offsets,
                   n_units, labels, (len(prefix), len(suffix)), chars)


def check_config(cfg: ExperimentConfig, task: str) -> None:
    """What a per-unit head refuses: validation-chosen weights, TTA, FGM; sets ``train.threads``."""
    t = cfg.train
    if t.select != "last" or t.patience is not None:
        raise InputError(f"task {task} trains for train.epochs and keeps the last weights (the decoder is what "
                         "validation chooses): set train.select=last and train.patience=null")
    if t.tta or t.fgm:
        raise InputError(f"task {task}: train.tta and train.fgm are for row-level tasks; unset them")
    if t.threads:
        torch.set_num_threads(t.threads)


def prepare(cfg: ExperimentConfig, data, tokenizer, new_encoder) -> Prepared:
    """Tokenise every train and test row once (offsets, windows, labels)."""
    check_config(cfg, "tokens")
    train = encode(cfg, data.spec, tokenizer, data.train, data.y)
    test = encode(cfg, data.spec, tokenizer, data.test) if data.test is not None else None
    return Prepared(cfg, data, tokenizer, new_encoder, train, test, len(data.labels))


class _Progress(pl.Callback):
    """A line per epoch: seed, epoch, mean training loss, seconds so far and left."""

    def __init__(self, seed: int, emit):
        self.seed, self.emit, self.started, self.losses = seed, emit, time.perf_counter(), []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs))

    def on_train_epoch_end(self, trainer, module):
        done, total = trainer.current_epoch + 1, trainer.max_epochs
        elapsed = time.perf_counter() - self.started
        if self.emit is not None:
            self.emit(f"    seed {self.seed} epoch {done}/{total}: train loss {np.mean(self.losses):.4f} · "
                      f"{elapsed:.0f}s, ~{elapsed / done * (total - done):.0f}s left")
        self.losses = []


def fit_fold(prepared: Prepared, fold: int, train_idx, valid_idx, out_dir, tracker, lesson=None,
             read: Callable | None = None) -> FoldResult:
    """One model per seed on the windows of the ``train_idx`` rows; predict the fold's rows and the test rows
    (``read``: how the windows' outputs become each row's prediction; the token head's by default)."""
    read = read or predict_rows
    if lesson is not None:
        raise InputError(f"task {prepared.data.spec.task}: pseudo-labels and distillation are for row-level "
                         "tasks; unset pseudo / distill")
    cfg, t = prepared.cfg, prepared.cfg.train
    out_dir = Path(out_dir)
    prepared.tokenizer.save_pretrained(out_dir / "tokenizer")
    pad_id = prepared.tokenizer.pad_token_id or 0
    enc = prepared.train
    chosen = np.flatnonzero(np.isin(enc.owner, np.asarray(train_idx)))
    oof, test, seconds = [], [], 0.0
    for seed in t.seeds:
        pl.seed_everything(seed, workers=True, verbose=False)
        model = new_model(prepared, prepared.new_encoder())
        loader = train_loader([enc.windows[w] for w in chosen], [enc.labels[w] for w in chosen], pad_id,
                              t.batch_size, seed, t.bucket)
        swa = WeightAverage(t.swa_start, t.swa_snapshots, t.swa_lr) if t.swa else None
        callbacks = [_Progress(seed, PROGRESS.get()), *([swa] if swa else [])]
        started = time.perf_counter()
        with _quiet_lightning(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*val_dataloader.*")    # no validation: by design
            trainer = make_trainer(cfg, callbacks)
            try:
                trainer.fit(model, loader)
            except SystemExit:      # Lightning turns Ctrl-C into sys.exit(1)
                if trainer.interrupted:
                    raise KeyboardInterrupt from None
                raise
        seconds += time.perf_counter() - started
        if swa is not None:
            model.load_state_dict(swa.averaged_state(model.state_dict()))
        model.encoder.config.save_pretrained(out_dir / "encoder")
        save_model(model, out_dir / f"seed{seed}", cfg, t.epochs - 1)
        oof.append(read(model, enc, np.asarray(valid_idx), cfg, pad_id))
        if prepared.test is not None:
            test.append(read(model, prepared.test, np.arange(len(prepared.test.offsets)), cfg, pad_id))
        model.cpu()
    return FoldResult(oof=mean(oof), test=mean(test) if test else None, best_epoch=t.epochs - 1,
                      extra={"seeds": list(t.seeds), "selected_on": {}, "train_seconds": round(seconds, 2),
                             "precision": precision_of(t.precision),
                             "windows": int(len(chosen))})


@torch.inference_mode()
def predict_rows(model, enc: Encoded, rows: np.ndarray, cfg: ExperimentConfig, pad_id: int) -> np.ndarray:
    """Per-unit tag probabilities of ``rows`` of ``enc``: every window of theirs through the model,
    sub-tokens averaged over the windows holding them, then read back as units."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    k = model.hparams.n_out
    where = {int(r): i for i, r in enumerate(rows)}
    chosen = np.flatnonzero(np.isin(enc.owner, rows))
    sums = [np.zeros((len(enc.units[r]), k)) for r in rows]
    counts = [np.zeros(len(enc.units[r])) for r in rows]
    prefix, suffix = enc.specials
    with _autocast(cfg, device):
        for batch in eval_loader([enc.windows[w] for w in chosen], None, pad_id, cfg.train.eval_batch_size):
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))      # (B, T, k)
            probs = model.probabilities(logits).cpu().numpy()
            for b, position in enumerate(batch["index"].numpy()):
                w = chosen[position]
                i, s = where[int(enc.owner[w])], int(enc.start[w])
                n = len(enc.windows[w]) - prefix - suffix                 # the window's content sub-tokens
                sums[i][s:s + n] += probs[b, prefix:prefix + n]
                counts[i][s:s + n] += 1
    out = []
    how = "mean" if cfg.model.label_subtokens == "all" else "first"
    for i, r in enumerate(rows):
        seen = counts[i] > 0
        sub = np.zeros_like(sums[i])
        sub[seen] = sums[i][seen] / counts[i][seen, None]
        sub[~seen, 0] = 1.0
        if enc.chars:
            valid = enc.units[r] >= 0
            out.append(align.spread_to_chars(sub[valid], enc.offsets[r][valid], enc.n_units[r]))
        else:
            out.append(align.to_units(sub, enc.units[r], enc.n_units[r], how=how))
    return ragged(out)


def predict(fold_dir, cfg: ExperimentConfig | None, data, frame, cache: dict | None = None,
            encoder: Callable | None = None, read: Callable | None = None) -> np.ndarray:
    """A saved fold's seed models on new rows, averaged (``encoder``, ``read``: how rows become windows
    and windows predictions; the token head's by default)."""
    encoder, read = encoder or encode, read or predict_rows
    # transformers (~3 s to import): only predicting loads the tokenizer class
    from transformers import AutoTokenizer

    fold_dir = Path(fold_dir)
    seed_dirs = sorted(p for p in fold_dir.glob("seed*") if (p / WEIGHTS).is_file())
    if not seed_dirs:
        raise InputError(f"{fold_dir}: no saved model (seed*/{WEIGHTS}); train this fold first")
    tokenizer = AutoTokenizer.from_pretrained(fold_dir / "tokenizer")
    precision = PRECISION.get()
    if precision == "onnx-int8":
        raise InputError(f"--precision onnx-int8 exports row-level heads; a {data.spec.task} run predicts in fp32, "
                         "bf16 or int8")
    preds, enc = [], None
    for seed_dir in seed_dirs:
        model, saved = load_model(fold_dir, seed_dir)
        if precision == "int8":
            model.encoder = int8(model.encoder)
        cfg = cfg or ExperimentConfig.model_validate(saved)
        enc = enc or encoder(cfg, data.spec, tokenizer, frame)
        preds.append(read(model, enc, np.arange(len(enc.offsets)), cfg, tokenizer.pad_token_id or 0))
    return mean(preds)
