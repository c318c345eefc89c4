"""Model families. Each module (encoder, scratch, tfidf, lgbm, embed) is a :class:`ModelFamily`: the
same three verbs, so ``train`` and ``predict`` treat every family alike and stacking sees the same
artifacts from all of them. A family is registered once, with its settings, in
:func:`competition.families.register`; :func:`family` finds its code there.

Predictions are always 2-D float arrays, one column per ``spec.pred_columns``:
probabilities for classification (binary: P(positive)), values for regression.
"""

from __future__ import annotations

import importlib
import sys
import time
import warnings
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from competition.errors import InputError
from competition.families import family_of

# Where the torch families send a line per validation (epoch, score, elapsed, time left): the CLI
# and the demo set it, so a long fine-tune shows progress also when output is not a terminal.
PROGRESS: ContextVar = ContextVar("progress", default=None)

# The precision encoders predict in (``comp predict --precision``), not train in: fp32; bf16 (CPU
# autocast: matrix products in bfloat16, fast where the CPU has bf16 instructions); int8 (every
# linear layer of the encoder quantized on the fly). The torch families and the embedding family
# read it; the predict stage sets it around a replay, so a run's own test predictions stay fp32.
# onnx-int8: the fine-tuned encoders' fold models as int8 graphs run by ONNX Runtime (onnx_runtime.py).
PRECISIONS = ("fp32", "bf16", "int8", "onnx-int8")
PRECISION: ContextVar[str] = ContextVar("precision", default="fp32")


def check_precision(precision: str) -> None:
    """Refuse an unknown precision; warn where bf16 would be slow (a CPU without bf16 instructions)."""
    if precision not in PRECISIONS:
        raise InputError(f"{{precision}} {precision!r}: choose one of {', '.join(PRECISIONS)}", precision="precision")
    if precision == "onnx-int8":
        try:
            import onnxruntime  # noqa: F401   (~0.5 s; only to say at once that it is missing)
        except ImportError:
            raise InputError("{precision} onnx-int8 needs ONNX Runtime: pip install 'competition[onnx]' (or "
                             "onnxruntime and onnx), or choose fp32, bf16 or int8", precision="precision") from None
    if precision == "bf16":
        if not cpu_has_bf16():
            warnings.warn("this CPU has no bf16 instructions: --precision bf16 predicts slower than fp32 here; "
                          "int8 is the fast choice on it", UserWarning, stacklevel=3)


def cpu_has_bf16() -> bool:
    """Whether bf16 arithmetic is fast here: a GPU, or a CPU with bf16 instructions (AVX512-BF16, AMX:
    Intel since Cooper Lake, AMD since Zen 4). Elsewhere torch emulates it, slower than fp32."""
    # torch stack (~3 s to import): only the torch families load it
    import torch

    return torch.cuda.is_available() or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device_type: str = "cpu"):
    """The context an encoder's forward pass runs in at prediction: bf16 autocast when
    :data:`PRECISION` says so, else nothing. Outputs stay float32 after ``.float()``."""
    # torch stack (~3 s to import): only the torch families load it
    import torch

    if PRECISION.get() == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return torch.autocast(device_type, enabled=False)


def int8(module):
    """``module`` with every ``nn.Linear`` quantized to int8, weights once, activations per batch
    (torch dynamic quantization): 2-3x faster matrix products on a CPU, probabilities within ~1e-2."""
    # torch stack (~3 s to import): only the torch families load it
    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():     # torch announces the move of this API to torchao; it works here
        warnings.simplefilter("ignore")
        return quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)


class Steps:
    """Progress of a long pass over rows (embedding, caching frozen states): one line per step, at most
    one every ``every`` seconds, and the last, each with rows/s and the time left.

    Lines go to ``progress`` (default: :data:`PROGRESS`, else stderr), so they show on a terminal and
    in a log file alike.

    >>> lines = []
    >>> steps = Steps("embedding train", 100, lines.append, every=0)
    >>> steps.advance(40); steps.advance(60)
    >>> [line.split(" · ")[0] for line in lines]
    ['    embedding train: 40/100 rows', '    embedding train: 100/100 rows']
    """

    def __init__(self, what: str, total: int, progress=None, every: float = 5.0):
        self.what, self.total, self.every = what, total, every
        self.emit = progress or PROGRESS.get() or (lambda line: print(line, file=sys.stderr, flush=True))
        self.done, self.started, self.last = 0, time.perf_counter(), float("-inf")

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.perf_counter()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        self.emit(f"    {self.what}: {self.done:,}/{self.total:,} rows · {rate:,.1f} rows/s · "
                  f"{elapsed:.0f}s, ~{left:.0f}s left")


@dataclass
class FoldResult:
    """What one fold produced."""

    oof: np.ndarray                      # (n_valid, k) predictions for the fold's own rows
    test: np.ndarray | None              # (n_test, k) predictions for the test set, or None
    best_epoch: int | None = None        # torch families: epoch of the chosen checkpoint
    history: list[dict[str, Any]] = field(default_factory=list)  # per validation: epoch, step, val/loss, val/score
    extra: dict[str, Any] = field(default_factory=dict)          # anything else worth recording


class ModelFamily(Protocol):
    """What ``train`` and ``predict`` call on a model family (a module, usually)."""

    def prepare(self, cfg, data) -> Any:
        """Work done once per run, not once per fold: tokenising every train and test text, building
        input texts, choosing feature columns. Returns what :meth:`fit_fold` takes."""

    def fit_fold(self, prepared, fold: int, train_idx: np.ndarray, valid_idx: np.ndarray, out_dir: Path,
                 tracker) -> FoldResult:
        """Fit on the ``train_idx`` rows, predict the ``valid_idx`` rows (OOF) and the test set, and save
        into ``out_dir`` everything needed to predict again later (weights or estimator, tokenizer,
        label order), without retraining. ``tracker``: a :mod:`competition.track` run, or None."""

    def predict(self, fold_dir: Path, cfg, data, frame) -> np.ndarray:
        """Reload a fold's saved model and predict a new frame (a hidden test set in a Kaggle code
        competition); ``data`` holds the spec only. The torch families also take ``cache=``, the
        tokenised frame shared by the folds (``cfg.is_torch``)."""


def family(name: str) -> ModelFamily:
    """The code of the registered model family ``name`` (its module, imported on first use)."""
    implementation = family_of(name).implementation
    return importlib.import_module(implementation) if isinstance(implementation, str) else implementation
