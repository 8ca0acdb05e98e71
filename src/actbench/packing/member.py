"""One run inside a pack: a run in every respect but the process and the Trainer it shares.

A member has the folder, ``run_id``, record, ``metrics.csv``, W&B run and diagnostics its
unpacked run would have (the same :class:`~actbench.lifecycle.RunLifecycle`), and its model,
optimizer, learning-rate schedule, batch order and random stream are built exactly as
:func:`actbench.train.train` builds them, from its own seed. So its numbers do not depend on
which pack it trains in, or whether it is packed at all.

Its callbacks see a :class:`MemberTrainer`: the pack's Trainer with the member's own step,
loggers, optimizer and metrics in place of the pack's.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig


class MemberTrainer:
    """The pack's Trainer as one member's callbacks and record see it.

    Step, epoch, loggers, optimizer, logged metrics and data are the member's; anything else
    (strategy, precision, device) is the pack's Trainer's.
    """

    def __init__(self, trainer: pl.Trainer, member: Member) -> None:
        self._trainer = trainer
        self._member = member

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)

    @property
    def global_step(self) -> int:
        return self._member.step

    @property
    def current_epoch(self) -> int:
        return self._member.epoch_offset + self._trainer.current_epoch

    @property
    def max_steps(self) -> int:
        return self._member.max_steps

    @property
    def estimated_stepping_batches(self) -> int:
        return self._member.max_steps

    @property
    def loggers(self) -> list[Any]:
        return self._member.loggers

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self._member.optimizer] if self._member.optimizer is not None else []

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        return {k: torch.tensor(v) for k, v in self._member.metrics.items()}

    @property
    def datamodule(self) -> Any:
        return self._member.datamodule

    @property
    def is_global_zero(self) -> bool:
        return True

    @property
    def global_rank(self) -> int:
        return 0

    @property
    def world_size(self) -> int:
        return 1

    @property
    def should_stop(self) -> bool:
        return self._member.diverged_at is not None


class Member:
    """One run of a pack: built like :func:`actbench.train.train` builds a run.

    ``run`` is its lifecycle (opened by the caller); :meth:`build` makes its data view, model,
    classifier and diagnostics, and records the random stream its training draws from.
    """

    def __init__(self, cfg: DictConfig, typed: Any, run: Any) -> None:
        self.cfg, self.typed, self.run = cfg, typed, run
        self.max_steps = int(typed.trainer.max_steps)
        self.step = 0
        self.epoch_offset = 0  # epochs trained before this attempt (a resume)
        self.diverged_at: int | None = None
        self.metrics: dict[str, float] = {}  # the latest value of every logged metric
        self.restored_metrics: dict[str, float] = {}
        self.loggers: list[Any] = []
        self.callbacks: list[Any] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.rng: dict[str, Any] = {}
        self.batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.trainer_view: MemberTrainer | None = None
        self.restored: dict[str, Any] | None = None  # the state it resumed from
        self.weights_loaded = False
        self.test_correct: list[torch.Tensor] = []

    @property
    def name(self) -> str:
        return self.run.run_dir.name

    def build(self, datamodule: Any) -> None:
        """Data view, model and classifier from this member's seed, in train.train's order."""
        from actbench.module import build_classifier

        typed, cfg = self.typed, self.cfg
        pl.seed_everything(typed.seed, workers=True, verbose=False)
        with self.run.setting_up():
            # The pack's tensors, this member's batch order (IndexBatches seeds it from .seed).
            self.datamodule = copy.copy(datamodule)
            self.datamodule.seed = typed.seed
            self.classifier = build_classifier(cfg, typed, datamodule)
            self.model = self.classifier.model
        # Dropout and stochastic gates draw from the global stream after the init, as in an
        # unpacked run; the member keeps that stream and swaps it in around its own forward.
        self.rng = {"torch": torch.get_rng_state()}

    def attach(self, trainer: pl.Trainer) -> None:
        """Bind to the pack's Trainer: the view the callbacks see, and the data follow it."""
        self.trainer_view = MemberTrainer(trainer, self)
        self.datamodule.trainer = self.trainer_view

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """The member's random stream in place of the global one for the block."""
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        saved = torch.get_rng_state()
        saved_cuda = torch.cuda.get_rng_state() if cuda else None
        torch.set_rng_state(self.rng["torch"])
        if cuda and "cuda" in self.rng:
            torch.cuda.set_rng_state(self.rng["cuda"])
        try:
            yield
        finally:
            self.rng["torch"] = torch.get_rng_state()
            torch.set_rng_state(saved)
            if cuda:
                self.rng["cuda"] = torch.cuda.get_rng_state()
                torch.cuda.set_rng_state(saved_cuda)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """To the member's loggers, with the epoch column Lightning adds; kept as latest."""
        values = {k: float(v) for k, v in metrics.items()}
        self.metrics.update(values)
        epoch = self.trainer_view.current_epoch if self.trainer_view else 0
        for logger in self.loggers:
            logger.log_metrics({**values, "epoch": epoch}, step=step)

    def hook(self, name: str, *args: Any) -> None:
        """Call one Lightning hook on each of the member's callbacks, as its Trainer would."""
        for callback in self.callbacks:
            getattr(callback, name)(self.trainer_view, self.classifier, *args)
