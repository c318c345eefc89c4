"""``comp export RUN DIR [--kaggle-dataset OWNER/SLUG]``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from competition.commands._common import WorkspaceOpt, console, handle_errors, workspace

FLAGS = {"kaggle_dataset": "--kaggle-dataset", "wheel": "--no-wheel", "precision": "--precision"}   # export()'s arguments -> options


@handle_errors(flags=FLAGS)
def command(
    run: Annotated[str, typer.Argument(help="A complete run: an experiment, a stack or a blend.")],
    out: Annotated[Path, typer.Argument(help="The bundle folder to write (new or empty).")],
    kaggle_dataset: Annotated[str | None, typer.Option(
        "--kaggle-dataset", help="OWNER/SLUG: also write the dataset-metadata.json `kaggle datasets create` reads")] = None,
    wheel: Annotated[bool, typer.Option("--wheel/--no-wheel", help="put comp's own wheel in wheels/")] = True,
    precision: Annotated[str, typer.Option(
        "--precision", metavar="fp32|bf16|int8|onnx-int8",
        help="the precision the bundle's predict.py uses unless given its own --precision (onnx-int8: the "
             "bundle carries every fold model's ONNX graph)")] = "fp32",
    ws_path: WorkspaceOpt = None,
) -> None:
    """Write a run and everything it needs to predict, offline, as one folder (a Kaggle dataset)."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.export import export

    ws = workspace(ws_path)
    result = export(ws, run, out, kaggle_dataset=kaggle_dataset, wheel=wheel, precision=precision)
    table = Table(title=f"bundle {result.out_dir} ({len(result.runs)} runs: {', '.join(result.runs)})")
    table.add_column("part")
    table.add_column("MiB", justify="right")
    for part, size in sorted(result.sizes.items(), key=lambda kv: -kv[1]):
        table.add_row(part, f"{size / 2**20:.2f}")
    table.add_row("[bold]total[/]", f"[bold]{sum(result.sizes.values()) / 2**20:.2f}[/]")
    console.print(table)
    console.print(f"bundle digest: sha256:{result.digest} (keep it: `predict.py --expect sha256:{result.digest}` "
                  "refuses any other bundle)", highlight=False)
    console.print(f"predict with it: python {result.out_dir / 'predict.py'} --test FILE", highlight=False)
