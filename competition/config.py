"""Experiment configs: ``base.yaml`` <- template <- ``042.yaml`` <- ``a.b=c`` overrides.

Layers merge in that order (OmegaConf), then validate into a frozen, typed
:class:`ExperimentConfig`. An unknown key or a wrong type is an error that lists
what is valid. ``042.yaml`` may say ``template: minilm`` to start from a packaged
template (``competition/templates/minilm.yaml``) instead of copying its YAML.

When a layer switches ``model.family`` (base says encoder, 043 says tfidf), the
model block restarts from that layer: keys of another family never leak across.

Model families are registered once, here (:func:`register`): the family's settings
(a :class:`FamilyConfig`, validated as the ``model:`` block when ``model.family`` names
it) and the code that trains it (a module satisfying
:class:`competition.models.ModelFamily`). The valid ``model.family`` values, the union
``model:`` validates against and ``competition.models.family`` all read that registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from competition.errors import InputError, explain

TEMPLATES_DIR = Path(__file__).parent / "templates"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FamilyConfig(_Strict):
    """Base of a family's settings (the ``model:`` block): frozen, unknown keys refused. A subclass
    declares ``family: Literal["<name>"] = "<name>"``, the tag that selects it."""

    @property
    def early_stopped(self) -> bool:
        """A LightGBM model is in it: its rounds are chosen by early stopping on held-out training rows
        (:mod:`competition.models.estimators`), recorded as the fold's ``select: inner``."""
        return False


# -- model families ------------------------------------------------------------------------

class _TorchModel(FamilyConfig):
    """Settings shared by the two transformer families."""

    max_length: int = Field(128, ge=8, description="tokens per text (longer texts truncated)")
    truncation: Literal["head", "tail"] = Field("head", description="keep the start or the end of long texts")
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


class EncoderModel(_TorchModel):
    """A pretrained Hugging Face encoder (AutoModel) fine-tuned with a task head."""

    family: Literal["encoder"] = "encoder"
    name: str = Field("sentence-transformers/all-MiniLM-L6-v2", description="hub id or local folder")


class ScratchModel(_TorchModel):
    """A randomly initialised transformer encoder: the no-pretraining baseline."""

    family: Literal["scratch"] = "scratch"
    d_model: int = Field(128, ge=8, description="hidden size")
    heads: int = Field(4, ge=1, description="attention heads")
    layers: int = Field(2, ge=1, description="transformer layers")
    ff: int | None = Field(None, ge=8, description="feed-forward size (None: 4 * d_model)")
    vocab_size: int = Field(8000, ge=100, description="BPE vocabulary trained on the run's texts")
    lr: float = Field(5e-4, gt=0, description="peak learning rate")


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


class EmbedModel(FamilyConfig):
    """Frozen pretrained-encoder embeddings with a linear or GBDT head."""

    family: Literal["embed"] = "embed"
    name: str = Field("sentence-transformers/all-MiniLM-L6-v2", description="hub id or local folder")
    max_length: int = Field(128, ge=8)
    pooling: Literal["cls", "mean"] = "mean"
    head: Literal["logistic", "ridge", "lgbm"] = Field("logistic", description="model on the embeddings")
    C: float = Field(1.0, gt=0)
    alpha: float = Field(1.0, gt=0)
    lgbm: dict[str, Any] = Field(default_factory=dict, description="LightGBM parameters (head lgbm)")
    batch_size: int = Field(64, ge=1, description="embedding batch size")

    @property
    def early_stopped(self) -> bool:
        return self.head == "lgbm"


# -- the family registry ------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    """A registered model family."""

    name: str                      # the ``model.family`` value: the config's ``family`` literal
    config: type[FamilyConfig]     # validates the ``model:`` block of this family
    implementation: Any            # a module's import path (imported on first use), or an object with
                                   # prepare / fit_fold / predict (competition.models.ModelFamily)
    torch: bool = False            # trains a torch module: train.select, token caches, tune's callbacks


_FAMILIES: dict[str, Family] = {}


def register(config: type[FamilyConfig], implementation: Any, *, torch: bool = False) -> Family:
    """Add a model family: ``model: {family: <name>, ...}`` then validates with ``config`` (whose
    ``family: Literal["<name>"] = "<name>"`` names it) and ``comp train`` / ``comp predict`` run
    ``implementation``: a module's import path (imported when a run first needs it, so loading a
    config never imports torch) or a module / object with ``prepare``, ``fit_fold`` and ``predict``.
    ``torch``: the family trains a torch module with the ``train:`` optimiser settings.

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
    _FAMILIES[name] = Family(name, config, implementation, torch)
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
                         "comp is registered by importing the module that calls competition.config.register")
    return _FAMILIES[name]


def torch_families() -> tuple[str, ...]:
    """The registered families that train torch modules."""
    return tuple(f.name for f in _FAMILIES.values() if f.torch)


def _model_union() -> Any:
    """The type of ``model:``: one of the registered configs (picked by its ``family`` tag)."""
    return Union[tuple(f.config for f in _FAMILIES.values())]


def _refresh_union() -> None:
    """(Un)registering a family once ExperimentConfig exists (after the built-in ones) rebuilds its
    ``model`` field over the new union; the field keeps its ``family`` discriminator."""
    if "ExperimentConfig" in globals():
        ExperimentConfig.model_fields["model"].annotation = _model_union()
        ExperimentConfig.model_rebuild(force=True)


register(EncoderModel, "competition.models.encoder", torch=True)
register(ScratchModel, "competition.models.scratch", torch=True)
register(TfidfModel, "competition.models.tfidf")
register(LgbmModel, "competition.models.lgbm")
register(EmbedModel, "competition.models.embed")
_ModelConfig = Annotated[_model_union(), Field(discriminator="family")]   # at import; see _refresh_union


# -- training --------------------------------------------------------------------------------

class TrainConfig(_Strict):
    """Optimisation settings of the torch families (classical models ignore most of them)."""

    epochs: int = Field(3, ge=1, description="passes over the training folds")
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    accumulate: int = Field(1, ge=1, description="gradient accumulation steps")
    grad_clip: float | None = Field(1.0, gt=0, description="clip gradient norm (None: off)")
    warmup: float = Field(0.1, ge=0, lt=1, description="fraction of steps with linear warmup")
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    patience: int | None = Field(None, ge=1, description="early stopping patience in validations (None: off); "
                                                          "validations on the rows train.select names")
    select: Literal["fold", "inner", "last"] = Field(
        "fold", description="which weights a fold keeps. fold: the best validation on the fold itself (its OOF is "
                            "then chosen on its own labels: optimistic; recorded as selected_on best_epoch); "
                            "inner: the best validation on an inner_valid share of the training folds, the fold "
                            "only predicted at the end; last: the final weights of `epochs` epochs, no early stopping")
    inner_valid: float = Field(0.1, gt=0, lt=0.5, description="select: inner: share of the fold's training rows "
                                                               "held out (stratified) to choose the epoch")
    val_per_epoch: int = Field(1, ge=1, description="validations per epoch")
    swa: bool = Field(False, description="stochastic weight averaging: the fold's model is the mean of "
                                         "swa_snapshots weights taken over the last part of training")
    swa_start: float = Field(0.5, ge=0, lt=1, description="SWA averages the optimizer steps after this fraction")
    swa_snapshots: int = Field(10, ge=1, description="SWA snapshots, evenly spaced; the last is the final step")
    swa_lr: float | None = Field(None, gt=0, description="constant learning rate while SWA averages "
                                                         "(None: the schedule goes on)")
    seeds: list[int] = Field(default_factory=lambda: [42], min_length=1,
                             description="one model per seed and fold, predictions averaged")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="auto: 16-mixed on a GPU, 32 on CPU")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    freeze_layers: int = Field(0, ge=0, description="freeze the embeddings and the bottom k encoder layers: their "
                                                     "output is computed once per text (cached on disk) and every "
                                                     "fold, epoch, seed and prediction runs only the top layers")
    freeze_dtype: Literal["float16", "float32"] = Field(
        "float16", description="freeze_layers: the frozen layers' output is stored in (and, in every path, "
                               "rounded to) this dtype")
    bucket: bool = Field(True, description="group training batches by text length")
    tta: list[Literal["none", "no_keyword", "tail"]] = Field(
        default_factory=list, description="extra text variants averaged at inference")
    threads: int | None = Field(None, ge=1, description="CPU threads of torch and LightGBM (None: their default)")
    limit_rows: int | None = Field(None, ge=10, description="train on a seeded subset (smoke runs)")
    devices: int = Field(1, ge=1, description="devices one model trains on: GPUs, or CPU processes (gloo) "
                                              "with strategy ddp_spawn")
    strategy: Literal["auto", "ddp_spawn", "ddp"] = Field(
        "auto", description="Lightning strategy across devices: ddp_spawn starts one process per device from "
                            "this one and hands the trained weights back; ddp runs the command again once per "
                            "device (or torchrun / srun start every rank): rank 0 alone predicts and writes")
    num_nodes: int = Field(1, ge=1, description="machines one model trains on (ddp_spawn on each node)")
    resources: dict[str, float] = Field(
        default_factory=dict, description="what one fold needs as a Ray task (comp train --ray), e.g. "
                                          "{num_gpus: 1, num_cpus: 4}; default one CPU")

    @model_validator(mode="after")
    def _selection_checks(self):
        if self.select == "last" and self.patience is not None:
            raise ValueError(f"train.patience={self.patience} stops early on validation scores, but "
                             "train.select=last keeps the final weights and looks at none: set train.patience=null, "
                             "or choose the epoch on held-out training rows with train.select=inner")
        if (self.devices > 1 or self.num_nodes > 1) and (self.select != "last" or self.swa or self.patience):
            raise ValueError(f"train.devices={self.devices}, num_nodes={self.num_nodes}: each device validates its "
                             "own share of the rows, so no epoch can be chosen (select fold/inner, patience) and "
                             "no snapshot averaged (swa) across them: set train.select=last, patience=null, swa=false")
        if (self.devices > 1 or self.num_nodes > 1) and self.strategy == "auto":
            raise ValueError(f"train.devices={self.devices}: name the strategy that spreads one model over them: "
                             "train.strategy=ddp_spawn (or ddp)")
        if self.select == "inner" and self.swa:
            raise ValueError("train.select=inner holds out training rows to choose an epoch, but with train.swa "
                             "the model is the average of the snapshots and no epoch is chosen: use "
                             "train.select=last with train.swa")
        return self


class TextConfig(_Strict):
    """How the model's input text is built from the spec's text columns."""

    template: str | None = Field(None, description="e.g. '{keyword} | {text}' (None: text columns joined by sep)")
    sep: str = Field(" | ", description="joins text columns when there is no template")
    clean: list[Literal["ftfy", "html", "urls", "users"]] = Field(
        default_factory=list, description="repairs applied to every input text, in this order whatever the list's: "
                                          "ftfy (mojibake), html (entities such as &amp;), urls (-> 'http'), "
                                          "users (@name -> '@user')")


class DataConfig(_Strict):
    """What training makes of the competition's rows (validation rows are never changed)."""

    conflicts: Literal["keep", "majority", "drop"] = Field(
        "keep", description="a text repeated among a fold's training rows with different targets: keep the "
                            "copies, keep only those with the majority target (a tie drops all), or drop them all")


def _as_list(value):
    """One run name or a list of them; a number is refused with the fix (YAML reads 042 as 34)."""
    value = [value] if not isinstance(value, list) else value
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"run names are text: {item!r} was read as a number (YAML reads 042 as 34, 1e3 as "
                             "1000); quote it ('042' in YAML, key=\"'042'\" on the command line)")
    return value


class PseudoConfig(_Strict):
    """Pseudo-labelling: test rows join every fold's training rows, labelled by finished runs. Fold k
    takes the sources' fold-k test predictions (``<col>__fold<k>``, from the model that never saw fold
    k's rows), so its score stays honest."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True)
    source: list[str] = Field(alias="from", min_length=1, description="finished experiment run(s) whose "
                              "fold-k test predictions label the rows (several: their mean)")
    rows: Literal["test"] = Field("test", description="which unlabelled rows join the training rows")
    select: Literal["soft", "confident"] = Field(
        "soft", description="soft: every row, the predicted probabilities as targets; confident: rows whose "
                            "top probability reaches `confidence`, with the hard label")
    confidence: float = Field(0.9, gt=0.5, lt=1, description="select confident: the top probability a row needs")
    weight: float = Field(1.0, gt=0, description="each pseudo-labelled row's weight in the loss (a train row's is 1)")

    _list = field_validator("source", mode="before")(_as_list)


class DistillConfig(_Strict):
    """Distillation: the loss mixes the true labels with the teacher's predictions of the same rows.
    Fold k's teacher predictions come from the teachers' fold-k models (which never saw fold k's rows)."""

    teacher: list[str] = Field(min_length=1, description="finished experiment run(s) (several: their mean)")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the true labels (1 - alpha: the teacher's)")
    temperature: float = Field(1.0, gt=0, description="classification: both sides' logits divided by this "
                                                      "in the teacher's term (scaled back by its square)")

    _list = field_validator("teacher", mode="before")(_as_list)


class TrackConfig(_Strict):
    wandb: bool = Field(True, description="log to Weights & Biases (offline unless set up online)")
    project: str | None = Field(None, description="wandb project (None: the competition name)")


class ExperimentConfig(_Strict):
    """One experiment: the model, how it trains, its input text and its search space."""

    exp: str = Field(description="experiment id: names the yaml, artifact folder and runs")
    description: str = ""
    template: str | None = Field(None, description="packaged template this experiment starts from")
    model: _ModelConfig = Field(default_factory=EncoderModel)
    train: TrainConfig = Field(default_factory=TrainConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    pseudo: PseudoConfig | None = Field(None, description="pseudo-labelled test rows (torch families)")
    distill: DistillConfig | None = Field(None, description="distillation from finished runs (torch families)")
    track: TrackConfig = Field(default_factory=TrackConfig)
    seed: int = Field(42, description="global seed (data order, initialisation)")
    search: dict[str, Any] = Field(default_factory=dict, description="Optuna search space (comp tune)")
    tuned_on: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="folds whose labels chose this experiment's settings (written by "
                                          "comp tune): their CV is optimistic; the leaderboard gives the others'")

    @model_validator(mode="after")
    def _cross_checks(self):
        m = self.model
        if m.family == "scratch" and m.d_model % m.heads:
            raise ValueError(f"model.d_model ({m.d_model}) must be divisible by model.heads ({m.heads})")
        for key in ("pseudo", "distill"):
            if getattr(self, key) is not None and not self.is_torch:
                raise ValueError(f"{key}: applies to the torch families ({', '.join(torch_families())}), "
                                 f"not model.family {m.family}; remove the {key} block")
        if self.train.freeze_layers and m.family != "encoder":
            raise ValueError(f"train.freeze_layers={self.train.freeze_layers}: freezing layers keeps pretrained "
                             f"weights, and model.family {m.family} has none (family encoder has); set "
                             "train.freeze_layers=0")
        return self

    @property
    def is_torch(self) -> bool:
        return family_of(self.model.family).torch

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- loading ---------------------------------------------------------------------------------

def templates() -> list[str]:
    """Names of the packaged experiment templates."""
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except (OmegaConfBaseException, OSError, Exception) as err:  # yaml.YAMLError, etc.
        raise InputError(f"{path}: cannot read this YAML file: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: an experiment file must be a mapping of keys (model, train, ...)")
    return data


def _template(name: str, where: Path) -> dict:
    path = TEMPLATES_DIR / f"{name}.yaml"
    if name not in templates() or not path.is_file():   # a name, never a path: no YAML from elsewhere
        raise InputError(f"{where}: unknown template {name!r}; valid: {', '.join(templates())}")
    return _read_yaml(path)


def merge_layers(layers: list[tuple[str, dict]]):
    from omegaconf import OmegaConf

    merged = OmegaConf.create({})
    for _, layer in layers:
        layer = dict(layer)
        new_family = (layer.get("model") or {}).get("family")
        old_family = OmegaConf.select(merged, "model.family")
        if new_family and old_family and new_family != old_family:
            merged.model = {}  # restart the model block: keys of another family don't leak
        merged = OmegaConf.merge(merged, OmegaConf.create(layer))
    return merged


def parse_overrides(overrides: list[str]) -> dict:
    """``['model.lr=3e-5', 'train.seeds=[1,2]']`` -> nested dict, values typed by OmegaConf's dotlist
    grammar: a quoted value stays a string (``train.precision='32'``).

    >>> parse_overrides(["model.lr=3e-5", "train.epochs=3", "model.name=prajjwal1/bert-mini"])
    {'model': {'lr': 3e-05, 'name': 'prajjwal1/bert-mini'}, 'train': {'epochs': 3}}
    >>> parse_overrides(["train.precision='32'", "train.tta=[tail]"])
    {'train': {'precision': '32', 'tta': ['tail']}}
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip() or "" in key.strip().split("."):
            raise InputError(f"override {item!r} is not key=value; write e.g. model.lr=3e-5")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=False)
    except (OmegaConfBaseException, ValueError) as err:
        raise InputError(f"overrides {' '.join(overrides)}: cannot parse them: {err}") from err


def load_config(ws, exp: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Merge base.yaml, the experiment's template, ``<exp>.yaml`` and overrides; validate.

    Args:
        ws: the :class:`~competition.workspace.Workspace`.
        exp: experiment id, e.g. ``"042"``.
        overrides: ``key.sub=value`` strings, applied last.
    """
    from omegaconf import OmegaConf

    exp_file = ws.experiment_file(exp)
    if not exp_file.is_file():
        known = ", ".join(ws.experiment_ids()) or "none yet"
        raise InputError(f"{exp_file}: no such experiment file. Experiments here: {known}. "
                         f"Create one, e.g. `comp new {exp} --template tfidf`.")
    base = _read_yaml(ws.base_config) if ws.base_config.is_file() else {}
    own = _read_yaml(exp_file)
    layers = [("base.yaml", base)]
    template = own.get("template") or base.get("template")
    if template:
        layers.append((f"template {template}", _template(str(template), exp_file)))
    layers.append((exp_file.name, own))
    if overrides:
        layers.append(("overrides", parse_overrides(overrides)))
    merged = OmegaConf.to_container(merge_layers(layers), resolve=True)
    merged["exp"] = exp
    try:
        return ExperimentConfig.model_validate(merged)
    except ValidationError as err:
        source = f"{exp_file} (with base.yaml{', template' if template else ''}{', overrides' if overrides else ''})"
        raise explain(err, source, ExperimentConfig) from None
