"""A stronger encoder within reach (issue 23): all-mpnet-base-v2 on disaster-tweets against MiniLM 042.

Each variant is an experiment file plus overrides, trained in a copy of the root workspace
(``.work/mpnet``: same spec and folds, so OOF rows pair up with the root's 042) and scored by nested
OOF F1 with a paired 95% bootstrap interval against 042 on the same rows. Variants on folds 0-1 are
the cheap first look; the best runs on all 5 folds (its folds 0-1 resume). Seconds: 5 x the median
fold's wall seconds, and the shared caching pass of the frozen layers once (from the cache's
``meta.json``). Runs are kept, so ``python -m benchmarks.bench_mpnet m11 m10 m8`` trains variants
ahead (one at a time, in the background; ``m8:all`` on all 5 folds, ``mfull:0`` on fold 0 only) and
``make bench`` collects what was trained
(``BENCH_MPNET_TRAINED_ONLY=1`` trains nothing).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks.bench_quality import REPO, _copy_workspace, _fold_oof, _fold_seconds, _scored
from benchmarks.common import md_table, shared_data

EXPENSIVE = True
WORK = Path(__file__).parent / ".work" / "mpnet"
MPNET = "template: mpnet\n"
# exp -> (what it is, experiment file, overrides, folds (None: all 5))
VARIANTS: dict[str, tuple[str, str, list[str], list[int] | None]] = {
    "m11": ("mpnet, freeze_layers 11", MPNET, ["train.freeze_layers=11"], [0, 1]),
    "m10": ("mpnet, freeze_layers 10", MPNET, ["train.freeze_layers=10"], [0, 1]),
    "m8": ("mpnet, freeze_layers 8", MPNET, ["train.freeze_layers=8"], [0, 1]),
    "mfull": ("mpnet, full fine-tune (the ceiling)", MPNET, ["train.freeze_layers=0"], [0, 1]),
    # MiniLM (042's recipe) taught by m8's fold models: does a student keep mpnet's view at MiniLM's cost?
    "mdist": ("MiniLM distilled from mpnet freeze_layers 8", "template: minilm\n"
              "distill: {teacher: ['m8'], alpha: 0.5, temperature: 2.0}\n", [], [0, 1]),   # m8:all first for all 5
}


def run() -> dict:
    from competition.data import load
    from competition.spec import load_spec

    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    data = load(load_spec(REPO / "competition.yaml"))
    only, folds = None, {exp: None for exp in VARIANTS if _trained(exp, None)}   # trained on all 5: use all
    if os.environ.get("BENCH_MPNET_TRAINED_ONLY"):
        only = [exp for exp, v in VARIANTS.items() if _trained(exp, v[3])]
    variants = train_variants(data, only, folds)
    result = {"variants": variants, "stacks": stacks(data, variants)}
    return _keep_earlier(result, only)


def _keep_earlier(result: dict, only: list[str] | None) -> dict:
    """Rows whose runs this checkout no longer has (``.work`` is not committed) stay from the committed
    results, marked as earlier runs, rather than vanish from the page."""
    from benchmarks.run import RESULTS

    previous = RESULTS / "mpnet.json"
    earlier = json.loads(previous.read_text()) if previous.is_file() else {}
    for key in ("variants", "stacks"):
        have = {(e["exp"], tuple(e.get("folds") or ())) for e in result[key]}   # a run on other folds stays
        result[key] += [{**e, "earlier": True} for e in earlier.get(key, [])
                        if (e["exp"], tuple(e.get("folds") or ())) not in have]
    have = {e["exp"] for e in result["variants"]}
    result["not_run"] = [VARIANTS[e][0] for e in VARIANTS if only is not None and e not in have]
    return result


STACK_BASES = ["001", "003", "042"]   # the root's runs that s01 stacks too (s01 has 002 as well)


def stacks(data, variants: list[dict]) -> list[dict]:
    """The stack of the root's 001, 003, 042 with each mpnet variant trained on all 5 folds, against
    042 and against the root's s01 (paired intervals over all rows)."""
    from competition import bootstrap, runs
    from competition.stack import stack
    from competition.workspace import Workspace

    root, ws = Workspace(REPO), Workspace(WORK)
    out = []
    for e in variants:
        if len(e["folds"]) < 5:
            continue
        name = f"s{e['exp']}"
        started = time.perf_counter()
        result = stack(ws, inputs=[*STACK_BASES, e["exp"]], name=name, force=True, data=data)
        seconds = time.perf_counter() - started
        score, pred, y = _scored(data, runs.load_run(ws, name).oof())
        row = {"exp": name, "variant": f"stack of {', '.join(STACK_BASES)}, {e['exp']} ({e['variant']})",
               "f1": score, "seconds": round(seconds, 1), "reported": result.oof_score}
        for base, where in (("042", root), ("s01", root), (e["exp"], ws)):
            if not (where.run_dir(base) / "oof.parquet").is_file():
                continue
            base_score, base_pred, _ = _scored(data, runs.load_run(where, base).oof())
            c = bootstrap.compare("f1", y, pred, base_pred, "binary")
            row[f"vs {base}"] = {"f1": base_score, "diff": [c.diff, c.low, c.high], "significant": c.significant}
            print(f"[bench] mpnet {name} vs {base}: {score:.4f} vs {base_score:.4f} {c.text()}", flush=True)
        out.append(row)
    return out


def _trained(exp: str, folds: list[int] | None) -> bool:
    return all((WORK / "experiments" / exp / f"fold{k}" / "done.json").is_file() for k in (folds or range(5)))


def train_variants(data, only: list[str] | None = None, folds: dict[str, list[int] | None] | None = None) -> list[dict]:
    """Each variant (or those in ``only``) against the root's 042; ``folds`` overrides a variant's folds
    (None: all 5)."""
    from competition import runs
    from competition.workspace import Workspace

    root = Workspace(REPO)
    ws = _copy_workspace(WORK)
    for name in ("001", "003", "042"):             # the stack's other inputs: the root's runs
        link = ws.run_dir(name)
        if not link.exists() and root.run_dir(name).exists():
            link.symlink_to(root.run_dir(name).resolve(), target_is_directory=True)
    out = []
    for exp, (what, text, overrides, chosen) in VARIANTS.items():
        if only is not None and exp not in only:
            continue
        chosen = (folds or {}).get(exp, chosen)
        missing = [k for k in chosen or range(5) if not (root.fold_dir("042", k) / "done.json").is_file()]
        if missing:       # only the folds compared: a variant on folds 0-1 needs 042's folds 0-1
            raise SystemExit(f"train 042 at the repository root first: comp train exp=042 --fold "
                             f"{','.join(map(str, missing))}")
        base_oof = _fold_oof(root, "042", chosen or list(range(5)))
        out.append(_variant(ws, data, base_oof, exp, what, text, overrides, chosen))
    return out


def _variant(ws, data, base_oof, exp, what, text, overrides, folds) -> dict:
    from competition import bootstrap
    from competition.config import load_config
    from competition.train import train

    ws.experiment_file(exp).write_text(text)
    started = time.perf_counter()
    cfg = load_config(ws, exp, ["track.wandb=false", *overrides])
    train(ws, cfg, data=data, folds=folds or "all")
    chosen = folds or list(range(5))
    score, pred, y = _scored(data, _fold_oof(ws, exp, chosen))
    base_score, base_pred, _ = _scored(data, base_oof[base_oof["fold"].isin(chosen)])
    c = bootstrap.compare("f1", y, pred, base_pred, "binary")
    print(f"[bench] mpnet {what}: f1 {score:.4f} vs 042 {base_score:.4f} {c.text()}", flush=True)
    per_fold = [_fold_seconds(ws.fold_dir(exp, k)) for k in chosen]
    return {"exp": exp, "variant": what, "overrides": overrides, "folds": chosen, "f1": score,
            "base_f1": base_score, "diff": [c.diff, c.low, c.high], "significant": c.significant,
            "seconds": round(5 * sorted(per_fold)[len(per_fold) // 2], 1),
            "caching_seconds": _caching_seconds(cfg), "wall": round(time.perf_counter() - started, 1)}


def _caching_seconds(cfg) -> float | None:
    """Seconds of the caching passes (train and test) of ``cfg``'s frozen layers, from the caches' meta."""
    from competition.workspace import cache_dir

    k = cfg.train.freeze_layers
    if not k:
        return None
    metas = [json.loads(p.read_text()) for p in cache_dir("states").glob("*/meta.json")]
    found = [m["seconds"] for m in metas if m["freeze_layers"] == k and m["hidden"] == 768]
    return round(sum(found), 1) if found else None


def render(r: dict) -> str:
    rows = []
    for e in r["variants"]:
        d, lo, hi = e["diff"]
        verdict = " **holds**" if e["significant"] and d > 0 else " noise" if not e["significant"] else " worse"
        where = "all 5" if len(e["folds"]) == 5 else ", ".join(map(str, e["folds"]))
        rows.append([e["variant"] + (" (an earlier session's run)" if e.get("earlier") else ""), where, f"{e['f1']:.4f}", f"{e['base_f1']:.4f}",
                     f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]{verdict}", e["seconds"], e.get("caching_seconds") or "-"])
    return "\n".join([
        "## A stronger encoder: all-mpnet-base-v2 (disaster-tweets, against MiniLM 042 on the same folds)", "",
        "Nested OOF F1, the paired difference to 042 on the same rows with its 95% bootstrap interval, "
        "*seconds*: 5 x the median fold's wall seconds; *caching*: the one pass that computes the frozen "
        "layers' output for every train and test text (shared by every fold, epoch and seed). The runs were "
        "trained ahead (`python -m benchmarks.bench_mpnet m8:all m10`, then `m11 m8:0,1 mdist:0,1`) and collected "
        "by `make bench`; many folds shared the 2 cores with the test suite (freeze_layers 8: folds took "
        "682-792 s, one 1,351 s; 042's took 378-668 s the same way; the full fine-tune's fold 0 took 4,435 s, of which 1,765 s "
        "paused (SIGSTOP while the stack and ONNX benchmarks and the test suite ran) and most of the rest "
        "shared with profiling and a test run, so its *seconds* (5 x the slower of its two folds) overstate it: "
        "its fold 1 ran alone on 2 idle cores in 1,343 s, so 5 folds take ~6,700 s (~1.9 h) there; the second freeze_layers 8 run and the distilled one, folds 0-1, shared them with test-suite runs "
        "too). *MiniLM distilled*: 042's recipe with `distill: {teacher: ['m8']}` (alpha 0.5, T 2): each "
        "fold learns from m8's fold model, which never saw that fold. Target of issue 23: >= 0.83 nested OOF F1.", "",
        md_table(["variant", "folds", "f1", "042 f1", "vs 042 [95%]", "seconds", "caching s"], rows), "",
        *_stacks(r.get("stacks") or []),
        *(["- not run: " + "; ".join(r["not_run"])] if r.get("not_run") else [])])


def _stacks(entries: list[dict]) -> list[str]:
    if not entries:
        return []
    rows = []
    for e in entries:
        cells = [e["variant"] + (" (an earlier session's run)" if e.get("earlier") else ""), f"{e['f1']:.4f}"]
        for base in ("042", "s01", e["exp"][1:]):
            v = e.get(f"vs {base}")
            if v is None:
                cells.append("-")
                continue
            d, lo, hi = v["diff"]
            verdict = " **holds**" if v["significant"] and d > 0 else " noise" if not v["significant"] else " worse"
            cells.append(f"{v['f1']:.4f}: {d:+.4f} [{lo:+.4f}, {hi:+.4f}]{verdict}")
        rows.append(cells + [e["seconds"]])
    return ["Stacks (LightGBM meta-model, nested OOF F1 over all 7,613 rows) against 042, the root's s01 "
            "(001, 002, 003, 042) and the mpnet run alone:", "",
            md_table(["stack", "f1", "vs 042 [95%]", "vs s01 [95%]", "vs its mpnet input [95%]", "seconds"], rows), ""]


if __name__ == "__main__":
    import sys

    from competition.data import load
    from competition.spec import load_spec

    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    import competition.stack, competition.teach, competition.predict  # noqa: E401,F401  (imported now:
    # a long run must not import modules edited while it trains)
    args = [a.partition(":") for a in sys.argv[1:]]      # m8:all trains all 5 folds, mfull:0 fold 0 only
    chosen = {exp: None if spec == "all" else [int(k) for k in spec.split(",")] for exp, _, spec in args if spec}
    data = load(load_spec(REPO / "competition.yaml"))
    done = train_variants(data, [exp for exp, _, _ in args] or None, folds=chosen)
    stacks(data, done)
