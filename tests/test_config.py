"""Experiment config: base <- template <- NNN.yaml <- overrides, validated and frozen."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from competition.config import ExperimentConfig, load_config, parse_overrides, templates
from competition.errors import InputError
from competition.workspace import Workspace


def make_ws(tmp_path: Path, base: str = "", **experiments: str) -> Workspace:
    (tmp_path / "competition.yaml").write_text("name: t\n")
    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    (exp_dir / "base.yaml").write_text(base)
    for exp, text in experiments.items():
        (exp_dir / f"{exp.lstrip('e')}.yaml").write_text(text)
    return Workspace(tmp_path)


def test_layers_merge_in_order(tmp_path):
    ws = make_ws(tmp_path, base="train:\n  epochs: 5\n  batch_size: 8\n",
                 e042="model:\n  family: encoder\n  lr: 2.0e-5\ntrain:\n  epochs: 2\n")
    cfg = load_config(ws, "042", ["train.batch_size=32", "model.pooling=cls"])
    assert cfg.exp == "042"
    assert cfg.train.epochs == 2            # experiment beats base
    assert cfg.train.batch_size == 32       # override beats everything
    assert cfg.model.lr == 2e-5 and cfg.model.pooling == "cls"


def test_config_is_frozen(tmp_path):
    cfg = load_config(make_ws(tmp_path, e001="template: tfidf\n"), "001")
    with pytest.raises(ValidationError):
        cfg.seed = 3


def test_template_then_experiment(tmp_path):
    ws = make_ws(tmp_path, e050="template: minilm\ntrain:\n  epochs: 1\n")
    cfg = load_config(ws, "050")
    assert cfg.model.family == "encoder" and cfg.model.max_length == 64
    assert cfg.train.epochs == 1


@pytest.mark.parametrize("name", templates())
def test_every_template_validates(tmp_path, name):
    cfg = load_config(make_ws(tmp_path, e001=f"template: {name}\n"), "001")
    assert cfg.model.family in {"encoder", "scratch", "tfidf", "lgbm", "embed"}


def test_family_switch_restarts_model_block(tmp_path):
    ws = make_ws(tmp_path, base="model:\n  family: encoder\n  pooling: cls\n",
                 e043="model:\n  family: tfidf\n  C: 2.0\n")
    cfg = load_config(ws, "043")
    assert cfg.model.family == "tfidf" and cfg.model.C == 2.0


def test_unknown_key_lists_valid_keys(tmp_path):
    ws = make_ws(tmp_path, e001="train:\n  epochz: 3\n")
    with pytest.raises(InputError) as err:
        load_config(ws, "001")
    msg = str(err.value)
    assert "train.epochz" in msg and "epochs" in msg and "001.yaml" in msg


def test_wrong_type_names_key_and_value(tmp_path):
    ws = make_ws(tmp_path, e001="template: tfidf\n")
    with pytest.raises(InputError) as err:
        load_config(ws, "001", ["train.epochs=many"])
    assert "train.epochs" in str(err.value) and "many" in str(err.value)


def test_bad_override_syntax(tmp_path):
    with pytest.raises(InputError, match="key=value"):
        load_config(make_ws(tmp_path, e001=""), "001", ["model.lr"])


def test_missing_experiment_lists_existing(tmp_path):
    with pytest.raises(InputError, match="001"):
        load_config(make_ws(tmp_path, e001=""), "999")


def test_unknown_template(tmp_path):
    with pytest.raises(InputError, match="valid: "):
        load_config(make_ws(tmp_path, e001="template: bert-huge\n"), "001")


def test_scratch_cross_check(tmp_path):
    ws = make_ws(tmp_path, e001="model:\n  family: scratch\n  d_model: 100\n  heads: 3\n")
    with pytest.raises(InputError, match="divisible"):
        load_config(ws, "001")


def test_overrides_parse_yaml_values():
    assert parse_overrides(["train.seeds=[1,2]", "model.name=null", "train.swa=true"]) == {
        "train": {"seeds": [1, 2], "swa": True}, "model": {"name": None}}


def test_default_config_round_trips():
    cfg = ExperimentConfig(exp="x")
    assert ExperimentConfig.model_validate(cfg.to_dict()) == cfg
