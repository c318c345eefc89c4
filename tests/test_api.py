"""The Python API (issue 25): the README's notebook example on a small real workspace, and what a
notebook user believes of it -- a run replayed on a frame gives the run's own test predictions, the
leaderboard frame is the CLI's leaderboard, errors are the CLI's messages phrased for Python."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from competition.errors import InputError
from tests.workspaces import tweets_workspace



@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """The README's notebook section, as written there: train, stack, blend, from Python."""
    from competition import Workspace

    root = tweets_workspace(tmp_path_factory.mktemp("api") / "ws", n_train=300, n_test=60,
                            experiments={"001": "template: tfidf\n",
                                         "002": "template: tfidf\nmodel: {C: 1.0, word_ngrams: null}\n"}).root
    ws = Workspace(root)
    for exp in ("001", "002"):
        assert ws.train(exp).complete
    ws.stack(["001", "002"], meta="logistic")
    ws.blend(["001", "002"], method="mean")
    return ws


@pytest.mark.parametrize("name", ["001", "s01", "b01"])
def test_run_predict_on_the_test_rows_is_the_runs_own_test_predictions(notebook, name):
    run = notebook.run(name)
    frame = pd.read_csv(notebook.root / "test.csv")          # as a notebook reads it
    got = run.predict(frame)
    own = run.test()
    assert list(got.columns) == ["id", *run.pred_columns] and len(got) == len(frame)
    mine = own.set_index("id").loc[got["id"], run.pred_columns].to_numpy()
    np.testing.assert_allclose(got[run.pred_columns].to_numpy(), mine, rtol=0, atol=1e-6)


def test_run_predict_on_a_few_new_rows_in_another_order(notebook):
    """Rows are predicted each on its own: a subset in another order gives the same values."""
    run = notebook.run("s01")
    frame = pd.read_csv(notebook.root / "test.csv")
    whole = run.predict(frame).set_index("id")
    part = run.predict(frame.iloc[[7, 3, 11]])
    assert part["id"].tolist() == frame["id"].iloc[[7, 3, 11]].tolist()
    np.testing.assert_allclose(part[run.pred_columns].to_numpy(),
                               whole.loc[part["id"], run.pred_columns].to_numpy(), atol=1e-6)


def test_the_leaderboard_frame_is_the_leaderboard(notebook):
    from competition.leaderboard import leaderboard

    frame = notebook.leaderboard()
    entries = leaderboard(notebook.layout)
    assert frame["name"].tolist() == [e.name for e in entries] and set(frame["name"]) == {"001", "002", "s01", "b01"}
    assert frame["cv"].tolist() == pytest.approx([e.cv for e in entries])
    assert notebook.run(frame["name"].iloc[0]).cv == pytest.approx(frame["cv"].iloc[0])


def test_a_frame_without_the_text_columns_is_refused_naming_them(notebook):
    frame = pd.read_csv(notebook.root / "test.csv").drop(columns=["text"])
    with pytest.raises(InputError, match="text"):
        notebook.run("001").predict(frame)
    with pytest.raises(InputError, match="non-empty pandas DataFrame"):
        notebook.run("001").predict(frame.iloc[:0])


def test_errors_name_python_arguments_not_flags(notebook):
    with pytest.raises(InputError) as err:
        notebook.stack(["001", "002"], meta="logistic")        # the same stack as s01
    assert "force=True" in str(err.value) and "--force" not in str(err.value)
    with pytest.raises(InputError, match="no run named 'zz9'"):
        notebook.run("zz9")


def test_submit_and_predict_write_what_the_cli_writes(notebook, tmp_path):
    sub = notebook.submit("s01", out=tmp_path / "sub.csv")
    written = pd.read_csv(sub.path)
    assert written.columns.tolist() == ["id", "target"] and set(written["target"]) <= {0, 1}
    result = notebook.predict("s01", notebook.root / "test.csv", out=tmp_path / "pred")
    assert pd.read_csv(result.submission).equals(written)


def test_a_bundle_is_a_workspace_whose_files_are_checked_first(notebook, tmp_path):
    from competition import Workspace
    from competition.export import export

    export(notebook.layout, "s01", tmp_path / "bundle")
    bundle = Workspace(tmp_path / "bundle")
    frame = pd.read_csv(notebook.root / "test.csv")
    got = bundle.run("s01").predict(frame)
    np.testing.assert_allclose(got[["target"]].to_numpy(), notebook.run("s01").predict(frame)[["target"]].to_numpy(),
                               atol=1e-6)
    meta = next((tmp_path / "bundle").rglob("meta.json"))
    meta.write_text(meta.read_text().replace('"logit"', '"logit" '))   # one byte more: altered
    with pytest.raises(InputError, match="damaged or altered"):
        bundle.run("s01").predict(frame)
