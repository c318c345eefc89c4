"""A bundle's integrity: ``bundle.json`` lists every file of a folder ``comp export`` wrote with its
sha256 and size; :func:`verify` checks them before anything is loaded, and :func:`digest` (the
sha256 of ``bundle.json``) pins the whole bundle. Read by ``comp predict`` and ``predict.py``,
written by :mod:`competition.export`."""

from __future__ import annotations

from pathlib import Path

from competition import artifacts
from competition.errors import InputError
from competition.workspace import BUNDLE


def digest(root: Path) -> str:
    """sha256 of a bundle's ``bundle.json``. That file lists every other file's sha256, so this one
    value pins the whole bundle: ``comp predict --expect DIGEST`` (``predict.py --expect``) refuses
    a bundle with any other."""
    return artifacts.sha256(Path(root) / BUNDLE)


def verify(root: Path, expect: str | None = None) -> None:
    """Every file ``bundle.json`` lists is there with its sha256, before anything is loaded from it;
    with ``expect``, ``bundle.json`` itself has that digest (:func:`digest`).

    Without ``expect`` this catches damage (a truncated copy, a file lost in upload), not
    tampering: whoever edits a model file can also rewrite ``bundle.json``. The digest, printed
    by ``comp export`` and kept by you, is what pins a bundle against that."""
    if expect is not None:
        got = digest(root) if (Path(root) / BUNDLE).is_file() else None
        if got is None:
            raise InputError(f"{root}: not a bundle (no {BUNDLE}), so {{expect}} cannot be checked",
                             expect="expect")
        if got != expect.strip().removeprefix("sha256:"):
            raise InputError(f"{Path(root) / BUNDLE}: digest sha256:{got}, not the sha256:"
                             f"{expect.strip().removeprefix('sha256:')} you expect ({{expect}}): this is another "
                             "or an altered bundle; nothing was loaded. Use the bundle `comp export` printed that "
                             "digest for.", expect="expect")
    manifest = artifacts.read_json(Path(root) / BUNDLE)
    bad = []
    for rel, info in manifest.get("files", {}).items():
        path = Path(root) / rel
        if not path.is_file():
            bad.append(f"{rel} is missing")
        elif path.stat().st_size != info["bytes"] or artifacts.sha256(path) != info["sha256"]:
            bad.append(f"{rel} differs from what was exported")
    if bad:
        raise InputError(f"{Path(root) / BUNDLE}: the bundle is damaged or altered ({'; '.join(bad[:5])}"
                         f"{'; ...' if len(bad) > 5 else ''}); nothing was loaded. Export it again.")
