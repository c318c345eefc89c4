"""Family ``scratch``: a randomly initialised BERT encoder, to measure what pretraining buys.

The model is a ``BertModel`` of ``model.d_model`` hidden units, ``model.heads`` attention
heads, ``model.layers`` layers and a feed-forward of ``model.ff`` (4 * d_model by default).
Its WordPiece vocabulary (``model.vocab_size`` at most) is trained with ``tokenizers`` on
the run's train texts (no labels involved) and saved with every fold. Everything else --
head, loss, optimiser, early stopping, TTA, saving -- is the ``encoder`` family's code in
:mod:`competition.models.torch_common`.
"""

from __future__ import annotations

from functools import partial

from competition.config import ExperimentConfig
from competition.models import input_texts
from competition.models.torch_common import Prepared, build_prepared, fit_fold, predict  # noqa: F401

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: list[str], vocab_size: int, lowercase: bool = True):
    """A BERT-style WordPiece tokenizer (``[CLS] text [SEP]``) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def bert_config(vocab_size: int, *, d_model: int, heads: int, layers: int, ff: int | None, dropout: float,
                max_length: int, pad_token_id: int = 0):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=ff or 4 * d_model,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                      max_position_embeddings=max_length, pad_token_id=pad_token_id)


def random_bert(config):
    """A freshly initialised encoder (the seed is set just before this is called)."""
    from transformers import BertModel

    return BertModel(config, add_pooling_layer=False)


def prepare(cfg: ExperimentConfig, data) -> Prepared:
    """Train the WordPiece vocabulary on the train texts, then tokenise every text once."""
    m = cfg.model
    tokenizer = train_wordpiece(input_texts(cfg, data.spec, data.train), m.vocab_size)
    config = bert_config(len(tokenizer), d_model=m.d_model, heads=m.heads, layers=m.layers, ff=m.ff,
                         dropout=m.dropout, max_length=m.max_length, pad_token_id=tokenizer.pad_token_id)
    return build_prepared(cfg, data, tokenizer, partial(random_bert, config))
