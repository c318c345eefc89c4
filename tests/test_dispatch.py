"""comp train --ray: (experiment, fold) pairs as Ray tasks on a local Ray; the run equals a local one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from competition.config import load_config  # noqa: E402
from competition.dispatch import train_on_ray  # noqa: E402
from competition.train import train  # noqa: E402
from tests.test_tune import postgres  # noqa: E402,F401 (a fixture)
from tests.workspaces import tweets_workspace  # noqa: E402

LOCAL = {"num_cpus": 2}


@pytest.fixture
def twins(tmp_path):
    """Two identical workspaces: one trained locally, one through Ray."""
    a = tweets_workspace(tmp_path / "a", n_train=400, n_test=80,
                         experiments={"001": "template: tfidf\n", "002": "template: tfidf\nmodel: {C: 1.0}\n"})
    b = tmp_path / "b"
    shutil.copytree(a.root, b)
    from competition.workspace import Workspace

    return a, Workspace(b)


def test_folds_as_ray_tasks_give_the_local_run_exactly(twins):
    local, remote = twins
    for exp in ("001", "002"):
        train(local, load_config(local, exp))
    lines = []
    out = train_on_ray(remote, [load_config(remote, e) for e in ("001", "002")], ray_init=LOCAL,
                       on_fold=lambda exp, row, node: lines.append((exp, row.fold, row.status, node)))
    assert not out.failed and sorted((e, k) for e, k, *_ in lines) == [(e, k) for e in ("001", "002") for k in range(3)]
    assert all(status == "trained" and node for *_, status, node in lines)
    for exp in ("001", "002"):
        assert out.results[exp].complete
        for name in ("oof.parquet", "test.parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(local.run_dir(exp) / name),
                                          pd.read_parquet(remote.run_dir(exp) / name))
        manifest = json.loads((remote.run_dir(exp) / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["folds_done"] == [0, 1, 2]
        saved = json.loads((remote.run_dir(exp) / "metrics.json").read_text())
        assert saved["oof_score"] == json.loads((local.run_dir(exp) / "metrics.json").read_text())["oof_score"]
    # resumed: nothing left to train, no task is sent
    again = train_on_ray(remote, [load_config(remote, "001")], ray_init=LOCAL,
                         on_fold=lambda *a: pytest.fail("a finished fold was sent again"))
    assert again.results["001"].complete


def _kill_first_fold_task(found: list, timeout: float = 120.0) -> None:
    """Kill (SIGKILL) the first Ray worker seen running a fold task, as a crashed node would."""
    import os
    import signal
    import time
    from pathlib import Path

    end = time.time() + timeout
    while time.time() < end:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("ray::_fold_task"):
                os.kill(int(proc.name), signal.SIGKILL)
                found.append(int(proc.name))
                return
        time.sleep(0.05)


@pytest.mark.parametrize("retries", [0, 1])
def test_a_killed_worker_is_retried_or_reported_and_finished_folds_are_kept(tmp_path, retries):
    import threading

    ws = tweets_workspace(tmp_path / "ws", n_train=300, n_test=60)
    cfg = load_config(ws, "001")
    killed: list[int] = []
    killer = threading.Thread(target=_kill_first_fold_task, args=(killed,), daemon=True)
    killer.start()
    out = train_on_ray(ws, [cfg], ray_init={"num_cpus": 1}, retries=retries)   # one task at a time
    killer.join(timeout=5)
    assert killed, "no fold task was seen running"
    if retries:
        assert not out.failed and out.results["001"].complete
        return
    (lost,) = out.failed                                      # reported by (experiment, fold)
    message = out.failed[lost].lower()
    assert lost[0] == "001" and ("died" in message or "worker" in message), message
    done = sorted(int(p.name[4:]) for p in ws.run_dir("001").glob("fold[0-9]"))
    assert done == sorted({0, 1, 2} - {lost[1]})              # the others are written
    resumed = train(ws, cfg)                                  # and a local run finishes the job
    assert [r.status for r in resumed.folds].count("trained") == 1 and resumed.complete


def test_the_cli_trains_several_experiments_on_a_local_ray_with_a_line_per_fold(tmp_path):
    from typer.testing import CliRunner

    from competition.cli import app

    ws = tweets_workspace(tmp_path / "ws", n_train=300, n_test=60,
                          experiments={"001": "template: tfidf\n", "002": "template: tfidf\nmodel: {C: 1.0}\n"})
    out = CliRunner().invoke(app, ["train", "exp=001,002", "--ray", "local", "-w", str(ws.root)])
    assert out.exit_code == 0, out.output
    import re

    lines = [line for line in out.output.splitlines() if re.match(r"\s+00[12] fold \d: trained .* on \S", line)]
    assert len(lines) == 6 and {line.split()[0] for line in lines} == {"001", "002"}
    assert out.output.count("OOF f1:") == 2 and "a local Ray" in out.output
    assert "skipped" not in out.output and out.output.count("trained on Ray") == 6   # the tables say so too
    refused = CliRunner().invoke(app, ["train", "exp=001", "--ray", "local", "--sweep", "-w", str(ws.root)])
    assert refused.exit_code == 2 and "--sweep trains one experiment" in refused.output
    flag = CliRunner().invoke(app, ["train", "exp=001", "--ray", "--fold", "all", "-w", str(ws.root)])
    assert flag.exit_code == 2 and "give where to run: local" in flag.output


def _two_device_workspace(tmp_path, strategy: str):
    """Tweets in 2 folds and experiment ``ddp``: a tiny encoder trained on 2 devices with ``strategy``."""
    from tests.tiny import tiny_bert

    ws = tweets_workspace(tmp_path / "ws", n_train=160, n_test=40, n_splits=2, experiments={})
    texts = pd.read_csv(ws.root / "train.csv")["text"].astype(str).tolist()
    tiny = tiny_bert(tmp_path, texts, vocab_size=300)
    (ws.root / "experiments" / "ddp.yaml").write_text(
        f"model: {{family: encoder, name: {tiny}, max_length: 32, lr: 1e-3}}\n"
        f"train: {{epochs: 1, batch_size: 16, select: last, devices: 2, strategy: {strategy}}}\n")
    return ws, tiny


def test_one_encoder_across_two_cpu_processes_with_ddp_spawn(tmp_path):
    """train.devices=2, strategy=ddp_spawn on CPU (gloo): the two processes train one model, its
    weights come back, and the fold is predicted once here: every OOF row exactly once."""
    import numpy as np
    from safetensors.numpy import load_file

    ws, tiny = _two_device_workspace(tmp_path, "ddp_spawn")
    result = train(ws, load_config(ws, "ddp"))
    assert result.complete and np.isfinite(result.oof_score)
    oof = pd.read_parquet(ws.run_dir("ddp") / "oof.parquet")
    train_ids = pd.read_csv(ws.root / "train.csv")["id"]
    assert len(oof) == len(train_ids) and oof["id"].is_unique and set(oof["id"]) == set(train_ids)
    assert sorted(p.name for p in ws.run_dir("ddp").iterdir() if p.is_dir()) == ["fold0", "fold1"]   # once
    trained = load_file(str(ws.run_dir("ddp") / "fold0" / "seed42" / "model.safetensors"))
    initial = load_file(str(Path(tiny) / "model.safetensors"))
    name = next(k for k in initial if k.endswith("word_embeddings.weight"))
    mine = next(k for k in trained if k.endswith("word_embeddings.weight"))
    assert not np.allclose(trained[mine], initial[name])          # the spawned processes' training came back


def test_several_devices_need_select_last_and_a_strategy():
    from competition.config import ExperimentConfig

    base = {"exp": "x", "model": {"family": "encoder"}}
    with pytest.raises(ValueError, match="set train.select=last"):
        ExperimentConfig.model_validate({**base, "train": {"devices": 2, "strategy": "ddp_spawn"}})
    with pytest.raises(ValueError, match="train.strategy=ddp_spawn"):
        ExperimentConfig.model_validate({**base, "train": {"devices": 2, "select": "last"}})


def test_the_bucket_sampler_shards_an_epoch_across_processes(monkeypatch):
    import numpy as np

    from competition.models import batches

    lengths = np.random.default_rng(0).integers(5, 60, 203)
    alone = [b for b in batches.BucketSampler(lengths, 16, seed=3)]
    shards = []
    for rank in (0, 1, 2):
        monkeypatch.setattr(batches, "_world", lambda rank=rank: (3, rank))
        sampler = batches.BucketSampler(lengths, 16, seed=3)
        shards.append(list(sampler))
        assert len(sampler) == len(shards[-1]) == 5                   # 13 batches padded to 15, 5 each
    from collections import Counter

    seen = Counter(tuple(b) for shard in shards for b in shard)
    # the batches of one process, each taken once, and two again so that every process steps 5 times
    assert seen == Counter(map(tuple, alone)) + Counter(map(tuple, alone[:2]))


def test_tuning_workers_as_ray_tasks_share_one_postgres_study(postgres, tmp_path):
    from competition.dispatch import tune_on_ray
    from tests.test_tune import TFIDF_SEARCH, load

    ws = tweets_workspace(tmp_path / "ws", n_train=240, n_test=20, n_splits=2, experiments={"001": TFIDF_SEARCH})
    out = tune_on_ray(ws, "001", 2, storage=postgres, trials=6, sampler="random", ray_init={"num_cpus": 2})
    trials = load(postgres).trials
    assert sorted(t.number for t in trials) == list(range(6)) and all(t.state.name == "COMPLETE" for t in trials)
    assert sum(out["ran"]) == 6 and len(out["nodes"]) == 2
    assert out["exported"] == ws.experiments_dir / "002.yaml" and out["exported"].is_file()   # written here, once


def test_tuning_workers_on_ray_refuse_a_sqlite_study(tmp_path):
    from competition.dispatch import tune_on_ray
    from competition.errors import InputError

    ws = tweets_workspace(tmp_path / "ws", n_train=100, n_test=20)
    with pytest.raises(InputError, match="SQLite file on this disk"):
        tune_on_ray(ws, "001", 2, storage=None)


def test_the_tune_cli_refuses_ray_workers_on_sqlite_with_the_fix(tmp_path):
    from typer.testing import CliRunner

    from competition.cli import app
    from tests.test_tune import TFIDF_SEARCH

    ws = tweets_workspace(tmp_path / "ws", n_train=100, n_test=20, experiments={"001": TFIDF_SEARCH})
    out = CliRunner().invoke(app, ["tune", "exp=001", "--ray", "2", "-w", str(ws.root)])
    assert out.exit_code == 2 and "SQLite file on this disk" in out.output and "postgresql://" in out.output


def test_one_encoder_across_two_processes_with_ddp_rank_zero_writes(tmp_path):
    """train.strategy=ddp: Lightning runs `comp train` again as rank 1; rank 1 trains in step and
    writes nothing, rank 0 predicts each fold once and writes the run; the command's output once."""
    import os
    import subprocess
    import sys

    import numpy as np

    ws, _ = _two_device_workspace(tmp_path, "ddp")
    comp = Path(sys.executable).parent / "comp"
    env = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "120"}
    done = subprocess.run([str(comp), "train", "exp=ddp", "-w", str(ws.root)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("OOF f1:") == 1 and "not every fold" not in done.stdout
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in done.stdout + done.stderr       # a second rank took part
    oof = pd.read_parquet(ws.run_dir("ddp") / "oof.parquet")
    train_ids = pd.read_csv(ws.root / "train.csv")["id"]
    assert len(oof) == len(train_ids) and oof["id"].is_unique and set(oof["id"]) == set(train_ids)
    assert np.isfinite(oof["target"]).all()
    assert sorted(p.name for p in ws.run_dir("ddp").iterdir() if p.is_dir()) == ["fold0", "fold1"]


def test_a_ray_that_cannot_start_says_so_and_how_to_run_without_it(tmp_path, monkeypatch):
    """Issue 24 #11: `node timed out during startup` was a traceback."""
    from typer.testing import CliRunner

    from competition.cli import app

    ws = tweets_workspace(tmp_path / "ws", n_train=120, n_test=20)

    def fails(*args, **kwargs):
        raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "init", fails)
    out = CliRunner().invoke(app, ["train", "exp=001", "--fold", "all", "--ray", "local", "-w", str(ws.root)])
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "Traceback" not in text, out.output
    assert "Ray could not start or be reached (The current node timed out during startup" in text, text
    assert "Run without --ray to train in this process" in text, text
    assert not (ws.root / "experiments" / "001").exists()
