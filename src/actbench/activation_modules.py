"""The activation modules PyTorch lacks: the sigmoid-gated family (``Swish``, also GELU's sigmoid
approximation), the noisy-ReLU expectation, the stochastic gate behind GELU, and Φ/φ.

Kept apart from the registry (:mod:`actbench.activations`) so that choosing and checking an
activation by name, as every sweep launcher does for each grid value, does not import torch.
"""

from __future__ import annotations

import math

import torch
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
