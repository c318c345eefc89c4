"""WNUT-17's own protocol (issue 38): fit on ``part == train`` (Twitter), score ``part == dev`` (YouTube
comments), closer to the test's shift than the 5 folds. The runs of examples/wnut17 (001 CRF, 042 and
043 MiniLM) each fitted once on the train part with their experiment's config, decoded at the O bias
their 5-fold run chose; the blends b01 (all three) and b02 (042 + 043) as their means, decoded at
their own runs' O bias. The peer's figure on the same protocol is ``bench_tokens_peer``'s ``dev_f1``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import md_table

EXPENSIVE = True
RUNS = ("001", "042", "043")
BLENDS = {"b01": ("001", "042", "043"), "b02": ("042", "043")}


def run() -> dict:
    from benchmarks.bench_tokens import _workspace
    from competition import tokens as tk
    from competition.config import load_config
    from competition.models import family
    from competition.predictions import mean
    from competition.runs import load_run

    ws, data = _workspace()
    part = data.train["part"].to_numpy()
    tr, dev = np.flatnonzero(part == "train"), np.flatnonzero(part == "dev")
    out, preds = {}, {}
    for exp in RUNS:
        cfg = load_config(ws, exp)
        impl = family(cfg.model.family)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            preds[exp] = impl.fit_fold(impl.prepare(cfg, data), 0, tr, dev, Path(tmp), None).oof
        bias = load_run(ws, exp).threshold
        out[exp] = {"f1": round(tk.entity_f1(data.y[dev], tk.decode(preds[exp], bias)), 4), "o_bias": bias,
                    "seconds": round(time.perf_counter() - started, 1)}
        print(f"[bench] tokens_corpus {exp}: {out[exp]}", flush=True)
    for name, inputs in BLENDS.items():
        bias = load_run(ws, name).threshold
        blended = mean([preds[e] for e in inputs])
        out[name] = {"f1": round(tk.entity_f1(data.y[dev], tk.decode(blended, bias)), 4), "o_bias": bias,
                     "inputs": list(inputs)}
        print(f"[bench] tokens_corpus {name}: {out[name]}", flush=True)
    return {"runs": out, "rows": {"train": int(len(tr)), "dev": int(len(dev))}}


def render(r: dict) -> str:
    rows = [[name, " + ".join(v.get("inputs", [name])), v["f1"], f"{v['o_bias']:+.2f}", v.get("seconds", "-")]
            for name, v in r["runs"].items()]
    return "\n".join([
        "## Token level: WNUT-17's own protocol (Twitter -> YouTube)",
        "",
        f"Fit on part train ({r['rows']['train']:,} Twitter sentences), scored on part dev ({r['rows']['dev']:,} "
        "YouTube comments): entity F1, each decoded at the O bias of its 5-fold run. The docs' Trainer recipe "
        "scores this protocol in its own section (`dev_f1`).",
        "",
        md_table(["run", "models", "entity F1", "O bias", "seconds"], rows),
    ])
