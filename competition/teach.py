"""Pseudo-labelling and distillation: what fold k's model learns from besides its training labels.

Both take predictions of finished experiment runs (the *sources*: ``pseudo.from``, ``distill.teacher``)
and both keep the fold's score honest by one rule: **fold k only ever sees predictions made by the
sources' fold-k models**, which were trained on the same folds without fold k's rows. A source's
averaged test prediction, or its OOF, would carry what its other folds' models learnt from fold k's
labels into fold k's training, and the CV would rise without the model getting better.

- ``pseudo``: the test rows join the training rows with the sources' fold-k test predictions
  (``fold<k>/test.parquet``, the run's ``<col>__fold<k>``; mean over sources) as targets: all of them as
  probabilities (``select: soft``) or the confident ones as hard labels (``select: confident``),
  each weighing ``weight`` in the loss.
- ``distill``: every training row's loss mixes its true label (``alpha``) with the teachers' fold-k
  models' predictions of it (``1 - alpha``, at ``temperature``). The fold-k models predict the rows
  again here (they are their own training rows, so an OOF column would not do).

The torch families read the :class:`Lesson` (:func:`competition.models.torch_common.fit_seed`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from competition import artifacts, runs
from competition.errors import InputError
from competition.predict import predict_fold
from competition.workspace import DONE, OOF, TEST


@dataclass
class Lesson:
    """Fold k's extra targets. Arrays hold one column per prediction column (``spec.pred_columns``)."""

    teacher: np.ndarray | None = None     # (n_train_rows, k) the teachers' predictions, every train row
    alpha: float = 1.0                    # weight of the true labels beside the teacher's
    temperature: float = 1.0
    pseudo_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))   # test positions
    pseudo_targets: np.ndarray | None = None   # (len(pseudo_rows), k) probabilities or 0/1
    pseudo_weight: float = 1.0

    def summary(self) -> dict:
        """What ``done.json`` records of it."""
        out = {}
        if self.teacher is not None:
            out["distill"] = {"alpha": self.alpha, "temperature": self.temperature}
        if self.pseudo_targets is not None:
            out["pseudo_rows"] = int(len(self.pseudo_rows))
        return out


class Teacher:
    """The sources of one run's lessons, checked once; :meth:`lesson` builds each fold's."""

    def __init__(self, ws, cfg, data, hashes: dict):
        self.ws, self.cfg, self.data = ws, cfg, data
        self.tokens: dict = {}       # token ids of the train rows, shared by the teachers' folds
        self.pseudo = [self._source(name, "pseudo.from", hashes) for name in cfg.pseudo.source] if cfg.pseudo else []
        self.teachers = [self._source(name, "distill.teacher", hashes)
                         for name in cfg.distill.teacher] if cfg.distill else []
        if cfg.pseudo and cfg.pseudo.select == "confident" and data.spec.task == "regression":
            raise InputError("pseudo.select: 'confident' needs class probabilities; on a regression task use "
                             "select: soft (the sources' predicted values become the targets)")
        if cfg.pseudo and data.test is None:
            raise InputError("pseudo.rows: test, but competition.yaml names no test file (key test:); "
                             "add it or remove the pseudo block")

    def version(self) -> str:
        """A fingerprint of the sources' predictions (``sources_hash`` in each fold's ``done.json``): a
        source retrained since makes the folds taught by it stale. A complete source is fingerprinted by
        its ``oof.parquet`` and ``test.parquet``, a partly trained one by its folds' (so it changes, and
        the folds it taught are retrained, once the source is complete)."""
        parts = []
        for run in [*self.pseudo, *self.teachers]:
            if (run.dir / OOF).is_file():
                parts += [f"{run.name}:{artifacts.file_hash(run.dir / name)}" for name in (OOF, TEST)
                          if (run.dir / name).is_file()]
            else:
                files = sorted(run.dir.glob(f"fold[0-9]*/{OOF}")) + sorted(run.dir.glob(f"fold[0-9]*/{TEST}"))
                parts += [f"{run.name}/{path.parent.name}:{artifacts.file_hash(path)}" for path in files]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def _source(self, name: str, key: str, hashes: dict) -> runs.Run:
        if name == self.cfg.exp:
            raise InputError(f"{key}: {name!r} is this experiment itself; name another, finished run")
        run = runs.load_run(self.ws, name, complete=False)    # its fold k is checked when fold k trains
        kind = run.manifest.get("kind", "experiment")
        if kind != "experiment":
            inputs = ", ".join(run.manifest.get("inputs", []))
            raise InputError(f"{key}: {name!r} is a {kind}, whose fold-k predictions also come from models that "
                             f"saw fold k (its inputs' averaged test predictions, weights fitted on every fold's "
                             f"OOF). Name experiment runs instead; several are averaged: {key}=[{inputs}]")
        runs.check_compatible([run], hashes)
        if run.pred_columns != list(self.data.spec.pred_columns):
            raise InputError(f"{key}: {name!r} predicts {run.pred_columns}, this competition "
                             f"{list(self.data.spec.pred_columns)}; retrain it on the current spec")
        if key == "pseudo.from" and run.manifest.get("test_hash") != hashes.get("test_hash"):
            raise InputError(f"{key}: {name!r} predicted another test file (test_hash "
                             f"{run.manifest.get('test_hash')} != current {hashes.get('test_hash')}); retrain it: "
                             f"`comp train exp={name} --fold all --force`")
        return run

    def lesson(self, k: int) -> Lesson:
        """Fold k's lesson, from the sources' fold-k models only."""
        cfg, lesson = self.cfg, Lesson()
        if cfg.pseudo:
            rows, targets = self._pseudo(k)
            lesson.pseudo_rows, lesson.pseudo_targets, lesson.pseudo_weight = rows, targets, cfg.pseudo.weight
        if cfg.distill:
            parts = [predict_fold(self.ws, self.data.spec, run, run.config(), k, self.data.train,
                                  self.tokens) for run in self.teachers]
            lesson.teacher = np.mean(parts, axis=0).reshape(len(self.data.train), -1)
            lesson.alpha, lesson.temperature = cfg.distill.alpha, cfg.distill.temperature
        return lesson

    def _pseudo(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The test rows fold k adds and their targets: the pseudo sources' fold-k test predictions."""
        spec, ids = self.data.spec, self.data.test[self.data.spec.id_column].astype(str).to_numpy()
        parts = []
        for run in self.pseudo:
            fold_dir = self.ws.fold_dir(run.name, k)
            if not (fold_dir / DONE).is_file() or not (fold_dir / TEST).is_file():
                raise InputError(f"pseudo.from: {fold_dir} holds no finished fold {k} with test predictions; "
                                 f"train it: `comp train exp={run.name} --fold {k}`")
            test = pd.read_parquet(fold_dir / TEST)
            if not np.array_equal(test["id"].astype(str).to_numpy(), ids):
                raise InputError(f"pseudo.from: {fold_dir / TEST}: its ids are not the test file's; "
                                 f"retrain it: `comp train exp={run.name} --fold all --force`")
            parts.append(test[list(spec.pred_columns)].to_numpy(np.float64))
        probs = np.mean(parts, axis=0)
        rows = np.arange(len(probs))
        if self.cfg.pseudo.select == "soft":
            return rows, probs
        return confident(probs, spec.task, self.cfg.pseudo.confidence)


def confident(probs: np.ndarray, task: str, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose every decision is at least ``confidence`` sure, with hard 0/1 targets.

    >>> rows, y = confident(np.array([[0.95], [0.5], [0.02]]), "binary", 0.9)
    >>> rows.tolist(), y.ravel().tolist()
    ([0, 2], [1.0, 0.0])
    >>> rows, y = confident(np.array([[0.92, 0.05, 0.03], [0.4, 0.3, 0.3]]), "multiclass", 0.9)
    >>> rows.tolist(), y.tolist()
    ([0], [[1.0, 0.0, 0.0]])
    """
    if task == "multiclass":
        keep = probs.max(axis=1) >= confidence
        hard = np.eye(probs.shape[1])[probs.argmax(axis=1)]
    else:                                         # binary, multilabel: every label decided
        keep = np.maximum(probs, 1 - probs).min(axis=1) >= confidence
        hard = (probs >= 0.5).astype(np.float64)
    rows = np.flatnonzero(keep)
    return rows, hard[rows]
