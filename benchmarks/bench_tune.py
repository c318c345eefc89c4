"""Tuning the tfidf experiment on the full disaster-tweets data (7,613 tweets, 5 stratified folds).

    python -m benchmarks.bench_tune          # prints the figures, writes benchmarks/results/tune.json

What it measures:

- **Does tuning pay?** TPE (seed 42, median pruner) runs ``TRIALS`` trials of the tfidf template
  over C, min_df, word / char n-gram ranges and the estimator, each trial scored on fold 0 (the
  default quick objective). The best trial, exported as a new experiment, and the untuned template
  are then both trained on all 5 folds: their OOF F1 is the honest comparison (the fold-0 value
  the search maximised is optimistic by construction).
- **Parallel workers**: the same search, started fresh, by 1 and by 2 ``comp tune`` processes on
  one PostgreSQL study (a server this script starts on loopback; skipped without PostgreSQL).
- **Storage overhead per trial**: trials whose training returns at once, on SQLite and PostgreSQL,
  through ``comp tune``'s loop (config, lock, heartbeat, reports) and through bare Optuna.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import md_table, peak_rss_mib, shared_data

EXPENSIVE = True
TRIALS = 12
EMPTY_TRIALS = 40
REPO = Path(__file__).resolve().parents[1]

SPEC = """\
name: disaster-tweets
data_dir: {data}
train: train.csv
test: test.csv
sample_submission: sample_submission.csv
id: id
targets: [target]
labels: [0, 1]
text: [keyword, text]
task: binary
metric: f1
folds: {{scheme: stratified, n_splits: 5, seed: 42}}
"""
SEARCH = """\
template: tfidf
search:
  model.C: {type: float, low: 0.1, high: 30, log: true}
  model.min_df: {type: int, low: 1, high: 4}
  model.word_ngrams: {type: categorical, choices: [[1, 1], [1, 2], [1, 3]]}
  model.char_ngrams: {type: categorical, choices: [[2, 4], [2, 5], [1, 6], null]}
  model.sublinear_tf: {type: categorical, choices: [true, false]}
  model.estimator: {type: categorical, choices: [logistic, ridge]}
"""


def _workspace(root: Path):
    from competition import data as data_mod
    from competition import folds as folds_mod
    from competition.spec import load_spec
    from competition.workspace import Workspace

    (root / "experiments").mkdir(parents=True)
    (root / "competition.yaml").write_text(SPEC.format(data=shared_data() / "disaster-tweets"))
    (root / "experiments" / "base.yaml").write_text("text:\n  template: '{keyword} | {text}'\ntrack:\n  wandb: false\n")
    (root / "experiments" / "001.yaml").write_text("template: tfidf\n")
    (root / "experiments" / "002.yaml").write_text(SEARCH)
    ws = Workspace(root)
    folds_mod.write_folds(ws, data_mod.load(load_spec(ws.spec_file)))
    return ws


def _postgres(root: Path):
    """Start a throwaway PostgreSQL server; returns (url maker, stop) or None without binaries."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        return None
    bindir, pg = found[-1].parent, root / "pg"
    pg.mkdir()
    as_user = []
    if os.geteuid() == 0:   # initdb refuses root
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(pg, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, bindir / "initdb", "-D", pg / "data", "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, bindir / "pg_ctl", "-D", pg / "data", "-l", pg / "log", "-w", "-o",
                    f"-p {port} -k {pg} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    import psycopg2

    def database(name: str) -> str:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute(f"CREATE DATABASE {name}")
        conn.close()
        return f"postgresql://postgres@127.0.0.1:{port}/{name}"

    def stop() -> None:
        subprocess.run([*as_user, bindir / "pg_ctl", "-D", pg / "data", "-m", "fast", "stop"], capture_output=True)

    return database, stop


def _workers(ws, url: str, n: int, study: str) -> dict:
    """Wall and CPU seconds for ``n`` `comp tune` processes to finish TRIALS trials of one study,
    with the machine's load average (other work on the machine slows parallel workers)."""
    cmd = [sys.executable, "-m", "competition.commands.tune", "exp=002", "--trials", str(TRIALS), "--storage", url,
           "--study", study, "--no-export", "-w", str(ws.root)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    load = os.getloadavg()[0]
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise RuntimeError(f"comp tune worker failed: {err[-2000:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": round(wall, 1), "cpu_s": round(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 1),
            "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1)}


def _empty_trials(ws, url: str) -> dict:
    """Seconds per trial when training takes no time: comp tune's loop, and bare Optuna."""
    import optuna

    from competition import tune as tune_mod
    from competition import tune_objective, tune_storage
    from competition.train import FoldRow

    real = tune_objective.train

    def instant(ws, cfg, *, folds, force, data, on_fold):
        for k in folds:
            on_fold(FoldRow(k, "trained", 0.5))

    tune_objective.train = instant
    try:
        started = time.perf_counter()
        tune_mod.tune(ws, "002", trials=EMPTY_TRIALS, storage=url, study="empty", export=False, sampler="random")
        comp = (time.perf_counter() - started) / EMPTY_TRIALS
    finally:
        tune_objective.train = real
    storage = tune_storage.open_storage(tune_storage.storage_url(ws, url))
    study = optuna.create_study(storage=storage, study_name="bare", sampler=optuna.samplers.RandomSampler(0))
    started = time.perf_counter()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=EMPTY_TRIALS)
    bare = (time.perf_counter() - started) / EMPTY_TRIALS
    return {"comp_tune_s": round(comp, 4), "optuna_s": round(bare, 4)}


def run() -> dict:
    import optuna

    from competition import tune as tune_mod
    from competition.config import load_config
    from competition.train import train

    os.environ.setdefault("WANDB_MODE", "disabled")
    root = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    if os.geteuid() == 0:
        os.chmod(root, 0o755)
    out: dict = {"trials": TRIALS, "objective": "fold 0 F1 (threshold tuned on the fold)", "sampler": "tpe",
                 "pruner": "median"}
    server = None
    try:
        ws = _workspace(root / "ws")
        # does tuning pay? (SQLite, one worker, in this process)
        started = time.perf_counter()
        result = tune_mod.tune(ws, "002", trials=TRIALS, seed=42)
        out["search_seconds"] = round(time.perf_counter() - started, 1)
        out["best_fold0"] = result.best_value
        out["best_params"] = result.best_params
        out["states"] = result.states
        untuned = train(ws, load_config(ws, "001"))
        tuned = train(ws, load_config(ws, result.exported.stem))
        out["untuned"] = {"fold0": untuned.folds[0].score, "oof_f1": untuned.oof_score}
        out["tuned"] = {"exp": result.exported.stem, "fold0": tuned.folds[0].score, "oof_f1": tuned.oof_score}
        study = optuna.load_study(study_name="002", storage=f"sqlite:///{ws.tuning_db}")
        out["seconds_per_trial"] = round(sum(t.duration.total_seconds() for t in study.trials) / len(study.trials), 2)

        server = _postgres(root)
        if server is None:
            out["postgres"] = "skipped: no PostgreSQL binaries"
        else:
            database, _stop = server
            one, two = database("one"), database("two")
            out["workers_1"] = _workers(ws, one, 1, "w1")
            out["workers_2"] = _workers(ws, two, 2, "w2")
            for url in (one, two):
                st = optuna.load_study(study_name="w1" if url == one else "w2",
                                       storage=tune_mod.storage_url(ws, url))
                assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in st.trials) == TRIALS
            out["overhead_postgres"] = _empty_trials(ws, database("empty"))
        out["overhead_sqlite"] = _empty_trials(ws, f"sqlite:///{root / 'empty.db'}")
        out["peak_rss_mib"] = round(peak_rss_mib())
    finally:
        if server is not None:
            server[1]()
        shutil.rmtree(root, ignore_errors=True)
    return out


def render(result: dict) -> str:
    lines = ["## Tuning (`comp tune`, tfidf on disaster-tweets)", "",
             f"TPE + median pruner, {result['trials']} trials, objective: {result['objective']}; "
             "then the untuned template and the exported best trial trained on all 5 folds.", ""]
    rows = [["untuned tfidf template", f"{result['untuned']['fold0']:.4f}", f"{result['untuned']['oof_f1']:.4f}"],
            [f"best trial (exported as {result['tuned']['exp']})", f"{result['tuned']['fold0']:.4f}",
             f"{result['tuned']['oof_f1']:.4f}"]]
    lines += [md_table(["experiment", "fold 0 F1", "5-fold OOF F1"], rows), ""]
    lines.append(f"Best parameters: {', '.join(f'{k}={v}' for k, v in result['best_params'].items())}; "
                 f"{result['seconds_per_trial']} s per trial; trial states {result['states']}.")
    lines.append("")
    if "workers_1" in result:
        rows = [[n, result[f"workers_{n}"]["wall_s"], result[f"workers_{n}"]["cpu_s"],
                 f"{result[f'workers_{n}']['load_before']} / {result[f'workers_{n}']['load_after']}"] for n in (1, 2)]
        lines += [md_table(["workers on one PostgreSQL study", f"wall s for {result['trials']} trials",
                            "CPU s (all workers)", "load average before / after"], rows), ""]
    else:
        lines += [f"Parallel workers: {result.get('postgres')}", ""]
    overhead = [["SQLite (WAL)", result["overhead_sqlite"]["comp_tune_s"], result["overhead_sqlite"]["optuna_s"]]]
    if "overhead_postgres" in result:
        overhead.append(["PostgreSQL (loopback)", result["overhead_postgres"]["comp_tune_s"],
                         result["overhead_postgres"]["optuna_s"]])
    lines += [md_table(["storage", "s per empty trial, comp tune", "s per empty trial, bare Optuna"], overhead)]
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    from datetime import datetime, timezone

    from benchmarks.common import machine

    began = time.perf_counter()
    figures = run()
    figures["_meta"] = {"machine": machine(), "seconds": round(time.perf_counter() - began, 1),
                        "ran_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "tune.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(json.dumps(figures, indent=2, default=str))
    print(render(figures))
