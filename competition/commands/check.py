"""``comp check [--adversarial [--folds K]]``: validate the data against competition.yaml and summarise
it; with ``--adversarial``, also say whether a model can tell train from test (:mod:`competition.adversarial`)."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from competition.commands._common import WorkspaceOpt, console, handle_errors, workspace


def target_counts(ds) -> list[tuple[str, str]]:
    """(label, 'count (share)') rows of the target distribution; regression: its statistics."""
    # numpy: only this command's summary needs it
    import numpy as np

    y = ds.y
    if ds.spec.task == "regression":
        values = y if y.ndim == 1 else y[:, 0]
        return [(k, f"{v:.4g}") for k, v in (("min", values.min()), ("mean", values.mean()),
                                            ("std", values.std()), ("max", values.max()))]
    if ds.spec.task == "span":      # answers inside texts
        n = len(y)
        answered = sum(a.end > a.start for a in y)
        whole = sum(a.answer.strip() == a.text.strip() for a in y)
        share = np.mean([(a.end - a.start) / len(a.text) for a in y])
        return [("rows with an answer", f"{answered:,} ({answered / n:.1%})"),
                ("answer = the whole text", f"{whole:,} ({whole / n:.1%})"),
                ("answer's share of its text's characters", f"{share:.1%}")]
    if ds.spec.task == "tokens":    # tags of every unit
        y = np.concatenate(list(y))
    counts = y.sum(axis=0) if y.ndim == 2 else np.bincount(y, minlength=len(ds.labels))
    return [(str(label), f"{int(c):,} ({c / len(y):.1%})") for label, c in zip(ds.labels, counts)]


FLAGS = {"n_splits": "--folds"}   # adversarial.validate()'s arguments -> this command's options


@handle_errors(data_warnings="full", flags=FLAGS)
def command(
    ws_path: WorkspaceOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="only errors and warnings")] = False,
    adversarial: Annotated[bool, typer.Option(
        "--adversarial", help="train a train-vs-test classifier: its OOF AUC, the tokens/features that tell "
                              "them apart, and folds/adversarial.csv (per-row test-likeness)")] = False,
    n_folds: Annotated[int | None, typer.Option("--folds", min=2,
                                                help="folds of --adversarial (default 5)")] = None,
) -> None:
    """Check the data against competition.yaml: columns, ids, targets, encodings; print a summary."""
    if n_folds is not None and not adversarial:
        raise typer.BadParameter("only applies with --adversarial; add --adversarial or drop --folds",
                                 param_hint="--folds")

    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition import data, tables
    from competition.spec import load_spec

    ws = workspace(ws_path)
    spec = load_spec(ws.spec_file)
    if adversarial:
        # the stages load on first use, so `comp --help` starts in a fraction of a second
        from competition.adversarial import require_test

        require_test(spec)  # before the summary: refuse up front, not after "ok"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.DataWarning)  # shown below, once
        ds = data.load(spec)
    if not quiet:
        frames = {spec.train: ds.train, **({spec.test: ds.test} if ds.test is not None else {})}
        files = Table(title=f"{spec.name}: {spec.task}, metric {spec.metric}, id {spec.id_column!r}")
        for col in ("file", "rows", "columns", "missing values"):
            files.add_column(col, justify="right" if col == "rows" else "left")
        for file, frame in frames.items():
            missing = frame.isna().sum()
            missing_txt = ", ".join(f"{c} {n:,}" for c, n in missing[missing > 0].items()) or "none"
            files.add_row(file, f"{len(frame):,}", ", ".join(map(str, frame.columns)), missing_txt)
        if spec.sample_submission:
            sample = ds.sample_submission()
            files.add_row(spec.sample_submission, f"{len(sample):,}", ", ".join(sample.columns), "-")
        console.print(files)

        dist = Table(title="target distribution")
        dist.add_column("label" if spec.task not in ("regression", "span") else "statistic")
        dist.add_column("train", justify="right")
        for row in target_counts(ds):
            dist.add_row(*row)
        console.print(dist)

        if spec.text:
            lengths = Table(title="text length (characters)")
            for col in ("file", "column", "mean", "median", "p95", "max", "empty"):
                lengths.add_column(col, justify="left" if col in ("file", "column") else "right")
            for file, frame in frames.items():
                for column in spec.text:
                    n = tables.strings(frame[column]).str.len()
                    lengths.add_row(file, column, f"{n.mean():.0f}", f"{n.median():.0f}",
                                    f"{n.quantile(0.95):.0f}", f"{n.max():,}", f"{int((n == 0).sum()):,}")
            console.print(lengths)
    for note in ds.warnings:
        console.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    parts = [f"{spec.train} ({len(ds.train):,} rows)"]
    parts.append(f"{spec.test} ({len(ds.test):,} rows)" if ds.test is not None else "no test set")
    console.print(f"[bold green]ok[/]: the data matches {ws.spec_file.name}: {', '.join(parts)}"
                  + (f"; {len(ds.warnings)} warning(s)" if ds.warnings else ""))
    if adversarial:
        show_adversarial(ws, ds, n_folds or 5)


def show_adversarial(ws, ds, n_splits: int) -> None:
    """Run :func:`competition.adversarial.validate` and print its AUC, verdict, top tokens or
    features and the train rows most like test; write folds/adversarial.csv."""
    # the stages load on first use, so `comp --help` starts in a fraction of a second
    from competition import adversarial

    result = adversarial.validate(ds, n_splits=n_splits, seed=ds.spec.folds.seed)
    console.print(f"[bold]adversarial validation[/]: train vs test ROC AUC {result.auc:.3f} "
                  f"(95% interval {result.low:.3f}-{result.high:.3f}; {n_splits} stratified folds, "
                  f"seed {result.seed})", highlight=False)
    console.print(adversarial.verdict(result.auc), highlight=False)
    noise = " -- at this AUC, mostly noise" if result.auc < adversarial.ALIKE else ""
    if result.kind == "tokens":
        table = Table(title=f"tokens that tell test from train (logistic coefficients){noise}")
        for col in ("toward test", "weight", "toward train", "weight"):
            table.add_column(col, justify="right" if col == "weight" else "left")
        test_side, train_side = result.toward_test(10), result.toward_train(10)
        for i in range(max(len(test_side), len(train_side))):
            cells = []
            for side in (test_side, train_side):
                cells += [escape(str(side.index[i])), f"{side.iloc[i]:+.2f}"] if i < len(side) else ["", ""]
            table.add_row(*cells)
    else:
        table = Table(title=f"features that tell test from train (LightGBM gain){noise}")
        table.add_column("feature")
        table.add_column("share of gain", justify="right")
        for name, share in result.toward_test(10).items():
            table.add_row(escape(str(name)), f"{share:.1%}")
    console.print(table)
    path = adversarial.write_scores(result, ws)
    console.print(f"wrote {path} (id, set, test_likeness: the OOF P(test) of every train and test row)")
    like = result.train_most_like_test(5)
    console.print("train ids most like test (test_likeness): " + ", ".join(
        f"{row_id} ({p:.3f})" for row_id, p in zip(like["id"], like["test_likeness"])), highlight=False)
