"""What verifying fold files on read costs at predict time (issue 40).

Every fold records the hash of each model file it wrote (``done.json``'s ``files``); ``comp predict``,
``comp export``, a stack's replay and a plain ``comp train`` check them before a fold is used, each file
hashed once per process. Measured on examples/tweet-spans' ``042`` (MiniLM span head, 5 folds: the
largest model files comp writes), trained first if it is not complete:

- hashing every model file of the 5 folds (what verifying reads), seconds and MB, page cache warm
  (the files were just read or written, as at the end of training or in a second predict);
- replaying 042 on the first 512 test rows (``predict_frame``), seconds, and the share of it that
  verifying is.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import example_workspace, md_table, train_runs

EXPENSIVE = True
WORKSPACE = Path(__file__).parent.parent / "examples" / "tweet-spans"
ROWS = 512


def run() -> dict:
    from competition import artifacts
    from competition.predict import predict_frame
    from competition.runs import load_run
    from competition.workspace import DONE, PREDICTION_FILES

    ws, data = example_workspace(WORKSPACE)
    train_runs(ws, data, ["042"], "verify")
    run = load_run(ws, "042")
    folds = [ws.fold_dir("042", k) for k in range(int(run.manifest["n_splits"]))]
    size = sum(p.stat().st_size for f in folds for p in f.rglob("*")
               if p.is_file() and p.name not in (DONE, *PREDICTION_FILES))
    for f in folds:                                   # warm the page cache as a second read finds it
        artifacts.folder_hashes(f, skip=(DONE, *PREDICTION_FILES))
    started = time.perf_counter()
    recorded = [artifacts.folder_hashes(f, skip=(DONE, *PREDICTION_FILES)) for f in folds]
    hashing = time.perf_counter() - started
    artifacts._VERIFIED.clear()
    started = time.perf_counter()
    for f, files in zip(folds, recorded):
        artifacts.verify_files(f, files)
    verifying = time.perf_counter() - started
    frame = data.test.iloc[:ROWS].reset_index(drop=True)
    predict_frame(ws, "042", frame.iloc[:32])         # load once (imports, first-call costs)
    started = time.perf_counter()
    predict_frame(ws, "042", frame)
    predicting = time.perf_counter() - started
    return {"folds": len(folds), "mb": round(size / 2**20, 1), "hash_seconds": round(hashing, 3),
            "verify_seconds": round(verifying, 3), "rows": ROWS, "predict_seconds": round(predicting, 2),
            "share": round(verifying / (predicting + verifying), 4),
            "test_rows": len(data.test)}


def render(r: dict) -> str:
    full = r["predict_seconds"] * r["test_rows"] / r["rows"]
    return "\n".join([
        "## Verifying fold files on read (issue 40)",
        "",
        f"examples/tweet-spans' 042 (MiniLM span head): its {r['folds']} folds' model files, {r['mb']} MB. Every "
        "reader checks each file against the hash its fold recorded, once per process (page cache warm).",
        "",
        md_table(["what", "seconds"], [
            [f"verify the {r['folds']} folds' files (sha256)", r["verify_seconds"]],
            [f"replay 042 on {r['rows']} test rows", r["predict_seconds"]],
            [f"replay 042 on all {r['test_rows']:,} test rows (projected)", round(full, 1)],
        ]),
        "",
        f"- verifying is {100 * r['share']:.1f}% of predicting {r['rows']} rows and "
        f"{100 * r['verify_seconds'] / (full + r['verify_seconds']):.2f}% of predicting the whole test file",
    ])
