"""Span extraction (issue 39): examples/tweet-spans' recipe against the whole text and the transformers-docs
peer, on the workspace's own 5 folds (KFold, seed 42: the folds ``bench_spans_peer`` uses).

- the whole text as every answer; ``001`` the words baseline; ``042``, ``044``, ``045`` three views of
  MiniLM's span head (bf16 above cached frozen layers; seeds, frozen depth, rate, smoothed targets); the
  stack ``s01`` (LightGBM over characters of the four) and their mean blend ``b01``: trained / built
  through comp's API in examples/tweet-spans (a run already complete is read as it is); OOF word-level Jaccard with each fold decoded at the length bias chosen on
  the other folds, per sentiment; seconds; the decoding rule (expected overlap) against the likeliest
  span, paired;
- each against the peer's OOF answers (``results/spans_peer_folds.json``, the folds it has finished): the
  difference in Jaccard on those rows with its 95% paired bootstrap interval over rows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import example_workspace, md_table, train_runs

EXPENSIVE = True
HERE = Path(__file__).parent
WORKSPACE = HERE.parent / "examples" / "tweet-spans"
PEER = HERE / "results" / "spans_peer_folds.json"
CACHE = HERE / "results" / "spans.json"
RUNS = ("001", "042", "044", "045")      # the recipe: stacked
RECORD: tuple[str, ...] = ()             # trained, reported alone


def _workspace():
    return example_workspace(WORKSPACE)


def _ensure(ws, data) -> dict[str, float]:
    """Train (or resume) the runs; the stack and the blend over them. Seconds of each step."""
    from competition.blend import blend
    from competition.errors import InputError
    from competition.runs import load_run
    from competition.stack import stack

    seconds = train_runs(ws, data, (*RUNS, *RECORD), "spans")
    previous = json.loads(CACHE.read_text())["runs"] if CACHE.is_file() else {}
    for name, make in (("s01", lambda: stack(ws, inputs=list(RUNS), name="s01", force=True, data=data)),
                       ("b01", lambda: blend(ws, inputs=list(RUNS), method="mean", name="b01", force=True,
                                             data=data))):
        try:     # built over these inputs' current versions already (a re-run as the peer's folds come in)
            run = load_run(ws, name)
            if run.manifest.get("input_hashes") == {r: load_run(ws, r).manifest["files"]["oof.parquet"] for r in RUNS} \
                    and previous.get(name, {}).get("seconds") is not None:
                seconds[name] = previous[name]["seconds"]
                continue
        except InputError:
            pass
        started = time.perf_counter()
        make()
        seconds[name] = round(time.perf_counter() - started, 1)
        print(f"[bench] spans {name}: {seconds[name]}s", flush=True)
    return seconds


def _median_folds(ws, name: str) -> float:
    """5 x the median of a run's fold seconds (its manifest's ``seconds_per_fold``), plus its preparation."""
    from competition.runs import load_run

    manifest = load_run(ws, name).manifest
    per_fold = sorted(manifest["seconds_per_fold"].values())
    return len(per_fold) * float(np.median(per_fold)) + float(manifest.get("prepare_seconds") or 0.0)


def _spans(ws, data, name):
    """A run's OOF answers, each fold decoded at the bias chosen on the others by comp's rule for the
    metric (the overlap rule), the bias chosen on all OOF, and the same with the likeliest-span rule
    (for comparing the rules; today's figures are recomputed from the OOF, not read from the manifest)."""
    from competition import spans, thresholds
    from competition.predictions import matrix
    from competition.runs import load_run

    oof = load_run(ws, name).oof()
    pred, fold = matrix(oof, load_run(ws, name).pred_columns), oof["fold"].to_numpy()
    found, _ = thresholds.decisions("word_jaccard", data.y, pred, "span", fold)
    bias = thresholds.best_threshold("word_jaccard", data.y, pred, "span")
    scores = np.stack([spans.row_scores("word_jaccard", data.y, spans.decode(pred, b, "likeliest"))
                       for b in spans.BIASES], axis=1)
    likeliest = np.zeros_like(found)
    for k in np.unique(fold):
        rest, here = fold != k, fold == k
        b = spans.BIASES[int(scores[rest].mean(axis=0).argmax())]
        likeliest[here] = spans.decode(pred[here], b, "likeliest")
    return found, bias, fold, likeliest


def _peer_spans(data) -> tuple[np.ndarray | None, np.ndarray, list[int]]:
    """The peer's answers as spans of each row's text (where they first occur: the same words), the rows
    of the folds it has finished, and those folds."""
    if not PEER.is_file():
        return None, np.zeros(0, dtype=np.int64), []
    done = json.loads(PEER.read_text())
    position = {str(i): r for r, i in enumerate(data.train[data.spec.id_column])}
    out = np.zeros((len(data.train), 2), dtype=np.int64)
    rows = []
    for fold in done.values():
        for i, answer in zip(fold["ids"], fold["answers"]):
            r = position[str(i)]
            text = data.train[data.spec.text[0]].iloc[r]
            at = text.find(answer) if answer else 0
            out[r] = (at, at + len(answer)) if answer and at >= 0 else (0, 0)
            rows.append(r)
    return out, np.sort(np.array(rows, dtype=np.int64)), sorted(int(k) for k in done)


def run() -> dict:
    from competition import bootstrap, spans

    ws, data = _workspace()
    seconds = _ensure(ws, data)
    sentiment = data.train["sentiment"].to_numpy()
    peer, peer_rows, peer_folds = _peer_spans(data)
    whole = np.array([[0, len(a.text)] for a in data.y])

    def describe(found, extra: dict) -> dict:
        scores = spans.row_scores("word_jaccard", data.y, found)
        out = {"oof_jaccard": round(float(scores.mean()), 4),
               "by_sentiment": {s: round(float(scores[sentiment == s].mean()), 4) for s in sorted(set(sentiment))},
               **extra}
        if len(peer_rows):
            diff = bootstrap.compare("word_jaccard", data.y[peer_rows], found[peer_rows], peer[peer_rows], "span")
            out["vs_peer"] = [round(diff.diff, 4), round(diff.low, 4), round(diff.high, 4)]
            out["vs_peer_significant"] = bool(diff.significant)
        return out

    rows = {"whole": describe(whole, {"seconds": 0.0})}
    for name in (*RUNS, *RECORD, "s01", "b01"):
        found, bias, fold, likeliest = _spans(ws, data, name)
        scores = spans.row_scores("word_jaccard", data.y, found)
        rule = bootstrap.compare("word_jaccard", data.y, found, likeliest, "span")
        rows[name] = describe(found, {
            "bias": bias, "seconds": seconds.get(name),
            "folds": {str(k): round(float(scores[fold == k].mean()), 4) for k in np.unique(fold)},
            "likeliest_rule": round(float(spans.row_scores("word_jaccard", data.y, likeliest).mean()), 4),
            "overlap_vs_likeliest": [round(rule.diff, 4), round(rule.low, 4), round(rule.high, 4)]})
        print(f"[bench] spans {name}: {rows[name]}", flush=True)
    result = {"runs": rows, "recipe": list(RUNS), "peer_folds": peer_folds, "peer_rows": int(len(peer_rows)),
              "recipe_seconds": round(sum(seconds[n] for n in (*RUNS, "s01")), 1),
              # a fold slowed by other work (tests beside it) weighs as the median fold: 5 x the median
              "recipe_median_seconds": round(sum(_median_folds(ws, n) for n in RUNS) + seconds["s01"], 1)}
    if len(peer_rows):
        scores = spans.row_scores("word_jaccard", data.y[peer_rows], peer[peer_rows])
        result["peer"] = {"jaccard": round(float(scores.mean()), 4), "by_sentiment": {
            s: round(float(scores[sentiment[peer_rows] == s].mean()), 4) for s in sorted(set(sentiment))}}
    return result


def render(r: dict) -> str:
    names = {"whole": "the whole text", "001": "001 words baseline (LightGBM per word)",
             "042": "042 MiniLM span head, 2 layers frozen",
             "044": "044 MiniLM span head, 1 layer frozen, seed 7, smoothed targets",
             "045": "045 MiniLM span head, 2 layers frozen, seed 11, smoothed targets",
             "s01": "s01 stack (characters, LightGBM)", "b01": "b01 mean blend"}
    sentiments = sorted(next(iter(r["runs"].values()))["by_sentiment"])
    has_peer = bool(r.get("peer_rows"))
    table = []
    for n, v in r["runs"].items():
        row = [names[n], *(f"{x:.4f}" for x in (v["oof_jaccard"], *[v["by_sentiment"][s] for s in sentiments]))]
        if has_peer:
            row.append(f"{v['vs_peer'][0]:+.4f} [{v['vs_peer'][1]:+.4f}, {v['vs_peer'][2]:+.4f}]"
                       + (" **beats**" if v["vs_peer_significant"] and v["vs_peer"][0] > 0 else ""))
        row.append(v["seconds"] if v.get("seconds") is not None else "-")
        table.append(row)
    if has_peer:
        p = r["peer"]
        table.append(["peer: docs' Trainer recipe (its folds)",
                      *(f"{x:.4f}" for x in (p["jaccard"], *[p["by_sentiment"][s] for s in sentiments])),
                      "-", "-"])
    scope = (f"the peer's finished folds {r['peer_folds']} ({r['peer_rows']:,} rows)" if has_peer
             else "no fold of the peer finished yet")
    return "\n".join([
        "## Span extraction: Tweet Sentiment Extraction (examples/tweet-spans)",
        "",
        "OOF word-level Jaccard (the competition's) on the workspace's 5 folds, each fold decoded at the length "
        "bias chosen on the other folds, overall and per sentiment. Against the peer (the transformers docs' "
        "question-answering recipe, `bench_spans_peer`, same folds): the difference in Jaccard on "
        f"{scope}, with its paired 95% bootstrap interval over rows. Seconds: the runs' folds (stack, blend: the "
        "command).",
        "",
        md_table(["run", "OOF Jaccard", *sentiments, *(["minus the peer"] if has_peer else []), "seconds"], table),
        "",
        f"- the recipe ({', '.join(r.get('recipe', ['001', '042', '043']))} and the stack s01): {r['recipe_seconds']:.0f} s of training and stacking "
        + (f"as measured, {r['recipe_median_seconds']:.0f} s with each run's folds at their median (a fold slowed by "
           "other work on the machine counts as a typical one) " if "recipe_median_seconds" in r else "")
        + "(target: the whole recipe within 90 minutes on 2 idle cores)",
        "- decoding by expected overlap (comp's rule for word Jaccard) against the likeliest span (each nested "
        "the same way, the same OOF), paired 95% interval: " + "; ".join(
            f"{n} {v['likeliest_rule']:.4f} -> {v['oof_jaccard']:.4f}, {v['overlap_vs_likeliest'][0]:+.4f} "
            f"[{v['overlap_vs_likeliest'][1]:+.4f}, {v['overlap_vs_likeliest'][2]:+.4f}]"
            for n, v in r["runs"].items() if "overlap_vs_likeliest" in v),
    ])
