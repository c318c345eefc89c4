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


def test_train_select_is_one_of_three_and_refuses_settings_it_would_ignore(tmp_path):
    ws = make_ws(tmp_path, e001="train:\n  select: best\n")
    with pytest.raises(InputError) as err:
        load_config(ws, "001")
    msg = str(err.value)
    assert "train.select" in msg and "'best'" in msg and all(f"'{v}'" in msg for v in ("fold", "inner", "last"))
    assert load_config(ws, "001", ["train.select=inner"]).train.inner_valid == 0.1
    assert load_config(ws, "001", ["train.select=last"]).train.patience is None
    assert ExperimentConfig(exp="x").train.select == "fold"        # today's behaviour by default
    with pytest.raises(InputError, match=r"train.patience=2 stops early.*select=last.*train.patience=null"):
        load_config(ws, "001", ["train.select=last", "train.patience=2"])
    with pytest.raises(InputError, match=r"select=inner.*swa.*select=last"):
        load_config(ws, "001", ["train.select=inner", "train.swa=true"])
    with pytest.raises(InputError, match="train.inner_valid"):
        load_config(ws, "001", ["train.select=inner", "train.inner_valid=0.7"])


def test_tuned_on_is_a_list_of_fold_numbers(tmp_path):
    ws = make_ws(tmp_path, e001="template: tfidf\ntuned_on: [0, 2]\n", e002="template: tfidf\ntuned_on: [-1]\n")
    assert load_config(ws, "001").tuned_on == [0, 2]
    with pytest.raises(InputError, match="tuned_on"):
        load_config(ws, "002")


@pytest.mark.parametrize("override", ["train.precision=32", "train.precision='32'", 'train.precision="32"'])
def test_precision_32_is_accepted_written_either_way(tmp_path, override):
    assert load_config(make_ws(tmp_path, e001=""), "001", [override]).train.precision == "32"


def test_a_quoted_override_stays_a_string():
    parsed = parse_overrides(["text.sep='1'", "model.name='1e5'", "model.lr=1e-5", "train.tta=[tail, no_keyword]"])
    assert parsed == {"text": {"sep": "1"}, "model": {"name": "1e5", "lr": 1e-5}, "train": {"tta": ["tail", "no_keyword"]}}


@pytest.mark.parametrize("bad", ["=3", "model..lr=1", "model.lr"])
def test_an_override_without_a_key_is_refused(bad):
    with pytest.raises(InputError, match="key=value"):
        parse_overrides([bad])


def test_unknown_key_inside_a_family_is_named_as_written_with_the_family_keys(tmp_path):
    ws = make_ws(tmp_path, e001="template: lgbm\n")
    with pytest.raises(InputError) as err:
        load_config(ws, "001", ["model.lr=3e-5"])
    msg = str(err.value)
    assert "unknown key 'model.lr'" in msg and "model.lgbm" not in msg
    assert "valid keys here: early_stopping_rounds, family, features, inner_valid, num_boost_round, params" in msg
    (tmp_path / "b").mkdir()
    with pytest.raises(InputError, match=r"'model\.max_length': Input should be greater"):
        load_config(make_ws(tmp_path / "b", e001="template: minilm\n"), "001", ["model.max_length=2"])


def _titanic_ws(tmp_path: Path) -> Path:
    """A copy of the titanic example's spec (tabular: no text columns) reading the shared data."""
    from tests.datasets import shared_data

    root = tmp_path / "titanic"
    (root / "experiments").mkdir(parents=True)
    spec = (Path(__file__).parents[1] / "examples" / "titanic" / "competition.yaml").read_text()
    spec = spec.replace("${oc.env:COMP_DATA,../../../shared/data}", str(shared_data()))
    (root / "competition.yaml").write_text(spec)
    return root


def test_new_on_a_tabular_competition_starts_from_lgbm_and_refuses_text_templates(tmp_path):
    from typer.testing import CliRunner

    from competition.cli import app

    root = _titanic_ws(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["new", "999", "-w", str(root)])
    assert out.exit_code == 0 and "template: lgbm" in (root / "experiments" / "999.yaml").read_text()
    out = runner.invoke(app, ["new", "998", "--template", "minilm", "-w", str(root)])
    assert out.exit_code == 2 and "--template lgbm" in " ".join(out.output.split())
    assert not (root / "experiments" / "998.yaml").exists()


def test_the_no_folds_hint_names_make_only_beside_a_makefile(tmp_path):
    from typer.testing import CliRunner

    from competition.cli import app

    root = _titanic_ws(tmp_path)
    (root / "experiments" / "001.yaml").write_text("template: lgbm\n")
    out = CliRunner().invoke(app, ["train", "exp=001", "-w", str(root)])
    assert out.exit_code == 2 and "Run `comp folds` first" in out.output and "make folds" not in out.output
    (root / "Makefile").write_text("folds:\n\tcomp folds\n")
    out = CliRunner().invoke(app, ["train", "exp=001", "-w", str(root)])
    assert "Run `comp folds` (or `make folds`) first" in out.output


def test_error_messages_keep_yaml_lists_that_look_like_markup(capsys):
    import typer

    from competition.commands._common import handle_errors

    @handle_errors
    def refuses():
        raise InputError("train.tta: 'no_keyword' needs two text columns (e.g. text: [keyword, text]); "
                         "[bold]not markup[/bold]")

    with pytest.raises(typer.Exit) as exit_:
        refuses()
    err = " ".join(capsys.readouterr().err.split())
    assert exit_.value.exit_code == 2
    assert "(e.g. text: [keyword, text]); [bold]not markup[/bold]" in err


@pytest.mark.parametrize("bad", ["../../outside/x", "/abs/path", "a/../../b", "..", "x/y"])
def test_ids_that_are_paths_are_refused_before_anything_is_read_or_written(tmp_path, bad):
    from typer.testing import CliRunner

    from competition.cli import app

    root = _titanic_ws(tmp_path)
    (root / "experiments" / "001.yaml").write_text("template: lgbm\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for args in (["new", bad], ["train", f"exp={bad}"], ["new", "x", "--template", f"../{bad}"]):
        out = CliRunner().invoke(app, [*args, "-w", str(root)])
        assert out.exit_code == 2 and ("use letters, digits" in out.output or "valid templates" in out.output
                                       or "dots only" in out.output), out.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("dots", [".", "..", "..."])
def test_a_name_of_dots_is_refused_as_such(tmp_path, dots):
    """Dots are allowed characters: the message says what is wrong with the name instead."""
    from typer.testing import CliRunner

    from competition.cli import app

    root = _titanic_ws(tmp_path)
    out = CliRunner().invoke(app, ["new", dots, "-w", str(root)])
    assert out.exit_code == 2 and "a name of dots only is not allowed" in " ".join(out.output.split()), out.output


def test_a_template_is_a_packaged_name_not_a_path(tmp_path):
    (tmp_path / "evil.yaml").write_text("model: {family: tfidf}\n")
    (tmp_path / "ws").mkdir()
    ws = make_ws(tmp_path / "ws", e001=f"template: ../../{tmp_path.name}/evil\n")
    with pytest.raises(InputError, match="unknown template"):
        load_config(ws, "001")


@pytest.mark.parametrize("verb", ["train", "tune"])
def test_a_command_without_the_experiment_says_how_to_name_it(tmp_path, verb):
    from typer.testing import CliRunner

    from competition.cli import app

    out = CliRunner().invoke(app, [verb, "-w", str(_titanic_ws(tmp_path))])
    assert out.exit_code == 2 and f"name the experiment: `comp {verb} exp=042`" in out.output, out.output


@pytest.mark.parametrize("text, message", [
    ("template: lgbm\nmodel: {learning_rate: 1e400}\n", "model.learning_rate is inf, not a finite number"),
    ("template: lgbm\nmodel: [1, 2]\n", "model is a list, but it is a block of settings"),
    (None, "this is a str, not a mapping; an experiment file holds key: value lines"),
])
def test_an_experiment_file_that_is_not_valid_data_is_refused_before_any_run_folder(tmp_path, text, message):
    """Checked as data before the layers merge: a number that is not finite (liblinear's ValueError after
    writing the run folder), a list where a block belongs (an AttributeError), a file that is not a
    mapping (a symlink to /etc/passwd was printed whole as an unknown key)."""
    from typer.testing import CliRunner

    from competition.cli import app

    root = _titanic_ws(tmp_path)
    exp = root / "experiments" / "006.yaml"
    if text is None:
        other = tmp_path / "passwd"
        other.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
        exp.symlink_to(other)
    else:
        exp.write_text(text)
    assert CliRunner().invoke(app, ["folds", "-w", str(root)]).exit_code == 0
    out = CliRunner().invoke(app, ["train", "exp=006", "-w", str(root)])
    assert out.exit_code == 2 and message in " ".join(out.output.split()) and "Traceback" not in out.output
    assert "daemon" not in out.output
    assert not (root / "experiments" / "006").exists()


def test_an_override_that_is_not_finite_is_refused(tmp_path):
    ws = make_ws(tmp_path, e001="model: {family: tfidf}\n")
    with pytest.raises(InputError, match=r"overrides: model.C is inf"):
        load_config(ws, "001", ["model.C=1e400"])


def test_the_global_seed_initialises_the_models_unless_seeds_are_given(tmp_path):
    """`seed: 7` in an experiment is what a user changes for another model: it trained from seed 42's
    initialisation (train.seeds' default) before, so a "second seed" of tweet-spans was the same start."""
    ws = make_ws(tmp_path, base="seed: 42\n", e043="template: minilm\nseed: 7\n",
                 e044="template: minilm\nseed: 7\ntrain: {seeds: [1, 2]}\n", e045="template: minilm\n")
    assert load_config(ws, "043").train.seeds == [7]
    assert load_config(ws, "043", ["seed=9"]).train.seeds == [9]
    assert load_config(ws, "044").train.seeds == [1, 2]          # given: they win
    assert load_config(ws, "045").train.seeds == [42]            # as before for every run at the default
