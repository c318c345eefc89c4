"""Whether a run's folds can be resumed: a fold is done when its ``done.json`` was written under the
current folds and data (:func:`competition.runs.changes`, the one staleness rule) and its saved
``config.yaml`` equals the current config in everything that shapes predictions; a re-run with
another config or on other data is refused unless it is forced (:func:`check_previous_run`)."""

from __future__ import annotations

import warnings
from pathlib import Path

from pydantic import ValidationError

from competition import artifacts, runs
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.workspace import CONFIG, DONE


def fold_done(fold_dir: Path, hashes: dict, config: dict) -> dict | None:
    """The fold's ``done.json`` when it was trained on these folds and data with this config, else None."""
    done = fold_dir / DONE
    if not done.is_file():
        return None
    info = artifacts.read_json(done)
    if runs.changes(info, hashes):
        return None
    broken = artifacts.damaged_file(fold_dir, info.get("files") or {})
    if broken is not None:      # never reported complete: a plain run trains the fold again
        warnings.warn(f"{broken[0]}: damaged ({broken[1]}); training fold {fold_dir.name[4:]} again", UserWarning,
                      stacklevel=2)
        return None
    return info if not fold_config_diff(fold_dir, config) else None


def _predictive(config: dict) -> dict:
    """The part of a resolved config that shapes predictions: tracking settings and ``tuned_on``
    (where the settings came from, not what they do) are left out."""
    return {k: v for k, v in config.items() if k not in ("track", "tuned_on")}


def _with_defaults(saved: dict) -> dict:
    """A saved config with today's defaults filled in, so that a setting added since (at its
    default, e.g. ``train.select: fold``) is no change; as saved when it no longer validates."""
    try:
        return ExperimentConfig.model_validate(saved).to_dict()
    except ValidationError:
        return saved


def fold_config_diff(fold_dir: Path, config: dict) -> list[str]:
    """Keys whose value in the fold's saved ``config.yaml`` differs from ``config`` (tracking aside)."""
    saved = fold_dir / CONFIG
    if not saved.is_file():
        return [f"(no {CONFIG})"]
    old = _with_defaults(runs.read_config(saved))
    return sorted(_diff_keys(_predictive(old), _predictive(config)))


def check_previous_run(run_dir: Path, cfg: ExperimentConfig, hashes: dict, force: bool) -> None:
    """Refuse to mix folds trained under other folds, other data or another config."""
    saved_cfg = run_dir / CONFIG
    if force or not saved_cfg.is_file():
        return
    # Tracking settings change where the logs go, not the predictions: they may differ between folds.
    old = _predictive(_with_defaults(runs.read_config(saved_cfg)))
    new = _predictive(cfg.to_dict())
    if old != new:
        changed = sorted(_diff_keys(old, new))
        raise InputError(
            f"{saved_cfg}: experiment {cfg.exp} was trained with a different config "
            f"(changed: {', '.join(changed[:8])}). Use {{force}} to retrain every fold with the new one, "
            f"or give the change a new experiment id.", force="force=True")
    for fold_dir in sorted(run_dir.glob("fold[0-9]*")):
        done = fold_dir / DONE
        if fold_dir.is_dir() and done.is_file():
            stale = runs.changes(artifacts.read_json(done), hashes)
            if stale:
                what = " and ".join(f"the {c.what}" for c in stale)
                raise InputError(
                    f"{fold_dir}: {what} changed since this fold was trained. "
                    f"Run again with {{force}} to retrain experiment {cfg.exp} on the current ones.",
                    force="force=True")


def _diff_keys(old, new, prefix="") -> set[str]:
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return {prefix.rstrip(".") or "(all)"} if old != new else set()
    keys = set(old) | set(new)
    return set().union(*(_diff_keys(old.get(k), new.get(k), f"{prefix}{k}.") for k in keys)) if keys else set()
