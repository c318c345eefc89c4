"""Family ``encoder``: a pretrained Hugging Face encoder fine-tuned with a task head.

``model.name`` is a hub id or a local folder; without internet a hub id resolves to an
installed offline copy (see :mod:`competition.models.pretrained`). The training itself
(pooling, head and loss per task, AdamW with layer-wise LR decay, warmup schedule, early
stopping on the competition metric, SWA, seeds, TTA) lives in
:mod:`competition.models.torch_common`, shared with the ``scratch`` family.
"""

from __future__ import annotations

from functools import partial

from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models.pretrained import check_tokenizer, loading, no_progress_bar, resolve_pretrained
from competition.models import extracting, tagging, torch_common
from competition.models.torch_common import Prepared, build_prepared, bundle  # noqa: F401
from competition.text import input_texts

# the names different architectures give their dropout probabilities
DROPOUT_ATTRS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                 "hidden_dropout", "attention_probs_dropout")


def load_encoder(source: str, dropout: float):
    """The pretrained encoder with ``model.dropout`` in place of the dropout it was trained with."""
    # torch stack (~3 s to import): only the torch families load it
    from transformers import AutoConfig, AutoModel

    with loading(source, source):
        config = AutoConfig.from_pretrained(source)
    for attr in DROPOUT_ATTRS:
        if isinstance(getattr(config, attr, None), float):
            setattr(config, attr, dropout)
    with loading(source, source), no_progress_bar():
        return AutoModel.from_pretrained(source, config=config)


def prepare(cfg: ExperimentConfig, data) -> Prepared:
    """Resolve the encoder (local folder, hub or installed copy) and tokenise every text once."""
    # torch stack (~3 s to import): only the torch families load it
    from transformers import AutoConfig, AutoTokenizer

    source = resolve_pretrained(cfg.model.name)
    with loading(cfg.model.name, source):
        positions = getattr(AutoConfig.from_pretrained(source), "max_position_embeddings", None)
        tokenizer = AutoTokenizer.from_pretrained(source)
    if positions is not None and cfg.model.max_length > positions:
        raise InputError(f"model.max_length {cfg.model.max_length}: {cfg.model.name} reads at most "
                         f"{positions} tokens; set model.max_length={positions} or less")
    new_encoder = partial(load_encoder, source, cfg.model.dropout)
    if data.spec.per_unit:       # the token head (a tag at every sub-token) or the span head (start, end)
        return _head(data.spec.task).prepare(cfg, data, tokenizer, new_encoder)
    check_tokenizer(cfg.model.name, source, tokenizer, input_texts(cfg, data.spec, data.train))
    return build_prepared(cfg, data, tokenizer, new_encoder)


def _head(task: str):
    """The module of the head a task trains: row-level, tokens (tagging) or span (extracting)."""
    return {"tokens": tagging, "span": extracting}.get(task, torch_common)


def fit_fold(prepared, fold: int, train_idx, valid_idx, out_dir, tracker, lesson=None):
    """The fit of the head the task trains (:func:`torch_common.fit_fold`, :func:`tagging.fit_fold`, ...)."""
    return _head(prepared.data.spec.task).fit_fold(prepared, fold, train_idx, valid_idx, out_dir, tracker,
                                                    lesson=lesson)


def predict(fold_dir, cfg, data, frame, cache: dict | None = None):
    """A saved fold on new rows, by the head its task trains."""
    return _head(data.spec.task).predict(fold_dir, cfg, data, frame, cache=cache)
