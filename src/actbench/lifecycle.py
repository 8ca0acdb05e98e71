"""Run lifecycle: divergence as a result, and checkpoints that resume a run exactly.

A run killed at any moment and started again with the same command resumes from ``last.ckpt``
and ends with the same numbers as an uninterrupted run (CPU, fixed seed and thread count): the
checkpoint carries the RNG states and how many ``metrics.csv`` rows existed when it was written.
"""

from __future__ import annotations

import csv
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger


class Diverged(RuntimeError):
    """The training loss became NaN or infinite at ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training loss became non-finite at step {step}")
        self.step = step


class DivergenceMonitor(pl.Callback):
    """Stops the run at the first non-finite training loss, without a host sync every step.

    Each step writes its finiteness into a small device buffer; the buffer is read every
    ``check_every`` steps and at each epoch end — before the checkpoint callback runs, so
    ``last.ckpt`` always holds the last good weights.
    """

    def __init__(self, check_every: int = 25) -> None:
        self.check_every = check_every
        self._bad: torch.Tensor | None = None
        self._filled = 0  # entries of _bad written since the last check
        self._start = 0  # the step of entry 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        if self._bad is None or self._bad.device != loss.device:
            self._bad = torch.zeros(self.check_every, dtype=torch.bool, device=loss.device)
        if self._filled == 0:
            self._start = trainer.global_step - 1  # the step whose loss this is
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
            return
        seen = self._bad[: self._filled]
        if bool(seen.any()):  # the one host sync, on the cadence
            raise Diverged(self._start + int(seen.nonzero()[0, 0]))
        self._filled = 0


def rng_states() -> dict[str, Any]:
    """All RNG states as tensors and plain values, so checkpoints load with ``weights_only``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def csv_rows(path: Path) -> int:
    """Data rows in a CSV file (0 when it does not exist)."""
    try:
        with open(path, newline="") as f:
            return max(0, sum(1 for _ in csv.reader(f)) - 1)
    except FileNotFoundError:
        return 0


class ResumableState(pl.Callback):
    """Adds RNG states and the ``metrics.csv`` row count to every checkpoint; restores the RNG."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        rows = None
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.save()  # flush, so the row count matches what the weights have seen
                rows = csv_rows(Path(logger.log_dir) / "metrics.csv")
        checkpoint["actbench"] = {"rng_states": rng_states(), "metrics_rows": rows}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("actbench")
        if state:
            set_rng_states(state["rng_states"])

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning bumps its logging step counter by one when it restarts from an epoch-end
        # checkpoint, which would shift every later logged step; with one optimizer the counter
        # equals the global step at each epoch start, so restore that (a no-op otherwise).
        loop = trainer.fit_loop.epoch_loop
        if hasattr(loop, "_batches_that_stepped"):
            loop._batches_that_stepped = trainer.global_step


def checkpoint_state(path: Path) -> dict[str, Any]:
    """Step and actbench state of a checkpoint, without building any model."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {"global_step": ckpt.get("global_step", 0), **ckpt.get("actbench", {})}


def read_metrics(path: Path, rows: int | None) -> tuple[list[str], list[list[str]]]:
    """Header and the first ``rows`` data rows of ``metrics.csv`` (all rows when None)."""
    if not path.exists():
        return [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        kept = list(reader)
    return header, kept if rows is None else kept[:rows]


def write_metrics(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write ``metrics.csv`` atomically (temporary file and rename)."""
    fd, tmp = tempfile.mkstemp(prefix=".metrics.", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
