"""Training loss as the paper reports it: the whole training split, in eval mode.

The loss Lightning logs during training is the mini-batch loss with dropout on, averaged over
whatever steps fell between two logs. Hendrycks & Gimpel (2016) report the training log loss with
dropout off over the training set; this callback measures exactly that, on the diagnostics'
cadence (log-spaced, or every k steps) and at the end of training.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from actbench.diagnostics.base import MeasuringDiagnostic, probing
from actbench.module import classification_loss


class TrainSetLoss(MeasuringDiagnostic):
    """``train_eval/loss`` and ``train_eval/acc`` over the whole training split, dropout off.

    ``every_n_steps`` replaces the log-spaced cadence with a fixed one (0, k, 2k, ..., end).
    """

    measure_at_end = True

    def __init__(
        self,
        points: int = 12,
        every_n_steps: int | None = None,
        batch_size: int = 4096,
        wandb_all_layers: bool = False,
    ) -> None:
        super().__init__(points, wandb_all_layers, every_n_steps)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is out of range; must be >= 1")
        self.batch_size = batch_size

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        self._measured.add(trainer.global_step)
        x, y = trainer.datamodule.splits["train"]
        with self.timed():
            totals = self.compute(pl_module, x, y)
            self.publish(trainer, totals)
        return totals

    def compute(self, pl_module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
        """Mean loss and accuracy of ``pl_module`` on (x, y), in eval mode, RNG isolated."""
        model = getattr(pl_module, "model", pl_module)
        loss_kind = getattr(pl_module, "loss_kind", "ce")
        total_loss = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        with probing(pl_module), torch.no_grad():
            for xb, yb in zip(x.split(self.batch_size), y.split(self.batch_size), strict=True):
                logits = model(xb)
                # Sum of per-chunk means weighted by size: the mean over all examples.
                total_loss += classification_loss(loss_kind, logits, yb).double() * len(yb)
                correct += (logits.argmax(-1) == yb).sum()
        n = len(y)
        return {
            "train_eval/loss": float(total_loss.item() / n),
            "train_eval/acc": float(correct.item() / n),
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "measured": sorted(self._measured)}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._measured = set(state_dict.get("measured", []))
