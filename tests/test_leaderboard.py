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
