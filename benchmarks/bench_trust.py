"""Trust the CV on real data: adversarial validation AUCs, and stacks checked on an outer holdout.

- *adversarial*: ``comp check --adversarial``'s train-vs-test classifier on disaster-tweets
  (its real test file) and on sms-spam (no test file: a seeded, stratified 20% of train carved
  as test, as ``comp init --holdout 0.2`` does). Both should be near 0.5.
- *stack guard*: ``comp stack --holdout 0.1`` over the cheap shipped experiments of
  disaster-tweets (the repository root: 001, 002, 003) and titanic (001, 002, trained by the
  datasets benchmark): the stack's CV gain over its best input with its paired 95% interval,
  and its scores on the held-out rows beside its best input's and the inputs' mean. The
  holdout workspaces and the stacks are removed afterwards (the user's workspace stays theirs).
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.common import md_table, shared_data

EXPENSIVE = True
REPO = Path(__file__).resolve().parents[1]
WORK = Path(__file__).parent / ".work"
STACKS = {"disaster-tweets": (REPO, ["001", "002", "003"]), "titanic": (WORK / "titanic", ["001", "002"])}


def _adversarial(name: str) -> dict:
    from competition import adversarial, data
    from competition.holdout import holdout_rows
    from competition.spec import load_spec

    root = REPO if name == "disaster-tweets" else REPO / "examples" / name
    ds = data.load(load_spec(root / "competition.yaml"))
    carved = ds.test is None
    if carved:   # no test file: a stratified fifth of train plays the test set
        mask = holdout_rows(ds, 0.2, seed=0)
        ds = data.split(ds, np.flatnonzero(~mask), np.flatnonzero(mask))
    started = time.perf_counter()
    r = adversarial.validate(ds, n_splits=5, seed=0)
    top = [t for t, w in r.weights.items() if w > 0][:3] if r.kind == "tokens" else list(r.weights.index[:3])
    return {"train": len(ds.train), "test": len(ds.test), "carved": carved, "auc": r.auc, "low": r.low,
            "high": r.high, "seconds": round(time.perf_counter() - started, 1), "top_toward_test": top}


def _guard(name: str) -> dict:
    from competition.stack import stack
    from competition.workspace import Workspace

    root, inputs = STACKS[name]
    ws = Workspace(root)
    if not all((ws.run_dir(r) / "manifest.json").is_file() for r in inputs):
        return {"skipped": f"inputs {inputs} not trained in {root}"}
    started = time.perf_counter()
    try:
        s = stack(ws, inputs=inputs, name="bench-guard", force=True, holdout=0.1)
    finally:
        shutil.rmtree(ws.run_dir("bench-guard"), ignore_errors=True)
        shutil.rmtree(ws.root / "holdout" / "0.1-42", ignore_errors=True)
    c, h = s.versus_best, s.holdout
    return {"metric": s.metric, "inputs": inputs, "stack_cv": s.oof_score, "best_input": s.best_input,
            "best_input_cv": s.best_input_score, "gain": [c.diff, c.low, c.high], "significant": c.significant,
            "holdout_rows": h.rows, "holdout": h.scores, "holdout_best_input": h.best_input,
            "preferred": h.preferred, "seconds": round(time.perf_counter() - started, 1)}


def run() -> dict:
    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"adversarial": {n: _adversarial(n) for n in ("disaster-tweets", "sms-spam")},
                "guard": {n: _guard(n) for n in STACKS}}


def render(r: dict) -> str:
    rows = [[name, f"{a['train']:,} / {a['test']:,}" + (" (test carved from train)" if a["carved"] else ""),
             f"{a['auc']:.3f} [{a['low']:.3f}, {a['high']:.3f}]", ", ".join(a["top_toward_test"]), a["seconds"]]
            for name, a in r["adversarial"].items()]
    lines = ["## Trust the CV: train/test shift and the stack guard", "",
             "`comp check --adversarial`: out-of-fold ROC AUC of a classifier told to separate train rows from "
             "test rows (TF-IDF + logistic regression, 5 folds), with its 95% bootstrap interval; near 0.5, the "
             "two look alike and CV should transfer.", "",
             md_table(["dataset", "train / test rows", "AUC [95%]", "top tokens toward test", "seconds"], rows), ""]
    rows = []
    for name, g in r["guard"].items():
        if "skipped" in g:
            lines.append(f"- {name}: not run: {g['skipped']}")
            continue
        lo, hi = g["gain"][1], g["gain"][2]
        ho = g["holdout"]
        rows.append([name, ", ".join(g["inputs"]), f"{g['stack_cv']:.4f}", f"{g['best_input']} {g['best_input_cv']:.4f}",
                     f"{g['gain'][0]:+.4f} [{lo:+.4f}, {hi:+.4f}]" + ("" if g["significant"] else " noise"),
                     f"{ho['stack']:.4f}", f"{g['holdout_best_input']} {ho[g['holdout_best_input']]:.4f}",
                     f"{ho['mean']:.4f}", "yes" if g["preferred"] else "**no**", g["seconds"]])
    lines += ["`comp stack --holdout 0.1` (LightGBM meta-model): the stack's CV and its gain over the best input "
              "with a 95% paired-bootstrap interval (*noise*: the interval holds 0); then, on a tenth of the rows "
              "kept out of every fit (inputs retrained without them), the stack, the best input and the inputs' "
              "mean. *preferred*: the stack beats both there; `comp submit` passes over a stack that does not.", "",
              md_table(["dataset", "inputs", "stack CV", "best input CV", "gain [95%]", "holdout: stack",
                        "best input", "mean", "preferred", "seconds"], rows)]
    return "\n".join(lines)
