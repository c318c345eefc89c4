"""Experiment configs: ``base.yaml`` <- template <- ``042.yaml`` <- ``a.b=c`` overrides.

Layers merge in that order (OmegaConf), then validate into a frozen, typed
:class:`ExperimentConfig`. An unknown key or a wrong type is an error that lists
what is valid. ``042.yaml`` may say ``template: minilm`` to start from a packaged
template (``competition/templates/minilm.yaml``) instead of copying its YAML.

When a layer switches ``model.family`` (base says encoder, 043 says tfidf), the
model block restarts from that layer: keys of another family never leak across.

The ``model:`` block validates against the registered model families
(:mod:`competition.families`: each family's settings and code).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from competition.errors import InputError, explain
from competition.families import EncoderModel, StrictModel, family_of, model_union, on_change, torch_families

TEMPLATES_DIR = Path(__file__).parent / "templates"


# -- training --------------------------------------------------------------------------------

class TrainConfig(StrictModel):
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
    fgm: float = Field(0.0, ge=0, description="adversarial training (FGM): each batch is read again with its word "
                                               "embeddings moved this far (L2 norm over the batch) along its loss "
                                               "gradient, and both losses train the model; ~2x the time (0: off)")
    fgm_start: int = Field(0, ge=0, description="fgm: the first epoch (0-based) that reads batches twice")
    seeds: list[int] = Field(default_factory=lambda: [42], min_length=1,
                             description="one model per seed and fold, predictions averaged")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="auto: 16-mixed on a GPU, 32 on CPU (bf16-mixed: bf16 autocast on a CPU with bf16 "
                            "instructions, fp32 with a warning elsewhere); each fold records what it trained in")

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
    tta: list[Literal["none", "no_keyword", "tail", "swap"]] = Field(
        default_factory=list, description="extra text variants averaged at inference: no_keyword (the first text "
                                          "column blanked), tail (long texts cut at the start), swap (a text "
                                          "pair read second side first: for symmetric tasks such as paraphrase)")
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


class TextConfig(StrictModel):
    """How the model's input text is built from the spec's text columns."""

    template: str | None = Field(None, description="e.g. '{keyword} | {text}' (None: text columns joined by sep)")
    sep: str = Field(" | ", description="joins text columns when there is no template")
    pair: bool | None = Field(None, description="read the spec's text_pair as a pair of texts (None: whenever the "
                                                "spec has one); false glues them into one text like other columns")
    clean: list[Literal["ftfy", "html", "urls", "users"]] = Field(
        default_factory=list, description="repairs applied to every input text, in this order whatever the list's: "
                                          "ftfy (mojibake), html (entities such as &amp;), urls (-> 'http'), "
                                          "users (@name -> '@user')")


class DataConfig(StrictModel):
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


class PseudoConfig(StrictModel):
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


class DistillConfig(StrictModel):
    """Distillation: the loss mixes the true labels with the teacher's predictions of the same rows.
    Fold k's teacher predictions come from the teachers' fold-k models (which never saw fold k's rows)."""

    teacher: list[str] = Field(min_length=1, description="finished experiment run(s) (several: their mean)")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the true labels (1 - alpha: the teacher's)")
    temperature: float = Field(1.0, gt=0, description="classification: both sides' logits divided by this "
                                                      "in the teacher's term (scaled back by its square)")

    _list = field_validator("teacher", mode="before")(_as_list)


class TrackConfig(StrictModel):
    wandb: bool = Field(True, description="log to Weights & Biases (offline unless set up online)")
    project: str | None = Field(None, description="wandb project (None: the competition name)")


_ModelConfig = Annotated[model_union(), Field(discriminator="family")]   # at import; see _refresh_model


class ExperimentConfig(StrictModel):
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
    seed: int = Field(42, description="global seed: data order, subsets, and the models' initialisation "
                                      "(train.seeds defaults to [seed])")
    search: dict[str, Any] = Field(default_factory=dict, description="Optuna search space (comp tune)")
    tuned_on: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="folds whose labels chose this experiment's settings (written by "
                                          "comp tune): their CV is optimistic; the leaderboard gives the others'")

    @model_validator(mode="after")
    def _cross_checks(self):
        m = self.model
        for key in ("pseudo", "distill"):
            if getattr(self, key) is not None and not self.is_torch:
                raise ValueError(f"{key}: applies to the torch families ({', '.join(torch_families())}), "
                                 f"not model.family {m.family}; remove the {key} block")
        if self.train.freeze_layers and not m.pretrained_layers:
            raise ValueError(f"train.freeze_layers={self.train.freeze_layers}: freezing layers keeps pretrained "
                             f"weights, and model.family {m.family} has none (family encoder has); set "
                             "train.freeze_layers=0")
        if self.train.fgm and (self.train.freeze_layers or not self.is_torch):
            why = (f"train.freeze_layers={self.train.freeze_layers} freezes them" if self.is_torch
                   else f"model.family {m.family} has none")
            raise ValueError(f"train.fgm={self.train.fgm} moves the word embeddings of a fine-tuned encoder, but "
                             f"{why}; set train.fgm=0")
        if self.train.fgm_start >= self.train.epochs and self.train.fgm:
            raise ValueError(f"train.fgm_start={self.train.fgm_start}: epochs are 0 to {self.train.epochs - 1}, so "
                             "fgm would never run; lower train.fgm_start or raise train.epochs")
        if getattr(m, "truncation", None) == "windows":
            if "tail" in self.train.tta:
                raise ValueError("train.tta: 'tail' reads the end of a long text, but model.truncation: windows "
                                 "already reads all of it; remove tail from train.tta")
        return self

    @property
    def is_torch(self) -> bool:
        return family_of(self.model.family).torch

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- loading ---------------------------------------------------------------------------------

def _refresh_model() -> None:
    """A family (un)registered after the built-in ones: ``model`` validates over the new union and
    keeps its ``family`` discriminator."""
    ExperimentConfig.model_fields["model"].annotation = model_union()
    ExperimentConfig.model_rebuild(force=True)


on_change(_refresh_model)


def templates() -> list[str]:
    """Names of the packaged experiment templates."""
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.yaml"))


SECTIONS = ("model", "train", "text", "data", "pseudo", "distill", "track", "search")   # blocks of key: value


def check_layer(source: str, data: dict) -> dict:
    """One layer of an experiment (a file, the overrides) checked as data before it is merged: its blocks
    are mappings and every number in it is finite.

    >>> check_layer("x.yaml", {"model": [1, 2]})
    Traceback (most recent call last):
    competition.errors.InputError: x.yaml: model is a list, but it is a block of settings: write it as key: value lines, e.g. model: {family: tfidf}
    >>> check_layer("x.yaml", {"model": {"C": float("inf")}})
    Traceback (most recent call last):
    competition.errors.InputError: x.yaml: model.C is inf, not a finite number; give a finite value
    """
    for key in SECTIONS:
        value = data.get(key)
        if value is not None and not isinstance(value, dict):
            raise InputError(f"{source}: {key} is a {type(value).__name__}, but it is a block of settings: write it "
                             f"as key: value lines, e.g. {key}: {{{'family: tfidf' if key == 'model' else '...'}}}")

    def walk(value, where: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{source}: {where} is {value}, not a finite number; give a finite value")
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, inner in items:
            walk(inner, f"{where}.{key}" if where else str(key))

    walk(data, "")
    return data


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            what = "empty" if raw is None else f"a {type(raw).__name__}, not a mapping"
            if raw is None:
                return {}
            raise InputError(f"{path}: this is {what}; an experiment file holds key: value lines "
                             "(model:, train:, ...), e.g. `comp new 001 --template tfidf` writes one")
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except InputError:
        raise
    except (OmegaConfBaseException, OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as err:
        raise InputError(f"{path}: cannot read this YAML file: {err}") from err
    return check_layer(str(path), data or {})


def _template(name: str, where: Path) -> dict:
    path = TEMPLATES_DIR / f"{name}.yaml"
    if name not in templates() or not path.is_file():   # a name, never a path: no YAML from elsewhere
        raise InputError(f"{where}: unknown template {name!r}; valid: {', '.join(templates())}")
    return _read_yaml(path)


def merge_layers(layers: list[tuple[str, dict]]):
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
        layers.append(("overrides", check_layer("overrides", parse_overrides(overrides))))
    merged = OmegaConf.to_container(merge_layers(layers), resolve=True)
    merged["exp"] = exp
    train = merged.setdefault("train", {})
    if isinstance(train, dict) and "seeds" not in train and isinstance(merged.get("seed"), int):
        train["seeds"] = [merged["seed"]]     # the global seed initialises the models unless seeds are given
    try:
        return ExperimentConfig.model_validate(merged)
    except ValidationError as err:
        source = f"{exp_file} (with base.yaml{', template' if template else ''}{', overrides' if overrides else ''})"
        raise explain(err, source, ExperimentConfig) from None
