"""The span head of the encoder family (``task: span``): start and end logits at every sub-token of the
text, read back as the span task's per-character prediction (:mod:`competition.spans`).

A row is read as a pair: its condition columns (``span.condition``, joined by a space) as the first
segment, the text as the second, with the model's own special tokens
(:func:`layout`). A text longer than the window holds (``model.max_length`` less
the condition and the special tokens) is read as windows every ``model.stride`` sub-tokens (half a window
by default), each a training example: it is taught the answer's first and last sub-tokens when the
window holds the whole answer, else "no answer" at its first token (as the transformers question-answering
guide teaches). At prediction each window's start and end distributions (softmax over its first token
and its text's sub-tokens) are averaged per sub-token over the windows holding it, the first tokens'
"no answer" over the windows; each sub-token's start probability goes to its first character and its end
probability to its last, so models with different tokenizers average at the characters.

Training is the token head's (:func:`competition.models.tagging.fit_fold`): TextModel with its head on
every token, ``train.epochs`` epochs, the last weights; the decoder's length bias is what the other folds'
OOF chooses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from competition.config import ExperimentConfig
from competition.errors import InputError
from competition.models import tagging
from competition.models.batches import eval_loader, window_starts
from competition.models.torch_common import _autocast
from competition.predictions import rows as ragged
from competition.span_data import conditions


def layout(tokenizer, condition: str) -> tuple[list[int], list[int]]:
    """The ids a window holds before its text's sub-tokens (special tokens and the condition) and after
    them, as the tokenizer builds a pair (the condition alone: no pair)."""
    pair = bool(condition)
    enc = tokenizer(condition, "a") if pair else tokenizer("a")
    seq, ids = enc.sequence_ids(0), enc["input_ids"]
    side = 1 if pair else 0
    first = seq.index(side)
    last = len(seq) - 1 - seq[::-1].index(side)
    return ids[:first], ids[last + 1:]


@dataclass
class Encoded:
    """Rows of a frame as windows of ids, and where each window's text sub-tokens are."""

    windows: list[torch.Tensor]        # ids of each window: condition, text part, special tokens
    owner: np.ndarray                  # (windows,) the row of each window
    start: np.ndarray                  # (windows,) the row's text sub-token the window's text starts at
    at: np.ndarray                     # (windows,) the position of the window's first text sub-token
    size: np.ndarray                   # (windows,) how many text sub-tokens the window holds
    offsets: list[np.ndarray]          # per row: (text sub-tokens, 2) character offsets in the text
    n_chars: list[int]
    labels: list[torch.Tensor] | None  # per window: -100 where no answer may be, 0, 1 start, 2 end, 3 both


def trim(offsets: np.ndarray, text: str) -> np.ndarray:
    """Sub-token character offsets without the whitespace some tokenizers count in (byte-level BPE's
    leading space), so a span starts and ends on the text's own characters; whitespace alone: empty.

    >>> trim(np.array([[0, 2], [2, 6], [6, 7]]), "ab cde ").tolist()
    [[0, 2], [3, 6], [7, 7]]
    """
    out = offsets.copy()
    for j, (s, e) in enumerate(offsets):
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        out[j] = s, e
    return out


def answer_subtokens(offsets: np.ndarray, start: int, end: int) -> tuple[int, int] | None:
    """The first and last sub-tokens of the answer at characters ``[start, end)``: those it overlaps
    (an answer cut inside a word starts at that word's sub-token); None when it overlaps none.

    >>> answer_subtokens(np.array([[0, 3], [4, 7], [7, 9], [10, 12]]), 5, 9)
    (1, 2)
    """
    overlap = np.flatnonzero((offsets[:, 1] > start) & (offsets[:, 0] < end) & (offsets[:, 1] > offsets[:, 0]))
    return (int(overlap[0]), int(overlap[-1])) if len(overlap) else None


def encode(cfg: ExperimentConfig, spec, tokenizer, frame, answers=None) -> Encoded:
    """Every row of ``frame`` as windows (labelled from ``answers``, the rows' Answers, when given)."""
    m = cfg.model
    texts = frame[spec.text[0]].tolist()
    enc = tagging.whole_rows(tokenizer, texts)
    layouts: dict[str, tuple[list[int], list[int]]] = {}
    cond = conditions(spec, frame)
    windows, owner, start, at, size, offsets, n_chars = [], [], [], [], [], [], []
    labels = [] if answers is not None else None
    for r, text in enumerate(texts):
        ids = enc["input_ids"][r]
        offs = trim(np.asarray(enc["offset_mapping"][r], dtype=np.int64).reshape(-1, 2), text)
        offsets.append(offs), n_chars.append(len(text))
        if cond[r] not in layouts:
            layouts[cond[r]] = layout(tokenizer, cond[r])
        head, tail = layouts[cond[r]]
        room = m.max_length - len(head) - len(tail)
        if room < 8:
            raise InputError(f"model.max_length {m.max_length}: the condition of row id {frame[spec.id_column].iloc[r]} "
                             f"takes {len(head)} of its tokens; raise model.max_length")
        stride = m.stride or max(room // 2, 1)
        if stride > room:
            raise InputError(f"model.stride {stride}: a window holds {room} text sub-tokens here; set "
                             f"model.stride={room // 2}")
        valid = offs[:, 1] > offs[:, 0]
        span = None if answers is None or answers[r].end <= answers[r].start else \
            answer_subtokens(offs, answers[r].start, answers[r].end)
        for s in window_starts(len(ids), room, stride):
            n = min(room, len(ids) - s)
            windows.append(torch.tensor(head + ids[s:s + n] + tail, dtype=torch.long))
            owner.append(r), start.append(s), at.append(len(head)), size.append(n)
            if answers is not None:
                codes = np.full(len(head) + n + len(tail), -100, dtype=np.int64)
                codes[0] = 0
                codes[len(head):len(head) + n] = np.where(valid[s:s + n], 0, -100)
                if span is not None and s <= span[0] and span[1] < s + n:
                    codes[len(head) + span[0] - s] += 1
                    codes[len(head) + span[1] - s] += 2
                else:
                    codes[0] = 3
                labels.append(torch.tensor(codes))
    return Encoded(windows, np.array(owner, dtype=np.int64), np.array(start, dtype=np.int64),
                   np.array(at, dtype=np.int64), np.array(size, dtype=np.int64), offsets, n_chars, labels)


def prepare(cfg: ExperimentConfig, data, tokenizer, new_encoder) -> tagging.Prepared:
    """Tokenise every train and test row once (condition, windows, labels)."""
    tagging.check_config(cfg, "span")
    train = encode(cfg, data.spec, tokenizer, data.train, data.y)
    test = encode(cfg, data.spec, tokenizer, data.test) if data.test is not None else None
    return tagging.Prepared(cfg, data, tokenizer, new_encoder, train, test, 2)


def to_chars(sub: np.ndarray, null: np.ndarray, offsets: np.ndarray, n_chars: int) -> np.ndarray:
    """Sub-token start and end probabilities ``(sub-tokens, 2)`` and the no-answer pair ``(2,)`` ->
    ``(n_chars, 2)``: each column scaled to sum to 1 with its no-answer share (what the characters
    leave of 1), a sub-token's start at its first character, its end at its last.

    >>> to_chars(np.array([[0.6, 0.2], [0.2, 0.6]]), np.array([0.2, 0.2]), np.array([[0, 2], [3, 5]]), 5).tolist()
    [[0.6, 0.0], [0.0, 0.2], [0.0, 0.0], [0.2, 0.0], [0.0, 0.6]]
    """
    total = sub.sum(axis=0) + null
    sub = sub / np.where(total > 0, total, 1.0)
    out = np.zeros((n_chars, 2))
    valid = offsets[:, 1] > offsets[:, 0]
    np.add.at(out[:, 0], offsets[valid, 0], sub[valid, 0])
    np.add.at(out[:, 1], offsets[valid, 1] - 1, sub[valid, 1])
    return out


def merge(window_probs, owner, start, offsets: list[np.ndarray], n_chars: list[int], rows: np.ndarray) -> np.ndarray:
    """Per-row character predictions from windows' probabilities: ``window_probs[w]`` is window ``w``'s
    ``(1 + text sub-tokens, 2)`` softmax (its first token: no answer), for the windows of ``rows``.
    A sub-token's probabilities are their mean over the windows holding it; no answer, the mean over the
    row's windows."""
    where = {int(r): i for i, r in enumerate(rows)}
    sums = [np.zeros((len(offsets[r]), 2)) for r in rows]
    counts = [np.zeros(len(offsets[r])) for r in rows]
    null, windows = np.zeros((len(rows), 2)), np.zeros(len(rows))
    for p, r, s in zip(window_probs, owner, start):
        i = where[int(r)]
        n = len(p) - 1
        sums[i][s:s + n] += p[1:]
        counts[i][s:s + n] += 1
        null[i] += p[0]
        windows[i] += 1
    out = []
    for i, r in enumerate(rows):
        seen = counts[i] > 0
        sub = np.zeros_like(sums[i])
        sub[seen] = sums[i][seen] / counts[i][seen, None]
        out.append(to_chars(sub, null[i] / max(windows[i], 1), offsets[r], n_chars[r]))
    return ragged(out)


@torch.inference_mode()
def predict_rows(model, enc: Encoded, rows: np.ndarray, cfg: ExperimentConfig, pad_id: int) -> np.ndarray:
    """Per-character start and end probabilities of ``rows`` of ``enc``: every window of theirs through
    the model, merged (:func:`merge`)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    chosen = np.flatnonzero(np.isin(enc.owner, rows))
    probs: list = [None] * len(chosen)
    with _autocast(cfg, device):
        for batch in eval_loader([enc.windows[w] for w in chosen], None, pad_id, cfg.train.eval_batch_size):
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float()   # (B, T, 2)
            positions = batch["index"].numpy()
            T = logits.shape[1]
            allowed = torch.zeros(len(positions), T, dtype=torch.bool)
            allowed[:, 0] = True
            for b, position in enumerate(positions):
                w = chosen[position]
                a, n, s = int(enc.at[w]), int(enc.size[w]), int(enc.start[w])
                valid = enc.offsets[enc.owner[w]][s:s + n]
                allowed[b, a:a + n] = torch.from_numpy(valid[:, 1] > valid[:, 0])
            p = logits.masked_fill(~allowed.to(device)[..., None], float("-inf")).softmax(1).cpu().numpy()
            for b, position in enumerate(positions):
                w = chosen[position]
                a, n = int(enc.at[w]), int(enc.size[w])
                probs[position] = np.concatenate([p[b, :1], p[b, a:a + n]])
    return merge(probs, enc.owner[chosen], enc.start[chosen], enc.offsets, enc.n_chars, np.asarray(rows))


def fit_fold(prepared, fold: int, train_idx, valid_idx, out_dir, tracker, lesson=None):
    """The token head's training (:func:`competition.models.tagging.fit_fold`), read as spans."""
    return tagging.fit_fold(prepared, fold, train_idx, valid_idx, out_dir, tracker, lesson=lesson, read=predict_rows)


def predict(fold_dir, cfg, data, frame, cache: dict | None = None) -> np.ndarray:
    """A saved fold's seed models on new rows, averaged."""
    return tagging.predict(fold_dir, cfg, data, frame, cache=cache, encoder=encode, read=predict_rows)
