"""The LightningModule: loss, metrics, optimizer and learning-rate schedule, and the record of
which test examples the final weights classify correctly."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from actbench import records

log = logging.getLogger(__name__)

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
LOSSES = ("ce", "mse")
# At most this many training steps' predictions wait for train_acc (bounded memory whatever
# log_every_n_steps is).
MAX_PENDING_ACC = 64


def skip_nvml_check_without_cuda() -> None:
    """Lightning's import sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (so a parent process can fork
    before CUDA starts); then every torch.cuda.is_available() loads NVML again (~0.04 ms here,
    against ~1 µs), and Adam asks on every step (a pack's members: each of them). Without a
    GPU it protects nothing, so a training process without one unsets it."""
    import os

    if not torch.cuda.is_available():
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)


def assemble_test_correct(shards: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """Every example's correctness in the split's order from each rank's (example indices,
    correctness); None unless the indices are each example of the split exactly once."""
    order = np.concatenate([o for o, _ in shards]) if shards else np.zeros(0, dtype=np.int64)
    correct = np.concatenate([c for _, c in shards]) if shards else np.zeros(0, dtype=bool)
    if not np.array_equal(np.sort(order), np.arange(len(order))):
        return None
    full = np.empty(len(order), dtype=bool)
    full[order] = correct.astype(bool)
    return full


def _split_order(loader: Any, count: int, world: int) -> torch.Tensor | None:
    """The split indices of this rank's test examples in the order they were evaluated: from
    actbench's unshuffled IndexBatches (any number of ranks), or a plain sequential DataLoader
    in one process; None for any other loader (its order is unknown)."""
    from torch.utils.data import DataLoader, SequentialSampler

    if callable(getattr(loader, "indices", None)) and not getattr(loader, "shuffle", True):
        return loader.indices(0)
    if (
        world == 1
        and isinstance(loader, DataLoader)
        and isinstance(loader.sampler, SequentialSampler)
    ):
        return torch.arange(count)
    return None


def _all_ranks(pairs: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's (2, k) tensor, k differing by rank (evaluation shards differ by one
    example): the lengths first, then the tensors padded to the longest, then trimmed."""
    import torch.distributed as dist

    world = dist.get_world_size()
    length = torch.tensor([pairs.shape[1]], device=pairs.device)
    lengths = [torch.zeros_like(length) for _ in range(world)]
    dist.all_gather(lengths, length)
    longest = int(max(int(k) for k in lengths))
    padded = torch.zeros((2, longest), dtype=pairs.dtype, device=pairs.device)
    padded[:, : pairs.shape[1]] = pairs
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return [g[:, : int(k)] for g, k in zip(gathered, lengths, strict=True)]


def mse_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½·Σ over outputs of (f − onehot)², averaged over examples (Cohen et al.'s convention).

    PyTorch's ``MSELoss()`` is 2/C times this; the scale matters when comparing sharpness to 2/η.
    """
    onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
    return 0.5 * (logits - onehot).pow(2).sum(-1).mean()


def classification_loss(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (``ce``) or the summed-squares ``mse`` above."""
    if kind == "ce":
        return F.cross_entropy(logits, target)
    if kind == "mse":
        return mse_loss(logits, target)
    raise ValueError(f"loss={kind!r} is not a loss; valid: {', '.join(LOSSES)}")


def build_classifier(cfg: Any, typed: Any, datamodule: Any) -> Classifier:
    """A run's model and its Classifier from the run's config, as every run builds them
    (unpacked or in a pack): the activation, then the init from the run's seed, so the same
    seed gives every activation the same init stream (common random numbers)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    activation = instantiate(cfg.activation)
    torch.manual_seed(typed.seed)
    model = instantiate(cfg.model)(
        input_shape=datamodule.input_shape,
        num_classes=datamodule.num_classes,
        activation=activation,
    )
    return Classifier(
        model,
        num_classes=datamodule.num_classes,
        optimizer=OmegaConf.to_container(cfg.optimizer),
        loss=typed.loss,
        max_steps=typed.trainer.max_steps,
        log_every_n_steps=typed.trainer.log_every_n_steps,
        compile_model=typed.compile,
    )


class LeanModule(pl.LightningModule):
    """A LightningModule without nn.Module's attribute checks for the one name Lightning sets
    around every hook call (``_current_fx_name``, ~45 times per training step): it is never a
    parameter, buffer or submodule. Worth ~0.1 ms a step, as much as a small model's whole step."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class Classifier(LeanModule):
    """Trains ``model`` on a classification task; logs ``train/``, ``val/`` and ``test/`` keys."""

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: dict[str, Any],
        loss: str = "ce",
        max_steps: int = 1000,
        log_every_n_steps: int = 50,
        compile_model: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        # What the training and evaluation steps call. Kept out of nn.Module's registry (a tuple),
        # so parameters and checkpoints hold the model once, under the same keys either way;
        # diagnostics and HVPs use self.model, never the compiled graph.
        self._step_model: tuple[nn.Module] = (torch.compile(model) if compile_model else model,)
        self.loss_kind = loss
        self.optimizer_cfg = dict(optimizer)
        self.max_steps = max_steps
        self.log_every_n_steps = log_every_n_steps
        # validate_args=False: the checks inspect values, a host sync on every training step.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        # Eval losses as weighted means in torchmetrics: exact under DDP with uneven shards
        # (self.log's own sync averages an integer example count with truncating division).
        # Default nan_strategy: with "disable", torchmetrics 1.9 drops the weights (DDP losses
        # came out wrong). Its isnan check syncs once per eval batch, never in training.
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        # Saved in checkpoints, so a resumed run continues these exactly.
        self.train_acc.persistent(True)
        self.val_acc_best.persistent(True)
        # (predicted class, label) per training step, not yet counted by train_acc: one
        # torchmetrics update costs ~0.1 ms of Python, as much as a small MLP's whole step, so
        # the steps between two logs are counted in one update (the counts are sums: same
        # result). Flushed before every log and every state_dict (checkpoints).
        self._pending_acc: list[tuple[torch.Tensor, torch.Tensor]] = []
        # Whether each test example was classified correctly, batch by batch (this rank's).
        self._test_correct: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        logits = self._step_model[0](x)
        loss = classification_loss(self.loss_kind, logits, y)
        self._pending_acc.append((logits.detach().argmax(-1), y))
        # Logging on a cadence: each per-step self.log costs a host sync and ~0.5 ms.
        # train/acc is the accuracy over the steps since the previous log.
        # Lightning hands step metrics to the loggers only when (step + 1) % N == 0 (its
        # should_update_logs); at a last step off that cadence they reach callback_metrics
        # (the record) but not metrics.csv, and logging on any other step is dropped.
        step = self.global_step + 1
        if step % self.log_every_n_steps == 0 or step == self.max_steps:
            self._count_pending_acc()
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False)
            self.log("train/acc", self.train_acc.compute(), on_step=True, on_epoch=False)
            self.train_acc.reset()
        elif len(self._pending_acc) >= MAX_PENDING_ACC:
            self._count_pending_acc()
        return loss

    def _count_pending_acc(self) -> None:
        """Count the pending training predictions into ``train_acc`` (one update, no sync)."""
        if self._pending_acc:
            preds, target = zip(*self._pending_acc, strict=True)
            self._pending_acc.clear()
            self.train_acc.update(torch.cat(preds), torch.cat(target))

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        # train_acc's counts are saved in checkpoints: the pending steps belong in them.
        self._count_pending_acc()
        return super().state_dict(*args, **kwargs)

    def _eval_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], split: str, metric, loss_metric
    ) -> torch.Tensor:
        x, y = batch
        logits = self._step_model[0](x)
        loss = classification_loss(self.loss_kind, logits, y)
        metric.update(logits, y)
        loss_metric.update(loss, weight=len(y))
        self.log(f"{split}/loss", loss_metric, on_epoch=True, batch_size=len(y))
        self.log(f"{split}/acc", metric, on_epoch=True, batch_size=len(y))
        return logits

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best.update(self.val_acc.compute())
        # Identical on every rank (val_acc is synced); sync_dist only silences Lightning's warning.
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self._test_correct = []

    def test_step(self, batch, batch_idx: int) -> None:
        logits = self._eval_step(batch, "test", self.test_acc, self.test_loss)
        self._test_correct.append((logits.argmax(-1) == batch[1]).detach())

    def on_test_epoch_end(self) -> None:
        """Save which test examples were classified correctly into the run folder (the
        trainer's ``default_root_dir``), so the report can resample test examples as well as
        seeds. Only into a folder that holds a run record: a bare Trainer's default root is the
        working directory, which is nobody's run."""
        correct = self._gathered_test_correct()
        if correct is None or not self.trainer.is_global_zero:
            return
        root = Path(self.trainer.default_root_dir)
        if records.has_record(root):
            records.write_test_correct(root, correct)

    def _gathered_test_correct(self) -> np.ndarray | None:
        """Every test example's correctness in the split's order, gathered from all ranks;
        None (one warning) when the test loader does not say which examples it held or they
        are not each example once (``limit_test_batches``, a shuffled loader)."""
        local = (
            torch.cat(self._test_correct)
            if self._test_correct
            else torch.zeros(0, dtype=torch.bool, device=self.device)
        )
        self._test_correct = []
        loader = self.trainer.test_dataloaders
        order = _split_order(loader, len(local), self.trainer.world_size)
        if order is None:  # the same answer on every rank: no rank waits in a collective alone
            self._warn_rank_zero(
                "per-example test correctness not saved: the test loader (%s) does not say "
                "which examples it held in which order",
                type(loader).__name__,
            )
            return None
        order = order.to(local.device)
        if len(order) != len(local):  # fewer batches than the loader holds: no order
            order = torch.full((len(local),), -1, dtype=torch.long, device=local.device)
        pairs = torch.stack([order.long(), local.long()])  # (2, this rank's examples)
        shards = _all_ranks(pairs) if self.trainer.world_size > 1 else [pairs]
        full = assemble_test_correct([(s[0].cpu().numpy(), s[1].cpu().numpy()) for s in shards])
        if full is None:
            self._warn_rank_zero(
                "per-example test correctness not saved: the test batches did not hold "
                "each example of the split once"
            )
        return full

    def _warn_rank_zero(self, message: str, *args: Any) -> None:
        if self.trainer.is_global_zero:
            log.warning(message, *args)

    def configure_optimizers(self):
        cfg = self.optimizer_cfg
        name = cfg["name"]
        if name not in OPTIMIZERS:
            raise ValueError(
                f"optimizer.name={name!r} is not an optimizer; valid: {list(OPTIMIZERS)}"
            )
        kwargs: dict[str, Any] = {"lr": cfg["lr"], "weight_decay": cfg.get("weight_decay", 0.0)}
        if name == "sgd":
            kwargs["momentum"] = cfg.get("momentum", 0.0)
        else:
            kwargs["betas"] = (cfg.get("beta1", 0.9), cfg.get("beta2", 0.999))
        params = list(self.parameters())
        # torch's fused kernel (CPU and CUDA): the for-loop implementation's update to rounding,
        # at a third of its per-step cost on small models, where Python dispatch dominates.
        kwargs["fused"] = all(p.device.type in ("cpu", "cuda") for p in params)
        optimizer = OPTIMIZERS[name](params, **kwargs)
        if cfg.get("schedule", "none") == "none":
            return optimizer
        warmup = int(cfg.get("warmup_steps", 0))
        total = max(self.max_steps, warmup + 1)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
