"""Imports run one way (issue 25): the import-linter contracts in pyproject.toml hold, and the
checker does catch an import that runs upwards."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lint(config: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is missing: `make test` installs import-linter with the test extra")
    args = [exe, "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_hold():
    out = _lint()
    assert out.returncode == 0 and "BROKEN" not in out.stdout, out.stdout[-3000:]
    assert "commands -> stages -> run layer -> models -> foundation KEPT" in out.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The same checker on a contract the code does not keep (errors above the commands): broken."""
    config = tmp_path / "upside-down.toml"
    config.write_text('[tool.importlinter]\nroot_package = "competition"\n\n'
                      '[[tool.importlinter.contracts]]\nname = "upside down"\ntype = "layers"\n'
                      'layers = ["competition.errors", "competition.commands"]\n')
    out = _lint(config)
    assert out.returncode != 0 and "upside down BROKEN" in out.stdout, out.stdout[-3000:]
