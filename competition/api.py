"""comp from Python: a notebook, a shell or another program drives a workspace as the CLI does.

The CLI's commands call these methods; each returns the stage's own result (a dataclass with the
figures the command prints) or a DataFrame. Errors are :class:`~competition.errors.InputError`
with the same messages, naming arguments as a Python caller writes them (``force=True``)::

    from competition import Workspace

    ws = Workspace("path/to/workspace")          # None: found from the current folder upwards
    ws.train("001")                              # every fold; resumes what is done
    ws.train("042", folds=[0], overrides=["train.epochs=1"])
    ws.stack(["001", "042"])                     # -> StackResult (holdout=0.1 checks it first)
    ws.leaderboard()                             # -> DataFrame, one row per run, best first
    run = ws.run("s01")
    run.cv, run.oof(), run.test()                # its CV and predictions
    run.predict(frame)                           # -> DataFrame: id + prediction columns, replayed
    ws.submit("s01")                             # the validated submission CSV
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from competition import runs
from competition.blend import blend
from competition.config import load_config
from competition.holdout import stack_with_holdout
from competition.leaderboard import leaderboard
from competition.predict import predict, predict_frame
from competition.stack import stack
from competition.submit import submit
from competition.train import train
from competition.workspace import Workspace as Layout
from competition.workspace import find_workspace


class Run:
    """One finished run (experiment, stack or blend) of a workspace."""

    def __init__(self, ws: Workspace, name: str):
        self._ws = ws
        self._run = runs.load_run(ws.layout, name)

    def __repr__(self) -> str:
        return f"Run({self.name!r}, kind={self.kind!r}, cv={self.cv})"

    @property
    def name(self) -> str:
        return self._run.name

    @property
    def kind(self) -> str:
        """``experiment``, ``stack`` or ``blend``."""
        return self._run.manifest.get("kind", "experiment")

    @property
    def cv(self) -> float | None:
        """The run's CV (nested thresholds where the metric cuts probabilities)."""
        return self._run.score

    @property
    def pred_columns(self) -> list[str]:
        return self._run.pred_columns

    @property
    def manifest(self) -> dict:
        return dict(self._run.manifest)

    def oof(self) -> pd.DataFrame:
        """id, fold and the out-of-fold prediction column(s) of every train row."""
        return self._run.oof()

    def test(self) -> pd.DataFrame | None:
        """id and the prediction column(s) of the workspace's test rows (None without a test set)."""
        return self._run.test()

    def predict(self, frame: pd.DataFrame, *, precision: str = "fp32") -> pd.DataFrame:
        """Replay the run on ``frame`` (the test file's columns: id, text, features): id + its
        prediction columns, as ``comp predict`` computes them, nothing written. On the workspace's
        own test rows this equals :meth:`test`. ``precision``: "bf16", "int8" or "onnx-int8" for faster
        encoders on a CPU, at a small cost in agreement (:func:`competition.predict.predict`)."""
        return predict_frame(self._ws.layout, self.name, frame, precision=precision)


class Workspace:
    """A competition workspace (the folder holding ``competition.yaml``)."""

    def __init__(self, path: Path | str | None = None):
        self.layout = path if isinstance(path, Layout) else find_workspace(explicit=path)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def root(self) -> Path:
        return self.layout.root

    def train(self, exp: str, *, folds: Sequence[int] | str = "all", overrides: Sequence[str] = (),
              force: bool = False, on_fold=None):
        """Train experiment ``exp`` (``experiments/<exp>.yaml`` with ``key.sub=value`` overrides) on
        ``folds`` ("all" or fold numbers); returns :class:`competition.train.TrainResult`."""
        cfg = load_config(self.layout, exp, list(overrides))
        return train(self.layout, cfg, folds=folds if isinstance(folds, str) else list(folds), force=force,
                     on_fold=on_fold)

    def stack(self, inputs: Sequence[str] | None = None, *, holdout: float | None = None, **options):
        """A meta-model over ``inputs``' OOF predictions (:func:`competition.stack.stack`'s options:
        features, meta, name, params, seed, force); with ``holdout`` the stack is checked on that share
        of rows first (:func:`competition.holdout.stack_with_holdout`)."""
        inputs = None if inputs is None else list(inputs)
        if holdout is not None:
            return stack_with_holdout(self.layout, holdout=holdout, inputs=inputs, **options)
        return stack(self.layout, inputs=inputs, **options)

    def blend(self, inputs: Sequence[str] | None = None, **options):
        """Blend ``inputs`` (:func:`competition.blend.blend`'s options: method, name, seed, force)."""
        return blend(self.layout, inputs=None if inputs is None else list(inputs), **options)

    def leaderboard(self) -> pd.DataFrame:
        """Every run, best first: rank, name, kind, family, CV, fold mean and spread, status, notes."""
        rows = [e.to_dict() for e in leaderboard(self.layout)]
        return pd.DataFrame(rows, columns=None if rows else ["rank", "name", "kind", "cv", "status"])

    def run(self, name: str) -> Run:
        """A finished run by name (an experiment id, ``s01``, ``b01``, ...)."""
        return Run(self, name)

    def runs(self) -> list[str]:
        """The names of every run with files in the workspace."""
        return self.layout.run_ids()

    def submit(self, name: str | None = None, **options):
        """Write run ``name``'s (default: the best complete run's) test predictions as a validated
        submission (:func:`competition.submit.submit`'s options: out, kaggle, message, allow_stale)."""
        return submit(self.layout, name, **options)

    def predict(self, name: str, test_file: Path | str, **options):
        """Predict a CSV file with run ``name`` and write predictions, a submission and a manifest
        (:func:`competition.predict.predict`'s options: out, sample_submission, expect, precision)."""
        return predict(self.layout, name, test_file, **options)
