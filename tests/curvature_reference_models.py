"""Reference curvature for the curvature tests: dense Hessians, Adam's preconditioner recomputed
from the optimizer's state, and an MLP written from basic ops for curvlinops.

Kept independent of :mod:`actbench.hessian` and of the callback's preconditioner helper, so the
tests compare the callback with something it does not share code with. curvlinops' products are
forward-over-reverse (``jvp`` of ``jacrev``); ``aten::silu_backward`` and the stable Mish's
gradient have no forward-mode rule, so curvlinops runs on :class:`BasicOpsMLP`, the same function
in plain differentiable ops, checked against the real model.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from actbench import activations
from actbench.models.mlp import MLP
from actbench.models.vit import math_attention
from actbench.module import classification_loss

_SQRT_HALF = 1.0 / math.sqrt(2.0)


def _phi_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z * _SQRT_HALF))


def _softplus(z: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    # F.softplus's rule: linear once βz exceeds the threshold.
    safe = torch.clamp(beta * z, max=threshold)
    return torch.where(beta * z > threshold, z, torch.log1p(torch.exp(safe)) / beta)


def basic_activation(name: str, z: torch.Tensor) -> torch.Tensor:
    """The registered activation ``name`` (default parameters, eval mode) from basic ops."""
    p = activations.REGISTRY[name].params
    if name == "identity":
        return z
    if name == "tanh":
        return torch.tanh(z)
    if name == "relu":
        return torch.where(z > 0, z, torch.zeros_like(z))
    if name == "leaky_relu":
        return torch.where(z > 0, z, p["negative_slope"] * z)
    if name == "elu":
        return torch.where(z > 0, z, p["alpha"] * torch.expm1(torch.clamp(z, max=0.0)))
    if name == "softplus":
        return _softplus(z, p["beta"])
    if name in ("gelu", "stochastic_gelu"):  # the stochastic gate's eval form is exact GELU
        return z * _phi_cdf(z)
    if name == "gelu_tanh":
        return 0.5 * z * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))
    if name == "gelu_sigmoid":
        return z * torch.sigmoid(1.702 * z)
    if name == "silu":
        return z * torch.sigmoid(z)
    if name == "swish":
        return z * torch.sigmoid(p["beta"] * z)
    if name == "mish":
        return z * torch.tanh(_softplus(z))
    if name == "noisy_relu":
        s = p["sigma"]
        u = z / s
        return z * _phi_cdf(u) + s * torch.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)
    raise KeyError(f"no basic-ops form for activation {name!r}; add one here")


class BasicOpsMLP(nn.Module):
    """``mlp`` with each activation replaced by its basic-ops form; shares ``mlp``'s parameters."""

    def __init__(self, mlp: MLP) -> None:
        super().__init__()
        if mlp.activation_name is None:
            raise ValueError("the MLP's activation factory must come from the registry")
        self.name = mlp.activation_name
        self.linears = nn.ModuleList(block.linear for block in mlp.hidden)
        self.head = mlp.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for linear in self.linears:
            x = basic_activation(self.name, linear(x))
        return self.head(x)


class ClassificationLoss(nn.Module):
    """The project's loss as a module with the ``reduction`` attribute curvlinops reads."""

    reduction = "mean"  # both losses average over examples

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return classification_loss(self.kind, logits, y)


def dense_hessian(
    model: nn.Module, loss_kind: str, chunks: list[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """The float64 Hessian of the mean loss over all of ``chunks``, in eval mode, math attention.

    Rows by batched double backward through one kept gradient graph (64 unit vectors a pass).
    """
    ref = copy.deepcopy(model).double().eval()
    params = [p for p in ref.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    x = torch.cat([c[0] for c in chunks]).double()
    y = torch.cat([c[1] for c in chunks])
    with torch.enable_grad(), math_attention(ref):
        loss = classification_loss(loss_kind, ref(x), y)
        grad = torch.cat(
            [g.reshape(-1) for g in torch.autograd.grad(loss, params, create_graph=True)]
        )
        rows = []
        for start in range(0, n, 64):
            idx = torch.arange(start, min(start + 64, n))
            basis = torch.zeros(len(idx), n, dtype=torch.float64)
            basis[torch.arange(len(idx)), idx] = 1.0
            cols = torch.autograd.grad(
                grad, params, basis, retain_graph=True, is_grads_batched=True
            )
            rows.append(torch.cat([c.reshape(len(idx), -1) for c in cols], dim=1))
    hess = torch.cat(rows)
    return 0.5 * (hess + hess.T)  # symmetric to rounding; eigvalsh reads one triangle


def adam_preconditioner(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter]
) -> torch.Tensor:
    """P = (1 − β₁ᵗ)·(√(v/(1 − β₂ᵗ)) + ε) from ``optimizer.state``, flat, float64.

    torch's Adam steps η·m̂/(√v̂ + ε), m̂ = m/(1 − β₁ᵗ): with u = m/(1 − β₁) it is heavy-ball
    momentum β₁ at rate η(1 − β₁)/(1 − β₁ᵗ) on diag(√v̂ + ε)⁻¹H, stable while
    λ_max(P⁻¹H) < (2 + 2β₁)/(η(1 − β₁)) for this P.
    """
    pieces = []
    for group in optimizer.param_groups:
        (beta1, beta2), eps = group["betas"], group["eps"]
        for p in group["params"]:
            state = optimizer.state[p]
            t = float(state["step"])
            v_hat = state["exp_avg_sq"].double() / (1.0 - beta2**t)
            pieces.append(((1.0 - beta1**t) * (v_hat.sqrt() + eps)).reshape(-1))
    order = {id(p): i for i, p in enumerate(q for g in optimizer.param_groups for q in g["params"])}
    return torch.cat([pieces[order[id(p)]] for p in params])
