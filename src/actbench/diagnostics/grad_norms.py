"""Gradient norms per layer block, after unscaling and before clipping."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

from actbench.diagnostics.base import Diagnostic


def parameter_blocks(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """One block per module that owns parameters directly (a layer, not a tensor)."""
    blocks = {}
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            blocks[name or "root"] = own
    return blocks


def block_norms(blocks: dict[str, list[nn.Parameter]]) -> tuple[float, dict, dict]:
    """Global gradient L2 norm, per-block gradient norms, and gradient-to-weight ratios."""
    grad_norms, ratios, squares = {}, {}, []
    for name, params in blocks.items():
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            continue
        g = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in grads]))
        w = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p) for p in params]))
        squares.append(g.square())
        grad_norms[name] = g.item()
        ratios[name] = (g / (w + 1e-12)).item()
    total = torch.stack(squares).sum().sqrt().item() if squares else 0.0
    return total, grad_norms, ratios


class GradientNormMonitor(Diagnostic):
    """``grad/global_norm``, ``grad/norm/<block>`` and ``grad/ratio/<block>`` on the cadence."""

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer
    ) -> None:
        step = trainer.global_step  # the step about to be taken: 0 is the initial gradient
        if not (self.due(step) or step == self.final_step - 1):
            return
        model = getattr(pl_module, "model", pl_module)
        with self.timed():
            total, norms, ratios = block_norms(parameter_blocks(model))
            self.publish(
                trainer,
                {"grad/global_norm": total},
                {"grad/norm": norms, "grad/ratio": ratios},
                step=step,
            )
