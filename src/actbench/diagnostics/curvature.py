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
    """Eval mode is a different function from the one being trained: dropout, batch norm, or
    a module whose forward reads ``self.training``.

    Such modules declare it with a class attribute ``train_eval_differ = True`` (the
    convention, e.g. StochasticGELU: a sampled gate in training, exact GELU in eval); one
    without it counts as mode-independent. Torch's own mode-dependent modules are known by type.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            return True
        if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.RReLU):
            return True
        if getattr(m, "train_eval_differ", False):
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
    """P^{-1/2} for the step torch's Adam/AdamW takes, P = (1 − β₁ᵗ)·diag(√v̂ + ε); None before
    step 1.

    Derivation. After t steps torch's Adam holds m = β₁m + (1−β₁)g, v = β₂v + (1−β₂)g² and
    steps x ← x − η·m̂/(√v̂ + ε) with m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ) (``amsgrad``: the running
    max of v). Freeze v and t (the preconditioner of the step just taken) and write
    D = diag(√v̂ + ε), u = m/(1−β₁): then u ← β₁u + g and x ← x − η(1−β₁)/(1−β₁ᵗ)·D⁻¹u, heavy-
    ball momentum β₁ (torch SGD's semantics) with rate η' = η(1−β₁)/(1−β₁ᵗ) on D⁻¹H. On a
    quadratic that is stable while λ_max(D⁻¹H)·η' < 2 + 2β₁, i.e. while
    λ_max(P⁻¹H) < (2 + 2β₁)/(η(1 − β₁)) with P = (1−β₁ᵗ)·D: Cohen et al. 2022's threshold
    38/η (β₁ = 0.9) applies to this P. Without the (1−β₁ᵗ) factor the sharpness is too low
    by that factor: 90 % at t = 1, 53 % at t = 6, 23 % at t = 14. AdamW's decoupled decay
    adds ηλ_wd to every eigenvalue of the step's Jacobian and is left out (it is ≪ 1 here).
    """
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    pieces = []
    for p in params:
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" not in state:
            return None
        group = groups[id(p)]
        (beta1, beta2), eps = group["betas"], group["eps"]
        step = float(state["step"])
        v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        precond = (1.0 - beta1**step) * ((v / (1.0 - beta2**step)).sqrt() + eps)
        pieces.append(precond.rsqrt().reshape(-1))
    return torch.cat(pieces)


class CurvatureMonitor(MeasuringDiagnostic):
    """Curvature of the training loss on a probe, each figure with the evidence it holds.

    Logged: ``curv/top_eig`` with ``curv/top_converged`` (1/0) and ``curv/top_residual`` (its
    Ritz residual ÷ |top|); ``curv/min_eig`` only when its own residual test passed, else
    ``curv/min_eig_bound`` (the smallest Ritz value reached: an upper bound on the minimum);
    ``curv/trace`` with ``curv/trace_se`` and ``curv/trace_se_ok`` (1 when the s.e. is at most
    ``trace_se_ceiling`` × |trace|); ``curv/precond_top_eig`` (Adam's λ_max(P⁻¹H)) with
    ``curv/precond_top_converged``, and ``curv/stability_ratio``; ``curv/hvps`` (products
    this measurement took); ``curv/nonfinite`` (measurements so far with a non-finite product:
    their figures are NaN, never missing); ``curv/eval_mode_differs``; per layer and averaged,
    ``act/mean_abs_f2`` and ``act/convex_share``, whose averages are NaN when a layer's value
    is (``act/nonfinite_layers`` counts such layers).

    The probe is the first ``probe_size`` training examples (the whole training split when it
    is smaller; small probes overestimate sharpness, so sharpness studies should raise it).
    HVPs in float32, on the uncompiled model, with a model's math attention path if it has one.
    ``every_n_steps`` replaces the log-spaced cadence with a fixed one (0, k, 2k, ..., end).
    The trace (``trace_samples`` Hutchinson samples, deflated by the Lanczos basis; 0 skips it)
    is measured at every ``trace_every``-th measurement (None: none) and at the end: a trace
    with a usable s.e. costs more products than the sharpness, so the defaults measure it at
    the end alone.
    """

    measure_at_end = True
    # Keys of which a measurement logs one: drop the other from ``last`` so the summary never
    # holds a stale converged minimum beside a newer bound (or the reverse).
    EXCLUSIVE = ("curv/min_eig", "curv/min_eig_bound")

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
        trace_every: int | None = 1,
        trace_se_ceiling: float = 0.05,
        precond_max_iter: int | None = None,
    ) -> None:
        super().__init__(points, wandb_all_layers, every_n_steps)
        if trace_samples < 0:
            raise ValueError(f"trace_samples={trace_samples!r} is out of range; must be >= 0")
        if lanczos_converge not in ("both", "top"):
            raise ValueError(f"lanczos_converge={lanczos_converge!r}; valid: both, top")
        if trace_every is not None and trace_every < 1:
            raise ValueError(f"trace_every={trace_every!r} is out of range; must be >= 1 or null")
        if lanczos_max_iter < 1:
            raise ValueError(f"lanczos_max_iter={lanczos_max_iter!r} is out of range; must be >= 1")
        if precond_max_iter is not None and precond_max_iter < 1:
            raise ValueError(f"precond_max_iter={precond_max_iter!r} is out of range; must be >= 1")
        self.lanczos_converge = lanczos_converge
        self.probe_size, self.chunk_size = probe_size, chunk_size
        self.trace_samples, self.lanczos_tol = trace_samples, lanczos_tol
        self.lanczos_max_iter = lanczos_max_iter
        self.precond_max_iter = precond_max_iter or lanczos_max_iter
        self.trace_every, self.trace_se_ceiling = trace_every, trace_se_ceiling
        self.chunks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._v0: torch.Tensor | None = None  # warm starts: the previous top eigenvectors
        self._v0_pre: torch.Tensor | None = None
        self.nonfinite = 0  # measurements with a non-finite product, over the run

    def prepare(self, trainer: pl.Trainer) -> None:
        x, y = probe_data(trainer, "train", self.probe_size)
        self.chunks = list(zip(x.split(self.chunk_size), y.split(self.chunk_size), strict=True))

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        step = trainer.global_step
        every = self.trace_every
        with_trace = step >= self.final_step or (every and len(self._measured) % every == 0)
        self._measured.add(step)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        with self.timed():
            totals, per_layer = self.compute(pl_module, optimizer, seed=step, with_trace=with_trace)
            for key in self.EXCLUSIVE:
                self.last.pop(key, None)
            self.publish(trainer, totals, per_layer)
        return totals

    def compute(
        self,
        pl_module: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        seed: int = 0,
        with_trace: bool = True,
    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Curvature of the training loss on the probe ``self.chunks`` at the current weights."""
        model = getattr(pl_module, "model", pl_module)
        math_attention = getattr(model, "math_attention", None)
        loss_kind = getattr(pl_module, "loss_kind", "ce")

        def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return classification_loss(loss_kind, logits, y)

        device = self.chunks[0][0].device
        # The products' own precision (float32 in runs; float64 where a reference asks for it).
        dtype = next(p.dtype for p in model.parameters() if p.requires_grad)
        calls = [0]
        with (
            probing(pl_module),
            torch.inference_mode(False),
            torch.enable_grad(),
            math_attention() if math_attention else contextlib.nullcontext(),
        ):
            raw, n = hessian.model_hvp(model, loss_fn, self.chunks)

            def hvp(v: torch.Tensor) -> torch.Tensor:
                calls[0] += 1
                return raw(v)

            res = hessian.lanczos_extremes(
                hvp,
                n,
                device=device,
                dtype=dtype,
                tol=self.lanczos_tol,
                max_iter=self.lanczos_max_iter,
                v0=self._v0,
                converge=self.lanczos_converge,
            )
            finite = res.finite
            if finite:
                self._v0 = res.vector
            totals = {
                "curv/top_eig": res.top,
                "curv/top_converged": float(res.top_converged),
                "curv/top_residual": res.top_residual,
                ("curv/min_eig" if res.bottom_converged else "curv/min_eig_bound"): res.bottom,
                "curv/eval_mode_differs": float(eval_differs(model)),
            }
            if with_trace and self.trace_samples > 0:
                trace, trace_se = hessian.hutchinson_trace(
                    hvp, n, samples=self.trace_samples, device=device, dtype=dtype, seed=seed,
                    deflate=res if finite else None,
                )  # fmt: skip
                finite = finite and math.isfinite(trace)
                ok = trace_se <= self.trace_se_ceiling * abs(trace)  # False when NaN
                totals.update(
                    {"curv/trace": trace, "curv/trace_se": trace_se, "curv/trace_se_ok": float(ok)}
                )
            if optimizer is not None:
                stab = self._stability(optimizer, model, hvp, n, res.top, device, dtype)
                finite = finite and all(math.isfinite(v) for v in stab.values())
                totals.update(stab)
            per_layer = self._where_units_sit(model)
        self.nonfinite += not finite
        totals["curv/nonfinite"] = float(self.nonfinite)
        totals["curv/hvps"] = float(calls[0])
        bad_layers = 0
        for metric, layers in per_layer.items():
            # A NaN layer makes the average NaN (never skipped): counted beside it.
            bad_layers += sum(not math.isfinite(v) for v in layers.values())
            if layers:
                totals[metric] = float(np.mean(list(layers.values())))
        totals["act/nonfinite_layers"] = float(bad_layers)
        return totals, per_layer

    def _stability(self, optimizer, model, hvp, n, top, device, dtype) -> dict[str, float]:
        kind, lr, factor = stability(optimizer)
        if kind == "sgd":
            return {"curv/stability_ratio": top * lr / factor}
        if kind == "adam":
            params = [p for p in model.parameters() if p.requires_grad]
            inv_sqrt = adam_inv_sqrt_preconditioner(optimizer, params)
            if inv_sqrt is None:  # no second-moment estimate before the first step
                return {}
            res = hessian.lanczos_extremes(
                hessian.preconditioned(hvp, inv_sqrt.to(device, dtype)), n, device=device,
                dtype=dtype, tol=self.lanczos_tol, max_iter=self.precond_max_iter, v0=self._v0_pre,
                converge="top",  # its bottom end is never reported
            )  # fmt: skip
            if res.finite:
                self._v0_pre = res.vector
            return {
                "curv/precond_top_eig": res.top,
                "curv/precond_top_converged": float(res.top_converged),
                "curv/stability_ratio": res.top * lr / factor,
            }
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
        return {
            **super().state_dict(),
            "v0": self._v0,
            "v0_pre": self._v0_pre,
            "nonfinite": self.nonfinite,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._v0 = state_dict.get("v0")
        self._v0_pre = state_dict.get("v0_pre")
        self.nonfinite = int(state_dict.get("nonfinite", 0))
