"""Curvature of the training loss: Hessian extremes, trace, stability ratio, where units sit.

Sources for the stability limits: plain gradient descent is stable on a quadratic while
λ_max < 2/η, heavy-ball momentum β while λ_max < (2 + 2β)/η (Cohen et al. 2021, "Gradient descent
on neural networks typically occurs at the edge of stability", §2 and appendix); Adam's
preconditioned sharpness λ_max(P⁻¹H) hovers at (2 + 2β₁)/((1 − β₁)η) = 38/η for β₁ = 0.9
(Cohen et al. 2022, "Adaptive gradient methods at the edge of stability"). Each ratio is 1 at the
limit.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from actbench import hessian
from actbench.diagnostics.base import MeasuringDiagnostic, activation_layers, probe_data, probing
from actbench.diagnostics.dead_neurons import unit_view
from actbench.module import classification_loss


@functools.cache
def convex_intervals(activation: str) -> tuple[tuple[float, float], ...] | None:
    """Intervals where the activation is convex, from the atlas; None where undefined."""
    from actbench.activation_shape import profile as measured_profile

    profile = measured_profile(activation)
    intervals = profile.get("convex_region")
    if not intervals or profile["kinks_f_prime"] or profile["kinks_f_second"]:
        return None  # f is not twice differentiable: the atlas calls its inflections undefined
    return tuple((float(a), float(b)) for a, b in intervals)


def second_derivative(act: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """f″(z) elementwise by double backward through the activation module."""
    with torch.enable_grad():
        zg = z.detach().requires_grad_(True)
        (d1,) = torch.autograd.grad(act(zg).sum(), zg, create_graph=True)
        if not d1.requires_grad:  # a constant slope (identity): f'' = 0 everywhere
            return torch.zeros_like(z)
        (d2,) = torch.autograd.grad(d1.sum(), zg, allow_unused=True)
    return torch.zeros_like(z) if d2 is None else d2


def eval_differs(model: nn.Module) -> bool:
    """Dropout or batch norm: eval mode is a different function from the one being trained."""
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            return True
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return True
    return False


def stability(optimizer: torch.optim.Optimizer) -> tuple[str, float, float]:
    """(kind, η, limit factor c) so that ratio = λ·η/c for SGD/momentum, λ_pre·η/c for Adam."""
    group = optimizer.param_groups[0]
    lr = float(group["lr"])
    if isinstance(optimizer, torch.optim.SGD):
        beta = float(group.get("momentum", 0.0))
        return "sgd", lr, 2.0 * (1.0 + beta)
    if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        beta1 = float(group["betas"][0])
        return "adam", lr, (2.0 + 2.0 * beta1) / (1.0 - beta1)
    return "other", lr, float("nan")


def adam_inv_sqrt_preconditioner(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter]
) -> torch.Tensor | None:
    """P^{-1/2} with P = diag(√v̂ + ε), Adam's current preconditioner; None before step 1."""
    group = optimizer.param_groups[0]
    beta2, eps = group["betas"][1], group["eps"]
    pieces = []
    for p in params:
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" not in state:
            return None
        step = float(state["step"])
        v_hat = state["exp_avg_sq"] / (1.0 - beta2**step)
        pieces.append((v_hat.sqrt() + eps).rsqrt().reshape(-1))
    return torch.cat(pieces)


class CurvatureMonitor(MeasuringDiagnostic):
    """``curv/top_eig``, ``curv/min_eig``, ``curv/trace`` (± SE), ``curv/stability_ratio``.

    The probe is the first ``probe_size`` training examples (the whole training split when it
    is smaller; small probes overestimate sharpness, so sharpness studies should raise it).
    HVPs in float32, on the uncompiled model, with a model's math attention path if it has one.
    ``every_n_steps`` replaces the log-spaced cadence with a fixed one (0, k, 2k, ..., end);
    ``trace_samples=0`` skips the Hutchinson trace (sharpness alone costs fewer HVPs).
    """

    measure_at_end = True

    def __init__(
        self,
        points: int = 10,
        probe_size: int = 4096,
        chunk_size: int = 2048,
        trace_samples: int = 4,
        lanczos_tol: float = 1e-3,
        lanczos_max_iter: int = 20,
        wandb_all_layers: bool = False,
        every_n_steps: int | None = None,
        lanczos_converge: str = "both",
    ) -> None:
        super().__init__(points, wandb_all_layers, every_n_steps)
        if trace_samples < 0:
            raise ValueError(f"trace_samples={trace_samples!r} is out of range; must be >= 0")
        if lanczos_converge not in ("both", "top"):
            raise ValueError(f"lanczos_converge={lanczos_converge!r}; valid: both, top")
        self.lanczos_converge = lanczos_converge
        self.probe_size, self.chunk_size = probe_size, chunk_size
        self.trace_samples, self.lanczos_tol = trace_samples, lanczos_tol
        self.lanczos_max_iter = lanczos_max_iter
        self.chunks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._v0: torch.Tensor | None = None  # warm starts: the previous top eigenvectors
        self._v0_pre: torch.Tensor | None = None

    def prepare(self, trainer: pl.Trainer) -> None:
        x, y = probe_data(trainer, "train", self.probe_size)
        self.chunks = list(zip(x.split(self.chunk_size), y.split(self.chunk_size), strict=True))

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        self._measured.add(trainer.global_step)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        with self.timed():
            totals, per_layer = self.compute(pl_module, optimizer, seed=trainer.global_step)
            self.publish(trainer, totals, per_layer)
        return totals

    def compute(
        self,
        pl_module: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        seed: int = 0,
    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Curvature of the training loss on the probe ``self.chunks`` at the current weights."""
        model = getattr(pl_module, "model", pl_module)
        math_attention = getattr(model, "math_attention", None)
        loss_kind = getattr(pl_module, "loss_kind", "ce")

        def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return classification_loss(loss_kind, logits, y)

        device = self.chunks[0][0].device
        with (
            probing(pl_module),
            torch.inference_mode(False),
            torch.enable_grad(),
            math_attention() if math_attention else contextlib.nullcontext(),
        ):
            hvp, n = hessian.model_hvp(model, loss_fn, self.chunks)
            top, bottom, self._v0 = hessian.lanczos_extremes(
                hvp,
                n,
                device=device,
                tol=self.lanczos_tol,
                max_iter=self.lanczos_max_iter,
                v0=self._v0,
                converge=self.lanczos_converge,
            )
            totals = {
                "curv/top_eig": top,
                "curv/min_eig": bottom,
                "curv/eval_mode_differs": float(eval_differs(model)),
            }
            if self.trace_samples > 0:
                trace, trace_se = hessian.hutchinson_trace(
                    hvp, n, samples=self.trace_samples, device=device, seed=seed
                )
                totals.update({"curv/trace": trace, "curv/trace_se": trace_se})
            if optimizer is not None:
                totals.update(self._stability(optimizer, model, hvp, n, top, device))
            per_layer = self._where_units_sit(model)
        for metric, layers in per_layer.items():
            values = [v for v in layers.values() if not math.isnan(v)]
            if values:
                totals[metric] = float(np.mean(values))
        return totals, per_layer

    def _stability(self, optimizer, model, hvp, n, top, device) -> dict[str, float]:
        kind, lr, factor = stability(optimizer)
        if kind == "sgd":
            return {"curv/stability_ratio": top * lr / factor}
        if kind == "adam":
            params = [p for p in model.parameters() if p.requires_grad]
            inv_sqrt = adam_inv_sqrt_preconditioner(optimizer, params)
            if inv_sqrt is None:  # no second-moment estimate before the first step
                return {}
            pre_top, _, self._v0_pre = hessian.lanczos_extremes(
                hessian.preconditioned(hvp, inv_sqrt.to(device)), n, device=device,
                tol=self.lanczos_tol, max_iter=self.lanczos_max_iter, v0=self._v0_pre,
                converge="top",  # its bottom end is never reported
            )  # fmt: skip
            return {"curv/precond_top_eig": pre_top, "curv/stability_ratio": pre_top * lr / factor}
        return {}

    def _where_units_sit(self, model: nn.Module) -> dict[str, dict[str, float]]:
        """Share of pre-activations inside the convex region, and mean |f″(z)|, per layer."""
        layers = activation_layers(model)
        captured: dict[str, torch.Tensor] = {}
        hooks = [
            mod.register_forward_hook(
                lambda m, inp, out, name=name: captured.__setitem__(name, inp[0])
            )
            for name, mod in layers.items()
        ]
        try:
            with torch.no_grad():
                model(self.chunks[0][0])
        finally:
            for hook in hooks:
                hook.remove()
        name = getattr(model, "activation_name", None)
        intervals = convex_intervals(name) if name else None
        convex, curvature = {}, {}
        for layer, z in captured.items():
            z = unit_view(z)
            curvature[layer] = second_derivative(layers[layer], z).abs().mean().item()
            if intervals is not None:
                inside = torch.zeros_like(z, dtype=torch.bool)
                for a, b in intervals:
                    inside |= (z >= a) & (z <= b)
                convex[layer] = inside.float().mean().item()
        out = {"act/mean_abs_f2": curvature}
        if convex:
            out["act/convex_share"] = convex
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "v0": self._v0, "v0_pre": self._v0_pre}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._v0 = state_dict.get("v0")
        self._v0_pre = state_dict.get("v0_pre")
