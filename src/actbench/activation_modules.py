"""The activation modules PyTorch lacks: the sigmoid-gated family (``Swish``, also GELU's sigmoid
approximation), the noisy-ReLU expectation, the stochastic gate behind GELU, Φ/φ, and a Mish
whose second derivative stays finite (PyTorch's is NaN once an input exceeds ~89 in float32).

Kept apart from the registry (:mod:`actbench.activations`) so that choosing and checking an
activation by name, as every sweep launcher does for each grid value, does not import torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x), the standard normal CDF (twice differentiable through autograd)."""
    return torch.special.ndtr(x)


def normal_pdf(x: torch.Tensor) -> torch.Tensor:
    """φ(x), the standard normal density."""
    return torch.exp(-0.5 * x * x) * _INV_SQRT_2PI


class Swish(nn.Module):
    """x·σ(βx). ``learnable=True`` makes β a parameter (one per module, i.e. per layer)."""

    def __init__(self, beta: float = 1.0, learnable: bool = False) -> None:
        super().__init__()
        # A fixed β stays a Python float: a float32 buffer would round 1.702 to 1.70200002.
        self.beta: nn.Parameter | float = (
            nn.Parameter(torch.tensor(float(beta))) if learnable else float(beta)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta.to(x.dtype) if isinstance(self.beta, torch.Tensor) else self.beta
        return x * torch.sigmoid(beta * x)

    def extra_repr(self) -> str:
        return f"beta={float(self.beta):.4g}, learnable={isinstance(self.beta, nn.Parameter)}"


class NoisyReLU(nn.Module):
    """E[ReLU(x + ε)], ε ~ N(0, σ²) = x·Φ(x/σ) + σ·φ(x/σ): ReLU smoothed by Gaussian input noise."""

    def __init__(self, sigma: float = 1.0) -> None:
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x / self.sigma
        return x * normal_cdf(u) + self.sigma * normal_pdf(u)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}"


class StochasticGELU(nn.Module):
    """The stochastic gate GELU is the expectation of: output x with probability Φ(x), else 0.

    Training mode samples the gate m ~ Bernoulli(Φ(x)) and returns m·x. The sample is not
    differentiated through, so the gradient is the random mask itself: the network is
    piecewise linear in its inputs for a fixed mask, and its Hessian is that of a
    piecewise-linear net (zero curvature from the activation). Eval mode returns the
    expectation x·Φ(x), which is exact GELU.
    """

    # Read by the curvature callback: eval mode (where it measures) is not the trained function.
    train_eval_differ = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = normal_cdf(x)
        if not self.training:
            return x * gate
        mask = torch.bernoulli(gate.detach())
        return x * mask

    @staticmethod
    def expected_square(x: torch.Tensor) -> torch.Tensor:
        # E[(m·x)²] = x²·Φ(x) since m² = m: the training-mode second moment the init preserves.
        return x * x * normal_cdf(x)


def mish_second_derivative(x: torch.Tensor) -> torch.Tensor:
    """Mish″(x), finite for every finite x in any floating dtype.

    With s = σ(x), q = σ(−x) = e^{−softplus(x)}, t = tanh(softplus(x)) = (1 − q²)/(1 + q²) and
    sech²(softplus(x)) = 4q²/(1 + q²)², f″ = a·(2 + x·(q − 2ts)) with a = sech²·s. Nothing here
    exceeds 1 in magnitude but x, and a·x is formed before the bounded factor, so no product
    overflows; PyTorch's own formula differentiates log1p(exp(x)), and exp overflows.
    """
    s, q = torch.sigmoid(x), torch.sigmoid(-x)
    q2 = q * q
    t = (1.0 - q2) / (1.0 + q2)
    a = 4.0 * q2 / ((1.0 + q2) * (1.0 + q2)) * s
    return 2.0 * a + (a * x) * (q - 2.0 * t * s)


class _MishGrad(torch.autograd.Function):
    """g·Mish′(x) by PyTorch's own kernel; differentiated with the stable Mish″.

    Its derivative in g is g-free (Mish′(x)), so that term reuses this function: every order of
    differentiation keeps PyTorch's Mish′ values and the stable Mish″.
    """

    generate_vmap_rule = True  # torch.func transforms (vmap, jacrev) apply

    @staticmethod
    def forward(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.mish_backward(grad, x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, out_grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad, x = ctx.saved_tensors
        return _MishGrad.apply(out_grad, x), out_grad * grad * mish_second_derivative(x)


class _MishFunction(torch.autograd.Function):
    """F.mish forward, PyTorch's Mish′ backward (the kernel plain training uses): bit-identical."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return F.mish(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return _MishGrad.apply(grad, x)


class Mish(nn.Module):
    """x·tanh(softplus(x)): ``nn.Mish``'s forward and gradient bit for bit, a finite f″.

    PyTorch differentiates Mish′ through log1p(exp(x)), whose exp overflows past x ≈ 89 in
    float32 (≈ 710 in float64): every Hessian-vector product through such a unit is NaN, and
    trained Mish MLPs reach such pre-activations. Only that second derivative is replaced
    (:func:`mish_second_derivative`). No custom ``jvp`` (torch.compile refuses one), so forward-
    mode AD does not apply; double backward and torch.func's reverse transforms do.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _MishFunction.apply(x)
