"""Model families: each family's settings and where its code lives, registered once (:func:`register`).

A family is a :class:`FamilyConfig` subclass (the ``model:`` block of an experiment when
``model.family`` names it; its ``family: Literal["<name>"]`` tag) and the code that trains it (a
module satisfying :class:`competition.models.ModelFamily`, imported on first use, so loading a
config never imports torch). The valid ``model.family`` values, the union ``model:`` validates
against (:mod:`competition.config`) and ``competition.models.family`` all read this registry; the
built-in families' settings sit here together, the light half of each family (its code is under
``competition/models/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from competition.errors import InputError


class StrictModel(BaseModel):
    """Settings: frozen, unknown keys refused (every block of an experiment config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FamilyConfig(StrictModel):
    """Base of a family's settings (the ``model:`` block): frozen, unknown keys refused. A subclass
    declares ``family: Literal["<name>"] = "<name>"``, the tag that selects it."""

    @property
    def early_stopped(self) -> bool:
        """A LightGBM model is in it: its rounds are chosen by early stopping on held-out training rows
        (:mod:`competition.models.estimators`), recorded as the fold's ``select: inner``."""
        return False

    @property
    def pretrained_layers(self) -> bool:
        """It fine-tunes pretrained layers, which ``train.freeze_layers`` may keep frozen."""
        return False


# -- model families ------------------------------------------------------------------------

class _LongText(FamilyConfig):
    """How a text over ``max_length`` tokens is read (the transformer families and the embedding family)."""

    max_length: int = Field(128, ge=8, description="tokens per text (longer texts truncated)")
    truncation: Literal["head", "tail", "head_tail", "windows"] = Field(
        "head", description="a text over max_length keeps its start, its end, or both: the first head_tokens "
                            "and as many of its last tokens as fit (Sun et al. 2019: 128 + 382 of 512); "
                            "windows: all of it, as windows of max_length tokens every stride tokens, pooled")
    head_tokens: int | None = Field(None, ge=1, description="truncation head_tail: tokens kept from the start "
                                                             "(None: a quarter of max_length)")
    stride: int | None = Field(None, ge=1, description="truncation windows: a window starts every stride tokens "
                                                        "(None: half of max_length, so windows overlap by half)")
    window_pool: Literal["mean", "max", "attention"] = Field(
        "mean", description="truncation windows: a document's vector is the mean, the maximum or a learned "
                            "attention over its windows' vectors; the head reads it (the loss is the document's)")

    @model_validator(mode="after")
    def _windows_fit(self):
        if self.truncation == "windows" and self.stride is not None and self.stride >= self.max_length:
            raise ValueError(f"model.stride {self.stride} must be smaller than the window (model.max_length "
                             f"{self.max_length}), or the windows skip text; e.g. model.stride={self.max_length // 2}")
        return self


class _TorchModel(_LongText):
    """Settings shared by the two transformer families."""

    window_loss: Literal["document", "window"] = Field(
        "document", description="truncation windows: the loss of the document's pooled prediction, or each "
                                "window trained alone on its document's label (its prediction: the mean of "
                                "its windows' logits)")
    pair_truncation: Literal["longest_first", "only_first", "only_second"] = Field(
        "longest_first", description="a text pair over max_length: cut the longer side token by token, or only "
                                     "the first / the second side")
    pooling: Literal["cls", "mean", "attention", "weighted_layers"] = Field(
        "mean", description="sentence vector: [CLS] token, mean of tokens, a learned attention over tokens, or "
                            "the mean of tokens of a learned mix of the last pool_layers hidden layers")
    pool_layers: int = Field(4, ge=2, description="pooling weighted_layers: how many of the last layers it mixes")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the head (and in the encoder)")
    msd: int = Field(1, ge=1, description="multi-sample dropout: training logits averaged over this many "
                                          "dropout masks of the sentence vector (1: plain dropout)")
    reinit_layers: int = Field(0, ge=0, description="re-initialise the top n transformer layers before training")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="classification: targets pulled towards "
                                                                   "uniform by this much (regression: ignored)")
    lr: float = Field(5e-5, gt=0, description="peak learning rate of the encoder")
    head_lr: float | None = Field(None, gt=0, description="learning rate of the head (None: lr)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on bias/LayerNorm)")
    layer_decay: float = Field(1.0, gt=0, le=1, description="layer-wise LR decay: layer l gets lr * decay**(L-l)")

    @model_validator(mode="after")
    def _window_loss_pools_by_mean(self):
        if self.window_loss == "window" and self.window_pool != "mean":
            raise ValueError(f"model.window_loss: window trains each window alone and averages their logits, so "
                             f"model.window_pool {self.window_pool} has nothing to pool; set model.window_pool=mean "
                             "or model.window_loss=document")
        return self


class EncoderModel(_TorchModel):
    """A pretrained Hugging Face encoder (AutoModel) fine-tuned with a task head."""

    family: Literal["encoder"] = "encoder"
    name: str = Field("sentence-transformers/all-MiniLM-L6-v2", description="hub id or local folder")
    label_subtokens: Literal["first", "all"] = Field(
        "first", description="task tokens: teach a unit's tag at its first sub-token (its prediction is that "
                             "sub-token's), or at all of them (B continuing as I; its prediction is their mean)")

    @property
    def pretrained_layers(self) -> bool:
        return True


class ScratchModel(_TorchModel):
    """A randomly initialised transformer encoder: the no-pretraining baseline."""

    family: Literal["scratch"] = "scratch"
    d_model: int = Field(128, ge=8, description="hidden size")
    heads: int = Field(4, ge=1, description="attention heads")
    layers: int = Field(2, ge=1, description="transformer layers")
    ff: int | None = Field(None, ge=8, description="feed-forward size (None: 4 * d_model)")
    vocab_size: int = Field(8000, ge=100, description="BPE vocabulary trained on the run's texts")
    lr: float = Field(5e-4, gt=0, description="peak learning rate")

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.d_model % self.heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.heads ({self.heads})")
        return self


class TfidfModel(FamilyConfig):
    """TF-IDF of word and char n-grams with a linear model or LightGBM."""

    family: Literal["tfidf"] = "tfidf"
    word_ngrams: tuple[int, int] | None = Field((1, 2), description="word n-gram range (None: no word features)")
    char_ngrams: tuple[int, int] | None = Field((2, 5), description="char_wb n-gram range (None: none)")
    max_features: int | None = Field(200_000, ge=1, description="vocabulary cap per analyzer")
    min_df: int = Field(2, ge=1, description="ignore terms in fewer documents")
    sublinear_tf: bool = True
    estimator: Literal["logistic", "ridge", "lgbm"] = Field("logistic", description="model on the TF-IDF matrix")
    C: float = Field(4.0, gt=0, description="inverse regularisation of logistic regression")
    alpha: float = Field(1.0, gt=0, description="ridge regularisation")
    lgbm: dict[str, Any] = Field(default_factory=dict, description="LightGBM parameters (estimator lgbm)")

    @property
    def early_stopped(self) -> bool:
        return self.estimator == "lgbm"


class LgbmModel(FamilyConfig):
    """LightGBM on tabular feature columns (the spec's ``features``)."""

    family: Literal["lgbm"] = "lgbm"
    features: list[str] | None = Field(None, description="columns to use (None: the spec's features)")
    params: dict[str, Any] = Field(default_factory=dict, description="LightGBM parameters")
    num_boost_round: int = Field(2000, ge=1, description="maximum boosting rounds")
    early_stopping_rounds: int = Field(100, ge=1, description="stop when the inner held-out rows stop improving")
    inner_valid: float = Field(0.1, gt=0, lt=0.5, description="share of the fold's training rows held out "
                                                                "for early stopping (never the OOF rows)")

    @property
    def early_stopped(self) -> bool:
        return True


class EmbedModel(_LongText):
    """Frozen pretrained-encoder embeddings with a linear or GBDT head."""

    family: Literal["embed"] = "embed"
    name: str = Field("sentence-transformers/all-MiniLM-L6-v2", description="hub id or local folder")
    window_pool: Literal["mean", "max"] = Field(
        "mean", description="truncation windows: a document's embedding is the mean or the maximum (per "
                            "dimension) of its windows' embeddings")
    pooling: Literal["cls", "mean"] = "mean"
    head: Literal["logistic", "ridge", "lgbm"] = Field("logistic", description="model on the embeddings")
    C: Literal["auto"] | PositiveFloat = Field(
        "auto", description="head logistic: inverse L2 strength; auto: chosen per fold from 1e-4 .. 10 by "
                            "3-fold CV (log loss) of the fold's training rows")
    alpha: float = Field(1.0, gt=0)
    lgbm: dict[str, Any] = Field(default_factory=dict, description="LightGBM parameters (head lgbm)")
    batch_size: int = Field(64, ge=1, description="embedding batch size")

    @property
    def early_stopped(self) -> bool:
        return self.head == "lgbm"


class CrfModel(FamilyConfig):
    """A linear-chain CRF over word features (``task: tokens``): fast, and it sees case."""

    family: Literal["crf"] = "crf"
    c1: float = Field(0.05, ge=0, description="L1 regularisation")
    c2: float = Field(0.05, ge=0, description="L2 regularisation")
    max_iterations: int = Field(150, ge=1, description="L-BFGS iterations")
    window: int = Field(2, ge=0, description="neighbouring tokens on each side whose features a token sees")
    affixes: int = Field(3, ge=0, description="prefixes and suffixes up to this many characters")


class WordsModel(FamilyConfig):
    """A learned per-word span baseline (``task: span``): LightGBM on each word's answer rates, position
    and neighbours; about a minute a fold."""

    family: Literal["words"] = "words"
    n_estimators: int = Field(300, ge=1, description="boosting rounds of each of the start and end models")
    learning_rate: float = Field(0.05, gt=0, description="LightGBM learning rate")
    num_leaves: int = Field(31, ge=2, description="LightGBM leaves per tree")
    window: int = Field(2, ge=0, description="neighbouring words on each side whose rates a word sees")
    smoothing: float = Field(5.0, ge=0, description="pseudo-counts shrinking a word's rates towards its condition's")


# -- the family registry ------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    """A registered model family."""

    name: str                      # the ``model.family`` value: the config's ``family`` literal
    config: type[FamilyConfig]     # validates the ``model:`` block of this family
    implementation: Any            # a module's import path (imported on first use), or an object with
                                   # prepare / fit_fold / predict (competition.models.ModelFamily)
    torch: bool = False            # trains a torch module: train.select, token caches, tune's callbacks
    precision: bool = False        # predicts in `comp predict --precision` (an encoder computes in it)


_FAMILIES: dict[str, Family] = {}


def register(config: type[FamilyConfig], implementation: Any, *, torch: bool = False,
             precision: bool | None = None) -> Family:
    """Add a model family: ``model: {family: <name>, ...}`` then validates with ``config`` (whose
    ``family: Literal["<name>"] = "<name>"`` names it) and ``comp train`` / ``comp predict`` run
    ``implementation``: a module's import path (imported when a run first needs it, so loading a
    config never imports torch) or a module / object with ``prepare``, ``fit_fold`` and ``predict``.
    ``torch``: the family trains a torch module with the ``train:`` optimiser settings. ``precision``: its
    encoder predicts in ``comp predict --precision`` (default: the torch families do).

    Raises:
        TypeError: ``config`` does not declare its ``family`` literal.
        ValueError: another config already registered that name.
    """
    field = config.model_fields.get("family")
    tags = get_args(field.annotation) if field is not None and get_origin(field.annotation) is Literal else ()
    if len(tags) != 1 or field.default != tags[0]:
        raise TypeError(f"{config.__name__}: a family's config declares its name as "
                        f"`family: Literal[\"<name>\"] = \"<name>\"` (the tag model.family selects it by)")
    name = tags[0]
    if name in _FAMILIES and _FAMILIES[name].config is not config:
        raise ValueError(f"model family {name!r} is registered already (config {_FAMILIES[name].config.__name__}); "
                         "unregister it first or choose another name")
    _FAMILIES[name] = Family(name, config, implementation, torch, torch if precision is None else precision)
    _refresh_union()
    return _FAMILIES[name]


def unregister(name: str) -> None:
    """Remove a family :func:`register` added (a plugin's, a test's)."""
    _FAMILIES.pop(name, None)
    _refresh_union()


def family_names() -> tuple[str, ...]:
    """The valid ``model.family`` values, in registration order."""
    return tuple(_FAMILIES)


def family_of(name: str) -> Family:
    """The registered family called ``name``; InputError listing the valid ones otherwise."""
    if name not in _FAMILIES:
        raise InputError(f"unknown model family {name!r}; valid: {', '.join(_FAMILIES)}. A family from outside "
                         "comp is registered by importing the module that calls competition.families.register")
    return _FAMILIES[name]


def torch_families() -> tuple[str, ...]:
    """The registered families that train torch modules."""
    return tuple(f.name for f in _FAMILIES.values() if f.torch)


def model_union() -> Any:
    """The type of ``model:``: one of the registered configs (picked by its ``family`` tag)."""
    return Union[tuple(f.config for f in _FAMILIES.values())]


_LISTENERS: list[Callable[[], None]] = []


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` after every later (un)registration (the experiment config rebuilds its
    ``model`` field over the new union)."""
    _LISTENERS.append(listener)


def _refresh_union() -> None:
    for listener in _LISTENERS:
        listener()


register(EncoderModel, "competition.models.encoder", torch=True)
register(ScratchModel, "competition.models.scratch", torch=True)
register(TfidfModel, "competition.models.tfidf")
register(LgbmModel, "competition.models.lgbm")
register(EmbedModel, "competition.models.embed", precision=True)
register(CrfModel, "competition.models.crf")
register(WordsModel, "competition.models.words")
