"""The ``comp`` console script: one small module per command under ``competition/commands``.

Commands import their heavy libraries inside the function body, so ``comp --help``
stays fast (no torch / transformers / lightning / pandas at start-up).
"""

from __future__ import annotations

import inspect

import typer

from competition.commands import (
    blend,
    check,
    export,
    folds,
    init,
    leaderboard,
    new,
    predict,
    report,
    score,
    stack,
    submit,
    train,
    tune,
)

app = typer.Typer(
    name="comp",
    help="Kaggle-style competitions: honest k-fold CV, fine-tuned encoders, stacking, blending, "
         "and submissions that are never wrong.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _name, _module in (("init", init), ("check", check), ("folds", folds), ("new", new), ("train", train),
                      ("tune", tune), ("leaderboard", leaderboard), ("stack", stack), ("blend", blend),
                      ("submit", submit), ("predict", predict), ("export", export), ("score", score),
                      ("report", report)):
    # the listing shows each docstring's first paragraph as one line (rich keeps its line breaks)
    app.command(_name, short_help=" ".join(inspect.getdoc(_module.command).split("\n\n")[0].split()))(_module.command)

if __name__ == "__main__":  # pragma: no cover
    app()
