"""comp leaderboard: ordering by the metric's direction, partial and stale runs flagged, JSON;
and the CLI wiring of leaderboard, submit and score."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from competition import artifacts, runs
from competition.commands import leaderboard as leaderboard_cmd
from competition.commands import score as score_cmd
from competition.commands import submit as submit_cmd
from competition.leaderboard import leaderboard, render, to_json
from tests.test_submit import load_data, make_run, synth_workspace


def partial_run(ws, data, name: str, done: list[int], n_splits: int = 3) -> None:
    """A run folder whose manifest says partial, as train writes it while folds are missing."""
    run_dir = ws.run_dir(name)
    run_dir.mkdir(parents=True)
    artifacts.write_json(run_dir / "manifest.json", {
        "name": name, "kind": "experiment", "family": "encoder", "metric": data.spec.metric,
        "pred_columns": data.spec.pred_columns, "status": "partial", "n_splits": n_splits,
        "folds_done": done, "seconds_per_fold": {str(k): 10.0 for k in done},
        "folds_hash": artifacts.file_hash(ws.folds_file), "data_hash": data.train_hash,
        "test_hash": data.test_hash})


@pytest.mark.parametrize("task, metric", [("binary", "f1"), ("regression", "rmse")])
def test_order_follows_the_metric_direction(tmp_path, task, metric):
    ws = synth_workspace(tmp_path / "ws", task=task, metric=metric, n_train=90)
    data = load_data(ws)
    made = [make_run(ws, data, name, noise=noise, seed=i)
            for i, (name, noise) in enumerate([("a", 0.95), ("b", 0.2), ("c", 0.7)])]
    partial_run(ws, data, "d", done=[0, 2])
    entries = leaderboard(ws)
    best_first = sorted(made, key=lambda r: r.score, reverse=metric == "f1")
    assert [e.name for e in entries] == [r.name for r in best_first] + ["d"]
    assert [e.rank for e in entries] == [1, 2, 3, None]
    top = entries[0]
    assert top.status == "complete" and top.cv == best_first[0].score and top.seconds == 4.5
    assert top.fold_mean == pytest.approx(best_first[0].metrics["fold_mean"]) and top.fold_std is not None
    assert (top.folds_done, top.n_splits, top.kind, top.family) == (3, 3, "experiment", "tfidf")
    last = entries[-1]
    assert last.status == "partial" and last.cv is None and last.folds_done == 2
    assert last.notes[0] == "2/3 folds done" and last.seconds == 20.0


def test_stale_runs_are_flagged_and_sorted_after_complete_ones(tmp_path):
    ws = synth_workspace(tmp_path / "ws")
    data = load_data(ws)
    make_run(ws, data, "good", noise=0.9)
    make_run(ws, data, "old-folds", noise=0.1, folds_hash="0000000000000000")
    make_run(ws, data, "old-data", noise=0.1, data_hash="1111111111111111")
    make_run(ws, data, "old-test", noise=0.9, seed=3, test_hash="2222222222222222")
    by_name = {e.name: e for e in leaderboard(ws)}
    assert by_name["old-folds"].status == "stale" and "folds changed" in by_name["old-folds"].notes[0]
    assert by_name["old-data"].status == "stale" and "train data changed" in by_name["old-data"].notes[0]
    # other test data does not spoil the CV, but the run must be retrained before submitting
    assert by_name["old-test"].status == "complete"
    assert "test data changed" in by_name["old-test"].notes[0] and "retrain" in by_name["old-test"].notes[0]
    order = [e.name for e in leaderboard(ws)]
    assert set(order[:2]) == {"good", "old-test"} and set(order[2:]) == {"old-folds", "old-data"}
    # new folds make every run stale
    (ws.folds_file).write_text(ws.folds_file.read_text().replace(",0\n", ",1\n", 1))
    assert {e.status for e in leaderboard(ws)} == {"stale"}


def test_json_and_table(tmp_path):
    ws = synth_workspace(tmp_path / "ws")
    data = load_data(ws)
    make_run(ws, data, "001")
    partial_run(ws, data, "002", done=[1])
    entries = leaderboard(ws)
    doc = json.loads(to_json(entries, "f1", "maximize"))
    assert doc["metric"] == "f1" and [r["name"] for r in doc["runs"]] == ["001", "002"]
    assert doc["runs"][1]["status"] == "partial" and doc["runs"][1]["notes"] == ["1/3 folds done"]
    table, lines = render(entries, "f1", "maximize")
    assert table.row_count == 2 and any("002" in line.plain and "1/3 folds done" in line.plain for line in lines)
    assert leaderboard(synth_workspace(tmp_path / "empty")) == []


def test_each_run_is_compared_with_the_best_by_a_paired_interval(tmp_path):
    from tests.scoring import nested_cv

    ws = synth_workspace(tmp_path / "ws", n_train=600)
    data = load_data(ws)
    make_run(ws, data, "good", noise=0.3, seed=1)
    make_run(ws, data, "twin", noise=0.3, seed=1)          # the same predictions: a tie by construction
    make_run(ws, data, "poor", noise=1.5, seed=2)
    entries = {e.name: e for e in leaderboard(ws)}
    best = min(entries.values(), key=lambda e: e.rank)
    assert best.rank == 1 and best.vs_best["diff"] == 0
    fold = np.arange(len(data.y)) % 3
    for e in entries.values():
        oof = runs.load_run(ws, e.name).oof()
        assert e.cv == pytest.approx(nested_cv("f1", data.y, oof[["target"]].to_numpy(), "binary", fold))
    poor = entries["poor"]
    assert poor.vs_best["diff"] == pytest.approx(poor.cv - best.cv)
    assert poor.vs_best["low"] < poor.vs_best["diff"] < poor.vs_best["high"] < 0 and not poor.vs_best["tied"]
    other = entries["twin" if best.name == "good" else "good"]
    assert other.vs_best["tied"] and other.vs_best["low"] <= 0 <= other.vs_best["high"]
    assert entries["good"].in_sample >= entries["good"].cv        # the in-sample figure, beside it
    _, lines = render(list(entries.values()), "f1", "maximize")
    assert any("paired bootstrap" in line.plain for line in lines)


# -- CLI wiring ------------------------------------------------------------------------------

def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("leaderboard")(leaderboard_cmd.command)
    app.command("submit")(submit_cmd.command)
    app.command("score")(score_cmd.command)
    return app


def test_cli_leaderboard_submit_score(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))  # never a real upload from a test
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    runner = CliRunner()
    ws = synth_workspace(tmp_path / "ws", solution=True)
    data = load_data(ws)
    run = make_run(ws, data, "001")
    partial_run(ws, data, "002", done=[0])
    w = ["-w", str(ws.root)]

    result = runner.invoke(cli(), ["leaderboard", "--json", *w])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [(r["name"], r["status"]) for r in doc["runs"]] == [("001", "complete"), ("002", "partial")]
    result = runner.invoke(cli(), ["leaderboard", *w])
    assert result.exit_code == 0 and "001" in result.output and "partial" in result.output

    result = runner.invoke(cli(), ["submit", "002", *w])
    assert result.exit_code == 2 and "not complete" in result.output
    result = runner.invoke(cli(), ["submit", *w, "--kaggle", "-m", "hi", "-c", "some-comp"])
    assert result.exit_code == 0, result.output
    files = sorted(ws.submissions_dir.glob("*.csv"))
    assert len(files) == 1 and files[0].name.endswith(f"_001_cv{run.score:.4f}.csv")
    assert "kaggle:" in result.output and ("not found" in result.output or "not configured" in result.output)

    result = runner.invoke(cli(), ["score", str(files[0]), *w])
    assert result.exit_code == 0, result.output
    assert "f1:" in result.output and "20 rows" in result.output
    bad = tmp_path / "bad.csv"
    pd.read_csv(files[0]).iloc[1:].to_csv(bad, index=False)
    result = runner.invoke(cli(), ["score", str(bad), *w])
    assert result.exit_code == 2 and "19 rows" in result.output


# -- comp score: --solution, scores.json, the scored column ----------------------------------

def printed_score(output: str, metric: str = "f1") -> float:
    """The score as `comp score` prints it (4 decimals)."""
    line = next(line for line in output.splitlines() if line.startswith(f"{metric}: "))
    return float(line.split()[1])


@pytest.fixture
def submitted(tmp_path):
    """A workspace with a solution file, runs 001 and 002, and one submission of 001 by `comp submit`."""
    ws = synth_workspace(tmp_path / "ws", solution=True)
    data = load_data(ws)
    make_run(ws, data, "001")
    make_run(ws, data, "002", noise=0.8, seed=2)
    result = CliRunner().invoke(cli(), ["submit", "001", "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    (path,) = ws.submissions_dir.glob("*.csv")
    return ws, path


def aligned(solution: pd.DataFrame, submission: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) labels, row by row on the id."""
    both = solution.merge(submission, on="id", suffixes=("_true", "_pred"), validate="one_to_one")
    assert len(both) == len(solution) == len(submission)
    return both["target_true"].to_numpy(), both["target_pred"].to_numpy()


def test_score_is_recorded_in_the_run_and_shown_on_the_leaderboard(submitted):
    from sklearn.metrics import f1_score

    ws, path = submitted
    w = ["-w", str(ws.root)]
    result = CliRunner().invoke(cli(), ["score", str(path), *w])
    assert result.exit_code == 0, result.output
    y_true, y_pred = aligned(pd.read_csv(ws.root / "solution.csv"), pd.read_csv(path))
    expected = f1_score(y_true, y_pred)                       # sklearn, on the files themselves
    assert printed_score(result.output) == pytest.approx(expected, abs=5e-5)

    entries = json.loads((ws.run_dir("001") / "scores.json").read_text())
    assert len(entries) == 1 and not (ws.run_dir("002") / "scores.json").exists()
    entry = entries[0]
    assert entry["score"] == pytest.approx(expected) and f"{entry['score']:.4f}" in result.output
    assert entry["submission"] == path.name and entry["metric"] == "f1"
    assert entry["solution"] == str((ws.root / "solution.csv").resolve())
    assert entry["solution_hash"] == artifacts.file_hash(ws.root / "solution.csv")
    assert "scored_at" in entry and entry["scored_at"].endswith("+00:00")
    cv = runs.load_run(ws, "001").score
    assert entry["cv"] == cv
    assert f"CV {cv:.4f}, scored {expected:.4f}, difference {expected - cv:+.4f}" in result.output
    assert "recorded in" in result.output

    doc = json.loads(CliRunner().invoke(cli(), ["leaderboard", "--json", *w]).output)
    scored = {r["name"]: r["scored"] for r in doc["runs"]}
    assert scored == {"001": pytest.approx(expected), "002": None}
    by_name = {e.name: e for e in leaderboard(ws)}
    table, lines = render(list(by_name.values()), "f1", "maximize")
    column = next(c for c in table.columns if c.header == "scored")
    names = next(c for c in table.columns if c.header == "run")
    assert dict(zip(names.cells, column.cells)) == {"001": f"{expected:.4f}", "002": "-"}
    assert [c.header for c in table.columns][3:5] == ["CV", "scored"]
    assert any("scores.json" in line.plain for line in lines)


def test_solution_option_scores_against_that_file(submitted, tmp_path):
    from sklearn.metrics import f1_score

    ws, path = submitted
    w = ["-w", str(ws.root)]
    sub = pd.read_csv(path)
    assert set(sub["target"]) == {0, 1}
    perfect = tmp_path / "perfect.csv"
    sub.iloc[::-1].to_csv(perfect, index=False)                # the submission's own labels, rows reversed
    result = CliRunner().invoke(cli(), ["score", str(path), "--solution", str(perfect), *w])
    assert result.exit_code == 0, result.output
    assert printed_score(result.output) == 1.0 and str(perfect) in result.output

    flipped = sub.copy()
    half = np.arange(len(sub)) % 2 == 0
    flipped.loc[half, "target"] = 1 - flipped.loc[half, "target"]
    other = tmp_path / "flipped.csv"
    flipped.to_csv(other, index=False)
    expected = f1_score(flipped["target"], sub["target"])
    assert 0 < expected < 1
    result = CliRunner().invoke(cli(), ["score", str(path), "--solution", str(other), *w])
    assert result.exit_code == 0, result.output
    assert printed_score(result.output) == pytest.approx(expected, abs=5e-5)
    entries = json.loads((ws.run_dir("001") / "scores.json").read_text())
    assert [e["score"] for e in entries] == [1.0, pytest.approx(expected)]
    assert entries[-1]["solution"] == str(other.resolve())
    assert entries[-1]["solution_hash"] == artifacts.file_hash(other)
    assert leaderboard(ws)[0].scored == pytest.approx(expected)   # the latest one


def test_bad_solution_option_exits_2_naming_the_file(submitted, tmp_path):
    ws, path = submitted
    sub = pd.read_csv(path)
    no_id = tmp_path / "no_id.csv"
    sub.rename(columns={"id": "ident"}).to_csv(no_id, index=False)
    wrong_ids = tmp_path / "wrong_ids.csv"
    sub.assign(id=sub["id"] + 100_000).to_csv(wrong_ids, index=False)
    short = tmp_path / "short.csv"
    sub.iloc[1:].to_csv(short, index=False)
    dup = tmp_path / "dup.csv"
    sub.assign(id=[sub["id"].iloc[0]] * 2 + list(sub["id"].iloc[2:])).to_csv(dup, index=False)
    cases = {tmp_path / "missing.csv": "file not found", no_id: "column 'id'", wrong_ids: "ids differ",
             short: "19", dup: "duplicated id"}
    for solution, says in cases.items():
        result = CliRunner().invoke(cli(), ["score", str(path), "--solution", str(solution), "-w", str(ws.root)])
        assert result.exit_code == 2, (solution, result.output)
        assert str(solution) in result.output and says in result.output, result.output
        assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert not (ws.run_dir("001") / "scores.json").exists()       # nothing recorded on a refusal


def test_scored_but_not_recorded_says_why(submitted, tmp_path):
    import shutil

    ws, path = submitted
    w = ["-w", str(ws.root)]
    copy = tmp_path / "copy.csv"                               # no .json manifest beside it
    shutil.copy(path, copy)
    result = CliRunner().invoke(cli(), ["score", str(copy), *w])
    assert result.exit_code == 0, result.output
    assert "f1: " in result.output and "not recorded" in result.output and "no manifest" in result.output
    assert not (ws.run_dir("001") / "scores.json").exists()

    edited = pd.read_csv(path)
    edited.loc[0, "target"] = 1 - edited.loc[0, "target"]
    edited.to_csv(path, index=False)                           # changed since comp submit wrote it
    result = CliRunner().invoke(cli(), ["score", str(path), *w])
    assert result.exit_code == 0 and "not recorded" in result.output and "changed since" in result.output
    assert not (ws.run_dir("001") / "scores.json").exists()

    shutil.rmtree(ws.run_dir("001"))
    result = CliRunner().invoke(cli(), ["score", str(path), *w])
    assert result.exit_code == 0 and "not recorded" in result.output and "no longer exists" in result.output
    assert "001" in result.output


def test_a_retrained_run_drops_its_old_scores(submitted):
    from competition.score import latest_score

    ws, path = submitted
    assert CliRunner().invoke(cli(), ["score", str(path), "-w", str(ws.root)]).exit_code == 0
    assert latest_score(runs.load_run(ws, "001")) is not None
    make_run(ws, load_data(ws), "001", noise=0.7, seed=5)      # retrained: another CV
    assert latest_score(runs.load_run(ws, "001")) is None
    result = CliRunner().invoke(cli(), ["score", str(path), "-w", str(ws.root)])
    assert "not recorded" in result.output and "retrained since" in result.output


def test_submit_names_a_simpler_run_statistically_tied_with_the_best(tmp_path):
    from competition.submit import best_run

    ws = synth_workspace(tmp_path / "ws", n_train=600, metric="roc_auc")
    data = load_data(ws)
    make_run(ws, data, "e1", noise=0.90, seed=1)
    make_run(ws, data, "s1", noise=0.88, seed=7, kind="stack")      # a hair more signal
    make_run(ws, data, "far", noise=1.0, seed=5)                    # none
    entries = {e.name: e for e in leaderboard(ws)}
    assert entries["s1"].rank == 1 and entries["e1"].vs_best["tied"] and not entries["far"].vs_best["tied"]
    chosen, notes = best_run(ws, data)
    assert chosen == "s1"                                             # the best CV is still what is taken
    assert len(notes) == 1 and notes[0].startswith("e1 (tfidf) is statistically tied with s1")
    assert "`comp submit e1`" in notes[0]
