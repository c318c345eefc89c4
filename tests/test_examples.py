"""Every shipped workspace loads, and every shipped experiment smoke-runs on a small budget.

Each example's data is loaded through its own spec (the real files), then a seeded
subset is written as a plain CSV workspace so every experiment trains in seconds.
Encoder-backed experiments swap in a tiny random BERT (the real MiniLM runs in the
slow tests and the benchmarks); everything else is the shipped config as is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from competition import data as data_mod
from competition import folds, text
from competition.config import load_config
from competition.spec import load_spec
from competition.train import train
from competition.workspace import Workspace
from tests.datasets import shared_data
from tests.tiny import tiny_bert

REPO = Path(__file__).resolve().parents[1]
WORKSPACES = [REPO] + sorted(p for p in (REPO / "examples").iterdir() if (p / "competition.yaml").is_file())
SHIPPED = [(ws, exp) for ws in WORKSPACES for exp in Workspace(ws).experiment_ids()]


@pytest.fixture(autouse=True)
def _data_root(monkeypatch):
    monkeypatch.setenv("COMP_DATA", str(shared_data()))


def _subset_workspace(src: Path, root: Path, n_train: int = 160, n_test: int = 40) -> Workspace:
    """The example's data, loaded through its spec, cut to a seeded subset in a plain CSV workspace."""
    spec = load_spec(src / "competition.yaml")
    full = data_mod.load(spec)
    rng = np.random.default_rng(0)
    train = full.train.iloc[np.sort(rng.choice(len(full.train), n_train, replace=False))]
    root.mkdir()
    train.to_csv(root / "train.csv", index=False)
    fields = spec.model_dump(mode="json")
    fields.update(data_dir=".", train="train.csv", read={}, id=spec.id_column, label_list=None,
                  sample_submission=None, solution=None, test=None)
    fields["folds"] = {**fields["folds"], "n_splits": 2}
    if full.test is not None:
        full.test.head(n_test).to_csv(root / "test.csv", index=False)
        fields["test"] = "test.csv"
    (root / "competition.yaml").write_text(yaml.safe_dump(fields, sort_keys=False))
    (root / "experiments").mkdir()
    for file in (src / "experiments").glob("*.yaml"):
        (root / "experiments" / file.name).write_text(file.read_text())
    ws = Workspace(root)
    folds.write_folds(ws, data_mod.load(load_spec(ws.spec_file)))
    return ws


@pytest.mark.parametrize("root", WORKSPACES, ids=lambda p: p.name if p != REPO else "repo-root")
def test_shipped_workspace_loads(root):
    spec = load_spec(root / "competition.yaml")
    dataset = data_mod.load(spec)
    assert len(dataset.train) > 800 and len(dataset.y) == len(dataset.train)
    for exp in Workspace(root).experiment_ids():
        load_config(Workspace(root), exp)


# A 160-row subset of goemotions lacks its rarest labels in some folds; folds.py warns, rightly.
@pytest.mark.filterwarnings("ignore::competition.splitters.FoldWarning")
@pytest.mark.parametrize("root,exp", SHIPPED, ids=lambda v: v if isinstance(v, str) else (
    v.name if v != REPO else "repo-root"))
def test_shipped_experiment_smoke_runs(root, exp, tmp_path):
    ws = _subset_workspace(root, tmp_path / "ws")
    cfg = load_config(ws, exp)
    overrides = ["train.epochs=1", "track.wandb=false"]
    if cfg.model.family in ("encoder", "embed"):
        texts = text.build_texts(data_mod.load(load_spec(ws.spec_file)).train, load_spec(ws.spec_file).text)
        overrides.append(f"model.name={tiny_bert(tmp_path, texts)}")
    if cfg.model.family in ("encoder", "scratch", "embed"):
        overrides.append("model.max_length=32")
    if cfg.model.family in ("encoder", "scratch"):
        overrides.append("train.batch_size=32")
    if cfg.model.family == "scratch":
        overrides += ["model.d_model=32", "model.heads=2", "model.layers=1", "model.vocab_size=300"]
    result = train(ws, load_config(ws, exp, overrides))
    assert result.complete and np.isfinite(result.oof_score)
