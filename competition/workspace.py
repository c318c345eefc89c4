"""Where things live. The one module that owns every path.

A *workspace* is a folder holding a competition spec (``competition.yaml``)
plus its own ``folds/``, ``experiments/`` and ``submissions/``::

    <workspace>/
        competition.yaml          the spec: data paths, id, targets, task, metric, folds
        folds/folds.csv           id, fold           (written by ``comp folds``)
        folds/manifest.json       scheme, seed, hashes
        experiments/base.yaml     defaults for every experiment
        experiments/042.yaml      what experiment 042 changes
        experiments/042/          run artifacts of 042 (git-ignored)
        submissions/              submission CSVs, each with a .json manifest
        tuning.db                 Optuna storage (SQLite)

``comp`` finds the workspace the way git finds a repository: walk up from the
current directory until a folder holds ``competition.yaml``. ``--workspace`` or
the ``COMP_WORKSPACE`` environment variable point at one explicitly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from competition.errors import InputError

SPEC_FILE = "competition.yaml"
ENV_VAR = "COMP_WORKSPACE"
CACHE_VAR = "COMP_CACHE"       # comp's machine-wide cache (assembled models, frozen-layer states)

# The file names of the artifacts, spelled here only (their contents: competition.runs).
MANIFEST = "manifest.json"   # every output folder's record: folds/, a run, a report, predictions, a bundle
CONFIG = "config.yaml"       # the resolved config of a run and of each of its folds
OOF = "oof.parquet"          # out-of-fold predictions: a run's, each fold's
TEST = "test.parquet"        # test predictions: a run's (fold average), each fold's
METRICS = "metrics.json"     # a run's scores
DONE = "done.json"           # a finished fold's record (fold<k>/)
SCORES = "scores.json"       # a run's scores of other metrics (comp score)
IMPORTANCE = "importance.json"   # a stack's meta-model feature importances
PREDICTION_FILES = (OOF, TEST, IMPORTANCE)   # what a run predicted, not what it predicts with (no bundle has them)
STACK_META = "meta.json"     # a stack's recipe and its fold meta-models (fold<k>/)
BLEND = "blend.json"         # a blend's method, inputs and fitted weights
HOLDOUT = "holdout.json"     # comp holdout's result
BUNDLE = "bundle.json"       # an exported bundle's manifest (files and their digests)
ADVERSARIAL = "adversarial.csv"  # comp adversarial's per-row scores, in folds/
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME = 100   # characters of a run name: every file name made from it (submissions, predictions) still fits


def plain_name(name: str, what: str = "experiment id") -> str:
    """``name`` when it is a plain file name (letters, digits, ``_ . -``, no ``..``), else an error:
    ids become paths, and ``../x`` or ``/abs`` would read and write outside the workspace.

    >>> plain_name("042-sweep-abc")
    '042-sweep-abc'
    >>> plain_name("..")
    Traceback (most recent call last):
    ...
    competition.errors.InputError: experiment id '..': a name of dots only is not allowed ('.' and '..' are folders); start it with a letter or digit, e.g. 042
    """
    if isinstance(name, str) and name and set(name) == {"."}:
        raise InputError(f"{what} {name!r}: a name of dots only is not allowed ('.' and '..' are folders); "
                         "start it with a letter or digit, e.g. 042")
    if isinstance(name, str) and len(name) > MAX_NAME:
        raise InputError(f"{what} {name[:20]}… ({len(name)} characters): at most {MAX_NAME}, so the files named "
                         "after it (submissions, predictions) fit a file system's 255-byte limit; choose a shorter one")
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name) or ".." in name:
        raise InputError(f"{what} {name!r}: use letters, digits, '_', '.', '-' only, starting with a letter or "
                         "digit (it names a file inside the workspace), e.g. 042")
    return name


def cache_dir(kind: str) -> Path:
    """``$COMP_CACHE/<kind>`` (default ``$XDG_CACHE_HOME/comp`` or ``~/.cache/comp``): what comp computes
    once per machine and every workspace may reuse: ``models`` (pretrained folders assembled from
    packages), ``states`` (hidden states of frozen encoder layers). Deleting it only costs time."""
    root = os.environ.get(CACHE_VAR) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "comp"
    return Path(root).expanduser() / kind


class WorkspaceError(InputError):
    """No workspace could be found or the one named is not a workspace."""


@dataclass(frozen=True)
class Workspace:
    """Every path of one workspace, derived from its root."""

    root: Path

    @property
    def spec_file(self) -> Path:
        return self.root / SPEC_FILE

    @property
    def folds_dir(self) -> Path:
        return self.root / "folds"

    @property
    def folds_file(self) -> Path:
        return self.folds_dir / "folds.csv"

    @property
    def folds_manifest(self) -> Path:
        return self.folds_dir / MANIFEST

    @property
    def experiments_dir(self) -> Path:
        return self.root / "experiments"

    @property
    def base_config(self) -> Path:
        return self.experiments_dir / "base.yaml"

    def experiment_file(self, exp: str) -> Path:
        return self.experiments_dir / f"{plain_name(exp)}.yaml"

    def run_dir(self, exp: str) -> Path:
        """Artifact folder of one experiment (or stack / blend)."""
        return self.experiments_dir / plain_name(exp, "run name")

    def fold_dir(self, exp: str, fold: int) -> Path:
        return self.run_dir(exp) / f"fold{fold}"

    @property
    def submissions_dir(self) -> Path:
        return self.root / "submissions"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def tuning_db(self) -> Path:
        return self.root / "tuning.db"

    def experiment_ids(self) -> list[str]:
        """Ids of every experiment file (``base.yaml`` excluded), sorted."""
        if not self.experiments_dir.is_dir():
            return []
        return sorted(p.stem for p in self.experiments_dir.glob("*.yaml") if p.stem != "base")

    def run_ids(self) -> list[str]:
        """Ids of every folder of run artifacts (experiments, stacks, blends), sorted."""
        if not self.experiments_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.experiments_dir.glob(f"*/{MANIFEST}"))


def find_workspace(start: Path | str | None = None, explicit: Path | str | None = None) -> Workspace:
    """Locate the workspace: ``explicit``, else ``$COMP_WORKSPACE``, else walk up from ``start``.

    Raises:
        WorkspaceError: naming where it looked and how to create one.
    """
    named = explicit or os.environ.get(ENV_VAR)
    if named:
        root = Path(named).expanduser().resolve()
        if not (root / SPEC_FILE).is_file():
            raise WorkspaceError(
                f"{root} is not a comp workspace: it has no {SPEC_FILE}. "
                f"Create one with `comp init --workspace {root} --train ...`."
            )
        return Workspace(root)
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / SPEC_FILE).is_file():
            return Workspace(folder)
    raise WorkspaceError(
        f"no {SPEC_FILE} in {here} or any folder above it. Run `comp init --train train.csv ...` "
        f"to create a workspace, or point at one with {{workspace}} / ${ENV_VAR}.", workspace="explicit=PATH"
    )
