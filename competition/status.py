"""One status for every run, decided here and nowhere else: what the leaderboard shows, what submit,
stack and blend accept.

- ``partial``: some folds are not done;
- ``damaged``: a file the run wrote and recorded the hash of -- its predictions, a fold's model files
  (``done.json``), a stack's meta-models (``meta.json``) -- is missing, unreadable or not the one written;
- ``stale``: it describes other data -- its manifest or one of its folds' ``done.json`` records other
  folds or train data than today's, the folds themselves no longer match the train data (or their own
  manifest), it was scored with another metric, or (a stack, a blend) an input was retrained or is gone;
- ``complete``: none of these.

Each is said with the file it rests on and the command that fixes it. The evidence is the same for
every reader: a forged ``data_hash`` in a run's manifest does not make it current while its folds'
records say otherwise.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from competition import artifacts, runs
from competition import folds as folds_mod
from competition.errors import InputError
from competition.workspace import DONE, MANIFEST, OOF, STACK_META, TEST, Workspace

ORDER = ("complete", "stale", "partial", "damaged")


@dataclass(frozen=True)
class Status:
    """A run's status (:data:`ORDER`), why, where and how to fix it.

    Attributes:
        state: ``complete``, ``stale``, ``partial`` or ``damaged``.
        reasons: what makes it so, each one line (empty for ``complete``).
        where: the file the first reason rests on (None for ``complete``).
        fix: what makes it complete again, a sentence naming the command.
    """

    state: str
    reasons: tuple[str, ...] = ()
    where: Path | None = None
    fix: str | None = None

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    def refusal(self) -> str:
        """What a command that will not use the run says: the first reason and the fix."""
        return f"{self.reasons[0]}. {self.fix}" if self.fix else self.reasons[0]


class Statuses:
    """The statuses of one workspace's runs against today's folds, data and metric; each file hashed
    once (a stack's inputs, a fold several readers verify).

    Args:
        ws: the workspace.
        data: the loaded dataset, or None when it cannot be read (then only what needs no data is judged).
        metric: the competition's metric (a run scored with another one is stale).
    """

    def __init__(self, ws: Workspace, data=None, metric: str | None = None):
        self.ws, self.data, self.metric = ws, data, metric
        self.current = {k: v for k, v in runs.input_hashes(ws, data).items() if k != "test_hash" and v is not None}
        self.file_hash = functools.cache(artifacts.file_hash)
        self.folds_problem = self._folds_problem()

    def _folds_problem(self) -> str | None:
        """Why today's folds cannot be used with this data (as every stage that reads them refuses), or None."""
        if self.data is None or not self.ws.folds_file.is_file() or not self.ws.folds_manifest.exists():
            return None      # no folds yet, or folds written before they had a manifest: nothing to compare
        try:
            folds_mod.read_folds(self.ws, self.data)
        except InputError as err:
            return str(err)
        return None

    def of(self, run: runs.Run) -> Status:
        """Run ``run``'s status."""
        m = run.manifest
        if not run.complete:
            n = int(m.get("n_splits") or 0)
            missing = sorted(set(range(n)) - set(m.get("folds_done") or []))
            return Status("partial", (f"{n - len(missing)}/{n} folds done",), run.dir / MANIFEST,
                          f"Finish it: `comp train exp={run.name} --fold all`")
        damage = self._damage(run)
        if damage is not None:
            return Status("damaged", (damage[1],), damage[0], damage[2] or None)
        stale = self._stale(run)
        if stale:
            return Status("stale", tuple(text for _, text in stale), stale[0][0],
                          f"Remake it: `{runs.remake_command(run.name, m)}`")
        return Status("complete")

    def orphans(self) -> dict[str, Status]:
        """Run folders whose ``manifest.json`` is gone though they hold what a run writes (predictions, done
        folds): ``damaged``, so that a deleted manifest does not make a run vanish unsaid."""
        out = {}
        if not self.ws.experiments_dir.is_dir():
            return out
        for folder in sorted(p for p in self.ws.experiments_dir.iterdir() if p.is_dir()):
            if (folder / MANIFEST).exists() or not ((folder / OOF).is_file() or any(folder.glob(f"fold*/{DONE}"))):
                continue
            experiment = any(folder.glob(f"fold*/{DONE}")) or (self.ws.experiments_dir / f"{folder.name}.yaml").is_file()
            fix = (f"Train it again (done folds are kept): `comp train exp={folder.name} --fold all`" if experiment
                   else f"Make that stack or blend again with `--name {folder.name} --force`")
            out[folder.name] = Status("damaged", (f"{folder / MANIFEST}: missing (deleted or never written)",),
                                      folder / MANIFEST, fix)
        return out

    def _damage(self, run: runs.Run) -> tuple[Path, str, str] | None:
        """(file, why, fix) of the first file of the run that is not as it was written, or None."""
        why = run.damage()
        if why is not None:
            return run.dir, why, f"Write it again: `{runs.rewrite_command(run.name, run.manifest)}`"
        others = {k: v for k, v in (run.manifest.get("files") or {}).items() if k not in (OOF, TEST)}
        broken = artifacts.damaged_file(run.dir, others)            # a blend's parameters (blend.json)
        if broken is not None:
            return _damaged(*broken)
        kind = run.manifest.get("kind", "experiment")
        record = DONE if kind == "experiment" else STACK_META if kind == "stack" else None
        if record is None:
            return None
        for k in range(int(run.manifest.get("n_splits") or 0)):
            folder = self.ws.fold_dir(run.name, k)
            sub = folder / "meta" if kind == "stack" else folder
            if not (sub / record).exists():     # folds deleted to save space: the run's own files still hold;
                continue                        # predict, which needs them, names the fold to retrain
            try:
                info = artifacts.read_json(sub / record)
            except InputError as err:              # says the file and its fix itself
                return sub / record, str(err), ""
            broken = artifacts.damaged_file(sub, info.get("files") or {})
            if broken is not None:
                return _damaged(*broken)
        return None

    def _stale(self, run: runs.Run) -> list[tuple[Path, str]]:
        """(file, why) of each record that says the run describes other data than today's."""
        m, out = run.manifest, []
        out += [(run.dir / MANIFEST, str(c)) for c in runs.changes(m, self.current)]
        if m.get("kind", "experiment") == "experiment":
            for k in range(int(m.get("n_splits") or 0)):
                done = self.ws.fold_dir(run.name, k) / DONE
                info = artifacts.read_json(done) if done.is_file() else {}
                known = {k: v for k, v in self.current.items() if info.get(k) is not None}  # what it testifies to
                out += [(done, str(c)) for c in runs.changes(info, known)]
        if self.metric and m.get("metric") and m["metric"] != self.metric:
            out.append((run.dir / MANIFEST, f"scored with {m['metric']}, not {self.metric}"))
        if self.folds_problem:
            out.append((self.ws.folds_manifest, self.folds_problem))
        for change in run.input_changes(self.ws, self.file_hash):
            out.append((run.dir / MANIFEST, str(change)))
        for source in m.get("input_hashes") or {}:     # an input whose manifest is gone is gone
            if (self.ws.run_dir(source) / OOF).is_file() and not (self.ws.run_dir(source) / MANIFEST).is_file():
                out.append((run.dir / MANIFEST, f"input {source} is gone (no {MANIFEST})"))
        return out


def _damaged(path: Path, why: str) -> tuple[Path, str, str]:
    """(file, reason, fix) of a file comp wrote that is not as written, in :func:`artifacts.damaged`'s words."""
    fix = artifacts.rebuild(path)
    return path, str(artifacts.damaged(path, why)).removesuffix(f". {fix}"), fix
