"""``comp report`` on small real workspaces: every applicable plot written, the page checked in Chromium.

One disaster-tweets workspace (two TF-IDF experiments -- a logistic one and a LightGBM-headed one
that records a learning curve -- plus a stack) is trained once for the module; a commonlit subset
covers regression.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.commands.report import FLAGS
from competition.errors import InputError
from competition.leaderboard import leaderboard
from competition.report import report

TWEETS_PLOTS = {"fold_scores", "oof_correlation", "confusion", "calibration", "learning_curves",
                "importance_s01"}
LGBM_TFIDF = """\
template: tfidf
model:
  word_ngrams: null
  char_ngrams: [2, 4]
  max_features: 500
  estimator: lgbm
  lgbm: {num_boost_round: 60, num_leaves: 4, min_data_in_leaf: 10, learning_rate: 0.1}
train:
  threads: 1
"""
COMMONLIT_SPEC = """\
name: commonlit-mini
train: train.csv
test: test.csv
id: id
targets: [target]
text: [excerpt]
task: regression
metric: rmse
folds: {n_splits: 3, seed: 42}
"""


@pytest.fixture(scope="module")
def tweets(tmp_path_factory):
    """A trained tweets workspace: experiments 001 (logistic) and 002 (LightGBM head), stack s01."""
    pytest.importorskip("competition.models.tfidf")
    from competition.config import load_config
    from competition.stack import stack
    from competition.train import train
    from tests.workspaces import tweets_workspace

    ws = tweets_workspace(tmp_path_factory.mktemp("tweets") / "ws",
                          experiments={"001": "template: tfidf\n", "002": LGBM_TFIDF})
    for exp in ("001", "002"):
        assert train(ws, load_config(ws, exp)).complete
    assert stack(ws).name == "s01"
    return ws


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_report_writes_every_applicable_plot(tweets, tmp_path):
    result = report(tweets, out=tmp_path / "r")
    assert result.dir == tmp_path / "r" and result.index.is_file()
    assert result.runs == [e.name for e in leaderboard(tweets)]   # best first
    assert set(result.runs) == {"001", "002", "s01"}
    assert not [p for p in result.plots if p.failed]
    assert {p.key for p in result.written} == TWEETS_PLOTS
    assert {p.key for p in result.skipped} == {"pred_vs_true"}
    page = result.index.read_text()
    for plot in result.written:
        width, height = png_size(result.dir / plot.file)
        assert 300 < width < 1500 and 150 < height < 2500, (plot.file, width, height)
        assert f'src="{plot.file}"' in page and html.escape(plot.caption) in page
    assert page.count("<img ") == len(TWEETS_PLOTS)
    assert "tweets-mini" in page and "f1 (higher is better)" in page
    assert "applies to regression" in page                       # the skipped plot's note
    table = re.search(r'<table id="leaderboard">.*?</table>', page, re.S).group(0)
    assert re.findall(r'data-run="([^"]+)"', table) == [e.name for e in leaderboard(tweets)]
    manifest = json.loads((result.dir / "manifest.json").read_text())
    assert manifest["kind"] == "report" and set(manifest["plots"]) == TWEETS_PLOTS
    assert not list(tmp_path.glob(".r.tmp-*"))                  # the temp folder was renamed away


def test_one_run_skips_what_needs_more(tweets, tmp_path):
    result = report(tweets, out=tmp_path / "one", runs=["001"])
    skipped = {p.key: p.caption for p in result.skipped}
    assert "at least two runs" in skipped["oof_correlation"]
    assert "no stack" in skipped["importance"]
    assert "no run has a learning curve" in skipped["learning_curves"]   # logistic heads record none
    page = result.index.read_text()
    assert re.findall(r'data-run="([^"]+)"', page) == ["001"]
    assert "at least two runs" in page


def test_default_folder_refusals_and_force(tweets, tmp_path):
    first = report(tweets, runs=["001", "002"])
    assert first.dir.parent == tweets.reports_dir and re.fullmatch(r"\d{8}-\d{6}(-\d+)?", first.dir.name)
    second = report(tweets, runs=["001", "002"])
    assert second.dir != first.dir and first.index.is_file()    # a new folder; nothing overwritten
    with pytest.raises(InputError, match="not empty.*force=True") as err:
        report(tweets, out=first.dir)
    assert re.search("not empty.*--force", err.value.phrased(FLAGS))   # `comp report` names its flag
    again = report(tweets, out=first.dir, force=True, runs=["002"])
    assert again.runs == ["002"] and not list(tweets.reports_dir.glob(".*"))
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="only an earlier report"):
        report(tweets, out=other, force=True)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="no run named 'nope'"):
        report(tweets, out=tmp_path / "x", runs=["nope"])
    assert not (tmp_path / "x").exists()


def test_no_runs_is_a_clear_error(tmp_path):
    from tests.workspaces import tweets_workspace

    ws = tweets_workspace(tmp_path / "ws", n_train=200, n_test=20)
    with pytest.raises(InputError, match="no complete run.*comp train"):
        report(ws)


def test_regression_shows_predicted_vs_true(tmp_path):
    pytest.importorskip("competition.models.tfidf")
    from competition import data, folds
    from competition.config import load_config
    from competition.spec import load_spec
    from competition.train import train
    from competition.workspace import Workspace
    from tests.datasets import shared_data

    src = shared_data() / "commonlit"
    root = tmp_path / "ws"
    (root / "experiments").mkdir(parents=True)
    train_rows = pd.read_csv(src / "train.csv").sample(n=240, random_state=0)
    train_rows[["id", "excerpt", "target"]].to_csv(root / "train.csv", index=False)
    pd.read_csv(src / "test.csv")[["id", "excerpt"]].to_csv(root / "test.csv", index=False)
    (root / "competition.yaml").write_text(COMMONLIT_SPEC)
    (root / "experiments" / "base.yaml").write_text("track:\n  wandb: false\n")
    (root / "experiments" / "001.yaml").write_text("template: tfidf\nmodel:\n  estimator: ridge\n"
                                                   "  char_ngrams: null\n")
    (root / "experiments" / "002.yaml").write_text("template: tfidf\nmodel:\n  estimator: ridge\n"
                                                   "  word_ngrams: null\n  char_ngrams: [3, 4]\n  alpha: 3.0\n")
    ws = Workspace(root)
    folds.write_folds(ws, data.load(load_spec(ws.spec_file)))
    for exp in ("001", "002"):
        assert train(ws, load_config(ws, exp)).complete

    result = report(ws, out=tmp_path / "r")
    assert not [p for p in result.plots if p.failed]
    assert {p.key for p in result.written} == {"fold_scores", "oof_correlation", "pred_vs_true"}
    skipped = {p.key: p.caption for p in result.skipped}
    assert set(skipped) == {"confusion", "calibration", "learning_curves", "importance"}
    assert "regression" in skipped["confusion"] and "binary" in skipped["calibration"]
    png_size(result.dir / "pred_vs_true.png")
    assert "rmse (lower is better)" in result.index.read_text()


def torch_history(fold: int, seeds=(42,), epochs: int = 4) -> list[dict]:
    """What an encoder fold writes in done.json: one row per validation (two per epoch here)."""
    rng = np.random.default_rng(fold)
    rows = []
    for seed in seeds:
        for step in range(1, 2 * epochs + 1):
            epoch = step / 2
            row = {"epoch": epoch, "step": step * 10, "val/loss": 1 / epoch + 0.05 * epoch + rng.normal(0, 0.02),
                   "val/score": 0.5 + 0.1 * np.log1p(epoch) + rng.normal(0, 0.01), "train/loss": 1 / epoch}
            rows.append({**row, "seed": seed} if len(seeds) > 1 else row)
    return rows


@pytest.mark.parametrize("task, metric", [("multiclass", "macro_f1"), ("multilabel", "f1")])
def test_other_tasks_and_torch_learning_curves(tmp_path, task, metric):
    from competition import artifacts
    from tests.test_stack import add_runs, synth_workspace

    env = synth_workspace(tmp_path / "ws", task=task, metric=metric, n=600, n_test=50, n_splits=3)
    add_runs(env, {"e01": 1.5, "e02": 1.0})
    for k in range(3):   # e01 as an encoder run would leave it; fold 1 trained two seeds
        artifacts.write_json(env.ws.fold_dir("e01", k) / "done.json",
                             {"fold": k, "history": torch_history(k, seeds=(1, 2) if k == 1 else (42,))})
    result = report(env.ws, out=tmp_path / "r")
    assert not [p for p in result.plots if p.failed]
    assert {p.key for p in result.written} == {"fold_scores", "oof_correlation", "confusion", "learning_curves"}
    assert "binary" in {p.key: p.caption for p in result.skipped}["calibration"]
    confusion = next(p for p in result.written if p.key == "confusion")
    assert confusion.title == ("Confusion matrix" if task == "multiclass" else "Per-label precision / recall / F1")
    for plot in result.written:
        png_size(result.dir / plot.file)


def test_cli_prints_the_page(tweets, tmp_path):
    import typer
    from typer.testing import CliRunner

    from competition.commands import report as report_cmd

    app = typer.Typer()
    app.command()(report_cmd.command)
    ok = CliRunner().invoke(app, ["-w", str(tweets.root), "--out", str(tmp_path / "r"), "--runs", "001,002"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip().splitlines()[-1] == str(tmp_path / "r" / "index.html")
    bad = CliRunner().invoke(app, ["-w", str(tweets.root), "--runs", "nope"])
    assert bad.exit_code == 2 and "no run named 'nope'" in bad.output


# -- the page in a real browser -----------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
# Appended to a copy of the page: once everything has loaded, write what the test checks into the DOM
# (Chromium's --dump-dom prints the DOM after the page's scripts ran).
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "check";
  out.textContent = JSON.stringify({
    images: [...document.images].map(i => ({src: i.getAttribute("src"), complete: i.complete,
                                           width: i.naturalWidth, height: i.naturalHeight})),
    runs: [...document.querySelectorAll("#leaderboard tbody tr td:nth-child(2)")].map(td => td.textContent),
    height: document.documentElement.scrollHeight,
  });
  document.body.appendChild(out);
});
</script>
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's path; skip where it is absent, but fail under CI, where a skip would hide it.
    (Module-scoped, so it is looked for before the module's workspace is trained.)"""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    reason = "Chromium not found: install Debian's `chromium` package (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90, check=True)


def test_page_in_headless_chromium(chromium, tweets, tmp_path):
    binary = chromium
    result = report(tweets, out=tmp_path / "report")
    check = result.dir / "_check.html"   # beside index.html, so the relative image paths resolve alike
    check.write_text(result.index.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = run_chromium(binary, tmp_path / "profile", "--window-size=1280,800", "--virtual-time-budget=10000",
                       "--dump-dom", check.as_uri()).stdout
    check.unlink()
    found = re.search(r'<pre id="check">(.*?)</pre>', dom, re.S)
    assert found, f"the check script did not run; DOM:\n{dom[:2000]}"
    state = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))

    images = {img["src"]: img for img in state["images"]}
    assert set(images) == {p.file for p in result.written}
    broken = [src for src, img in images.items() if not (img["complete"] and img["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    for src, img in images.items():
        assert (img["width"], img["height"]) == png_size(result.dir / src)
    assert sorted(state["runs"]) == ["001", "002", "s01"]

    shot = tmp_path / "screenshot.png"
    height = int(np.clip(state["height"], 800, 12000))
    run_chromium(binary, tmp_path / "profile", f"--window-size=1280,{height}", f"--screenshot={shot}",
                 result.index.as_uri())
    width, shot_height = png_size(shot)
    assert width == 1280 and shot_height == height
    print(f"screenshot: {shot}")


# -- CV vs scored -------------------------------------------------------------------------------

@pytest.mark.parametrize("task, metric, side", [("binary", "f1", "below"), ("regression", "rmse", "above")])
def test_cv_vs_scored_appears_once_a_score_is_recorded(tmp_path, task, metric, side):
    from competition import runs
    from competition.score import score_and_record
    from competition.submit import submit
    from tests.test_submit import load_data, make_run, synth_workspace

    ws = synth_workspace(tmp_path / "ws", task=task, metric=metric, solution=True)
    data = load_data(ws)
    make_run(ws, data, "001", seed=1)
    make_run(ws, data, "002", noise=0.8, seed=2)
    sub = submit(ws, "001", data=data)

    before = report(ws, out=tmp_path / "before", data=data)
    assert "cv_vs_scored" not in {p.key for p in before.plots}    # neither drawn nor listed as skipped
    assert not (before.dir / "cv_vs_scored.png").exists() and "CV vs scored" not in before.index.read_text()

    scored = score_and_record(ws, sub.path, data=data)
    assert scored.recorded == ws.run_dir("001") / "scores.json"
    after = report(ws, out=tmp_path / "after", data=data)
    assert not [p for p in after.plots if p.failed]
    plot = next(p for p in after.written if p.key == "cv_vs_scored")
    png_size(after.dir / plot.file)
    cv = runs.load_run(ws, "001").score
    assert f"Points {side} it mean CV was optimistic" in plot.caption
    assert f"001 {scored.score - cv:+.4f}" in plot.caption and "No recorded score: 002" in plot.caption
    page = after.index.read_text()
    assert 'src="cv_vs_scored.png"' in page and html.escape(plot.caption) in page
    assert json.loads((after.dir / "manifest.json").read_text())["plots"]["cv_vs_scored"] == "cv_vs_scored.png"
    row = re.search(r'<tr[^>]*data-run="001">(.*?)</tr>', page).group(1)
    assert f"<td class=\"num\">{scored.score:.4f}</td>" in row           # the scored column of the table


def test_the_page_marks_an_optimistic_cv_as_the_leaderboard_does(tweets, tmp_path):
    """Issue 24 #23: the CLI showed `complete*` (CV chosen on folds' own labels), the page `complete`."""
    from competition.config import load_config
    from competition.train import train
    from competition.workspace import Workspace

    root = tmp_path / "ws"
    shutil.copytree(tweets.root, root)
    ws = Workspace(root)
    (root / "experiments" / "003.yaml").write_text("template: tfidf\nmodel: {C: 2.0}\ntuned_on: [0]\n")
    assert train(ws, load_config(ws, "003")).complete
    marked = {e.name for e in leaderboard(ws) if e.selected_on}
    assert "003" in marked and "001" not in marked
    page = report(ws, out=tmp_path / "r").index.read_text()
    rows = dict(re.findall(r'data-run="([^"]+)">(.*?)</tr>', page))
    for name, row in rows.items():
        assert ('class="optimistic"' in row) == (name in marked), (name, row)
    assert "their CV is optimistic" in page
