"""Token ids in, padded batches out: the data path of the torch families (encoder, scratch).

Texts are tokenised once per run (:func:`encode`, every text variant of a frame:
:func:`encode_frame`): one 1-D id tensor per row, no
padding. A batch is padded only to its own longest row (:class:`TokenDataset`), so
short tweets cost short sequences. Training batches come from :class:`BucketSampler`
(rows of similar length together, still random); inference batches from
:func:`sorted_batches` (longest first), and predictions are written back to the rows'
original positions.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from competition.errors import InputError
from competition.text import Pairs, input_texts, model_inputs

MEGA_BATCH = 50  # batches per sorted chunk of the bucket sampler


def encode(tokenizer, texts, max_length: int, truncation: str = "head",
           pair_truncation: str = "longest_first", head_tokens: int | None = None,
           stride: int | None = None) -> list:
    """Token ids of every text, truncated to ``max_length`` keeping the head, the tail or both
    (``head_tail``: the first ``head_tokens``, default a quarter of ``max_length``, and as many of the
    last tokens as fit).

    Special tokens ([CLS] ... [SEP]) are kept either way: the tokenizer truncates the text
    first, then adds them. ``texts`` may be :class:`competition.text.Pairs`: each row is then
    ``tokenizer(a, b)``'s ids (``[CLS] a [SEP] b [SEP]`` for BERT), cut by ``pair_truncation``
    (``longest_first``: the longer side loses a token at a time; ``only_first`` / ``only_second``).

    ``windows`` cuts nothing: each row is then a list of windows (1-D id tensors of at most
    ``max_length`` ids, special tokens included), one every ``stride`` tokens (default half the
    window), the last one ending with the text (:func:`windows`).
    """
    if truncation == "windows" and not hasattr(texts, "second"):
        return windows(tokenizer, list(texts), max_length, stride or max_length // 2)
    if truncation == "head_tail" and not hasattr(texts, "second"):
        return [torch.tensor(row, dtype=torch.long)
                for row in _head_tail(tokenizer, list(texts), max_length, head_tokens or max_length // 4)]
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left" if truncation == "tail" else "right"
    try:
        if hasattr(texts, "second"):
            ids = _pair_ids(tokenizer, list(texts.first), list(texts.second), max_length, pair_truncation)
        else:
            ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    finally:
        tokenizer.truncation_side = side
    return [torch.tensor(row, dtype=torch.long) for row in ids]


def _whole(tokenizer, texts: list[str]) -> tuple[list[int], list[int], list[list[int]]]:
    """(the special tokens before a text, those after it, each text's ids without them and uncut): the
    specials are those the tokenizer puts around an empty text."""
    specials = tokenizer("")["input_ids"]
    lead = 1 if specials and specials[0] in (tokenizer.cls_token_id, tokenizer.bos_token_id) else 0
    limit = tokenizer.model_max_length
    tokenizer.model_max_length = 1 << 30          # the whole text, without the "longer than the model" warning
    try:
        rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    finally:
        tokenizer.model_max_length = limit
    return specials[:lead], specials[lead:], rows


def _head_tail(tokenizer, texts: list[str], max_length: int, head: int) -> list[list[int]]:
    """Each text's ids: whole when it fits, else its first ``head`` tokens and its last ones, between
    the tokenizer's own special tokens."""
    prefix, suffix, rows = _whole(tokenizer, texts)
    room = max_length - len(prefix) - len(suffix)
    if not 0 < head < room:
        raise InputError(f"model.head_tokens {head}: keep fewer tokens from the start than fit in model.max_length "
                         f"{max_length} less the {len(prefix) + len(suffix)} special tokens, e.g. {room // 4}")
    return [prefix + (ids if len(ids) <= room else ids[:head] + ids[len(ids) - (room - head):]) + suffix
            for ids in rows]


def window_starts(n: int, room: int, stride: int) -> list[int]:
    """Where the windows of ``room`` tokens start in a text of ``n``: every ``stride`` tokens, and one
    more ending with the text where the stride steps over its end.

    >>> window_starts(10, 4, 3), window_starts(3, 4, 3), window_starts(0, 4, 3)
    ([0, 3, 6], [0], [0])
    """
    starts = list(range(0, max(n - room, 0) + 1, stride))
    if starts[-1] + room < n:
        starts.append(n - room)
    return starts


def windows(tokenizer, texts: list[str], max_length: int, stride: int) -> list[list[torch.Tensor]]:
    """Each text as windows of at most ``max_length`` ids (its own special tokens around each), a
    window every ``stride`` text tokens (:func:`window_starts`); a text that fits is one window."""
    limit = tokenizer.model_max_length
    if limit < 1_000_000 and max_length > limit:
        raise InputError(f"model.max_length {max_length} is the window of truncation: windows, but this model reads "
                         f"at most {limit} tokens at once; set model.max_length={limit} or less")
    prefix, suffix, rows = _whole(tokenizer, texts)
    room = max_length - len(prefix) - len(suffix)
    if stride > room:
        raise InputError(f"model.stride {stride}: windows hold {room} text tokens (model.max_length {max_length} less "
                         f"{len(prefix) + len(suffix)} special tokens); a stride above that skips text. "
                         f"Set model.stride={room // 2}")
    return [[torch.tensor(prefix + ids[s:s + room] + suffix, dtype=torch.long)
             for s in window_starts(len(ids), room, stride)] for ids in rows]


def _pair_ids(tokenizer, first: list[str], second: list[str], max_length: int, how: str) -> list[list[int]]:
    """``tokenizer(first, second)``'s ids cut by ``how``; a pair whose other side alone overflows
    ``max_length`` (``only_first`` / ``only_second`` cannot fit it) is cut ``longest_first``, with a
    warning that counts them."""
    try:
        return tokenizer(first, second, truncation=how, max_length=max_length)["input_ids"]
    except Exception:   # the tokenizers library raises a bare Exception ("Sequence to truncate too short")
        if how == "longest_first":
            raise

    out, fallen = [], 0
    for a, b in zip(first, second):
        try:
            out.append(tokenizer(a, b, truncation=how, max_length=max_length)["input_ids"])
        except Exception:
            fallen += 1
            out.append(tokenizer(a, b, truncation="longest_first", max_length=max_length)["input_ids"])
    warnings.warn(f"model.pair_truncation {how}: in {fallen} of {len(first)} pairs the side it keeps whole is "
                  f"longer than model.max_length {max_length} by itself; those were cut longest_first",
                  UserWarning, stacklevel=3)
    return out


def segments(input_ids: torch.Tensor, attention_mask: torch.Tensor, sep_id: int) -> torch.Tensor:
    """Token type ids of padded pair rows: 0 up to and including the first ``[SEP]``, 1 after it on
    real tokens (what ``tokenizer(a, b)`` returns as ``token_type_ids``; padding 0).

    >>> segments(torch.tensor([[101, 7, 102, 8, 9, 102, 0]]), torch.tensor([[1, 1, 1, 1, 1, 1, 0]]), 102)
    tensor([[0, 0, 0, 1, 1, 1, 0]])
    """
    is_sep = (input_ids == sep_id).long()
    before = torch.cumsum(is_sep, dim=1) - is_sep          # separators strictly before each position
    return (before >= 1).long() * attention_mask.long()


def encode_frame(cfg, spec, tokenizer, frame) -> dict[str, list[torch.Tensor]]:
    """Token ids of every row: the plain text, plus each test-time augmentation in ``train.tta``.

    ``no_keyword`` blanks the first text column (the keyword of keyword + text);
    ``tail`` keeps the end of long texts instead of the start; ``swap`` reads a text pair second
    side first.
    """
    m = cfg.model
    plain = model_inputs(cfg, spec, frame)
    paired = isinstance(plain, Pairs)
    if paired and m.truncation in ("head_tail", "windows"):
        raise InputError(f"model.truncation: {m.truncation} reads one long text, but this experiment reads the text "
                         f"pair {spec.text_pair}; a pair is cut by model.pair_truncation (longest_first, only_first, "
                         "only_second): set model.truncation=head")
    out = {"plain": encode(tokenizer, plain, m.max_length, m.truncation, m.pair_truncation, m.head_tokens, m.stride)}
    for variant in dict.fromkeys(cfg.train.tta):
        if variant == "swap":
            if not paired:
                raise InputError("train.tta: 'swap' reads a text pair second side first, but this experiment "
                                 "reads one text per row; name the pair in competition.yaml (text_pair: "
                                 "[first, second]) or remove swap from train.tta.")
            out[variant] = encode(tokenizer, plain.swapped(), m.max_length, m.truncation, m.pair_truncation,
                                  m.head_tokens)
        elif variant == "no_keyword":
            if paired:
                raise InputError("train.tta: 'no_keyword' blanks the first text column, but this experiment reads "
                                 f"the text pair {spec.text_pair}; remove it from train.tta (swap is the pair's TTA).")
            if len(spec.text) < 2:
                raise InputError(f"train.tta: 'no_keyword' blanks the first text column, but the "
                                 f"competition has text columns {spec.text}; it needs two or more "
                                 "(e.g. text: [keyword, text]). Remove it from train.tta.")
            out[variant] = encode(tokenizer, input_texts(cfg, spec, frame, drop=(spec.text[0],)),
                                  m.max_length, m.truncation, head_tokens=m.head_tokens, stride=m.stride)
        elif variant == "tail":
            out[variant] = encode(tokenizer, plain, m.max_length, "tail", m.pair_truncation)
    return out  # "none" adds nothing: the plain prediction is always part of the average


def lengths_of(ids: list) -> np.ndarray:
    """Tokens per row (a row of windows: the tokens of all its windows, what it costs)."""
    return np.fromiter((sum(map(len, row)) if isinstance(row, list) else len(row) for row in ids),
                       dtype=np.int64, count=len(ids))


class TokenDataset(Dataset):
    """Rows of token ids (and targets); a whole batch is built in one call (``__getitems__``).

    A row may instead be the cached (length, H) hidden states of an encoder's frozen layers
    (:mod:`competition.models.frozen`): the batch then holds ``states`` (B, T, H), not ``input_ids``.

    A row may also be a list of windows (1-D ids each, ``truncation: windows``): the batch's
    sequences are then its rows' windows (N of them) and ``windows`` (N,) says which of the B rows
    each belongs to (0..B-1, ascending).

    A batch is a dict: ``input_ids`` (B, T) padded with ``pad_id`` to the batch's longest
    row T, ``attention_mask`` (B, T) 1 on real tokens, ``index`` (B,) the rows' positions
    in this dataset, and ``labels`` (B,) or (B, k) when targets are given; ``targets`` may also be
    a dict of per-row tensors (``labels``, ``weight``, ``teacher``: a lesson, :mod:`competition.teach`),
    each batched under its key.
    """

    def __init__(self, ids: list[torch.Tensor], targets: torch.Tensor | None = None, pad_id: int = 0):
        self.ids, self.targets, self.pad_id = ids, targets, pad_id

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, row: int) -> dict:
        return self.__getitems__([row])

    def __getitems__(self, rows: list[int]) -> dict:
        seqs = [self.ids[r] for r in rows]
        owner = None
        if isinstance(seqs[0], list):   # rows of windows (truncation: windows): one sequence per window
            owner = torch.repeat_interleave(torch.arange(len(seqs)), torch.tensor([len(s) for s in seqs]))
            seqs = [w for s in seqs for w in s]
        lengths = torch.tensor([len(s) for s in seqs])                              # (B,) or (N windows,)
        if seqs[0].ndim == 2:   # cached states of frozen layers (T_i, H): zeros where padded
            key, padded = "states", pad_sequence(seqs, batch_first=True).float()   # (B, T, H)
        else:
            key, padded = "input_ids", pad_sequence(seqs, batch_first=True, padding_value=self.pad_id)  # (B, T)
        positions = torch.arange(padded.shape[1])                                  # (T,)
        batch = {
            key: padded,
            "attention_mask": (positions[None, :] < lengths[:, None]).long(),      # (B, T)
            "index": torch.tensor(rows),
            **({} if owner is None else {"windows": owner}),                        # (N,) each window's row
        }
        if isinstance(self.targets, dict):
            batch.update({key: values[rows] for key, values in self.targets.items()})
        elif isinstance(self.targets, list):    # one label per token (task tokens), -100 where padded
            batch["labels"] = pad_sequence([self.targets[r] for r in rows], batch_first=True, padding_value=-100)
        elif self.targets is not None:
            batch["labels"] = self.targets[rows]
        return batch


def _as_is(batch: dict) -> dict:
    """collate_fn: the dataset already returns whole padded batches."""
    return batch


class BucketSampler(Sampler[list[int]]):
    """Training batches of rows with similar lengths, in random order, seeded.

    Each epoch: shuffle the rows, cut them into mega-batches of ``MEGA_BATCH`` batches,
    sort each mega-batch by length, cut it into batches and shuffle the batches (so a
    long batch does not always follow a short one). Padding shrinks to a few tokens per
    row, yet every batch is still a random draw from its mega-batch. ``bucket=False``
    gives plain shuffled batches. The order depends only on (seed, epoch).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, bucket: bool = True):
        self.lengths, self.batch_size, self.seed, self.bucket = np.asarray(lengths), batch_size, seed, bucket
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at the start of each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        world, _ = _world()
        return -(-(-(-len(self.lengths) // self.batch_size)) // world)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        n, size = len(self.lengths), self.batch_size
        order = rng.permutation(n)
        if self.bucket:
            mega = MEGA_BATCH * size
            chunks = [order[i:i + mega] for i in range(0, n, mega)]
            order = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        batches = [order[i:i + size] for i in range(0, n, size)]
        if self.bucket:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        world, rank = _world()
        if world > 1:   # one model over several processes: each takes every world-th batch, all the same count
            batches += batches[:(-len(batches)) % world]
            batches = batches[rank::world]
        for batch in batches:
            yield batch.tolist()


def _world() -> tuple[int, int]:
    """(processes, this one's rank) of the distributed group training one model; (1, 0) alone."""
    # torch stack (~3 s to import): only the torch families load it
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Inference batches, longest rows first (so an out-of-memory error shows at once)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def train_loader(ids, targets, pad_id: int, batch_size: int, seed: int, bucket: bool) -> DataLoader:
    sampler = BucketSampler(lengths_of(ids), batch_size, seed, bucket)
    return DataLoader(TokenDataset(ids, targets, pad_id), batch_sampler=sampler, collate_fn=_as_is)


def eval_loader(ids, targets, pad_id: int, batch_size: int) -> DataLoader:
    batches = sorted_batches(lengths_of(ids), batch_size)
    return DataLoader(TokenDataset(ids, targets, pad_id), batch_sampler=batches, collate_fn=_as_is)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence vectors (B, H) from hidden states (B, T, H): the [CLS] token or the mean of real tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)                      # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def pool_windows(vectors: torch.Tensor, owner: torch.Tensor, how: str,
                 scores: torch.Tensor | None = None) -> torch.Tensor:
    """Row vectors (B, H) from their windows' vectors (N, H); ``owner`` (N,) is each window's row
    (ascending, every row has one). ``mean``, ``max`` (per feature), or ``attention``: the softmax of
    ``scores`` (N,) over each row's windows weighs them."""
    n_rows = int(owner[-1]) + 1
    index = owner.unsqueeze(-1).expand_as(vectors)
    if how == "max":
        return vectors.new_zeros(n_rows, vectors.shape[1]).scatter_reduce(0, index, vectors, "amax",
                                                                           include_self=False)
    if how == "attention":
        scores = scores.float()
        top = scores.new_full((n_rows,), float("-inf")).scatter_reduce(0, owner, scores, "amax")
        weights = (scores - top[owner]).exp()                                       # (N,)
        weights = weights / weights.new_zeros(n_rows).index_add(0, owner, weights)[owner]
    else:
        weights = 1.0 / torch.bincount(owner, minlength=n_rows).to(vectors.dtype)[owner]
    weighted = vectors * weights.unsqueeze(-1).to(vectors.dtype)
    return vectors.new_zeros(n_rows, vectors.shape[1]).index_add(0, owner, weighted)
