"""Verbs whose stage has not landed yet: listed in `comp --help`, and honest when called."""

from __future__ import annotations

import typer

from competition.commands._common import err_console


def planned(verb: str, issue: int, what: str):
    def command() -> None:
        err_console.print(f"[yellow]comp {verb} is not built yet (issue #{issue}): {what}[/]")
        raise typer.Exit(3)

    command.__doc__ = f"{what} [not built yet: issue #{issue}]"
    return command
