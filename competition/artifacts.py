"""Artifacts are written whole or not at all: temp file in the same folder, then ``os.replace``.

Every writer here goes through :func:`atomic_path`, so a crash or Ctrl-C leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import InputError
from competition.workspace import BUNDLE, CONFIG, MANIFEST, SCORES

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on error it is removed.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "x.txt") as tmp:
    ...     _ = tmp.write_text("whole")
    >>> (d / "x.txt").read_text()
    'whole'
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _unwritable(path, err) from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        if err.errno in _NO_ROOM:
            raise _unwritable(path, err) from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


_NO_ROOM = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG}


def unwritable(err: OSError):
    """The InputError for an OSError raised while writing (a read-only, forbidden or full folder),
    or None for any other OSError. Every command turns these into one line (the CLI's handler):
    a lock file or a folder comp creates outside :func:`atomic_path` included."""
    if err.errno not in _NO_ROOM:
        return None
    return _unwritable(Path(err.filename or "."), err)


def _unwritable(path: Path, err: OSError):
    """A folder that cannot be written (permissions, read-only, full disk): the user's to fix."""
    fix = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some disk space (quota)",
           errno.ENAMETOOLONG: "use a shorter name, or a workspace or --out folder with a shorter path"}.get(
        err.errno, "make the folder writable or write elsewhere")
    return InputError(f"{path}: cannot write it ({err.strerror}); {fix} and run the command again "
                      "(nothing was half-written)")


def temp_folder(target: Path, fix: str = "write elsewhere", **words: str) -> Path:
    """An empty temporary folder beside ``target`` (the folder a command writes whole, then renames into
    place). A folder that cannot be written is named as the user chose it, ``target``'s parent, with
    ``fix`` (the option that writes elsewhere, a placeholder of ``words``: :class:`InputError`), never the
    temporary name."""
    tmp = Path(target).parent / f".{Path(target).name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as err:
        if err.errno not in _NO_ROOM:
            raise
        raise InputError(f"{Path(target).parent}: cannot write {Path(target).name} there ({err.strerror}); "
                         f"{fix}", **words) from None
    return tmp


def plain(values) -> list | None:
    """Labels as JSON and messages show them: numpy scalars become Python ones.

    >>> plain([np.int64(0), np.int64(1)])
    [0, 1]
    """
    return None if values is None else [v.item() if isinstance(v, np.generic) else v for v in values]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_text(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: Path | str, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def read_json(path: Path | str, expect: type | None = dict) -> Any:
    """A JSON artifact comp wrote: a mapping (``expect=list``: a list; None: anything).

    Raises:
        InputError: the file is damaged (empty, truncated, not JSON, not UTF-8, another shape);
            the message names it and the command that writes it again.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise damaged(path, f"not valid JSON: {str(err).splitlines()[0][:100]}") from None
    if expect is not None and not isinstance(data, expect):
        raise damaged(path, f"it holds a JSON {type(data).__name__}, not a {'list' if expect is list else 'mapping'}")
    return data


def damaged(path: Path, why: str):
    """The error for an artifact comp wrote whole that no longer reads: what it is and how to rebuild it.

    >>> str(damaged(Path("ws/experiments/042/fold3/done.json"), "empty"))
    'ws/experiments/042/fold3/done.json: damaged (empty); comp writes it whole, so something else changed it. Retrain that fold: comp train exp=042 --fold 3 --force'
    >>> str(damaged(Path("ws/experiments/s01/manifest.json"), "empty")).split(". ")[-1]
    'Rebuild that run: comp train exp=s01 --fold all --force (a stack or blend: run its comp stack / comp blend again with --force)'
    """
    return InputError(f"{path}: damaged ({why}); comp writes it whole, so something else changed it. {rebuild(path)}")


def rebuild(path: Path) -> str:
    """The command that writes a comp artifact ``path`` again, from where it sits in the workspace (a
    stack's or blend's files: the command that made it, read from its manifest).

    >>> rebuild(Path("ws/experiments/001/fold2/head/model0.skops"))
    'Retrain that fold: comp train exp=001 --fold 2 --force'
    >>> rebuild(Path("ws/experiments/001/scores.json")).split(":")[0]
    'It records what comp score measured, which no command rebuilds'
    """
    parts = Path(path).parts
    at = next((i for i in range(len(parts) - 2, 0, -1) if parts[i - 1] == "experiments"), None)
    if at is not None and at >= 2 and (Path(*parts[:at - 1]) / BUNDLE).is_file():
        top = (_manifest_of(Path(*parts[:at - 1]), BUNDLE) or {}).get("run", "RUN")
        return (f"It is part of a bundle, which holds no training data: export the bundle again from its workspace "
                f"(comp export {top} DIR), after retraining there if the workspace's copy is damaged too")
    manifest = _manifest_of(Path(*parts[:at + 1])) if at is not None else None
    if manifest is not None and manifest.get("kind") in ("stack", "blend") and Path(path).name != MANIFEST:
        return f"Rebuild that {manifest['kind']}: {remake_command(parts[at], manifest)}"
    fold = next((i for i in range(len(parts) - 1, 0, -1) if parts[i].startswith("fold") and parts[i][4:].isdigit()),
                None)
    if Path(path).name == SCORES:
        fix = ("It records what comp score measured, which no command rebuilds: move it aside, then "
               "`comp score SUBMISSION` records scores again")
    elif fold is not None and fold >= 2 and parts[fold - 2] == "experiments":
        fix = f"Retrain that fold: comp train exp={parts[fold - 1]} --fold {parts[fold][4:]} --force"
    elif fold is not None:           # a fold folder outside a workspace (a copy, a bundle)
        fix = f"Retrain that fold: comp train exp=<its experiment> --fold {parts[fold][4:]} --force"
    elif len(parts) >= 3 and parts[-3] == "experiments" and Path(path).name == CONFIG:
        fix = f"Retrain that run: comp train exp={parts[-2]} --fold all --force"
    elif len(parts) >= 3 and parts[-3] == "experiments" and Path(path).parent.with_suffix(".yaml").is_file():
        # an experiment's run-level files are assembled from its folds on every run: no --force needed
        fix = f"Write that run's files again from its folds: comp train exp={parts[-2]} --fold all"
    elif len(parts) >= 3 and parts[-3] == "experiments":
        fix = (f"Rebuild that run: comp train exp={parts[-2]} --fold all --force (a stack or blend: run its "
               "comp stack / comp blend again with --force)")
    elif len(parts) >= 2 and parts[-2] == "folds":
        fix = "Write the folds again: comp folds --force"
    elif Path(path).name == BUNDLE:
        fix = "Export the bundle again: comp export RUN DIR"
    else:
        fix = "Delete it and run the command that wrote it again"
    return fix


def _manifest_of(run_dir: Path, name: str = MANIFEST) -> dict | None:
    """A run folder's manifest (or a bundle's ``bundle.json``) as far as it reads, else None (only for
    naming a fix)."""
    try:
        found = json.loads((run_dir / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return found if isinstance(found, dict) else None


def rewrite_command(name: str, manifest: dict) -> str:
    """The command that writes a run's own files (predictions, metrics) again: an experiment's come
    from its folds on every plain rerun; a stack or blend is made again (:func:`remake_command`).

    >>> rewrite_command("001", {"kind": "experiment"})
    'comp train exp=001 --fold all'
    """
    if manifest.get("kind", "experiment") == "experiment":
        return f"comp train exp={name} --fold all"
    return remake_command(name, manifest)


def remake_command(name: str, manifest: dict) -> str:
    """The command that makes this run again as it was: same inputs, meta-model, features, method, seed.

    >>> remake_command("b01", {"kind": "blend", "inputs": ["001", "042"], "method": "mean"})
    'comp blend --exp 001,042 --method mean --name b01 --force'
    >>> remake_command("s01", {"kind": "stack", "inputs": ["001"], "meta": "ridge", "features": ["text_len"], "seed": 7})
    'comp stack --exp 001 --meta ridge --with-features text_len --seed 7 --name s01 --force'
    """
    kind = manifest.get("kind", "experiment")
    if kind == "experiment":
        return f"comp train exp={name} --fold all --force"
    words = [f"comp {kind}", f"--exp {','.join(manifest.get('inputs', []))}"]
    if kind == "stack":
        words.append(f"--meta {manifest.get('meta', 'lgbm')}")
        if manifest.get("features"):
            words.append(f"--with-features {','.join(manifest['features'])}")
        if manifest.get("seed", 42) != 42:
            words.append(f"--seed {manifest['seed']}")
    elif manifest.get("method"):
        words.append(f"--method {manifest['method']}")
    return " ".join([*words, f"--name {name} --force"])


def write_parquet(path: Path | str, frame) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def write_csv(path: Path | str, frame, **kwargs) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, **kwargs)
    return Path(path)


def sha256(path: Path | str) -> str:
    """sha256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_hash(path: Path | str) -> str:
    """sha256 of a file's bytes, hex, first 16 characters."""
    return sha256(path)[:16]


def folder_hashes(folder: Path | str, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under ``folder`` (but ``skip`` names): its path relative to the folder -> file_hash."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_hash(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip}


# Files verified in this process: (path, size, mtime_ns) -> hash, so a file read by several runs (a
# stack's inputs, a replay of the same fold) is hashed once.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def damaged_file(folder: Path | str, recorded: dict[str, str]) -> tuple[Path, str] | None:
    """The first file ``recorded`` (path relative to ``folder`` -> its hash when written) that is missing or
    changed, with why; None when all are as written."""
    for rel, want in recorded.items():
        path = Path(folder) / rel
        try:
            stat = path.stat()
        except FileNotFoundError:
            return path, "missing"
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _VERIFIED:
            _VERIFIED[key] = file_hash(path)
        if _VERIFIED[key] != want:
            return path, "its bytes differ from those written with it (sha256): truncated, replaced or swapped"
    return None


def verify_files(folder: Path | str, recorded: dict[str, str]) -> None:
    """Each file ``recorded`` is there and unchanged (:func:`damaged_file`), else the :func:`damaged` error
    naming the first that is not and the command that rebuilds it."""
    found = damaged_file(folder, recorded)
    if found is not None:
        raise damaged(*found)


def text_hash(*parts: str) -> str:
    """sha256 of strings joined by NUL, hex, first 16 characters.

    >>> text_hash("a", "b") == text_hash("a", "b") != text_hash("ab")
    True
    """
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:16]


_VERSIONED = (
    "competition", "torch", "transformers", "pytorch-lightning", "scikit-learn",
    "lightgbm", "pandas", "numpy", "optuna", "wandb",
)


def environment() -> dict[str, Any]:
    """Package versions, python, host and git commit: what a manifest records to reproduce a run."""
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], capture_output=True,
                              text=True, timeout=5, cwd=Path(__file__).parent)
        commit = proc.stdout.strip() if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
