"""The Lightning callbacks of a torch fold: :class:`FoldMonitor` (score each validation with the
competition metric, keep the best weights, stop early, print progress) and :class:`WeightAverage`
(stochastic weight averaging over the last part of training)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pytorch_lightning as pl
import torch

from competition import metrics, thresholds

if TYPE_CHECKING:
    from competition.models.textmodel import TextModel


class FoldMonitor(pl.Callback):
    """After each validation: score the validated rows with the competition metric, record the
    learning curve, keep the best weights (in memory, on the CPU) and stop early.

    The validated rows are the fold itself (``train.select: fold`` and ``last``) or an inner
    split of its training rows (``inner``); ``rows`` names them in the progress lines.

    Args:
        metric, task: the competition's metric and task (direction from the metric).
        y_valid: encoded targets of the validated rows, as ``thresholds.evaluate`` takes them.
        tracker: a :class:`~competition.track.Tracker` (``val/loss``, ``val/score``, ``train/loss``).
        patience: stop after this many validations without improvement (None: never).
        keep_best: False with SWA, whose averaged weights replace the last ones at the end, and
            with ``select: last``, which keeps the final weights: the scores are then a curve only.
        seed, step_offset: tag history rows; keep tracker steps increasing across seeds.
        rows: ``val`` (the fold) or ``inner`` (held-out training rows), for the progress lines.
    """

    def __init__(self, metric: str, task: str, y_valid: np.ndarray, tracker, patience: int | None,
                 keep_best: bool = True, seed: int | None = None, step_offset: int = 0, progress=None,
                 rows: str = "val"):
        self.metric, self.task, self.y_valid, self.tracker = metric, task, y_valid, tracker
        self.progress = progress         # called with one line per validation (None: silent)
        self.rows = rows
        self.patience, self.keep_best, self.seed, self.step_offset = patience, keep_best, seed, step_offset
        self.history: list[dict] = []
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.steps = 0   # optimizer steps of the whole fit, set after it
        self.swa_steps: list[int] | None = None   # with SWA: the steps whose weights were averaged
        self.train_seconds = 0.0   # the fit's wall time less its validations
        self._bad = 0
        self._fit_started = self._val_started = 0.0
        self._val_seconds = 0.0
        self._rows, self._line_at, self._line_batch = 0, 0.0, -1   # training rows seen; the last step line

    # a line inside an epoch every STEP_SHARE of its batches or every STEP_SECONDS, never two within
    # STEP_GAP seconds: a fold of a base-size encoder is minutes per epoch
    STEP_SHARE, STEP_SECONDS, STEP_GAP = 0.1, 30.0, 5.0

    def on_fit_start(self, trainer: pl.Trainer, module: TextModel) -> None:
        self._fit_started = self._line_at = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, module: TextModel) -> None:
        self._line_batch = -1

    def on_train_batch_end(self, trainer: pl.Trainer, module: TextModel, outputs, batch, batch_idx: int) -> None:
        self._rows += len(batch["index"])
        if self.progress is None:
            return
        now, n = time.perf_counter(), max(int(trainer.num_training_batches), 1)
        share = (batch_idx - self._line_batch) / n >= self.STEP_SHARE
        if batch_idx + 1 >= n or now - self._line_at < self.STEP_GAP or not (
                share or now - self._line_at >= self.STEP_SECONDS):
            return
        self._line_at, self._line_batch = now, batch_idx
        elapsed = now - self._fit_started
        done = trainer.global_step / max(trainer.estimated_stepping_batches, 1)
        left = elapsed * (1 - done) / done if done > 0 else float("nan")
        seed = f"seed {self.seed} " if self.seed is not None else ""
        self.progress(f"    {seed}epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: batch {batch_idx + 1}/{n}"
                      f" · {self._rows / max(elapsed - self._val_seconds, 1e-9):.1f} rows/s · {elapsed:.0f}s, "
                      f"~{left:.0f}s left")

    def on_validation_start(self, trainer: pl.Trainer, module: TextModel) -> None:
        self._val_started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, module: TextModel) -> None:
        self._val_seconds += time.perf_counter() - self._val_started

    def on_fit_end(self, trainer: pl.Trainer, module: TextModel) -> None:
        self.train_seconds = time.perf_counter() - self._fit_started - self._val_seconds

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: TextModel) -> None:
        if trainer.sanity_checking:
            return
        probs, val_loss = module.pop_validation()
        score, _ = thresholds.evaluate(self.metric, self.y_valid, probs, self.task)
        steps_per_epoch = max(trainer.estimated_stepping_batches / max(trainer.max_epochs, 1), 1)
        epoch = round(trainer.global_step / steps_per_epoch, 3)   # fractional with val_per_epoch > 1
        row = {"epoch": epoch, "step": trainer.global_step, "val/loss": float(val_loss),
               "val/score": float(score), "train/loss": module.pop_train_loss()}
        if self.seed is not None:
            row["seed"] = self.seed
        self.history.append(row)
        self.tracker.log({k: v for k, v in row.items() if v is not None and k != "step"},
                         step=self.step_offset + trainer.global_step)
        if self.progress is not None:
            done = trainer.global_step / max(trainer.estimated_stepping_batches, 1)
            elapsed = time.perf_counter() - self._fit_started
            left = elapsed * (1 - done) / done if done > 0 else float("nan")
            seed = f"seed {self.seed} " if self.seed is not None else ""
            self.progress(f"    {seed}epoch {epoch:g}/{trainer.max_epochs}: {self.rows} {self.metric} {score:.4f}, "
                          f"loss {val_loss:.4f} · {elapsed:.0f}s, ~{left:.0f}s left")
        if self.best_score is None or metrics.is_better(self.metric, score, self.best_score):
            self.best_score, self.best_epoch, self._bad = float(score), int(np.ceil(epoch)), 0
            if self.keep_best:
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        else:
            self._bad += 1
            if self.keep_best and self.patience is not None and self._bad >= self.patience:
                trainer.should_stop = True

    @property
    def chose(self) -> bool:
        """Whether the kept weights were chosen among two or more validations (one is no choice)."""
        return self.keep_best and len(self.history) > 1


def swa_steps(total: int, start: float, snapshots: int) -> list[int]:
    """The optimizer steps after which SWA takes a snapshot: ``snapshots`` evenly spaced over the
    steps after ``start`` (a fraction of ``total``), the last one the final step.

    >>> swa_steps(100, 0.5, 5), swa_steps(10, 0.75, 5), swa_steps(4, 0.0, 1)
    ([60, 70, 80, 90, 100], [8, 9, 10], [4])
    """
    first = int(start * total)
    span = max(total - first, 1)
    return sorted({first + max(1, round(i * span / snapshots)) for i in range(1, snapshots + 1)})


class WeightAverage(pl.Callback):
    """Stochastic weight averaging over the last part of training, by optimizer step.

    Averages the weights after each step of :func:`swa_steps` (running mean, float32 on the
    CPU; integer buffers are kept from the last step). With ``swa_lr`` every parameter group's
    learning rate is held at ``swa_lr`` (scaled like the group's peak rate, so layer-wise decay and
    the head's rate keep their ratios) for the steps after ``start``; without it the schedule goes on. Lightning's own ``StochasticWeightAveraging`` snapshots at epoch *starts* from epoch
    ``max(int(0.8 E) - 1, 0)``: with one epoch it averaged nothing but the initial weights.
    """

    def __init__(self, start: float, snapshots: int, swa_lr: float | None = None):
        self.start, self.snapshots, self.swa_lr = start, snapshots, swa_lr
        self.steps: list[int] = []       # planned snapshot steps, set when training starts
        self.first = 0                   # steps before the averaging window
        self.taken: list[int] = []       # steps actually averaged
        self.average: dict[str, torch.Tensor] | None = None

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        total = int(trainer.estimated_stepping_batches)
        self.first, self.steps = int(self.start * total), swa_steps(total, self.start, self.snapshots)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self.swa_lr is None or trainer.global_step < self.first:
            return
        peak = module.hparams.lr
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.swa_lr * group.get("initial_lr", peak) / peak

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step   # optimizer steps done so far (after this batch's step, if any)
        if step in self.steps and (not self.taken or self.taken[-1] != step):
            self._snapshot(module, step)

    def on_train_end(self, trainer, module) -> None:
        if not self.taken or self.taken[-1] != trainer.global_step:   # stopped early: the final weights too
            self._snapshot(module, trainer.global_step)

    def _snapshot(self, module: pl.LightningModule, step: int) -> None:
        state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype, copy=True)
                 for k, v in module.state_dict().items()}
        self.taken.append(step)
        if self.average is None:
            self.average = state
            return
        n = len(self.taken)
        for key, value in state.items():
            if value.is_floating_point():
                self.average[key] += (value - self.average[key]) / n
            else:
                self.average[key] = value

    def averaged_state(self, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The averaged weights, in the dtypes of ``like`` (the module's own state dict)."""
        return {k: v.to(like[k].dtype) for k, v in self.average.items()}
