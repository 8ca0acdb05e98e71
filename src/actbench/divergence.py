"""Divergence as a result: the first non-finite training loss stops the run and is recorded.

A learning rate too large for an activation is an outcome a benchmark reports, not a crash.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class Diverged(RuntimeError):
    """The training loss became NaN or infinite at ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training loss became non-finite at step {step}")
        self.step = step


class DivergenceMonitor(pl.Callback):
    """Stops the run at the first non-finite training loss, without a host sync every step.

    Each step writes its finiteness into a small device buffer; the buffer is read every
    ``check_every`` steps and at each epoch end — before the checkpoint callback runs, so
    ``last.ckpt`` always holds the last good weights. Under data parallelism the first bad step
    is agreed across ranks (one all-reduce per check): a rank whose own shard stayed finite must
    stop with the others, or it would wait forever in the next gradient all-reduce.
    """

    def __init__(self, check_every: int = 25) -> None:
        self.check_every = check_every
        self._bad: torch.Tensor | None = None
        self._filled = 0  # entries of _bad written since the last check
        self._start = 0  # the step of entry 0
        self._distributed = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        if self._bad is None or self._bad.device != loss.device:
            self._bad = torch.zeros(self.check_every, dtype=torch.bool, device=loss.device)
        if self._filled == 0:
            self._start = trainer.global_step - 1  # the step whose loss this is
            self._distributed = trainer.world_size > 1
        self._bad[self._filled] = ~torch.isfinite(loss.detach())
        self._filled += 1
        if self._filled == self.check_every:
            self.check()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`Diverged` if any loss since the last check was not finite."""
        if self._bad is None or self._filled == 0:
            return  # every rank has taken the same steps, so all return here together
        seen = self._bad[: self._filled]
        if self._distributed:
            self._filled = 0
            first = self._first_bad_across_ranks(seen)
            if first is not None:
                raise Diverged(self._start + first)
            return
        if bool(seen.any()):  # the one host sync, on the cadence
            raise Diverged(self._start + int(seen.nonzero()[0, 0]))
        self._filled = 0

    @staticmethod
    def _first_bad_across_ranks(seen: torch.Tensor) -> int | None:
        """The earliest non-finite entry on any rank (None when all were finite)."""
        import torch.distributed as dist

        n = len(seen)
        index = torch.arange(n, device=seen.device)
        first = torch.where(seen, index, torch.full_like(index, n)).min().reshape(1)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
        value = int(first.item())
        return value if value < n else None
