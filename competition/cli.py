"""The ``comp`` console script: one small module per command under ``competition/commands``.

Commands import their heavy libraries inside the function body, so ``comp --help``
stays fast (no torch / transformers / lightning / pandas at start-up).
"""

from __future__ import annotations

import typer

from competition.commands import (blend, check, export, folds, init, leaderboard, new, predict, report, score, stack,
                                  submit, train, tune)

app = typer.Typer(
    name="comp",
    help="Kaggle-style competitions: honest k-fold CV, fine-tuned encoders, stacking, blending, "
         "and submissions that are never wrong.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("init")(init.command)
app.command("check")(check.command)
app.command("folds")(folds.command)
app.command("new")(new.command)
app.command("train")(train.command)
app.command("tune")(tune.command)
app.command("leaderboard")(leaderboard.command)
app.command("stack")(stack.command)
app.command("blend")(blend.command)
app.command("submit")(submit.command)
app.command("predict")(predict.command)
app.command("export")(export.command)
app.command("score")(score.command)
app.command("report")(report.command)


if __name__ == "__main__":  # pragma: no cover
    app()
