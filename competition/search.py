"""The ``search:`` block of an experiment file: parsing, validation, sampling, and its W&B sweep form.

One dotted config key per entry; ``comp tune`` (:mod:`competition.tune`) samples it with
Optuna, ``comp tune --export-wandb-sweep`` writes it as a W&B sweep config::

    search:
      model.C: {type: float, low: 0.1, high: 30, log: true}
      model.min_df: {type: int, low: 1, high: 4}
      model.estimator: [logistic, ridge]                       # a bare list: categorical
      model.char_ngrams: {type: grid, values: [[2, 4], [2, 5]]}
      model.name: {type: categorical, choices: [prajjwal1/bert-mini], when: {model.family: encoder}}

Every end of every range is validated as a config before a trial runs, so a typo in a key
or an out-of-range value fails at once with the valid keys listed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from pydantic import ValidationError

from competition import artifacts, metrics, track
from competition.config import ExperimentConfig, load_config, merge_layers, parse_overrides
from competition.errors import InputError, explain
from competition.spec import load_spec
from competition.workspace import Workspace

TYPES = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
         "categorical": {"choices"}, "grid": {"values"}}
NOT_TUNABLE = ("exp", "search", "template", "description")
MAX_GRID_VALUES = 1000
_PRIMITIVE = (str, int, float, bool, type(None))
SWEEP_METHODS = {"tpe": "bayes", "cmaes": "bayes", "random": "random", "grid": "grid"}  # --sampler -> W&B


@dataclass(frozen=True)
class Param:
    """One entry of ``search:``: a dotted config key and how to sample it."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()                             # categorical choices / grid values
    when: tuple[tuple[str, tuple], ...] = ()        # (config key, allowed values): sample only then

    @property
    def encoded(self) -> list:
        """Choices as Optuna stores them: lists and mappings become JSON text."""
        if all(isinstance(c, _PRIMITIVE) for c in self.choices):
            return list(self.choices)
        return [json.dumps(c) for c in self.choices]

    def decode(self, stored):
        return dict(zip(self.encoded, self.choices))[stored] if self.type in ("categorical", "grid") else stored

    def grid(self) -> list:
        """Every value the grid sampler visits (encoded); ranges need a step (int: 1)."""
        if self.type in ("categorical", "grid"):
            return self.encoded
        step = self.step or (1 if self.type == "int" else None)
        if step is None or self.log:
            raise InputError(f"search key '{self.key}': the grid sampler needs listed values; write "
                             f"{{type: grid, values: [...]}} or give the range a step (and no log)")
        n = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        if n > MAX_GRID_VALUES:
            raise InputError(f"search key '{self.key}': {n} grid values; use a larger step or another sampler")
        return [self.low + i * step if self.type == "float" else int(self.low + i * step) for i in range(n)]

    def samples(self) -> list:
        """Values that must all make a valid config: both ends of a range, every choice."""
        return list(self.choices) if self.choices else [self.low, self.high]

    def suggest(self, trial):
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return self.decode(trial.suggest_categorical(self.key, self.encoded))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_space(search: dict, where: Path | str) -> list[Param]:
    """The ``search:`` block as :class:`Param` objects; InputError naming the key and the fix.

    >>> [p.key for p in parse_space({"model.C": {"type": "float", "low": 0.1, "high": 10, "log": True},
    ...                              "model.estimator": ["logistic", "ridge"]}, "042.yaml")]
    ['model.C', 'model.estimator']
    """
    if not search:
        raise InputError(f"{where}: no `search:` block to tune. Add one, e.g.\n"
                         "search:\n  model.C: {type: float, low: 0.1, high: 30, log: true}\n"
                         "  model.estimator: {type: categorical, choices: [logistic, ridge]}")
    params: list[Param] = []
    for key, entry in search.items():
        def bad(problem: str) -> InputError:
            return InputError(f"{where}: search key '{key}': {problem}")

        if str(key).split(".")[0] in NOT_TUNABLE:
            raise bad(f"{str(key).split('.')[0]} cannot be tuned; search config keys such as model.lr")
        if isinstance(entry, list):        # shorthand: a bare list is a categorical choice
            entry = {"type": "categorical", "choices": entry}
        if not isinstance(entry, dict):
            raise bad(f"got {entry!r}; write e.g. {{type: float, low: 1e-5, high: 1e-4, log: true}} "
                      "or {type: categorical, choices: [16, 32]}")
        kind = entry.get("type")
        if kind not in TYPES:
            raise bad(f"type {kind!r} is not one of {', '.join(TYPES)}")
        unknown = set(entry) - TYPES[kind] - {"type", "when"}
        if unknown:
            raise bad(f"unknown field(s) {', '.join(sorted(map(str, unknown)))} for type {kind}; "
                      f"valid: {', '.join(sorted(TYPES[kind] | {'type', 'when'}))}")
        when = _parse_when(entry.get("when"), key, [p.key for p in params], search, bad)
        if kind in ("float", "int"):
            low, high, step, log = entry.get("low"), entry.get("high"), entry.get("step"), bool(entry.get("log", False))
            if not (_number(low) and _number(high)):
                raise bad(f"type {kind} needs numbers low and high (got low={low!r}, high={high!r})")
            if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
                raise bad(f"type int needs whole numbers (got low={low}, high={high}, step={step}); "
                          "use type float for fractions")
            if low >= high:
                raise bad(f"low ({low}) must be below high ({high}); swap them or widen the range")
            if log and low <= 0:
                raise bad(f"log: true needs low > 0 (got {low}); use e.g. low: {high / 1000:g}, or log: false")
            if step is not None and (not _number(step) or step <= 0):
                raise bad(f"step must be a positive number (got {step!r})")
            if step is not None and log:
                raise bad("step and log: true cannot be combined (Optuna samples one or the other); drop one")
            params.append(Param(key, kind, float(low) if kind == "float" else int(low),
                                float(high) if kind == "float" else int(high), log, step, (), when))
        else:
            field_name = "choices" if kind == "categorical" else "values"
            choices = entry.get(field_name)
            if not isinstance(choices, list) or not choices:
                raise bad(f"type {kind} needs a non-empty list `{field_name}: [...]` (got {choices!r})")
            params.append(Param(key, kind, choices=tuple(choices), when=when))
    return params


def _parse_when(when, key, earlier: list[str], search: dict, bad) -> tuple:
    if when is None:
        return ()
    if not isinstance(when, dict) or not when:
        raise bad(f"when must map config keys to values, e.g. when: {{model.family: scratch}} (got {when!r})")
    for cond in when:
        if cond in search and cond not in earlier:
            raise bad(f"its condition on '{cond}' needs that key listed before it in `search:`")
    return tuple((str(c), tuple(v) if isinstance(v, list) else (v,)) for c, v in when.items())


def as_override(value) -> str:
    """A value as override text that :func:`~competition.config.parse_overrides` reads back as it was.

    >>> as_override("prajjwal1/bert-mini"), as_override("yes"), as_override([2, 5]), as_override(None), as_override(3e-05)
    ('prajjwal1/bert-mini', '"yes"', '[2, 5]', 'null', '3e-05')
    """
    if isinstance(value, str):
        try:
            if parse_overrides([f"x={value}"])["x"] == value:
                return value
        except InputError:
            pass
    return json.dumps(value)


def _lookup(data: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _applies(param: Param, sampled: dict, base: dict) -> bool:
    """A ``when`` condition reads the value sampled in this trial, else the experiment's own."""
    return all((sampled[c] if c in sampled else _lookup(base, c)) in allowed for c, allowed in param.when)


def check_space(ws: Workspace, exp: str, params: list[Param], overrides: list[str] = (),
                config: ExperimentConfig | None = None) -> None:
    """Every key names a real config setting and every end of every range makes a valid config.

    The experiment is loaded once (``config``: already loaded with ``overrides``); each
    sample value (with its ``when`` conditions) is merged into it in memory as one more
    override layer and validated like ``comp train`` would, so an unknown key lists the
    valid ones.
    """
    loaded = (config or load_config(ws, exp, list(overrides))).to_dict()
    for param in params:
        conditions = [f"{c}={as_override(allowed[0])}" for c, allowed in param.when]
        for value in param.samples():
            try:
                _validate_with(loaded, [*conditions, f"{param.key}={as_override(value)}"], ws.experiment_file(exp))
            except InputError as err:
                problems = [line.strip()[2:] for line in str(err).splitlines() if line.strip().startswith("- ")]
                # a cross-field check alone ('(top level)', e.g. d_model % heads) may hold in
                # combination with other sampled values; a trial it fails is recorded as failed
                if problems and all(p.startswith("'(top level)'") for p in problems):
                    continue
                raise InputError(f"{ws.experiment_file(exp)}: search key '{param.key}' with value {value!r}: "
                                 f"{'; '.join(problems) or err}") from None


def _validate_with(loaded: dict, overrides: list[str], where: Path) -> None:
    """A loaded config (as a dict) with ``overrides`` merged in as one more layer, validated as
    :func:`~competition.config.load_config` validates: InputError listing every problem."""
    layers = [("config", loaded), ("overrides", parse_overrides(overrides))]
    try:
        ExperimentConfig.model_validate(OmegaConf.to_container(merge_layers(layers), resolve=True))
    except ValidationError as err:
        raise explain(err, where, ExperimentConfig) from None


def sample(trial, params: list[Param], base: dict) -> dict[str, Any]:
    """Suggest every parameter whose ``when`` holds, in the order of the search block."""
    sampled: dict[str, Any] = {}
    for param in params:
        if _applies(param, sampled, base):
            sampled[param.key] = param.suggest(trial)
    return sampled


def grid_size(params: list[Param]) -> int:
    return math.prod(len(p.grid()) for p in params)


# -- as a W&B sweep -------------------------------------------------------------------------

def _sweep_value(value):
    """A choice as W&B passes it back (``key=str(value)``) so that it parses to the same value."""
    try:
        if parse_overrides([f"x={value}"])["x"] == value:
            return value
    except InputError:
        pass
    return as_override(value)


def wandb_sweep(ws: Workspace, exp: str, *, overrides: list[str] = (), sampler: str = "tpe",
                pruner: str = "median", folds: str = "0") -> dict:
    """The search space as a W&B sweep config whose runs train ``comp train exp=<exp>`` with
    the run's values as overrides (``${args_no_hyphens}`` expands to ``key=value`` words)."""
    base = load_config(ws, exp, list(overrides))
    params = parse_space(base.search, ws.experiment_file(exp))
    check_space(ws, exp, params, list(overrides), config=base)
    spec_metric = _metric_of(ws)
    method = SWEEP_METHODS.get(sampler)
    if method is None:
        raise InputError(f"--sampler {sampler!r}: valid samplers are {', '.join(SWEEP_METHODS)}")
    if all(p.type == "grid" for p in params):
        method = "grid"               # a grid space is a grid sweep, whatever the default sampler
    parameters = {}
    for p in params:
        if p.when:
            warnings.warn(f"W&B sweeps have no conditions: {p.key} is sampled in every run; "
                          f"`comp train --sweep` drops it where its `when:` does not hold", stacklevel=2)
        if p.type in ("categorical", "grid") or method == "grid":
            values = p.choices if p.choices else p.grid()
            parameters[p.key] = {"values": [_sweep_value(v) for v in values]}
        elif p.type == "int" and not p.log and (p.step or 1) == 1:
            parameters[p.key] = {"distribution": "int_uniform", "min": int(p.low), "max": int(p.high)}
        elif p.step:
            parameters[p.key] = {"distribution": "q_uniform", "min": p.low, "max": p.high, "q": p.step}
        else:
            dist = "log_uniform_values" if p.log else "uniform"
            if p.type == "int":
                dist = "q_log_uniform_values"
            parameters[p.key] = {"distribution": dist, "min": p.low, "max": p.high,
                                 **({"q": 1} if p.type == "int" else {})}
    sweep = {
        "name": f"comp-{exp}",
        "program": "comp",
        "method": method,
        # the agent's run gets the mean score of the folds it trained
        "metric": {"name": track.SCORE, "goal": metrics.get(spec_metric).direction},
        "parameters": parameters,
        # each run writes its own run folder <exp>-sweep-<W&B run id>: the experiment's stays as it is
        "command": ["${env}", "comp", "train", f"exp={exp}", "--fold", folds, "--sweep", *overrides,
                    "${args_no_hyphens}"],
    }
    if pruner == "hyperband":
        sweep["early_terminate"] = {"type": "hyperband", "min_iter": 1}
    return sweep


def sweep_overrides(ws: Workspace, exp: str, overrides: list[str]) -> tuple[list[str], list[str]]:
    """(kept, dropped): a W&B agent passes every key of the space, conditions or not; drop the
    overrides of search keys whose ``when:`` does not hold under the others (or the experiment's
    own values), as ``comp tune`` would not have sampled them.

    Args:
        overrides: ``key=value`` words, the fixed ones first, then the agent's.
    """
    base = load_config(ws, exp).to_dict()
    params = {p.key: p for p in parse_space(base.get("search") or {}, ws.experiment_file(exp))}
    values = {}
    for item in overrides:
        key = item.partition("=")[0].strip()
        values[key] = _lookup(parse_overrides([item]), key)
    kept, dropped = [], []
    for item in overrides:
        param = params.get(item.partition("=")[0].strip())
        (dropped if param is not None and param.when and not _applies(param, values, base) else kept).append(item)
    return kept, dropped


def sweep_run_name(exp: str, overrides: list[str]) -> str:
    """``<exp>-sweep-<id>``: the W&B agent's run id (``WANDB_RUN_ID``), else a hash of the overrides.

    >>> import os; os.environ.pop("WANDB_RUN_ID", None) and None
    >>> sweep_run_name("042", ["model.lr=3e-5"]) == sweep_run_name("042", ["model.lr=3e-5"])
    True
    """
    run_id = os.environ.get("WANDB_RUN_ID") or hashlib.sha256(" ".join(overrides).encode()).hexdigest()[:8]
    return f"{exp}-sweep-{re.sub(r'[^A-Za-z0-9_-]', '', run_id)}"


def _metric_of(ws: Workspace) -> str:
    return load_spec(ws.spec_file).metric


def write_wandb_sweep(path: Path | str, sweep: dict) -> Path:
    """Write the sweep config as YAML (whole or not at all) with how to start it."""
    head = ("# W&B sweep written by `comp tune --export-wandb-sweep`. Start it with\n"
            f"#   wandb sweep {Path(path).name}      then   wandb agent <entity/project/sweep id>\n")
    return artifacts.write_text(Path(path), head + yaml.safe_dump(sweep, sort_keys=False))
