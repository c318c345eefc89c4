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
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


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


_NO_ROOM = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _unwritable(path: Path, err: OSError):
    """A folder that cannot be written (permissions, read-only, full disk): the user's to fix."""
    from competition.errors import InputError

    fix = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some disk space (quota)"}.get(
        err.errno, "make the folder writable or write elsewhere")
    return InputError(f"{path}: cannot write it ({err.strerror}); {fix} and run the command again "
                      "(nothing was half-written)")


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


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: Path | str, frame) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def write_csv(path: Path | str, frame, **kwargs) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, **kwargs)
    return Path(path)


def file_hash(path: Path | str) -> str:
    """sha256 of a file's bytes, hex, first 16 characters."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


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
