"""Saving the estimators of :mod:`competition.models.estimators` in formats that cannot run code when
they load: LightGBM's own text model, scikit-learn objects through skops (which refuses any type not
on its trusted list instead of running it) and constants in JSON. Pickle -- which runs whatever a
crafted file tells it to -- is never loaded."""

from __future__ import annotations

import zipfile
from pathlib import Path

from competition import artifacts
from competition.errors import InputError
from competition.models.estimators import Constant, Head, is_booster

SKOPS_TRUSTED = ["numpy.dtype"]     # besides scikit-learn's own estimators, which skops trusts


def save_model(folder: Path, stem: str, model) -> dict:
    """Write one fitted estimator as ``folder/<stem>.txt|.skops`` (or inline); returns its entry."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, Constant):
        return {"kind": "constant", "value": model.value}
    if is_booster(model):
        artifacts.write_text(folder / f"{stem}.txt", model.model_to_string())   # up to its best iteration
        return {"kind": "lightgbm", "file": f"{stem}.txt"}
    # skops (~2 s): only saving and loading scikit-learn models
    import skops.io as sio

    with artifacts.atomic_path(folder / f"{stem}.skops") as tmp:
        sio.dump(model, tmp)
    return {"kind": "sklearn", "file": f"{stem}.skops"}


def load_model(folder: Path, entry: dict):
    """The estimator of an entry written by :func:`save_model`; InputError for a missing file or a
    scikit-learn file holding types outside skops' trusted list."""
    path = Path(folder) / entry.get("file", "")
    if entry["kind"] == "constant":
        return Constant(float(entry["value"]))
    if not path.is_file():
        raise InputError(f"{path}: missing. {artifacts.rebuild(path)}")

    try:
        if entry["kind"] == "lightgbm":
            # lightgbm (~1 s): only the LightGBM fits
            import lightgbm as lgb

            return lgb.Booster(model_str=path.read_text())
        # skops (~2 s): only saving and loading scikit-learn models
        import skops.io as sio

        untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in SKOPS_TRUSTED]
        if untrusted:
            raise InputError(f"{path}: holds types comp does not load ({', '.join(untrusted)}); it was not "
                             "written by comp. Retrain this fold.")
        return sio.load(path, trusted=SKOPS_TRUSTED)
    except (zipfile.BadZipFile, UnicodeDecodeError, EOFError, KeyError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise artifacts.damaged(path, f"cannot load the model: {type(err).__name__}: "
                                      f"{str(err).splitlines()[0][:80] if str(err) else 'truncated'}") from None


def save_head(folder: Path, head: Head) -> None:
    """A head as ``folder/head.json`` plus one model file per output column."""
    entries = [save_model(folder, f"model{i}", m) for i, m in enumerate(head.models)]
    artifacts.write_json(Path(folder) / "head.json", {
        "estimator": head.estimator, "task": head.task, "n_outputs": head.n_outputs,
        "best_iterations": head.best_iterations, "models": entries})


def load_head(folder: Path, family: str) -> Head:
    """A head saved by :func:`save_head`."""
    folder = Path(folder)
    saved = folder / "head.json"
    if not saved.is_file():
        old = [p.name for p in folder.parent.glob("*.pkl")]
        why = (f"it holds {old[0]}, the pickle format comp used before, which can run code when loaded and "
               "is no longer read") if old else "it holds no fitted model"
        raise InputError(f"{saved}: missing: {why}. {artifacts.rebuild(saved)}")
    info = artifacts.read_json(saved)
    return Head(info["estimator"], info["task"], int(info["n_outputs"]),
                [load_model(folder, e) for e in info["models"]], list(info.get("best_iterations") or []))
