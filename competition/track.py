"""Experiment tracking with Weights & Biases. The one module that touches wandb.

One run per (experiment, fold), grouped by experiment. Offline unless the user has
set wandb up online (``WANDB_MODE=online`` or ``wandb login``); off when
``WANDB_MODE=disabled`` (the tests) or ``track.wandb: false``. Tracking never
breaks a run: every failure here is a warning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

SCORE = "fold/score"   # summary key: a fold run's score; a W&B sweep run's mean over the folds it trained


class Tracker:
    """Logs metrics of one fold run. A no-op when tracking is off or wandb failed."""

    def __init__(self, run=None):
        self._run = run

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._run is None:
            return
        try:
            self._run.log(metrics, step=step)
        except Exception as err:  # noqa: BLE001 - tracking never breaks a run
            warnings.warn(f"wandb log failed, tracking off for this run: {err}", stacklevel=2)
            self._run = None

    def summary(self, metrics: dict[str, Any]) -> None:
        if self._run is None:
            return
        try:
            self._run.summary.update(metrics)
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"wandb summary failed: {err}", stacklevel=2)

    def finish(self) -> None:
        if self._run is None:
            return
        try:
            self._run.finish()
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"wandb finish failed: {err}", stacklevel=2)
        self._run = None


def start(*, enabled: bool, project: str, group: str, name: str, config: dict, run_dir: Path,
          job_type: str = "train") -> Tracker:
    """Open a wandb run (offline by default), or a no-op Tracker when off or when wandb fails."""
    if not enabled or os.environ.get("WANDB_MODE") == "disabled":
        return Tracker()
    os.environ.setdefault("WANDB_MODE", "offline")
    # wandb writes debug logs under ~/.cache/wandb otherwise
    os.environ.setdefault("WANDB_CACHE_DIR", str(run_dir / ".wandb-cache"))
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        # wandb (~2 s, optional): only when tracking is on
        import wandb

        run_dir.mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=project, group=group, name=name, job_type=job_type, config=config,
                         dir=str(run_dir), reinit="create_new")
        return Tracker(run)
    except Exception as err:  # noqa: BLE001 - tracking never breaks a run
        warnings.warn(f"wandb could not start ({err}); training goes on without tracking", stacklevel=2)
        return Tracker()
