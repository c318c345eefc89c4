"""What the classical families (tfidf, lgbm, embed) do alike for a fold: fit an estimator on the fold's
training rows, predict its own rows (OOF) and the test set, save the fitted estimator.

A family supplies only its parts: the fold's :class:`Features` (built from the training rows
alone, so nothing of the predicted rows leaks into a vocabulary or a code book), the estimator
and its settings, and whatever else it saves beside the estimator::

    fold0/
        head/           the estimator (saving.save_head: head.json + LightGBM text / skops files)
        ...             the family's own files (vocabulary, code book, encoder name)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from competition.models import FoldResult
from competition.models.estimators import Head, fit_head, n_outputs
from competition.models.saving import load_head, save_head

HEAD_DIR = "head"


@dataclass
class Features:
    """One fold's feature matrices, each built from the fold's training rows only."""

    train: Any              # (n_train, d) the rows the estimator is fit on
    valid: Any              # (n_valid, d) the fold's own rows, predicted as OOF
    test: Any | None        # (n_test, d) the test set, or None without one


def fit_fold(prepared, train_idx: np.ndarray, features: Features, out_dir: Path, tracker, estimator: str,
             **settings) -> tuple[Head, FoldResult]:
    """Fit ``estimator`` on the training rows' features, predict the valid rows and the test set, save
    the estimator into ``out_dir/head`` and log its learning curve (lgbm).

    Args:
        prepared: the family's prepared run; its ``cfg`` and ``data`` give the seed, the threads,
            the task and the targets.
        train_idx: the training rows (``features.train`` holds their features, in this order).
        features: the fold's feature matrices.
        out_dir: the fold's folder.
        tracker: a :mod:`competition.track` run, or None.
        estimator: logistic, ridge or lgbm.
        **settings: the rest of :func:`~competition.models.estimators.fit_head`'s settings
            (``C``, ``alpha``, ``lgbm``, ``scale``, ``key``, ...).

    Returns:
        The fitted head (for what the family records of it) and the fold's result, whose
        ``extra`` the family fills.
    """
    cfg, data = prepared.cfg, prepared.data
    head, curve = fit_head(estimator, data.spec.task, features.train, data.y[train_idx], n_outputs=n_outputs(data),
                           seed=cfg.seed, threads=cfg.train.threads, **settings)
    oof = head.predict(features.valid)
    test = head.predict(features.test) if features.test is not None else None
    save_head(Path(out_dir) / HEAD_DIR, head)
    if tracker is not None:
        for point in curve:
            tracker.log({"val/loss": point["val/loss"]}, step=point["epoch"])
    return head, FoldResult(oof=oof, test=test, best_epoch=max(head.best_iterations, default=None), history=curve)


def load(fold_dir: Path, family: str) -> Head:
    """The estimator a fold of ``family`` saved (an InputError names a missing or pickled one)."""
    return load_head(Path(fold_dir) / HEAD_DIR, family)
