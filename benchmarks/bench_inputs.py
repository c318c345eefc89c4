"""Text pairs and long documents (issue 27): what reading a pair as a pair, and a long text's end,
buy on real data, with paired 95% intervals on the same folds.

- msrp (``examples/msrp``, 4,076 pairs, 5 folds): each pair experiment against the same recipe on
  the glued text (``text.pair: false``): TF-IDF 001 vs 011, the MiniLM cross-encoder 042 vs 041,
  and 043 (042 with the swapped pair averaged in) vs 042. Nested OOF F1 and accuracy (at the F1
  threshold's decisions).
- BBC News (the demo's 2,225 articles, hundreds of tokens each, 5 folds): MiniLM at 128 tokens
  keeping the head against keeping head and tail (``model.truncation: head_tail``), one epoch each.
  Accuracy.

The runs are trained in the example workspace (msrp) and in ``.work/bbc``; runs already trained are
reused (``python -m benchmarks.bench_inputs`` trains what is missing; ``BENCH_INPUTS_TRAINED_ONLY=1``
only collects).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_quality import REPO, _fold_oof, _fold_seconds
from benchmarks.common import md_table, shared_data

EXPENSIVE = True
MSRP = REPO / "examples" / "msrp"
BBC = Path(__file__).parent / ".work" / "bbc"
PAIRS = [("001", "011", "TF-IDF: pair features vs glued text"),
         ("042", "041", "MiniLM cross-encoder: pair vs glued text"),
         ("043", "042", "MiniLM cross-encoder: + swap TTA vs pair alone")]
# (a, b, what, folds a is trained on (None: all 5); the pair is compared on a's rows)
LONG = [("h128t", "h128", "MiniLM, 128 tokens: head_tail vs head", None),
        ("w128", "h128", "MiniLM, 128 tokens: windows (mean) vs head", [0, 1]),
        ("w128e", "w128", "MiniLM, 128-token windows: each window trained alone vs the pooled document loss", [0, 1])]
BBC_EXPERIMENTS = {
    "h128": "# MiniLM, 128 tokens of each article: its start; one epoch.\ntemplate: minilm\n"
            "model: {max_length: 128}\ntrain: {epochs: 1}\n",
    "h128t": "# MiniLM, 128 tokens of each article: its first 32 and its last 94; one epoch.\ntemplate: minilm\n"
             "model: {max_length: 128, truncation: head_tail}\ntrain: {epochs: 1}\n",
    "w128": "# MiniLM, all of each article as windows of 128 tokens side by side (126 of text each), their\n"
            "# vectors' mean read by the head; one epoch.\ntemplate: minilm\n"
            "model: {max_length: 128, truncation: windows, stride: 126}\ntrain: {epochs: 1}\n",
    "w128e": "# w128, but each window trained alone on its article's label; an article's prediction: the mean\n"
             "# of its windows' logits.\ntemplate: minilm\n"
             "model: {max_length: 128, truncation: windows, stride: 126, window_loss: window}\ntrain: {epochs: 1}\n",
}


def _bbc_workspace():
    """The BBC News articles as a workspace (category, 5 stratified folds), written once."""
    from competition import data as data_mod
    from competition import folds as folds_mod
    from competition.demo import bbc_frame
    from competition.spec import load_spec
    from competition.workspace import Workspace

    if not (BBC / "competition.yaml").is_file():
        BBC.mkdir(parents=True, exist_ok=True)
        bbc_frame().to_csv(BBC / "train.csv", index=False)
        (BBC / "competition.yaml").write_text(
            "name: bbc\ntrain: train.csv\nid: id\ntargets: [category]\n"
            "labels: [business, entertainment, politics, sports, tech]\ntext: [text]\ntask: multiclass\n"
            "metric: accuracy\nfolds: {scheme: stratified, n_splits: 5, seed: 42}\n")
        (BBC / "experiments").mkdir(exist_ok=True)
        (BBC / "experiments" / "base.yaml").write_text("seed: 42\ntrack: {wandb: false}\n")
    for exp, text in BBC_EXPERIMENTS.items():
        (BBC / "experiments" / f"{exp}.yaml").write_text(text)
    ws = Workspace(BBC)
    if not ws.folds_file.is_file():
        folds_mod.write_folds(ws, data_mod.load(load_spec(ws.spec_file)))
    return ws


def _ensure(ws, exp: str, train_missing: bool, folds: list[int] | None = None) -> bool:
    from competition.config import load_config
    from competition.train import train

    if (ws.run_dir(exp) / "oof.parquet").is_file():
        return True
    if folds is not None and all((ws.fold_dir(exp, k) / "oof.parquet").is_file() for k in folds):
        return True
    if not train_missing:
        return False
    train(ws, load_config(ws, exp, ["track.wandb=false"]), folds="all" if folds is None else folds)
    return True


def _oof(ws, name: str):
    """The run's OOF rows: the whole run's, or those of the folds it has (a run trained on some folds)."""
    from competition import runs

    if (ws.run_dir(name) / "oof.parquet").is_file():
        return runs.load_run(ws, name).oof()
    return _fold_oof(ws, name, [k for k in range(5) if (ws.fold_dir(name, k) / "oof.parquet").is_file()])


def _compare(ws, data, a: str, b: str, what: str) -> dict:
    """Nested OOF scores of runs a and b (F1 / accuracy at their nested decisions) and the paired
    bootstrap of a minus b."""
    from competition import bootstrap, metrics, runs, thresholds

    spec = data.spec
    row = {"a": a, "b": b, "what": what}
    ids = data.train[spec.id_column].astype(str)
    first = _oof(ws, a)
    keep = ids.isin(set(first["id"].astype(str))).to_numpy()        # a trained on some folds: their rows
    ids, y = ids[keep], np.asarray(data.y)[keep]
    if not keep.all():
        row["rows"], row["folds"] = int(keep.sum()), sorted(int(k) for k in first["fold"].unique())
    for name in (a, b):
        oof = _oof(ws, name)
        oof = oof.set_index(oof["id"].astype(str)).loc[ids]
        pred, fold = oof[spec.pred_columns].to_numpy(float), oof["fold"].to_numpy()
        decisions = thresholds.decisions(spec.metric, y, pred, spec.task, fold)[0]
        row[name] = {"score": thresholds.cv(spec.metric, y, pred, spec.task, fold).score,
                     "decisions": decisions,
                     "seconds": round(5 * float(np.median([_fold_seconds(ws.fold_dir(name, k))
                                                           for k in sorted(set(fold))])), 1)}
        if spec.task == "binary":
            labels = np.asarray(decisions).ravel().astype(int)
            row[name]["accuracy"] = float(metrics.score("accuracy", y, labels[:, None], "binary", threshold=0.5))
    c = bootstrap.compare(spec.metric, y, row[a]["decisions"], row[b]["decisions"], spec.task)
    row["diff"] = [c.diff, c.low, c.high]
    row["significant"] = c.significant
    if spec.task == "binary":
        la, lb = (np.asarray(row[n]["decisions"]).ravel().astype(int) for n in (a, b))
        acc = bootstrap.compare("accuracy", y, la, lb, "binary")
        row["accuracy_diff"] = [acc.diff, acc.low, acc.high]
    for name in (a, b):
        row[name].pop("decisions")
    print(f"[bench] inputs {what}: {row[a]['score']:.4f} vs {row[b]['score']:.4f} {c.text()}", flush=True)
    return row


def run(train_missing: bool | None = None, only: list[str] | None = None) -> dict:
    """Every comparison, or those whose first run is in ``only`` (the others stay as the committed results
    have them, marked as an earlier session's: ``.work`` and the example's runs are not committed)."""
    from competition import data as data_mod
    from competition import folds as folds_mod
    from competition.spec import load_spec
    from competition.workspace import Workspace

    os.environ.setdefault("COMP_DATA", str(shared_data()))
    os.environ["WANDB_MODE"] = "disabled"
    if train_missing is None:
        train_missing = not os.environ.get("BENCH_INPUTS_TRAINED_ONLY")
    out: dict = {"pairs": [], "long": [], "not_run": []}
    ws = Workspace(MSRP)
    data = data_mod.load(load_spec(ws.spec_file))
    if not ws.folds_file.is_file():
        folds_mod.write_folds(ws, data)
    for a, b, what in PAIRS:
        if only is not None and a not in only:
            continue
        if all(_ensure(ws, exp, train_missing) for exp in (a, b)):
            out["pairs"].append(_compare(ws, data, a, b, what))
        else:
            out["not_run"].append(what)
    bbc = _bbc_workspace()
    bbc_data = data_mod.load(load_spec(bbc.spec_file))
    for a, b, what, folds in LONG:
        if only is not None and a not in only:
            continue
        started = time.perf_counter()
        if _ensure(bbc, b, train_missing, folds) and _ensure(bbc, a, train_missing, folds):   # b: a's folds
            out["long"].append({**_compare(bbc, bbc_data, a, b, what), "wall": round(time.perf_counter() - started)})
        else:
            out["not_run"].append(what)
    return _keep_earlier(out)


def _keep_earlier(out: dict) -> dict:
    """Comparisons not made this time (not asked for, or their runs are not in this checkout) as the
    committed results have them, marked as an earlier session's."""
    import json

    from benchmarks.run import RESULTS

    path = RESULTS / "inputs.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    for key in ("pairs", "long"):
        made = {(e["a"], e["b"]): e for e in out[key]}
        out[key] = [made.pop((e["a"], e["b"]), None) or {**e, "earlier": True} for e in earlier.get(key, [])]
        out[key] += list(made.values())
    kept = {e["what"] for key in ("pairs", "long") for e in out[key]}
    out["not_run"] = [what for what in out["not_run"] if what not in kept]
    return out


def _interval(d: list[float], significant: bool) -> str:
    verdict = " **holds**" if significant and d[0] > 0 else " noise" if not significant else " worse"
    return f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]{verdict}"


def render(r: dict) -> str:
    rows = []
    for e in r.get("pairs", []):
        a, b = e[e["a"]], e[e["b"]]
        acc = e.get("accuracy_diff")
        rows.append([e["what"] + (" (an earlier session's runs)" if e.get("earlier") else ""), f"{e['a']}: {a['score']:.4f}", f"{e['b']}: {b['score']:.4f}",
                     _interval(e["diff"], e["significant"]),
                     f"{a['accuracy']:.4f} vs {b['accuracy']:.4f}" + (f", {acc[0]:+.4f} [{acc[1]:+.4f}, {acc[2]:+.4f}]"
                                                                      if acc else ""),
                     f"{a['seconds']} / {b['seconds']}"])
    long_rows = [[e["what"] + (f" (folds {', '.join(map(str, e.get('folds', [0, 1])))}: {e['rows']} articles)"
                               if "rows" in e else "") + (" (an earlier session's runs)" if e.get("earlier") else ""),
                  f"{e['a']}: {e[e['a']]['score']:.4f}", f"{e['b']}: {e[e['b']]['score']:.4f}",
                  _interval(e["diff"], e["significant"]), f"{e[e['a']]['seconds']} / {e[e['b']]['seconds']}"]
                 for e in r.get("long", [])]
    return "\n".join([
        "## Text pairs and long documents (issue 27)", "",
        "msrp (`examples/msrp`, 4,076 sentence pairs, 5 folds): each pair recipe against the same recipe on the "
        "glued text (`text.pair: false`), nested OOF F1 (the competition metric) with the paired 95% bootstrap "
        "interval of the difference, and accuracy at the same decisions. Seconds: 5 x the median fold. Always "
        "answering \"paraphrase\" scores F1 0.806 here.", "",
        md_table(["comparison", "F1", "against", "F1 difference [95%]", "accuracy (difference [95%])", "seconds"],
                 rows) if rows else "(not run)", "",
        "BBC News (2,225 articles, 5 classes, 5 folds), accuracy:", "",
        md_table(["comparison", "accuracy", "against", "difference [95%]", "seconds"], long_rows)
        if long_rows else "(not run)", "",
        *(["- not run: " + "; ".join(r["not_run"])] if r.get("not_run") else [])])


if __name__ == "__main__":
    import json
    import sys

    result = run(only=sys.argv[1:] or None)     # e.g. `python -m benchmarks.bench_inputs w128e`: that one
    print(json.dumps(result, indent=1, default=str))
    print(render(result))
