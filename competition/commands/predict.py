"""``comp predict RUN --test FILE [--out DIR] [--sample-submission FILE] [--precision bf16]``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from competition.commands._common import WorkspaceOpt, console, handle_errors, workspace

FLAGS = {"test": "--test FILE", "out": "--out", "sample_submission": "--sample-submission", "expect": "--expect",
         "precision": "--precision"}   # argument -> option


@handle_errors(flags=FLAGS)
def command(
    run: Annotated[str, typer.Argument(help="A complete run: an experiment, a stack or a blend.")],
    test: Annotated[Path, typer.Option("--test", "-t", help="CSV of the rows to predict (the test file's columns).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Folder to write (new or empty). Default: submissions/<time>_<run>_predict/.")] = None,
    sample_submission: Annotated[Path | None, typer.Option(
        "--sample-submission", help="The sample submission of these rows (default: the spec's, when its ids "
                                    "match; else one built from the rows' ids).")] = None,
    expect: Annotated[str | None, typer.Option(
        "--expect", metavar="DIGEST", help="a bundle only: refuse it unless its bundle.json has this sha256 "
                                           "(the digest `comp export` printed)")] = None,
    precision: Annotated[str, typer.Option(
        "--precision", metavar="fp32|bf16|int8|onnx-int8",
        help="what encoders compute in: bf16 (fast where the CPU has bf16 instructions, probabilities within "
             "~1e-3), int8 (fast on any CPU, within a few 1e-2) or onnx-int8 "
             "(int8 run by ONNX Runtime: faster, a little closer); the torch and embedding families")] = "fp32",
    ws_path: WorkspaceOpt = None,
) -> None:
    """Replay a trained run (its saved fold models, meta-models, blend weights) on a new file, offline."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.api import Workspace
    from competition.workspace import MANIFEST

    ws = workspace(ws_path)
    result = Workspace(ws).predict(run, test, out=out, sample_submission=sample_submission, expect=expect,
                                    precision=precision)
    steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.seconds.items())
    console.print(f"[bold green]{result.out_dir}[/] ({result.rows} rows): predictions.parquet, submission.csv, "
                  f"{MANIFEST}", highlight=False)
    console.print(f"  replayed (seconds per run): {steps}", highlight=False)
