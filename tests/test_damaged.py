"""Damaged artifacts (issue 24): every file comp reads is a one-line refusal naming the file and the
command that rebuilds it, exit 2, nothing written -- never a traceback, never a silent result."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from competition.cli import app
from tests.workspaces import tweets_workspace

DAMAGE = {"empty": b"", "garbage": b"\x00\xff{not json", "truncated": b'{"folds_hash": "ab', "a list": b"[1, 2]"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with two trained TF-IDF runs and a stack (the reference copy; tests damage copies)."""
    ws = tweets_workspace(tmp_path_factory.mktemp("damaged") / "ws", n_train=300, n_test=60,
                          experiments={"001": "template: tfidf\n", "002": "template: tfidf\nmodel: {C: 1.0}\n"})
    for args in (["train", "exp=001,002", "--fold", "all"], ["stack", "--exp", "001,002", "--name", "s01"]):
        out = CliRunner().invoke(app, [*args, "-w", str(ws.root)])
        assert out.exit_code == 0, out.output
    return ws.root


def _copy(trained, tmp_path):
    import shutil

    root = tmp_path / "ws"
    shutil.copytree(trained, root, symlinks=True)
    return root


def _snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "wandb" not in p.parts}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("artifact,command,fix", [
    ("experiments/001/fold1/done.json", ["train", "exp=001", "--fold", "all"], "comp train exp=001 --fold 1 --force"),
    ("experiments/001/metrics.json", ["leaderboard"], "from its folds: comp train exp=001 --fold all"),
    ("experiments/001/manifest.json", ["submit", "001"], "from its folds: comp train exp=001 --fold all"),
    ("experiments/002/manifest.json", ["stack", "--exp", "001,002", "--name", "s02"], "comp train exp=002 --fold all"),
    ("experiments/s01/manifest.json", ["submit", "s01"], "comp stack / comp blend again with --force"),
    ("folds/manifest.json", ["stack", "--exp", "001,002", "--name", "s02"], "comp folds --force"),
    ("experiments/001/fold0/vocabulary.json", ["predict", "001", "--test", "{test}"], "exp=001 --fold 0 --force"),
    ("experiments/001/config.yaml", ["predict", "001", "--test", "{test}"], "comp train exp=001 --fold all --force"),
    # a stack's fold file is rebuilt by the stack's own command, not `comp train exp=s01` (issue 40)
    ("experiments/s01/fold1/meta/meta.json", ["predict", "s01", "--test", "{test}"],
     "Rebuild that stack: comp stack --exp 001,002 --meta lgbm --name s01 --force"),
])
def test_a_damaged_json_artifact_is_one_line_naming_it_and_the_fix(trained, tmp_path, damage, artifact, command, fix):
    root = _copy(trained, tmp_path)
    target = root / artifact
    if not target.is_file():
        pytest.skip(f"{artifact} is not written by this family")
    target.write_bytes(DAMAGE[damage])
    before = _snapshot(root)
    args = [a.replace("{test}", str(root / "test.csv")) for a in command]
    out = CliRunner().invoke(app, [*args, "-w", str(root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output and "JSONDecodeError" not in out.output
    assert artifact.split("/")[-1] in text and "damaged" in text and fix in text, out.output
    assert _snapshot(root) == before                      # nothing written, nothing half-written


@pytest.mark.parametrize("name", ["oof.parquet", "test.parquet", "metrics.json", "manifest.json"])
def test_the_plain_rerun_a_damaged_run_file_names_rebuilds_it(trained, tmp_path, name):
    """Issue 24 #17: a damaged run-level file of an experiment named `--fold all --force` (retraining
    every fold); the plain rerun the message now names assembles the file again from the folds."""
    from competition import runs
    from competition.workspace import Workspace

    root = _copy(trained, tmp_path)
    target = root / "experiments" / "001" / name
    good = runs.load_run(Workspace(root), "001").oof()
    target.write_bytes(b"")
    out = CliRunner().invoke(app, ["train", "exp=001", "--fold", "all", "-w", str(root)])
    assert out.exit_code == 0 and all(f"fold {k}: skipped" in out.output for k in range(3)), out.output
    assert runs.load_run(Workspace(root), "001").oof().equals(good)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_model_file_at_predict_names_the_fold_to_retrain(trained, tmp_path, damage):
    root = _copy(trained, tmp_path)
    (model,) = [p for p in (root / "experiments" / "001" / "fold2").rglob("*") if p.suffix in (".skops", ".txt")][:1]
    data = model.read_bytes()
    model.write_bytes(b"" if damage == "empty" else data[:len(data) // 2])
    before = _snapshot(root)
    out = CliRunner().invoke(app, ["predict", "001", "--test", str(root / "test.csv"), "-w", str(root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "Traceback" not in out.output, out.output
    assert model.name in text and "damaged" in text and "comp train exp=001 --fold 2 --force" in text, out.output
    assert _snapshot(root) == before


def test_the_same_stack_twice_is_refused_and_writes_nothing(trained, tmp_path):
    """Issue 24 #21: a stack with the same inputs (at the same versions), meta-model and seed as s01
    would be a copy that doubles on the leaderboard; another seed or a retrained input is a new stack."""
    root = _copy(trained, tmp_path)
    before = _snapshot(root)
    out = CliRunner().invoke(app, ["stack", "--exp", "001,002", "-w", str(root)])
    assert out.exit_code == 2 and "the same as s01" in " ".join(out.output.split()), out.output
    assert _snapshot(root) == before and not (root / "experiments" / "s02").exists()
    again = CliRunner().invoke(app, ["stack", "--exp", "001,002", "--name", "s01", "--force", "-w", str(root)])
    assert again.exit_code == 0, again.output                       # asked for by name: fitted again
    other = CliRunner().invoke(app, ["stack", "--exp", "001,002", "--seed", "7", "-w", str(root)])
    assert other.exit_code == 0 and (root / "experiments" / "s02").is_dir(), other.output


def test_a_missing_model_names_the_fold_to_retrain_not_placeholders(trained, tmp_path):
    import shutil

    root = _copy(trained, tmp_path)
    shutil.rmtree(root / "experiments" / "001" / "fold2" / "head")
    out = CliRunner().invoke(app, ["predict", "001", "--test", str(root / "test.csv"), "-w", str(root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "comp train exp=001 --fold 2 --force" in text and "<id>" not in text, out.output


@pytest.mark.parametrize("command", [["predict", "001", "--test", "{test}", "--out", "{file}"], ["export", "001", "{file}"]])
def test_an_output_folder_that_is_a_file_is_refused(trained, tmp_path, command):
    root = _copy(trained, tmp_path)
    file = tmp_path / "taken.txt"
    file.write_text("mine")
    before = _snapshot(root)
    args = [a.replace("{test}", str(root / "test.csv")).replace("{file}", str(file)) for a in command]
    out = CliRunner().invoke(app, [*args, "-w", str(root)])
    assert out.exit_code == 2 and "is a file" in out.output and "Traceback" not in out.output, out.output
    assert file.read_text() == "mine" and _snapshot(root) == before


@pytest.mark.parametrize("command", [["new", "{long}"], ["train", "exp={long}"],
                                     ["stack", "--exp", "001,002", "--name", "{long}"]])
def test_a_name_too_long_for_the_files_made_from_it_is_refused_first(trained, tmp_path, command):
    root = _copy(trained, tmp_path)
    before = _snapshot(root)
    args = [a.replace("{long}", "x" * 235) for a in command]
    out = CliRunner().invoke(app, [*args, "-w", str(root)])
    assert out.exit_code == 2 and "at most 100" in " ".join(out.output.split()), out.output
    assert _snapshot(root) == before


def test_submit_names_the_damaged_run_it_passed_over(trained, tmp_path):
    """Issue 24 #13: the best run by CV is damaged; submit takes the next and says which it passed over."""
    from competition.leaderboard import leaderboard
    from competition.workspace import Workspace

    root = _copy(trained, tmp_path)
    best = leaderboard(Workspace(root))[0].name
    (root / "experiments" / best / "test.parquet").write_bytes(b"PAR1 truncated")
    out = CliRunner().invoke(app, ["submit", "-w", str(root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 0, out.output
    assert f"passed over {best} (damaged" in text, out.output


@pytest.mark.parametrize("command", [["train", "exp=001", "--fold", "0", "--force"],
                                     ["stack", "--exp", "001,002", "--seed", "7"]])
def test_a_read_only_experiments_folder_is_one_line_not_a_traceback(trained, tmp_path, monkeypatch, command):
    """Issue 24 #8: with experiments/ read-only (a bind mount), the fold lock (os.open) and the stack's
    folder (mkdir) raised EROFS tracebacks; now the message submit gives: the path and the fix."""
    import errno
    import os

    root = _copy(trained, tmp_path)
    experiments = str(root / "experiments")
    real_open, real_mkdir = os.open, os.mkdir

    def read_only(real):
        def call(path, *args, **kwargs):
            if str(path).startswith(experiments) and (real is real_mkdir or args and args[0] & (os.O_WRONLY | os.O_RDWR
                                                                                           | os.O_CREAT)):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real(path, *args, **kwargs)
        return call

    before = _snapshot(root)
    monkeypatch.setattr(os, "open", read_only(real_open))
    monkeypatch.setattr(os, "mkdir", read_only(real_mkdir))
    out = CliRunner().invoke(app, [*command, "-w", str(root)])
    monkeypatch.undo()
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "Traceback" not in text, out.output
    assert experiments in text and "cannot write it (Read-only file system)" in text and "make the folder writable" in text
    assert _snapshot(root) == before


def test_a_read_only_submissions_folder_at_predict_names_it_and_out_not_a_temporary_name(trained, tmp_path,
                                                                                           monkeypatch):
    """Issue 40: it named `.<folder>.tmp-<pid>`, a path the user never chose, and not --out."""
    import errno
    import os

    root = _copy(trained, tmp_path)
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):
        if ".tmp-" in str(path) and str(root) in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    (root / "submissions").mkdir(exist_ok=True)
    before = _snapshot(root)
    monkeypatch.setattr(os, "mkdir", read_only)
    out = CliRunner().invoke(app, ["predict", "001", "--test", str(root / "test.csv"), "-w", str(root)])
    monkeypatch.undo()
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "Traceback" not in text, out.output
    assert f"{root / 'submissions'}: cannot write" in text and "write elsewhere with --out" in text, text
    assert ".tmp-" not in text and _snapshot(root) == before


def test_a_name_too_long_for_the_file_system_names_a_shorter_name_as_the_fix(trained, tmp_path):
    """Issue 24 #17: ENAMETOOLONG said "make the folder writable", which does not help; the fix is a
    shorter name. The bundle folder's own name is 300 characters: the file system refuses it."""
    root = _copy(trained, tmp_path)
    target, before = tmp_path / ("b" * 300), sorted(tmp_path.iterdir())
    out = CliRunner().invoke(app, ["export", "001", str(target), "-w", str(root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "Traceback" not in text, out.output
    assert "File name too long" in text and "use a shorter name" in text and "writable" not in text, text
    assert sorted(tmp_path.iterdir()) == before


MODEL_DAMAGE = {
    "empty": lambda path, fold0: path.write_bytes(b""),
    "truncated": lambda path, fold0: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
    "swapped with fold 0's": lambda path, fold0: path.write_bytes(fold0.read_bytes()),
    "deleted": lambda path, fold0: path.unlink(),
}


@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
@pytest.mark.parametrize("rel", ["head/model0.skops", "vocabulary.json"])
@pytest.mark.parametrize("command", [["predict", "001", "--test", "{test}"], ["predict", "s01", "--test", "{test}"],
                                     ["export", "001", "{out}"], ["export", "s01", "{out}"], ["submit", "001"],
                                     ["stack", "--exp", "001,002", "--name", "s09"]])
def test_a_damaged_fold_model_is_verified_on_read_one_line_with_the_fold_to_retrain(trained, tmp_path, damage, rel,
                                                                                   command):
    """Issue 40: fold models were read without the check their run recorded: a .skops swapped with another
    fold's gave sklearn's `X has 19879 features` traceback, a truncated file a loader's. Each fold records
    its files' hashes in done.json; every reader verifies them first."""
    root = _copy(trained, tmp_path)
    target = root / "experiments" / "001" / "fold1" / rel
    MODEL_DAMAGE[damage](target, root / "experiments" / "001" / "fold0" / rel)
    before = _snapshot(root)
    args = [a.replace("{test}", str(root / "test.csv")).replace("{out}", str(tmp_path / "bundle")) for a in command]
    out = CliRunner().invoke(app, [*args, "-w", str(root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "Traceback" not in out.output, out.output
    assert f"{target}: damaged" in text and "comp train exp=001 --fold 1 --force" in text, text
    assert _snapshot(root) == before and not (tmp_path / "bundle").exists()
    status, notes = _statuses(root)["001"]                 # what the leaderboard says of it, alike
    assert status == "damaged" and f"{target}: damaged" in notes[0] and "--fold 1 --force" in notes[0], notes


def test_a_plain_train_over_a_damaged_fold_trains_it_again_instead_of_reporting_it_complete(trained, tmp_path):
    root = _copy(trained, tmp_path)
    model = root / "experiments" / "001" / "fold2" / "head" / "model0.skops"
    model.write_bytes(model.read_bytes()[:100])
    out = CliRunner().invoke(app, ["train", "exp=001", "--fold", "all", "-w", str(root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 0, out.output
    assert f"{model}: damaged" in text and "training fold 2 again" in text, text
    again = CliRunner().invoke(app, ["predict", "001", "--test", str(root / "test.csv"), "--out",
                                     str(tmp_path / "p"), "-w", str(root)])
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
@pytest.mark.parametrize("command", [["predict", "s01", "--test", "{test}"], ["export", "s01", "{out}"]])
def test_a_damaged_meta_model_is_verified_before_lightgbm_reads_it(trained, tmp_path, damage, command):
    """Issue 40: a truncated head0.txt printed 62 `[LightGBM] [Fatal]` lines and aborted (exit 134)."""
    root = _copy(trained, tmp_path)
    meta = root / "experiments" / "s01" / "fold1" / "meta"
    (head,) = [p for p in meta.iterdir() if p.name.startswith("head0")]
    MODEL_DAMAGE[damage](head, root / "experiments" / "s01" / "fold0" / "meta" / head.name)
    before = _snapshot(root)
    args = [a.replace("{test}", str(root / "test.csv")).replace("{out}", str(tmp_path / "bundle")) for a in command]
    out = CliRunner().invoke(app, [*args, "-w", str(root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "Traceback" not in out.output and "Fatal" not in out.output, out.output
    assert f"{head}: damaged" in text and "Rebuild that stack: comp stack --exp 001,002" in text, text
    assert _snapshot(root) == before and not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("name", ["test.parquet", "oof.parquet"])
def test_another_runs_predictions_copied_over_a_runs_own_are_damage_for_every_command(trained, tmp_path, name):
    """Issue 40: `comp submit 001` after 002's test.parquet replaced 001's submitted 002's predictions under
    001's CV, exit 0. The manifest's hashes decide, and leaderboard, submit and stack agree."""
    import shutil

    root = _copy(trained, tmp_path)
    shutil.copy2(root / "experiments" / "002" / name, root / "experiments" / "001" / name)
    before = _snapshot(root)
    target = root / "experiments" / "001" / name
    for command in (["submit", "001"], ["stack", "--exp", "001,002", "--name", "s09"],
                    ["blend", "--exp", "001,002", "--name", "b09"]):
        out = CliRunner().invoke(app, [*command, "-w", str(root)])
        text = " ".join(out.output.split())
        assert out.exit_code == 2 and "Traceback" not in out.output, (command, out.output)
        assert str(target) in text and "comp train exp=001 --fold all" in text, (command, text)
    board = CliRunner().invoke(app, ["leaderboard", "--json", "-w", str(root)])
    assert board.exit_code == 0, board.output
    import json

    status = {row["name"]: row["status"] for row in json.loads(board.output)["runs"]}
    assert status["001"] == "damaged" and status["002"] == "complete", status
    assert _snapshot(root) == before


def test_a_fold_file_swapped_inside_a_bundle_with_a_recomputed_bundle_json_is_refused_with_export_again(
        trained, tmp_path):
    """Issue 40: a fold's .skops swapped with another fold's inside a bundle whose bundle.json was recomputed
    crashed with sklearn's feature-count ValueError; the fold's own record catches it, and the fix is to
    export again (a bundle has no training data), not `comp train`."""
    import hashlib
    import json

    root = _copy(trained, tmp_path)
    bundle = tmp_path / "bundle"
    assert CliRunner().invoke(app, ["export", "001", str(bundle), "--no-wheel", "-w", str(root)]).exit_code == 0
    target = bundle / "experiments" / "001" / "fold1" / "head" / "model0.skops"
    target.write_bytes((bundle / "experiments" / "001" / "fold0" / "head" / "model0.skops").read_bytes())
    manifest = json.loads((bundle / "bundle.json").read_text())
    rel = str(target.relative_to(bundle))
    manifest["files"][rel] = {"sha256": hashlib.sha256(target.read_bytes()).hexdigest(), "bytes": target.stat().st_size}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    out = CliRunner().invoke(app, ["predict", "001", "--test", str(root / "test.csv"), "--out", str(tmp_path / "p"),
                                   "-w", str(bundle)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "Traceback" not in out.output, out.output
    assert f"{target}: damaged" in text and "export the bundle again from its workspace (comp export 001 DIR)" in text
    assert "comp train" not in text and not (tmp_path / "p").exists()


# -- one status (issue 40): every reader of a run goes by competition.status ---------------------

def _statuses(root) -> dict[str, tuple[str, tuple[str, ...]]]:
    import json

    board = CliRunner().invoke(app, ["leaderboard", "--json", "-w", str(root)])
    assert board.exit_code == 0, board.output
    return {row["name"]: (row["status"], tuple(row["notes"])) for row in json.loads(board.output)["runs"]}


def _forge(path, key: str) -> str:
    """Replace the first hash recorded under ``key`` in the JSON file ``path``; the file it names."""
    import json

    info = json.loads(path.read_text())
    name = next(iter(info[key]))
    info[key][name] = "0123456789abcdef"
    path.write_text(json.dumps(info))
    return name


@pytest.mark.parametrize("record,key,run", [
    ("experiments/001/manifest.json", "files", "001"),           # its OOF predictions' hash
    ("experiments/001/fold1/done.json", "files", "001"),          # a fold model file's hash
    ("experiments/s01/fold0/meta/meta.json", "files", "s01"),     # a meta-model's hash
])
def test_a_forged_hash_makes_the_run_damaged_for_every_reader_alike(trained, tmp_path, record, key, run):
    """Forge each kind of recorded hash: the leaderboard's status and what submit, stack, predict and export
    do agree -- damaged, one line naming the same file, nothing written."""
    root = _copy(trained, tmp_path)
    path = root / record
    named = _forge(path, key)
    damaged = path.parent / named
    before = _snapshot(root)
    status, notes = _statuses(root)[run]
    assert status == "damaged" and str(damaged) in notes[0], notes
    other = "002" if run == "001" else "001"
    for command in (["submit", run], ["stack", "--exp", f"{run},{other}", "--name", "s09"],
                    ["predict", run, "--test", str(root / "test.csv"), "--out", str(tmp_path / "p")],
                    ["export", run, str(tmp_path / "bundle"), "--no-wheel"]):
        out = CliRunner().invoke(app, [*command, "-w", str(root)])
        text = " ".join(out.output.split())
        assert out.exit_code == 2 and "Traceback" not in out.output, (command, out.output)
        assert str(damaged) in text and "damaged" in text, (command, text)
    assert _snapshot(root) == before and not (tmp_path / "bundle").exists() and not (tmp_path / "p").exists()


def test_a_manifest_forged_after_the_labels_changed_is_stale_for_the_leaderboard_as_for_submit(trained, tmp_path):
    """Issue 40: after the train labels changed, a run whose manifest's data_hash was forged to today's was
    "complete" and "best" on the leaderboard but stale for submit. Its folds' records still say otherwise,
    and every reader now reads them."""
    import json

    import pandas as pd

    from competition import data as data_mod
    from competition.spec import load_spec

    root = _copy(trained, tmp_path)
    frame = pd.read_csv(root / "train.csv")
    frame.loc[:40, "target"] = 1 - frame.loc[:40, "target"]
    frame.to_csv(root / "train.csv", index=False)
    now = data_mod.load(load_spec(root / "competition.yaml")).train_hash
    for name in ("001", "002"):
        manifest = root / "experiments" / name / "manifest.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "data_hash": now}))
    status, notes = _statuses(root)["001"]
    assert status == "stale" and "fold0/done.json" not in notes[0] and "train data changed" in notes[0], notes
    for command in (["submit", "001"], ["stack", "--exp", "001,002", "--name", "s09"]):
        out = CliRunner().invoke(app, [*command, "-w", str(root)])
        assert out.exit_code == 2 and "train data changed" in " ".join(out.output.split()), (command, out.output)
    assert CliRunner().invoke(app, ["submit", "001", "--allow-stale", "-w", str(root)]).exit_code == 0


def test_damaged_folds_manifest_makes_no_run_complete_on_the_leaderboard(trained, tmp_path):
    """Issue 40: with folds/manifest.json damaged the leaderboard listed every run complete while stack
    refused. Now every run is stale for the same reason stack gives, with its fix."""
    root = _copy(trained, tmp_path)
    (root / "folds" / "manifest.json").write_bytes(b"{{")
    statuses = _statuses(root)
    assert {s for s, _ in statuses.values()} == {"stale"}, statuses
    assert all("folds/manifest.json" in " ".join(notes) and "comp folds --force" in " ".join(notes)
               for _, notes in statuses.values()), statuses
    out = CliRunner().invoke(app, ["stack", "--exp", "001,002", "--name", "s09", "-w", str(root)])
    assert out.exit_code == 2 and "folds/manifest.json" in out.output and "comp folds --force" in out.output


def test_a_deleted_run_manifest_is_listed_damaged_and_its_stack_stale(trained, tmp_path):
    """Issue 40: experiments/001/manifest.json deleted -- 001 vanished from the leaderboard and s01 stayed
    complete. Now 001 is listed damaged with the command that writes it again, s01 stale (its input is gone)."""
    root = _copy(trained, tmp_path)
    (root / "experiments" / "001" / "manifest.json").unlink()
    statuses = _statuses(root)
    assert statuses["001"][0] == "damaged" and "manifest.json: missing" in statuses["001"][1][0]
    assert "comp train exp=001 --fold all" in statuses["001"][1][0]
    assert statuses["s01"][0] == "stale" and "input 001 is gone" in " ".join(statuses["s01"][1])
    out = CliRunner().invoke(app, ["submit", "s01", "-w", str(root)])
    assert out.exit_code == 2 and "input 001 is gone" in out.output
    out = CliRunner().invoke(app, ["train", "exp=001", "--fold", "all", "-w", str(root)])   # the fix it names
    assert out.exit_code == 0, out.output
    assert _statuses(root)["001"][0] == "complete"


def test_a_blends_parameters_are_verified_on_read(trained, tmp_path):
    """blend.json's hash is recorded in the blend's manifest: changed, the blend is damaged for the
    leaderboard and predict refuses it, naming the file and the blend command that rebuilds it."""
    root = _copy(trained, tmp_path)
    out = CliRunner().invoke(app, ["blend", "--exp", "001,002", "--method", "weighted", "--name", "b01", "-w", str(root)])
    assert out.exit_code == 0, out.output
    path = root / "experiments" / "b01" / "blend.json"
    path.write_text(path.read_text().replace("[", "[ 0.5, ", 1))
    status, notes = _statuses(root)["b01"]
    assert status == "damaged" and str(path) in notes[0] and "comp blend --exp 001,002" in notes[0], notes
    out = CliRunner().invoke(app, ["predict", "b01", "--test", str(root / "test.csv"), "--out", str(tmp_path / "p"),
                                   "-w", str(root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and str(path) in text and "comp blend --exp 001,002" in text, text
