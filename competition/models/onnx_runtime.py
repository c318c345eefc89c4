"""ONNX Runtime for prediction: ``comp predict --precision onnx-int8``.

A saved fold model (token ids and mask in, probabilities out) is exported with ``torch.onnx.export``
(dynamic batch and length), its weights quantized to int8 (``onnxruntime.quantization.quantize_dynamic``),
and run by ``onnxruntime`` on the very batches the torch path predicts (``batches.eval_loader``:
sorted, each padded to its longest row). The graph is found next to the fold's weights when ``comp
export --precision onnx-int8`` put it in a bundle, else built once per machine in the comp cache
(keyed by the weights' hash) and reused.

Why only int8: measured side by side on 2 cores (BENCHMARKS.md, "ONNX Runtime against torch int8"),
ONNX Runtime's int8 graph predicted 1.30x as many rows/s as torch int8, closer to fp32; its fp32
graph (the same probabilities) was slower than torch fp32, so it is not offered. Rows of windows
(``truncation: windows``) and the embedding family are not exported: they predict with torch int8,
so a stack over them still predicts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from competition.models.batches import eval_loader
from competition.workspace import cache_dir

PRECISION = "onnx-int8"
GRAPH = "model.int8.onnx"


class _Probabilities(torch.nn.Module):
    """What the graph computes: a fold model's probabilities from token ids and their mask."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.probabilities(self.model(input_ids, attention_mask))


def export_fp32(model, path: Path) -> None:
    """``model``'s fp32 graph at ``path``: what is quantized (and, in the tests, checked against torch)."""
    ids = torch.randint(model.encoder.config.vocab_size, (2, 16))   # an example batch: shapes stay dynamic
    with warnings.catch_warnings():       # the exporter's notes on tracing
        warnings.simplefilter("ignore")
        torch.onnx.export(_Probabilities(model).eval(), (ids, torch.ones_like(ids)), str(path), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["p"], opset_version=17,
                          dynamic_axes={"input_ids": {0: "rows", 1: "tokens"},
                                        "attention_mask": {0: "rows", 1: "tokens"}, "p": {0: "rows"}})


def write(model, folder: Path) -> Path:
    """``folder/model.int8.onnx``: ``model``'s graph with int8 weights, written whole."""
    # onnxruntime (~0.5 s): only for this precision
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".onnx-") as tmp:
        fp32, int8 = Path(tmp) / "model.onnx", Path(tmp) / GRAPH
        export_fp32(model, fp32)
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)      # its advice to pre-process is for image models' static shapes
        try:
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        os.replace(int8, folder / GRAPH)
    return folder / GRAPH


def exports(cfg, precision: str) -> bool:
    """Whether a run trained with ``cfg`` predicts through ONNX Runtime at ``precision``: onnx-int8, but
    not rows of windows (they predict with torch int8)."""
    return precision == PRECISION and cfg.model.truncation != "windows"


def session(model, seed_dir: Path, weights: Path, cfg):
    """An ONNX Runtime session of ``model`` (the fold's seed model saved in ``weights``, trained with
    ``cfg``): the graph bundled in ``seed_dir``, or the one cached for these weights (built the first
    time)."""
    # onnxruntime (~0.5 s): only for this precision
    import onnxruntime as ort

    path = Path(seed_dir) / GRAPH
    if not path.is_file():
        folder = cache_dir("onnx") / hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:32]
        path = folder / GRAPH
        if not path.is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(folder) + ".lock"):
                if not path.is_file():
                    write(model, folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = cfg.train.threads or torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict_ids(runner, ids: list, pad_id: int, batch_size: int, n_out: int) -> np.ndarray:
    """(n, k) probabilities of rows of token ids, batched as torch batches them, in input order."""
    out = np.empty((len(ids), n_out), dtype=np.float32)
    for batch in eval_loader(ids, None, pad_id, batch_size):
        out[batch["index"].numpy()] = runner.run(None, {"input_ids": batch["input_ids"].numpy(),
                                                        "attention_mask": batch["attention_mask"].numpy()})[0]
    return out
