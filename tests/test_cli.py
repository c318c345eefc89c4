"""``comp --help`` reads as a user expects: flags shown as flags, each command's summary whole."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from competition import cli
from competition.cli import app

COMMANDS = ["init", "check", "folds", "new", "train", "tune", "leaderboard", "stack", "blend", "submit",
            "predict", "export", "score", "report"]


def _help(*args: str) -> str:
    out = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "400"}, terminal_width=400)
    assert out.exit_code == 0, out.output
    return out.output


def test_the_listing_shows_every_commands_first_paragraph_on_one_line():
    """Issue 24 #22: init, score and report were cut mid-sentence (their docstrings' line breaks)."""
    listing = _help()
    for name in COMMANDS:
        summary = " ".join(inspect.getdoc(getattr(cli, name).command).split("\n\n")[0].split())
        line = next(line for line in listing.splitlines() if line.startswith(f"│ {name} "))
        assert summary in line, (name, line)


@pytest.mark.parametrize("command", [[], ["train"], ["submit"], ["export"]])
def test_flags_are_not_shown_as_taking_a_value(command):
    """Issue 24 #22: typer 0.29 printed `--help <bool>` and `--force <bool>`, which read as options
    that need a value (pyproject keeps typer below 0.29)."""
    text = _help(*command)
    assert "--help" in text and "<bool>" not in text, text
