"""The best trial of a tuning study, written as the next free experiment file.

``comp tune`` calls :func:`export_best` when a study is done: ``experiments/<next id>.yaml``
is the tuned experiment's own file without its ``search:`` block, the trial's overrides
merged in, a comment saying where it came from, and ``tuned_on``: the folds whose labels
chose these settings.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import yaml
from filelock import FileLock
from omegaconf import OmegaConf

from competition.config import ExperimentConfig, load_config, parse_overrides
from competition.tune_storage import masked
from competition.workspace import Workspace


def best_trial(st):
    """The study's best complete trial; None while it has none."""
    try:
        return st.best_trial
    except ValueError:   # no complete trial yet
        return None


def _next_id(ws: Workspace) -> str:
    numeric = [i for i in ws.experiment_ids() if i.isdigit()]
    width = max([3, *(len(i) for i in numeric)])
    return str(max([0, *(int(i) for i in numeric)]) + 1).zfill(width)


def export_best(ws: Workspace, exp: str, st, url: str) -> Path | None:
    """Write the study's best trial as ``experiments/<next id>.yaml``; None without a complete trial.

    The new file is ``<exp>.yaml`` without its ``search:`` block, with the trial's overrides
    merged in (a family switch restarts the model block, as in the config layers) and a
    comment saying where it came from. ``tuned_on`` lists the folds the study scored (with
    those ``<exp>.yaml`` was itself tuned on): their OOF is no longer an unseen estimate. It is
    checked to load into exactly the trial's config. A best trial exported before is not
    written twice.
    """
    (ws.experiments_dir / ".tune").mkdir(parents=True, exist_ok=True)
    with FileLock(str(ws.experiments_dir / ".tune" / "export.lock")):
        best = best_trial(st)
        if best is None:
            return None
        overrides = best.user_attrs.get("overrides", [])
        done = st.user_attrs.get("exported", {})
        if str(best.number) in done and ws.experiment_file(done[str(best.number)]).is_file():
            return ws.experiment_file(done[str(best.number)])
        own = OmegaConf.to_container(OmegaConf.load(ws.experiment_file(exp)), resolve=False) or {}
        own.pop("search", None)
        nested = parse_overrides(overrides)
        family = (nested.get("model") or {}).get("family")
        if family and family != load_config(ws, exp).model.family:
            own["model"] = {}            # as load_config does: keys of the old family don't carry over
        # unresolved: an interpolation in <exp>.yaml stays one in the export
        merged = OmegaConf.to_container(OmegaConf.merge(own, nested), resolve=False)
        tuned = f"tuned: study {st.study_name}, trial {best.number}"
        merged["description"] = f"{own['description']} ({tuned})" if own.get("description") else tuned
        new_id = _next_id(ws)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        params = ", ".join(o for o in overrides) or "(none)"
        folds = st.user_attrs.get("folds")
        header = (f"# Tuned from experiments/{exp}.yaml: best trial of Optuna study {st.study_name!r}\n"
                  f"# (trial {best.number}, {st.user_attrs.get('metric', 'value')} = {best.value:.6g} "
                  f"on folds {folds}), written by `comp tune` on {now}.\n"
                  f"# Storage: {masked(url)}\n# Overrides: {params}\n")
        tuned_on = sorted({int(k) for k in [*(merged.pop("tuned_on", None) or []), *(folds or [])]})
        path = ws.experiment_file(new_id)
        with open(path, "x", encoding="utf-8") as fh:   # "x": never over another experiment
            fh.write(header + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True)
                     + "# the folds whose labels chose these settings: their CV is optimistic; `comp leaderboard`\n"
                     + "# also gives the CV of the other folds\n"
                     + yaml.safe_dump({"tuned_on": tuned_on}, default_flow_style=None))
        def strip(cfg: ExperimentConfig) -> dict:
            return {k: v for k, v in cfg.to_dict().items() if k not in ("exp", "search", "description", "tuned_on")}

        try:
            exported = load_config(ws, new_id)
            same = strip(exported) == strip(load_config(ws, exp, overrides)) and exported.tuned_on == tuned_on
        except BaseException:
            path.unlink()
            raise
        if not same:
            path.unlink()
            raise RuntimeError(f"{path}: the exported experiment does not load into trial {best.number}'s "
                               "config; it was removed")
        st.set_user_attr("exported", {**done, str(best.number): new_id})
    return path
