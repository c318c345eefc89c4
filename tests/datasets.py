"""Where the real competition data lives for tests (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV_VAR = "COMP_SHARED_DATA"
DATASETS = ("disaster-tweets", "sms-spam", "commonlit", "titanic", "goemotions")


def shared_data() -> Path:
    """The folder holding the dataset folders: ``$COMP_SHARED_DATA``, else ``../shared/data``.

    When it is missing the test is skipped, or fails under CI (``CI=true``), where a skip
    would hide that the real-data tests did not run.
    """
    root = Path(os.environ.get(ENV_VAR) or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not all((root / name).is_dir() for name in DATASETS):
        reason = (f"real competition data not found in {root} (expected folders {', '.join(DATASETS)}); "
                  f"set ${ENV_VAR} to the folder holding them")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return root
