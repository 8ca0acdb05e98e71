"""What the three diagnostics share: the cadence, the probe, eval-mode isolation and logging."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.seed import isolate_rng
from torch import nn

from actbench.config import ConfigError

log = logging.getLogger("actbench.train")


def log_spaced_steps(total: int, points: int) -> list[int]:
    """At least ``points`` steps in [0, total], log-spaced (dense early), ending at total.

    Two points are the two ends, 0 and ``total`` (a single log-spaced point would be step 1).
    """
    if total <= 0:
        return [0]
    if points <= 2:
        return [0, total]
    k = points
    while True:
        steps = np.unique(np.round(np.geomspace(1, total, max(k - 1, 1))).astype(int))
        if len(steps) + 1 >= points or len(steps) >= total:
            return [0, *steps.tolist()]
        k += 1


def fixed_steps(total: int, every: int) -> list[int]:
    """Steps 0, k, 2k, ... up to ``total``, and ``total`` itself: an evenly spaced cadence.

    For quantities followed over the whole run (sharpness against 2/η, a dead fraction's peak
    and recovery): the log-spaced default is sparse exactly where they settle, late in training.
    """
    if every < 1:  # bad input, not a bug: a sweep's projection leaves such a kind untimed
        raise ConfigError(f"every_n_steps={every!r} is out of range; must be >= 1")
    return sorted({*range(0, max(total, 0) + 1, every), max(total, 0)})


def cadence(total: int, points: int, every_n_steps: int | None = None) -> set[int]:
    """The steps a diagnostic measures at over ``total`` steps: ``points`` log-spaced ones, or
    every ``every_n_steps``-th when that is set (both include 0 and ``total``)."""
    if every_n_steps is None:
        return set(log_spaced_steps(total, points))
    return set(fixed_steps(total, every_n_steps))


@contextlib.contextmanager
def probing(module: nn.Module) -> Iterator[None]:
    """Eval mode and an isolated RNG for the duration; training flags restored exactly after."""
    modes = [(m, m.training) for m in module.modules()]
    with isolate_rng():
        module.eval()
        try:
            yield
        finally:
            for m, mode in modes:
                m.training = mode


def probe_data(trainer: pl.Trainer, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` examples of a split of the datamodule (fixed for the whole run)."""
    dm = trainer.datamodule
    splits = getattr(dm, "splits", None)
    if splits and split in splits:
        x, y = splits[split]
        return x[:size], y[:size]
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader}[split]()
    xs, ys, n = [], [], 0
    for x, y in loader:
        xs.append(x)
        ys.append(y)
        n += len(y)
        if n >= size:
            break
    return torch.cat(xs)[:size], torch.cat(ys)[:size]


def activation_layers(module: nn.Module) -> dict[str, nn.Module]:
    """The model's activation modules by layer name (the models' shared contract)."""
    model = getattr(module, "model", module)
    return model.activation_layers()


def pick_layers(names: list[str]) -> list[str]:
    """First, middle and last: the per-layer values W&B shows by default."""
    if len(names) <= 3:
        return list(names)
    return [names[0], names[len(names) // 2], names[-1]]


class Diagnostic(pl.Callback):
    """Base: the cadence over the run's steps (log-spaced, or every ``every_n_steps``) and routing
    of per-layer metrics.

    Totals and a few layers go to W&B; every layer goes to the local record (CSV). The latest
    values are kept in ``last`` for the run summary.
    """

    def __init__(
        self, points: int = 12, wandb_all_layers: bool = False, every_n_steps: int | None = None
    ) -> None:
        if points < 1:
            raise ValueError(f"points={points!r} is out of range; must be >= 1")
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps!r} is out of range; must be >= 1")
        self.points = points
        self.every_n_steps = every_n_steps
        self.wandb_all_layers = wandb_all_layers
        self.steps: set[int] = set()
        self.last: dict[str, float] = {}
        # Host wall time this attempt spent measuring (run record: what the diagnostic cost).
        self.seconds = 0.0

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Adds the wall time of the block to ``seconds``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = int(trainer.estimated_stepping_batches)
        self.final_step = total
        self.steps = cadence(total, self.points, self.every_n_steps)

    def due(self, step: int) -> bool:
        return step in self.steps

    def publish(
        self,
        trainer: pl.Trainer,
        totals: dict[str, float],
        per_layer: dict[str, dict[str, float]] | None = None,
        step: int | None = None,
    ) -> None:
        """Log ``totals`` and ``per_layer`` ({metric: {layer: value}}) to every logger."""
        per_layer = per_layer or {}
        everything = dict(totals)
        for metric, layers in per_layer.items():
            everything.update({f"{metric}/{layer}": v for layer, v in layers.items()})
        self.last.update(everything)
        if not trainer.is_global_zero:
            return
        step = trainer.global_step if step is None else step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and not self.wandb_all_layers:
                shown = dict(totals)
                for metric, layers in per_layer.items():
                    keep = pick_layers(list(layers))
                    shown.update({f"{metric}/{layer}": layers[layer] for layer in keep})
                logger.log_metrics(shown, step=step)
            else:
                logger.log_metrics(everything, step=step)

    def state_dict(self) -> dict[str, Any]:
        return {"last": dict(self.last)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last = dict(state_dict.get("last", {}))


class MeasuringDiagnostic(Diagnostic):
    """A diagnostic that measures the model between steps: at step 0, at every step of the
    cadence, and (``measure_at_end``) once more when training ends off the cadence, so a run
    stopped early or resumed past its last point still ends measured.

    Subclasses implement :meth:`measure` (which records its step in ``_measured``) and may draw
    their probe in :meth:`prepare`, called before the first measurement.
    """

    measure_at_end = False

    def __init__(
        self, points: int = 12, wandb_all_layers: bool = False, every_n_steps: int | None = None
    ) -> None:
        super().__init__(points, wandb_all_layers, every_n_steps)
        self._measured: set[int] = set()

    def prepare(self, trainer: pl.Trainer) -> None:
        """Draw what the measurements read (a probe from a split); nothing by default."""

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        raise NotImplementedError

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.prepare(trainer)
        if trainer.global_step == 0:
            self.measure(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.due(trainer.global_step):
            self.measure(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.measure_at_end and trainer.global_step not in self._measured:
            self.measure(trainer, pl_module)


# The split each diagnostic takes its probe from (its first probe_size examples).
PROBE_SPLITS = {"CurvatureMonitor": "train", "DeadNeuronMonitor": "val"}


def probe_sizes(cfg: DictConfig, sizes: dict[str, int], warn: bool) -> dict[str, dict[str, int]]:
    """Probe sizes larger than their split, clamped to the whole split with one warning each.

    A larger probe cannot be drawn, and "all of it" is what such a value asks for (the README
    suggests 10000 on MNIST-1D's 8000 training examples), so this is a warning, not an error.
    """
    clamped: dict[str, dict[str, int]] = {}
    for name, node in cfg.callbacks.items():
        size = node.get("probe_size") if isinstance(node, DictConfig) else None
        split = PROBE_SPLITS.get(str(node.get("_target_", "")).rsplit(".", 1)[-1])
        if size is None or split is None or size <= sizes[split]:
            continue
        clamped[name] = {"probe_size": sizes[split]}
        if warn:
            log.warning(
                "callbacks.%s.probe_size=%d is larger than the %s split (%d examples); "
                "the probe is the whole split",
                name, size, split, sizes[split],
            )  # fmt: skip
    return clamped


def instantiate_callbacks(
    cfg: DictConfig, sizes: dict[str, int], warn: bool, skip: tuple[str, ...] = ()
) -> list[pl.Callback]:
    """The run's callbacks from ``cfg.callbacks`` (probes clamped to their splits; ``skip`` left
    out), a constructor's refusal of its arguments turned into one line naming the key.

    The callbacks check their own arguments (ranges, choices) and raise ValueError; Hydra wraps
    that in a message whose first line names only the class.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    probes = probe_sizes(cfg, sizes, warn)
    built = []
    for name, node in cfg.callbacks.items():
        if name in skip:
            continue
        try:
            built.append(instantiate(node, **probes.get(name, {})))
        except InstantiationException as err:
            if not isinstance(err.__cause__, ValueError):
                raise
            reason = str(err.__cause__)
            sep = "." if re.match(r"\w+=", reason) else ": "
            raise ConfigError(f"callbacks.{name}{sep}{reason}") from err
    return built
