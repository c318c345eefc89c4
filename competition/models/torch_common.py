"""What the two torch families share: tokenising once, fitting a fold, saving it, predicting.

``encoder`` and ``scratch`` differ only in where the tokenizer and the encoder come from;
each builds a :class:`Prepared` and hands it to :func:`fit_fold` / :func:`predict` here.
What a fold folder holds::

    fold0/
        tokenizer/               tokenizer.json, tokenizer_config.json, ... (save_pretrained)
        encoder/config.json      the encoder's architecture (AutoConfig), no download needed
        seed42/model.safetensors best weights of the seed's model (encoder + head); its metadata
                                 holds the module's hyperparameters and the resolved experiment config
        seed7/...                one folder per seed of ``train.seeds``; predictions are averaged
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch

from competition import artifacts
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models import PRECISION, PROGRESS, FoldResult, autocast, cpu_has_bf16, frozen, int8, onnx_runtime
from competition.models.batches import encode_frame, eval_loader, train_loader
from competition.models.callbacks import FoldMonitor, WeightAverage
from competition.models.estimators import inner_split
from competition.models.pretrained import resolve_pretrained  # noqa: F401 - re-exported for other families
from competition.models.textmodel import TextModel
from competition.text import pair_columns

WEIGHTS = "model.safetensors"

# Extra Lightning callbacks added to every fit run inside the context that sets them
# (comp tune: the per-epoch pruning callback). Set with EXTRA_CALLBACKS.set(...), reset after.
EXTRA_CALLBACKS: ContextVar[tuple[pl.Callback, ...]] = ContextVar("extra_callbacks", default=())


@dataclass
class Prepared:
    """One run's tokenised inputs: every train and test row, every text variant, done once."""

    cfg: ExperimentConfig
    data: Any                                 # competition.data.Dataset
    tokenizer: Any                            # a fast Hugging Face tokenizer
    new_encoder: Callable[[], torch.nn.Module]  # a fresh encoder: pretrained weights or random init
    train: dict[str, list[torch.Tensor]]      # variant ("plain", "no_keyword", "tail") -> ids per row
    test: dict[str, list[torch.Tensor]] | None
    targets: torch.Tensor                     # (n,) long for multiclass, else (n, k) float32
    n_out: int
    # train.freeze_layers: each row's cached states after the frozen layers, (length, H), per variant
    train_states: dict[str, list[torch.Tensor]] | None = None
    test_states: dict[str, list[torch.Tensor]] | None = None

    def inputs(self, split: str) -> dict[str, list[torch.Tensor]] | None:
        """What the model reads for each row of ``split`` (train / test), per text variant: the cached
        states of the frozen layers when there are some, else the token ids."""
        if split == "train":
            return self.train_states or self.train
        return self.test_states or self.test


# -- inputs --------------------------------------------------------------------------------

def targets_of(data) -> tuple[torch.Tensor, int]:
    """The loss's targets and the head's output count: (n,) codes for multiclass, else (n, k)."""
    task, y = data.spec.task, np.asarray(data.y)
    if task == "multiclass":
        return torch.tensor(y, dtype=torch.long), len(data.labels)
    y = y.reshape(len(y), -1)
    return torch.tensor(y, dtype=torch.float32), y.shape[1]


def build_prepared(cfg: ExperimentConfig, data, tokenizer, new_encoder) -> Prepared:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    train = encode_frame(cfg, data.spec, tokenizer, data.train)
    test = encode_frame(cfg, data.spec, tokenizer, data.test) if data.test is not None else None
    targets, n_out = targets_of(data)
    prepared = Prepared(cfg, data, tokenizer, new_encoder, train, test, targets, n_out)
    if cfg.train.freeze_layers:
        cache_frozen(prepared)
    return prepared


def cache_frozen(prepared: Prepared) -> None:
    """The states after the frozen layers of every train and test row and text variant: computed once
    (:func:`competition.models.frozen.cached_states`, shared by folds, epochs, seeds and runs with the
    same model, layers and texts), then read from disk."""
    cfg, t = prepared.cfg, prepared.cfg.train
    encoder = prepared.new_encoder()
    m = cfg.model
    frozen.check_depth(encoder, t.freeze_layers, m.pool_layers if m.pooling == "weighted_layers" else None,
                       m.reinit_layers)
    pad_id = prepared.tokenizer.pad_token_id or 0
    digest = frozen.frozen_digest(encoder, t.freeze_layers, t.freeze_dtype)   # once for every split and variant

    sep_id = segment_sep(prepared, encoder)

    def states(variants: dict[str, list[torch.Tensor]], split: str) -> dict[str, list[torch.Tensor]]:
        return {v: frozen.cached_states(encoder, ids, t.freeze_layers, t.freeze_dtype, pad_id, t.eval_batch_size,
                                        f"{split} ({v})" if v != "plain" else split, PROGRESS.get(),
                                        frozen=digest, sep_id=sep_id)
                for v, ids in variants.items()}

    prepared.train_states = states(prepared.train, "train")
    if prepared.test is not None:
        prepared.test_states = states(prepared.test, "test")


# -- training --------------------------------------------------------------------------------

def precision_of(precision: str) -> str:
    """Lightning's precision for ``train.precision``. ``auto``: 16-bit mixed precision on a GPU, full 32-bit
    on the CPU (bf16-mixed is faster on a CPU with bf16 instructions but cost 042 F1 beyond noise:
    BENCHMARKS.md, ``bench_finetune``). ``bf16-mixed`` on a CPU without bf16 instructions trains in 32-bit,
    with a warning: torch would emulate bf16 there, slower than fp32."""
    if precision == "auto":
        return "16-mixed" if torch.cuda.is_available() else "32"
    if precision == "bf16-mixed" and not cpu_has_bf16():
        warnings.warn("train.precision bf16-mixed: this CPU has no bf16 instructions (AVX512-BF16 or AMX), where "
                      "bf16 is emulated and slower than fp32: training in fp32", UserWarning, stacklevel=2)
        return "32"
    return precision


@contextmanager
def _quiet_lightning():
    """Lightning's banner lines ("GPU available", tips) and its 'few workers' hint repeat per
    fold and seed; pre-tokenised tensors need no workers."""
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own deprecation
            yield
    finally:
        logger.setLevel(level)


class ClipNorm(pl.Callback):
    """Gradient clipping by norm before each optimizer step, done here under bf16-mixed: Lightning refuses to
    clip with a fused optimizer under any mixed precision (a 16-bit gradient scaler would need unscaling
    first), but bf16 has no scaler, and the fused AdamW is what makes bf16 pay on a CPU (a MiniLM step 1.75x
    fp32's with it, 1.3x with the foreach AdamW Lightning's clipping needs)."""

    def __init__(self, max_norm: float):
        self.max_norm = max_norm

    def on_before_optimizer_step(self, trainer, module, optimizer):
        torch.nn.utils.clip_grad_norm_(module.parameters(), self.max_norm)


def make_trainer(cfg: ExperimentConfig, callbacks: list[pl.Callback]) -> pl.Trainer:
    """``train.devices`` x ``num_nodes`` devices (one by default); tracking goes through the fold's Tracker (no Lightning logger), best weights
    stay in memory (no checkpoint files). With ``val_per_epoch`` > 1 Lightning validates every
    ``int(batches / val_per_epoch)`` batches, so when the batch count is not divisible the last
    validation of an epoch comes a few batches before its end."""
    t = cfg.train
    spread = t.devices > 1 or t.num_nodes > 1
    precision = precision_of(t.precision)
    own_clip = precision == "bf16-mixed" and bool(t.grad_clip)   # see ClipNorm
    return pl.Trainer(
        max_epochs=t.epochs, accelerator="auto", devices=t.devices, num_nodes=t.num_nodes,
        strategy=t.strategy, precision=precision,
        accumulate_grad_batches=t.accumulate, gradient_clip_val=None if own_clip else t.grad_clip,
        # across devices each would validate its own share: train.select=last, no validation
        limit_val_batches=0 if spread else None,
        use_distributed_sampler=False,   # the bucket sampler shards its own batches across processes
        val_check_interval=1.0 / t.val_per_epoch, num_sanity_val_steps=0,
        callbacks=[*callbacks, ClipNorm(t.grad_clip)] if own_clip else callbacks,
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=sys.stderr.isatty(),
    )


def segment_sep(prepared: Prepared, encoder: torch.nn.Module) -> int | None:
    """The separator token whose first occurrence starts a pair's second segment, when the experiment
    reads text pairs and the encoder has segment (token type) embeddings; else None (no segment ids)."""
    spec = prepared.data.spec
    if pair_columns(prepared.cfg, spec) is None and not (spec.task == "span" and spec.span.condition):
        return None
    return prepared.tokenizer.sep_token_id if getattr(encoder.config, "type_vocab_size", 0) > 1 else None


def new_model(prepared: Prepared, encoder: torch.nn.Module) -> TextModel:
    m = prepared.cfg.model
    return TextModel(encoder, prepared.data.spec.task, prepared.n_out, pooling=m.pooling, dropout=m.dropout,
                     lr=m.lr, head_lr=m.head_lr, weight_decay=m.weight_decay, layer_decay=m.layer_decay,
                     warmup=prepared.cfg.train.warmup, schedule=prepared.cfg.train.schedule,
                     pool_layers=m.pool_layers, msd=m.msd, reinit_layers=m.reinit_layers,
                     label_smoothing=m.label_smoothing, freeze_layers=prepared.cfg.train.freeze_layers,
                     freeze_dtype=prepared.cfg.train.freeze_dtype, sep_id=segment_sep(prepared, encoder),
                     window_pool=m.window_pool if m.truncation == "windows" else None,
                     window_loss=m.window_loss, fgm=prepared.cfg.train.fgm, fgm_start=prepared.cfg.train.fgm_start)


def watched_rows(prepared: Prepared, seed: int, train_idx: np.ndarray,
                 valid_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit, rows each validation scores) under ``train.select``.

    ``fold`` and ``last`` validate on the fold itself (``last`` only draws the curve);
    ``inner`` holds out a seeded, stratified ``train.inner_valid`` share of the training rows
    (:func:`~competition.models.estimators.inner_split`, as LightGBM's early stopping does), so
    nothing the fold's model keeps depends on the fold's labels.
    """
    t = prepared.cfg.train
    if t.select != "inner":
        return train_idx, valid_idx

    y = np.asarray(prepared.data.y)[train_idx]
    fit_rows, stop_rows = inner_split(y, prepared.data.spec.task, t.inner_valid, seed)
    return train_idx[fit_rows], train_idx[stop_rows]


def fit_seed(prepared: Prepared, seed: int, train_idx: np.ndarray, valid_idx: np.ndarray, tracker,
             step_offset: int = 0, lesson=None) -> tuple[TextModel, FoldMonitor]:
    """Train one model; returns it holding the weights ``train.select`` keeps: the best
    validation's (``fold``, ``inner``), the final ones (``last``) or the SWA average. ``lesson``: a
    :class:`competition.teach.Lesson` (pseudo-labelled test rows, a teacher's predictions)."""
    cfg, t = prepared.cfg, prepared.cfg.train
    pad_id = prepared.tokenizer.pad_token_id or 0
    ids = prepared.inputs("train")["plain"]
    pl.seed_everything(seed, workers=True, verbose=False)   # head init, dropout, batch order
    model = new_model(prepared, prepared.new_encoder())
    train_idx, watch_idx = watched_rows(prepared, seed, np.asarray(train_idx), np.asarray(valid_idx))
    rows, targets = taught(prepared, train_idx, lesson) if lesson is not None else (
        [ids[i] for i in train_idx], prepared.targets[train_idx])
    train_dl = train_loader(rows, targets, pad_id, t.batch_size, seed, t.bucket)
    valid_dl = eval_loader([ids[i] for i in watch_idx], prepared.targets[watch_idx], pad_id, t.eval_batch_size)
    spec = prepared.data.spec
    keep_best = not t.swa and t.select != "last"
    monitor = FoldMonitor(spec.metric, spec.task, np.asarray(prepared.data.y)[watch_idx], tracker,
                          t.patience, keep_best=keep_best, seed=seed, step_offset=step_offset,
                          progress=PROGRESS.get(), rows="inner" if t.select == "inner" else "val")
    if lesson is not None:
        model.distill = (lesson.alpha, lesson.temperature)
    swa = WeightAverage(t.swa_start, t.swa_snapshots, t.swa_lr) if t.swa else None
    callbacks: list[pl.Callback] = [monitor, *EXTRA_CALLBACKS.get(), *([swa] if swa else [])]
    with _quiet_lightning():
        trainer = make_trainer(cfg, callbacks)
        try:
            trainer.fit(model, train_dl, valid_dl)
        except SystemExit:
            # Lightning turns Ctrl-C into sys.exit(1); callers (train, tune, the CLI) handle a
            # KeyboardInterrupt: finished folds are kept, the message says how to resume.
            if trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
    if monitor.best_state is not None:
        model.load_state_dict(monitor.best_state)
    if swa is not None:
        model.load_state_dict(swa.averaged_state(model.state_dict()))
        monitor.swa_steps = swa.taken
    if not keep_best:        # SWA or select: last: the epoch the weights come from is the final one
        monitor.best_epoch = trainer.current_epoch
    monitor.steps = trainer.global_step
    if t.devices > 1 or t.num_nodes > 1:   # ddp_spawn: the weights came back, the loop counters did not
        monitor.best_epoch, monitor.steps = t.epochs - 1, t.epochs * len(train_dl) // t.accumulate
    return model, monitor


def taught(prepared: Prepared, train_idx: np.ndarray, lesson) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """The training rows' token ids and targets with a lesson: probabilities as labels (one-hot for
    multiclass), a weight per row (1; ``pseudo.weight`` for the pseudo-labelled test rows, which follow
    the training rows) and, with a teacher, its predictions (a pseudo row's teacher is its pseudo label)."""
    ids = [prepared.inputs("train")["plain"][i] for i in train_idx]
    labels = prepared.targets[train_idx]
    if prepared.data.spec.task == "multiclass":
        labels = torch.nn.functional.one_hot(labels, prepared.n_out).float()
    weight = torch.ones(len(train_idx))
    teacher = None if lesson.teacher is None else torch.tensor(lesson.teacher[train_idx], dtype=torch.float32)
    if lesson.pseudo_targets is not None and len(lesson.pseudo_rows):
        ids += [prepared.inputs("test")["plain"][i] for i in lesson.pseudo_rows]
        pseudo = torch.tensor(lesson.pseudo_targets, dtype=torch.float32)
        labels = torch.cat([labels, pseudo])
        weight = torch.cat([weight, torch.full((len(pseudo),), float(lesson.pseudo_weight))])
        teacher = None if teacher is None else torch.cat([teacher, pseudo])
    targets = {"labels": labels, "weight": weight, **({"teacher": teacher} if teacher is not None else {})}
    return ids, targets


def fit_fold(prepared: Prepared, fold: int, train_idx, valid_idx, out_dir, tracker, lesson=None) -> FoldResult:
    """Fit one model per seed on ``train_idx``; predict ``valid_idx`` (OOF) and the test set.

    Predictions average the seeds and, with ``train.tta``, the text variants. ``extra``
    records ``selected_on``: ``{"best_epoch": [fold]}`` when some seed's kept weights were chosen
    among two or more validations of the fold itself (``train.select: fold``), else ``{}``.
    """
    cfg, t = prepared.cfg, prepared.cfg.train
    train_idx, valid_idx = np.asarray(train_idx), np.asarray(valid_idx)
    out_dir = Path(out_dir)
    prepared.tokenizer.save_pretrained(out_dir / "tokenizer")
    oof, test, history, best_epochs, steps, train_seconds, swa_steps = [], [], [], [], 0, 0.0, []
    chose = False     # did any seed keep weights chosen on the fold's own labels?
    for seed in t.seeds:
        model, monitor = fit_seed(prepared, seed, train_idx, valid_idx, tracker, step_offset=steps, lesson=lesson)
        chose = chose or (monitor.chose and t.select == "fold")
        steps += monitor.steps
        train_seconds += monitor.train_seconds
        history += monitor.history
        best_epochs.append(monitor.best_epoch)
        swa_steps.append(monitor.swa_steps)
        model.encoder.config.save_pretrained(out_dir / "encoder")
        save_model(model, out_dir / f"seed{seed}", cfg, monitor.best_epoch)
        valid_variants = {k: [v[i] for i in valid_idx] for k, v in prepared.inputs("train").items()}
        oof.append(predict_variants(model, valid_variants, cfg, prepared.tokenizer))
        if prepared.test is not None:
            test.append(predict_variants(model, prepared.inputs("test"), cfg, prepared.tokenizer))
        model.cpu()
    return FoldResult(
        oof=np.mean(oof, axis=0), test=np.mean(test, axis=0) if test else None,
        best_epoch=best_epochs[0], history=history,
        extra={"seeds": list(t.seeds), "best_epoch_per_seed": best_epochs, "precision": precision_of(t.precision),
               "selected_on": {"best_epoch": [int(fold)]} if chose else {},
               "train_seconds": round(train_seconds, 2),   # optimisation only: no validation, no inference
               **({"lesson": lesson.summary()} if lesson is not None else {}),
               **({"swa_steps_per_seed": swa_steps} if t.swa else {})},
    )


# -- saving and predicting -----------------------------------------------------------------

def save_model(model: TextModel, folder: Path, cfg: ExperimentConfig, best_epoch: int | None) -> None:
    """The weights with what is needed to rebuild the module (nanoGPT keeps its config inside the
    checkpoint the same way)."""
    # torch stack (~3 s to import): only the torch families load it
    from safetensors.torch import save_model as save_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"hparams": json.dumps(dict(model.hparams)), "config": json.dumps(cfg.to_dict()),
                "best_epoch": json.dumps(best_epoch)}
    save_safetensors(model.cpu(), str(folder / WEIGHTS), metadata=metadata)


def load_model(fold_dir: Path, seed_dir: Path) -> tuple[TextModel, dict]:
    """A saved seed model (on the CPU, eval mode) and the experiment config it was trained with."""
    # torch stack (~3 s to import): only the torch families load it
    from safetensors import safe_open
    from safetensors.torch import load_model as load_safetensors
    from transformers import AutoConfig, AutoModel

    with safe_open(str(seed_dir / WEIGHTS), framework="pt") as f:
        metadata = f.metadata()
    encoder = AutoModel.from_config(AutoConfig.from_pretrained(fold_dir / "encoder"))
    model = TextModel(encoder, **json.loads(metadata["hparams"]))
    load_safetensors(model, str(seed_dir / WEIGHTS))
    return model.eval(), json.loads(metadata["config"])


def bundle(cfg: ExperimentConfig, target: Path, precision: str = "fp32") -> None:
    """What ``comp export --precision onnx-int8`` adds to a run's copy: every seed model's ONNX graph
    beside its weights, so the bundle predicts without building it (:mod:`competition.models.onnx_runtime`)."""
    if not onnx_runtime.exports(cfg, precision):
        return
    for weights in sorted(Path(target).glob(f"fold*/seed*/{WEIGHTS}")):
        model, _ = load_model(weights.parent.parent, weights.parent)
        onnx_runtime.write(model, weights.parent)


def _autocast(cfg: ExperimentConfig, device: torch.device):
    precision = precision_of(cfg.train.precision)
    if device.type != "cuda" or precision not in ("16-mixed", "bf16-mixed"):
        return autocast(device.type)          # fp32, unless a prediction asked for bf16
    return torch.autocast("cuda", dtype=torch.float16 if precision == "16-mixed" else torch.bfloat16)


@torch.inference_mode()
def predict_ids(model: TextModel, ids: list[torch.Tensor], cfg: ExperimentConfig, pad_id: int) -> np.ndarray:
    """(n, k) predictions of rows of token ids (or of cached frozen states), batched longest first,
    returned in input order."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    out = np.empty((len(ids), model.hparams.n_out), dtype=np.float32)
    with _autocast(cfg, device):
        for batch in eval_loader(ids, None, pad_id, cfg.train.eval_batch_size):
            inputs = {k: batch[k].to(device) if k in batch else None for k in ("input_ids", "states", "windows")}
            logits = model(inputs["input_ids"], batch["attention_mask"].to(device), inputs["states"],
                           inputs["windows"])                                                     # (B, k)
            out[batch["index"].numpy()] = model.probabilities(logits.float()).cpu().numpy()
    return out


def predict_variants(model: TextModel, variants: dict[str, list[torch.Tensor]], cfg: ExperimentConfig,
                     tokenizer) -> np.ndarray:
    """The mean prediction over the text variants (just the plain text without TTA)."""
    pad_id = tokenizer.pad_token_id or 0
    return np.mean([predict_ids(model, ids, cfg, pad_id) for ids in variants.values()], axis=0)


def predict(fold_dir, cfg: ExperimentConfig | None, data, frame, cache: dict | None = None) -> np.ndarray:
    """Predict ``frame`` with a saved fold: every seed's model, every TTA variant, averaged.

    Needs no internet and no pretrained weights: the architecture comes from
    ``encoder/config.json``, the weights from the fold. ``cfg`` None uses the experiment
    config saved inside the checkpoint. ``cache`` (a dict the caller keeps for one frame)
    shares the token ids between folds whose tokenizer and text settings are the same, so a
    file is tokenised once per text variant, not once per fold.
    """
    # torch stack (~3 s to import): only the torch families load it
    from transformers import AutoTokenizer

    fold_dir = Path(fold_dir)
    seed_dirs = sorted(p for p in fold_dir.glob("seed*") if (p / WEIGHTS).is_file())
    if not seed_dirs:
        raise InputError(f"{fold_dir}: no saved model (seed*/{WEIGHTS}); train this fold first")
    tokenizer = AutoTokenizer.from_pretrained(fold_dir / "tokenizer")
    preds, variants = [], None
    precision = PRECISION.get()
    for seed_dir in seed_dirs:
        model, saved = load_model(fold_dir, seed_dir)
        cfg = cfg or ExperimentConfig.model_validate(saved)
        runner = None
        if onnx_runtime.exports(cfg, precision):
            runner = onnx_runtime.session(model, seed_dir, seed_dir / WEIGHTS, cfg)
        elif precision in ("int8", "onnx-int8"):
            model.encoder = int8(model.encoder)
        if variants is None:
            if cfg.train.threads:
                torch.set_num_threads(cfg.train.threads)
            key = (artifacts.file_hash(fold_dir / "tokenizer" / "tokenizer.json"), cfg.text.model_dump_json(),
                   cfg.model.max_length, cfg.model.truncation, cfg.model.pair_truncation, cfg.model.head_tokens,
                   cfg.model.stride, tuple(cfg.train.tta))
            cache = {} if cache is None else cache
            if key not in cache:
                cache[key] = encode_frame(cfg, data.spec, tokenizer, frame)
            variants = cache[key]
        if runner is not None:
            preds.append(np.mean([onnx_runtime.predict_ids(runner, ids, tokenizer.pad_token_id or 0,
                                                           cfg.train.eval_batch_size, model.hparams.n_out)
                                  for ids in variants.values()], axis=0))
        else:
            preds.append(predict_variants(model, variants, cfg, tokenizer))
    return np.mean(preds, axis=0)
