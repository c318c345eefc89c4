"""Family ``crf``: a linear-chain CRF over word features (``sklearn-crfsuite``), for token tasks.

Fast (a fold of wnut17 in well under a minute on 2 cores) and a different view from the encoders:
the encoders offline here are uncased, so case -- ``Empire State Building`` against ``empire``
-- is what the CRF adds to a stack. The features of a token (:func:`token_features`): its lower
form, shape (``Xxxx``, ``dd``), prefixes and suffixes up to ``model.affixes`` characters,
capitalisation, digits, punctuation, handles / hashtags / URLs, and the same (lower form, shape,
title) of the ``model.window`` neighbours on each side.

The prediction of a row is CRFsuite's marginal probability of every tag at every token (a tag
never seen in a fold's training rows has probability 0), in the token task's format. What a fold
saves::

    fold0/
        model.crfsuite   CRFsuite's own binary model (no pickle: it cannot run code)
        crf.json         the tags the model knows, its settings

Example experiment::

    model: {family: crf, c1: 0.05, c2: 0.05, max_iterations: 150}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sklearn_crfsuite

from competition import artifacts
from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models import FoldResult
from competition.predictions import rows

MODEL, INFO = "model.crfsuite", "crf.json"


@dataclass
class Prepared:
    cfg: ExperimentConfig
    data: object                         # competition.data.Dataset
    train: list[list[dict]]              # features of every token of every train row
    test: list[list[dict]] | None
    tags: list[str]                      # the tag list: codes -> tags


def _shape(word: str) -> str:
    """``'Empire'`` -> ``'Xx'``, ``'3.5'`` -> ``'d.d'``: character classes with repeats collapsed."""
    out = re.sub(r"[A-Z]", "X", word)
    out = re.sub(r"[a-z]", "x", out)
    out = re.sub(r"[0-9]", "d", out)
    return re.sub(r"(.)\1+", r"\1", out)


def token_features(tokens: list[str], window: int = 2, affixes: int = 3) -> list[dict]:
    """CRFsuite features of every token of a row.

    >>> f = token_features(["Empire", "State", "@ESB"], window=1)[1]
    >>> f["lower"], f["shape"], f["title"], f["-1:lower"], f["+1:handle"]
    ('state', 'Xx', True, 'empire', True)
    """
    def own(word: str) -> dict:
        return {"lower": word.lower(), "shape": _shape(word), "title": word.istitle(), "upper": word.isupper(),
                "handle": word.startswith("@"), "hashtag": word.startswith("#"),
                "url": word.lower().startswith(("http", "www.")), "digit": any(c.isdigit() for c in word),
                "punct": not any(c.isalnum() for c in word), "len": min(len(word), 12)}

    base = [own(w) for w in tokens]
    out = []
    for i, word in enumerate(tokens):
        f = {"bias": 1.0, **base[i]}
        for n in range(1, affixes + 1):
            f[f"prefix{n}"], f[f"suffix{n}"] = word[:n].lower(), word[-n:].lower()
        for d in range(1, window + 1):
            for side, j in (("-", i - d), ("+", i + d)):
                if 0 <= j < len(tokens):
                    for key in ("lower", "shape", "title", "upper", "handle", "url"):
                        f[f"{side}{d}:{key}"] = base[j][key]
                else:
                    f[f"{side}{d}:edge"] = True
        out.append(f)
    return out


def _features(cfg: ExperimentConfig, spec, frame) -> list[list[dict]]:
    column = spec.text[0]
    return [token_features(list(t), cfg.model.window, cfg.model.affixes) for t in frame[column]]


def prepare(cfg: ExperimentConfig, data) -> Prepared:
    """Every train and test row's token features, once per run."""
    spec = data.spec
    if spec.task != "tokens" or spec.tokens.unit != "token":
        raise InputError(f"model.family crf tags tokens: it needs `task: tokens` with `tokens.unit: token` "
                         f"(this competition is task {spec.task}); choose another model.family")
    return Prepared(cfg, data, _features(cfg, spec, data.train),
                    None if data.test is None else _features(cfg, spec, data.test), list(data.labels))


def _marginals(crf, X: list[list[dict]], tags: list[str]) -> np.ndarray:
    known = [t for t in crf.classes_ if t in tags]
    columns = [tags.index(t) for t in known]
    out = []
    for row in crf.predict_marginals(X):
        p = np.zeros((len(row), len(tags)))
        p[:, columns] = [[m[t] for t in known] for m in row]
        out.append(p)
    return rows(out)


def fit_fold(prepared: Prepared, fold: int, train_idx: np.ndarray, valid_idx: np.ndarray, out_dir: Path,
             tracker, lesson=None) -> FoldResult:
    """Fit the CRF on the ``train_idx`` rows; predict the fold's rows and the test rows."""
    cfg, tags = prepared.cfg, prepared.tags
    m = cfg.model
    y = [[tags[c] for c in prepared.data.y[i]] for i in train_idx]
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=m.c1, c2=m.c2, max_iterations=m.max_iterations,
                               all_possible_transitions=True, model_filename=str(out_dir / MODEL))
    crf.fit([prepared.train[i] for i in train_idx], y)
    artifacts.write_json(out_dir / INFO, {"tags": tags, "known": list(crf.classes_), "c1": m.c1, "c2": m.c2,
                                          "max_iterations": m.max_iterations})
    oof = _marginals(crf, [prepared.train[i] for i in valid_idx], tags)
    test = None if prepared.test is None else _marginals(crf, prepared.test, tags)
    return FoldResult(oof, test, extra={"tags_known": len(crf.classes_)})


def load(fold_dir: Path):
    """A fold's CRF, read from CRFsuite's own file."""
    path = Path(fold_dir) / MODEL
    if not path.is_file():
        raise InputError(f"{path}: missing; retrain the fold (`comp train exp=<id> --fold <k> --force`)")
    return sklearn_crfsuite.CRF(model_filename=str(path))     # its tags: read from the model file


def predict(fold_dir: Path, cfg: ExperimentConfig, data, frame) -> np.ndarray:
    """A fold's CRF on new rows (tokens parsed as the spec reads them)."""
    crf = load(fold_dir)
    tags = artifacts.read_json(Path(fold_dir) / INFO)["tags"]
    return _marginals(crf, _features(cfg, data.spec, frame), tags)
