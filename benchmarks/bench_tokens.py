"""Token-level competitions (issue 38): examples/wnut17's recipe against the transformers-docs peer.

On the workspace's own 5 folds (KFold, seed 42: the folds ``bench_tokens_peer`` used):

- ``001`` the CRF, ``042`` MiniLM's token head, ``043`` the same teaching every sub-token (another
  seed), the stack ``s01`` (LightGBM over units of the three) and their mean blend ``b01``: trained / built through comp's API in examples/wnut17 (a run already
  complete is read as it is), OOF entity F1 with each fold decoded at the O bias chosen on the other
  folds, per type, seconds;
- each against the peer's OOF tags (``results/tokens_peer_oof.json``): the difference in entity F1
  with its 95% paired bootstrap interval over rows;
- (the corpus's own protocol is ``bench_tokens_corpus``);
- speed: comp's token head and the docs' Trainer, each one epoch on fold 0's training rows, one after
  the other in this process: samples/s.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import example_workspace, md_table, train_runs

EXPENSIVE = True
HERE = Path(__file__).parent
WORKSPACE = HERE.parent / "examples" / "wnut17"
PEER = HERE / "results" / "tokens_peer_oof.json"
RUNS = ("001", "042", "043")


def _workspace():
    return example_workspace(WORKSPACE)


def _ensure(ws, data) -> dict[str, float]:
    """Train (or resume) the runs; the stack and the blend over them. Seconds of each step."""
    from competition.blend import blend
    from competition.stack import stack

    seconds = train_runs(ws, data, RUNS, "tokens")
    for name, make in (("s01", lambda: stack(ws, inputs=list(RUNS), name="s01", force=True, data=data)),
                       ("b01", lambda: blend(ws, inputs=list(RUNS), method="mean", name="b01", force=True,
                                             data=data))):
        started = time.perf_counter()
        make()
        seconds[name] = round(time.perf_counter() - started, 1)
    return seconds


def _decisions(ws, data, name):
    from competition import thresholds
    from competition.runs import load_run

    run = load_run(ws, name)
    oof = run.oof()
    from competition.predictions import matrix
    pred = matrix(oof, run.pred_columns)
    codes, _ = thresholds.decisions("entity_f1", data.y, pred, "tokens", oof["fold"].to_numpy())
    return run, codes


def _speed(ws, data) -> dict:
    """One epoch each on fold 0's training rows: comp's token head, then the docs' Trainer."""
    from benchmarks.bench_tokens_peer import fit_predict
    from competition.config import load_config
    from competition.folds import read_folds
    from competition.models import encoder

    fold = read_folds(ws, data)["fold"].to_numpy()
    train_idx, valid_idx = np.flatnonzero(fold != 0), np.flatnonzero(fold == 0)[:50]
    cfg = load_config(ws, "042", ["train.epochs=1"])
    prepared = encoder.prepare(cfg, data)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fit = encoder.fit_fold(prepared, 0, train_idx, valid_idx, Path(tmp), None)
    comp_speed = len(train_idx) / fit.extra["train_seconds"]
    print(f"[bench] tokens speed comp: {comp_speed:.1f} samples/s ({time.perf_counter() - started:.0f}s)", flush=True)
    tokens = [list(t) for t in data.train["tokens"]]
    tags = [[data.labels[c] for c in row] for row in data.y]
    _, trainer_speed = fit_predict(tokens, tags, train_idx, valid_idx, data.labels, epochs=1)
    print(f"[bench] tokens speed Trainer: {trainer_speed:.1f} samples/s", flush=True)
    return {"rows": int(len(train_idx)), "comp": round(comp_speed, 2), "trainer": round(trainer_speed, 2),
            "ratio": round(comp_speed / trainer_speed, 2)}


def run() -> dict:
    from competition import bootstrap
    from competition import tokens as tk

    ws, data = _workspace()
    seconds = _ensure(ws, data)
    peer = json.loads(PEER.read_text())
    ids = [str(i) for i in data.train[data.spec.id_column]]
    by_id = dict(zip(peer["ids"], peer["tags"]))
    code = {t: c for c, t in enumerate(data.labels)}
    peer_codes = [np.array([code[t] for t in by_id[i]]) for i in ids]
    types = [t[2:] for t in data.labels[1::2]]
    rows = {}
    for name in (*RUNS, "s01", "b01"):
        run, codes = _decisions(ws, data, name)
        diff = bootstrap.compare("entity_f1", data.y, codes, peer_codes, "tokens")
        rows[name] = {"oof_f1": round(run.score, 4), "folds": {k: round(v, 4) for k, v in run.metrics["folds"].items()},
                      "o_bias": run.threshold, "seconds": seconds.get(name),
                      "vs_peer": [round(diff.diff, 4), round(diff.low, 4), round(diff.high, 4)],
                      "vs_peer_significant": bool(diff.significant),
                      "per_type": {t: round(v["f1"], 4) for t, v in tk.per_type_f1(data.y, codes, types).items()}}
        print(f"[bench] tokens {name}: {rows[name]}", flush=True)
    peer_per_type = {t: round(v["f1"], 4) for t, v in tk.per_type_f1(data.y, peer_codes, types).items()}
    return {"runs": rows, "peer": {"oof_f1": round(tk.entity_f1(data.y, peer_codes), 4), "per_type": peer_per_type},
            "speed": _speed(ws, data), "types": types}


def render(r: dict) -> str:
    names = {"001": "001 CRF (word features)", "042": "042 MiniLM token head", "043": "043 MiniLM, all sub-tokens",
             "s01": "s01 stack (units, LightGBM)", "b01": "b01 mean blend"}
    table = [[names[n], v["oof_f1"], ", ".join(f"{x:.3f}" for x in v["folds"].values()), f"{v['o_bias']:+.2f}",
              f"{v['vs_peer'][0]:+.4f} [{v['vs_peer'][1]:+.4f}, {v['vs_peer'][2]:+.4f}]"
              + (" **beats**" if v["vs_peer_significant"] and v["vs_peer"][0] > 0 else ""),
              v["seconds"] if v["seconds"] is not None else "-"] for n, v in r["runs"].items()]
    table.append(["peer: docs' Trainer recipe", r["peer"]["oof_f1"], "-", "-", "-", "-"])
    types = r["types"]
    per_type = [[names[n]] + [v["per_type"][t] for t in types] for n, v in r["runs"].items()]
    per_type.append(["peer"] + [r["peer"]["per_type"][t] for t in types])
    s = r["speed"]
    return "\n".join([
        "## Token level: WNUT-17 entities (examples/wnut17)",
        "",
        "OOF entity F1 (seqeval strict IOB2) on the workspace's 5 folds, each fold decoded at the O bias chosen on "
        "the other folds; the paired 95% bootstrap resamples rows against the peer's OOF tags (the transformers "
        "docs' Trainer recipe, `bench_tokens_peer`, same folds). Seconds: the runs' folds (stack, blend: the "
        "command).",
        "",
        md_table(["run", "OOF entity F1", "folds", "O bias", "minus the peer", "seconds"], table),
        "",
        "Per type (OOF entity F1):",
        "",
        md_table(["run", *types], per_type),
        "",
        "- the corpus's own protocol (Twitter -> YouTube): `bench_tokens_corpus`'s section",
        f"- training speed, one epoch on fold 0's {s['rows']:,} training sentences side by side: comp "
        f"{s['comp']} samples/s, Trainer {s['trainer']} samples/s: **{s['ratio']}x** (target >= 1.3x)",
    ])
