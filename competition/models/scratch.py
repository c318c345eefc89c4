"""Family ``scratch``: a randomly initialised BERT encoder, to measure what pretraining buys.

The model is a ``BertModel`` of ``model.d_model`` hidden units, ``model.heads`` attention
heads, ``model.layers`` layers and a feed-forward of ``model.ff`` (4 * d_model by default).
Its byte-level BPE vocabulary (``model.vocab_size`` at most; GPT-2's word splitting after
BERT's normaliser) is trained with ``tokenizers`` on the run's train texts (no labels
involved) and saved with every fold. Byte-level BPE marks word starts inside its alphabet, not
with a continuing-subword prefix, and that is what trains reproducibly: the library's WordPiece
trainer numbers its ``##`` pieces in hash-map order, which breaks ties between equally frequent
merges differently from run to run (huggingface/tokenizers#1794), so the same seed gave other
vocabularies and other scores. Everything else --
head, loss, optimiser, early stopping, TTA, saving -- is the ``encoder`` family's code in
:mod:`competition.models.torch_common`.
"""

from __future__ import annotations

from functools import partial

from competition.config import ExperimentConfig
from competition.models.torch_common import Prepared, build_prepared, bundle, fit_fold, predict  # noqa: F401
from competition.text import input_texts

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts: list[str], vocab_size: int, lowercase: bool = True):
    """A tokenizer (``[CLS] text [SEP]``, BERT's normaliser) whose byte-level BPE vocabulary is trained
    on ``texts``: the same texts give the same vocabulary every time, and decoding is lossless."""
    # torch stack (~3 s to import): only the torch families load it
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                                       show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def bert_config(vocab_size: int, *, d_model: int, heads: int, layers: int, ff: int | None, dropout: float,
                max_length: int, pad_token_id: int = 0):
    # torch stack (~3 s to import): only the torch families load it
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=ff or 4 * d_model,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                      max_position_embeddings=max_length, pad_token_id=pad_token_id)


def random_bert(config):
    """A freshly initialised encoder (the seed is set just before this is called)."""
    # torch stack (~3 s to import): only the torch families load it
    from transformers import BertModel

    return BertModel(config, add_pooling_layer=False)


def prepare(cfg: ExperimentConfig, data) -> Prepared:
    """Train the BPE vocabulary on the train texts, then tokenise every text once."""
    m = cfg.model
    tokenizer = train_tokenizer(input_texts(cfg, data.spec, data.train), m.vocab_size)
    config = bert_config(len(tokenizer), d_model=m.d_model, heads=m.heads, layers=m.layers, ff=m.ff,
                         dropout=m.dropout, max_length=m.max_length, pad_token_id=tokenizer.pad_token_id)
    return build_prepared(cfg, data, tokenizer, partial(random_bert, config))
