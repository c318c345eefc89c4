"""Work as Ray tasks: (experiment, fold) pairs (``comp train exp=042,043 --ray ADDRESS``) and tuning
workers (``comp tune exp=043 --ray ADDRESS --workers 4``).

Folds of one experiment, and experiments, are independent work: Ray runs each pair as a task
with the resources its experiment declares (``train.resources``), as many at once as the
cluster holds, each in a fresh worker process (``max_calls=1``: a GPU's memory is released
with the process). Nothing needs a shared filesystem:

- the driver puts the dataset in Ray's object store once, with the fold assignment's bytes;
- a task trains its fold with :func:`competition.train.train` in a scratch workspace of its
  own (the same folds file, so the same hashes) and returns the finished fold's files;
- the driver writes them whole into ``experiments/<exp>/fold<k>/`` (temp folder, then rename)
  as each task finishes, then runs :func:`train` on every fold: all done, it only assembles the
  run exactly as a local run does (resume, locks, manifests unchanged).

A task whose worker dies is retried by Ray (``retries`` times); one that still fails is
reported by fold, and the folds that finished stay written: ``comp train`` again (with or
without ``--ray``) resumes.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock

from competition import artifacts, runs
from competition import data as data_mod
from competition import folds as folds_mod
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.resume import fold_done
from competition.spec import load_spec
from competition.train import FoldRow, parse_folds, train
from competition.tune import load_study, tune
from competition.tune_export import export_best
from competition.tune_storage import storage_url
from competition.workspace import CONFIG, Workspace


@dataclass
class DispatchResult:
    """What :func:`train_on_ray` did: per experiment the assembled :class:`TrainResult`; per
    failed (experiment, fold) the error Ray reported."""

    results: dict[str, Any] = field(default_factory=dict)
    failed: dict[tuple[str, int], str] = field(default_factory=dict)
    nodes: dict[tuple[str, int], str] = field(default_factory=dict)


def _fold_task(cfg: dict, fold: int, data, folds_csv: bytes, folds_manifest: bytes) -> dict:
    """On a Ray worker: train one fold in a scratch workspace; return its files and its row."""
    with tempfile.TemporaryDirectory(prefix="comp-ray-") as tmp:
        ws = Workspace(Path(tmp))
        ws.folds_dir.mkdir(parents=True)
        ws.folds_file.write_bytes(folds_csv)
        ws.folds_manifest.write_bytes(folds_manifest)
        (ws.root / "experiments").mkdir()
        config = ExperimentConfig.model_validate(cfg)
        result = train(ws, config, folds=[fold], data=data, force=True)
        folder = ws.fold_dir(config.exp, fold)
        files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return {"exp": config.exp, "fold": fold, "files": files, "row": asdict(result.folds[0]),
                "node": f"{socket.gethostname()} pid {os.getpid()}"}


def _write_fold(ws: Workspace, exp: str, fold: int, files: dict[str, bytes], config_text: str) -> None:
    """A finished fold's files, written whole: a temp folder renamed over the fold's folder."""
    run_dir = ws.run_dir(exp)
    run_dir.mkdir(parents=True, exist_ok=True)
    target = ws.fold_dir(exp, fold)
    tmp = run_dir / f"fold{fold}.tmp-ray-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with FileLock(str(run_dir / f"fold{fold}.lock")):
        for name, blob in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        artifacts.write_text(run_dir / CONFIG, config_text)   # as train() does when a fold finishes


def start_ray(address: str | None, ray_init: dict | None = None) -> None:
    """``ray.init``; a Ray that cannot start or connect (``node timed out during startup``, a wrong
    address) is an InputError saying so and how to run without Ray, not Ray's traceback."""
    # ray (optional extra): only `--ray` dispatch
    import ray

    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **(ray_init or {}))
    except Exception as err:            # Ray raises plain Exception, RuntimeError, ConnectionError...
        try:
            ray.shutdown()
        except Exception:               # noqa: BLE001  (nothing more to undo)
            pass
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        where = f"the Ray cluster at {address!r}" if address and address != "local" else "a local Ray"
        raise InputError(f"{where} could not start or be reached ({first}). Run without {{ray}} to train in "
                         "this process (the same results), or check `ray status` / free memory and /tmp space "
                         "and try again.", ray="--ray") from None


def train_on_ray(ws: Workspace, cfgs: list, *, folds: list[int] | str = "all", force: bool = False,
                 address: str | None = None, retries: int = 2, data=None, on_fold=None,
                 ray_init: dict | None = None) -> DispatchResult:
    """Train every (experiment, fold) pair of ``cfgs`` x ``folds`` as Ray tasks, then assemble.

    Args:
        ws: the workspace (on the driver: the only place files are written).
        cfgs: validated experiment configs.
        folds: fold numbers or ``"all"``; folds already complete are skipped unless ``force``.
        address: a Ray cluster (``"auto"``: the running one); None starts a local Ray for the call.
        retries: how many times Ray retries a task whose worker died.
        data: a loaded dataset (loaded from the spec when None).
        on_fold: called with ``(exp, FoldRow, node)`` as each fold finishes (progress lines).
        ray_init: extra ``ray.init`` arguments (tests: ``num_cpus``).
    """
    # ray (optional extra): only `--ray` dispatch
    import ray

    spec = load_spec(ws.spec_file) if data is None else data.spec
    data = data if data is not None else data_mod.load(spec)
    fold_of = folds_mod.read_folds(ws, data)["fold"].to_numpy()
    n_splits = int(fold_of.max()) + 1
    chosen = parse_folds(folds if isinstance(folds, str) else ",".join(map(str, folds)), n_splits)
    hashes = runs.input_hashes(ws, data)
    out = DispatchResult()
    owned = not ray.is_initialized()
    if owned:
        start_ray(address, ray_init)
    try:
        data_ref = ray.put(data)
        folds_csv, manifest = ws.folds_file.read_bytes(), ws.folds_manifest.read_bytes()
        pending, texts = {}, {}
        for cfg in cfgs:
            config = cfg.to_dict()
            texts[cfg.exp] = yaml.safe_dump(config, sort_keys=False)
            resources = dict(getattr(cfg.train, "resources", None) or {"num_cpus": 1})
            task = ray.remote(max_calls=1, max_retries=retries, **resources)(_fold_task)
            for k in chosen:
                if not force and fold_done(ws.fold_dir(cfg.exp, k), hashes, config) is not None:
                    continue
                pending[task.remote(config, k, data_ref, folds_csv, manifest)] = (cfg.exp, k)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            exp, k = pending.pop(done[0])
            try:
                got = ray.get(done[0])
            except (ray.exceptions.RayError, InputError) as err:
                out.failed[(exp, k)] = str(err).splitlines()[0][:300]
                continue
            _write_fold(ws, exp, k, got["files"], texts[exp])
            out.nodes[(exp, k)] = got["node"]
            if on_fold is not None:
                on_fold(exp, FoldRow(**got["row"]), got["node"])
    finally:
        if owned:
            ray.shutdown()
    for cfg in cfgs:   # every finished fold is on disk: a local train() skips them and assembles
        if (ws.run_dir(cfg.exp) / CONFIG).is_file():
            done_folds = [k for k in chosen if (cfg.exp, k) not in out.failed]
            result = train(ws, cfg, folds=done_folds or chosen, data=data) if done_folds else None
            for row in result.folds if result is not None else []:   # the local pass found them done: on Ray
                if (cfg.exp, row.fold) in out.nodes and row.status == "skipped":
                    row.status = "trained on Ray"
            out.results[cfg.exp] = result
    return out


def _tune_task(files: dict[str, bytes], exp: str, data, kwargs: dict) -> dict:
    """On a Ray worker: one tuning worker on the shared study, in a scratch copy of the workspace's
    experiment files and folds; returns how many trials it ran."""
    with tempfile.TemporaryDirectory(prefix="comp-tune-") as tmp:
        root = Path(tmp)
        for name, blob in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(blob)
        result = tune(Workspace(root), exp, data=data, export=False, **kwargs)
        return {"ran": result.ran, "node": f"{socket.gethostname()} pid {os.getpid()}"}


def tune_on_ray(ws: Workspace, exp: str, workers: int, *, storage: str | None, address: str | None = None,
                export: bool = True, data=None, ray_init: dict | None = None, **kwargs) -> dict:
    """``workers`` tuning workers as Ray tasks on one study; the best trial exported here once they end.

    The study's storage must be reachable from every worker: an RDB server (PostgreSQL, MySQL),
    not SQLite, whose file lives on one disk and whose locks do not cross machines.
    Returns ``{"ran": [trials per worker], "nodes": [...], "exported": path or None, "study": ...}``.
    """
    # ray (optional extra): only `--ray` dispatch
    import ray

    url = storage_url(ws, storage)
    if url.startswith("sqlite"):
        raise InputError(f"tuning workers on Ray need a study storage every worker can reach; {url} is a SQLite "
                         "file on this disk (its locks do not cross machines): start PostgreSQL and pass its URL "
                         "as the storage (postgresql://user:password@host:5432/db)")
    if workers < 1:
        raise InputError(f"{workers} tuning workers: give 1 or more")
    data = data if data is not None else data_mod.load(load_spec(ws.spec_file))
    files = {str(p.relative_to(ws.root)): p.read_bytes()
             for p in [ws.spec_file, ws.folds_file, ws.folds_manifest, *ws.experiments_dir.glob("*.yaml")]}
    owned = not ray.is_initialized()
    if owned:
        start_ray(address, ray_init)
    try:
        task = ray.remote(max_calls=1, max_retries=0, num_cpus=1)(_tune_task)
        data_ref = ray.put(data)
        done = ray.get([task.remote(files, exp, data_ref, {**kwargs, "storage": url}) for _ in range(workers)])
    finally:
        if owned:
            ray.shutdown()
    study, _ = load_study(ws, exp, storage=url, study=kwargs.get("study"))
    return {"ran": [d["ran"] for d in done], "nodes": [d["node"] for d in done], "study": study,
            "exported": export_best(ws, exp, study, url) if export else None}
