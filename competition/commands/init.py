"""``comp init --train train.csv [--test ...] [--sample-submission ...]``: write competition.yaml."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from competition.commands._common import console, err_console, handle_errors, parse_csv_list

# init_workspace()'s arguments -> this command's options
FLAGS = {"task": "--task", "id": "--id", "targets": "--target", "text": "--text", "features": "--features",
         "holdout": "--holdout", "test": "--test", "force": "--force", "scheme": "--scheme",
         "label_names": "--label-names FILE (one per line) or --target a,b,..."}


@handle_errors(data_warnings="full", flags=FLAGS)
def command(
    train: Annotated[Path, typer.Option("--train", help="training file (CSV / TSV)")],
    test: Annotated[Path | None, typer.Option("--test", help="test file")] = None,
    sample_submission: Annotated[Path | None, typer.Option(
        "--sample-submission", help="sample submission: its first column is the id, the rest the targets")] = None,
    holdout: Annotated[float | None, typer.Option(
        "--holdout", help="no test file: carve this fraction of train (e.g. 0.2) into data/ with a "
                          "solution file, stratified and seeded")] = None,
    sep: Annotated[str | None, typer.Option("--sep", help="field separator, e.g. '\\t'")] = None,
    encoding: Annotated[str | None, typer.Option("--encoding", help="e.g. utf-8, cp1252, latin-1")] = None,
    header: Annotated[bool | None, typer.Option("--header/--no-header", help="first line holds names")] = None,
    names: Annotated[str | None, typer.Option("--names", help="column names, e.g. label,text")] = None,
    quoting: Annotated[str | None, typer.Option(
        "--quoting", help="minimal, none (texts with unescaped quotes), all or nonnumeric")] = None,
    id_column: Annotated[str | None, typer.Option(
        "--id", help="id column; 'none' numbers the rows (default: inferred)")] = None,
    target: Annotated[str | None, typer.Option("--target", help="target column(s), e.g. a,b")] = None,
    text: Annotated[str | None, typer.Option("--text", help="text column(s), e.g. keyword,text")] = None,
    features: Annotated[str | None, typer.Option("--features", help="other input columns")] = None,
    task: Annotated[str | None, typer.Option("--task", help="binary, multiclass, multilabel or regression")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="e.g. f1, roc_auc, accuracy, rmse")] = None,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="class labels in order, positive class last, e.g. ham,spam")] = None,
    label_list: Annotated[str | None, typer.Option(
        "--label-list", help="multilabel: the column holding comma-separated label ids")] = None,
    label_names: Annotated[Path | None, typer.Option(
        "--label-names", help="file with one label name per line (line number = label id): the targets")] = None,
    scheme: Annotated[str | None, typer.Option("--scheme", help="fold scheme, e.g. stratified, group")] = None,
    n_splits: Annotated[int | None, typer.Option("--n-splits", help="number of folds")] = None,
    group: Annotated[str | None, typer.Option("--group", help="column whose groups never straddle folds")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the folds and the holdout")] = 42,
    name: Annotated[str | None, typer.Option("--name", help="competition name (default: the folder's)")] = None,
    ws_path: Annotated[Path | None, typer.Option(
        "--workspace", "-w", envvar="COMP_WORKSPACE", help="workspace folder to create (default: here)")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing competition.yaml")] = False,
) -> None:
    """Write competition.yaml for your data: ids, targets, task, metric and columns are inferred
    where not given, and the data is checked before anything is written."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition.errors import InputError
    from competition.init import init_workspace
    from competition.workspace import SPEC_FILE

    fields: dict = {"sep": sep, "encoding": encoding, "header": header, "names": parse_csv_list(names),
                    "quoting": quoting, "targets": parse_csv_list(target), "text": parse_csv_list(text),
                    "features": parse_csv_list(features), "task": task, "metric": metric,
                    "labels": parse_csv_list(labels), "label_list": label_list, "scheme": scheme,
                    "n_splits": n_splits, "group": group, "name": name}
    if label_names is not None:
        if not label_names.is_file():
            raise InputError(f"--label-names {label_names}: file not found")
        fields["targets"] = [line.strip() for line in label_names.read_text(encoding="utf-8").splitlines()
                             if line.strip()]
    if fields["labels"]:  # '0,1' on the command line means the integers 0 and 1
        fields["labels"] = [int(v) if v.lstrip("-").isdigit() else v for v in fields["labels"]]
    if text is not None and features is None:
        fields["features"] = []  # columns named explicitly: no other inputs guessed
    fields = {k: v for k, v in fields.items() if v is not None}
    if id_column is not None:
        fields["id"] = None if id_column.lower() in ("none", "null", "") else id_column

    root = (ws_path or Path.cwd()).resolve()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = init_workspace(root, train=train, test=test, sample_submission=sample_submission,
                              holdout=holdout, seed=seed, force=force, **fields)
    console.print((root / SPEC_FILE).read_text(encoding="utf-8"), markup=False, highlight=False)
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)):
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    console.print(f"[bold green]wrote {root / SPEC_FILE}[/] ({spec.task}, metric {spec.metric}). "
                  "Next: `comp check`, then `comp folds`.")
