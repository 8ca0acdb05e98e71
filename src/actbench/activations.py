"""Activation registry: name -> ``nn.Module``, plus each activation's variance-preserving init gain.

Built-in PyTorch modules are used where they exist; the custom ones are the sigmoid-gated family
(``swish``, ``gelu_sigmoid``), the noisy-ReLU expectation and the stochastic gate behind GELU.
Pure math: no Lightning here, so the atlas and the benchmarks reuse it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
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


@dataclass(frozen=True)
class ActivationSpec:
    """How to build one registered activation and which parameters it accepts (with defaults)."""

    build: Callable[..., nn.Module]
    params: dict[str, float | bool] = field(default_factory=dict)
    description: str = ""


REGISTRY: dict[str, ActivationSpec] = {
    "identity": ActivationSpec(lambda: nn.Identity(), description="f(x) = x (linear control)"),
    "tanh": ActivationSpec(lambda: nn.Tanh(), description="tanh(x) (saturating control)"),
    "relu": ActivationSpec(lambda: nn.ReLU(), description="max(0, x)"),
    "leaky_relu": ActivationSpec(
        lambda negative_slope: nn.LeakyReLU(negative_slope),
        {"negative_slope": 0.01},
        "max(0, x) + a·min(0, x)",
    ),
    "elu": ActivationSpec(lambda alpha: nn.ELU(alpha), {"alpha": 1.0}, "x if x > 0 else α(eˣ − 1)"),
    "softplus": ActivationSpec(
        lambda beta: nn.Softplus(beta), {"beta": 1.0}, "log(1 + e^{βx}) / β"
    ),
    "gelu": ActivationSpec(lambda: nn.GELU(), description="x·Φ(x) (exact)"),
    "gelu_tanh": ActivationSpec(
        lambda: nn.GELU(approximate="tanh"),
        description="0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))",
    ),
    "gelu_sigmoid": ActivationSpec(lambda: Swish(1.702), description="x·σ(1.702x)"),
    "silu": ActivationSpec(lambda: nn.SiLU(), description="x·σ(x)"),
    "swish": ActivationSpec(
        lambda beta, learnable: Swish(beta, learnable),
        {"beta": 1.0, "learnable": False},
        "x·σ(βx), β optionally learnable",
    ),
    "mish": ActivationSpec(lambda: nn.Mish(), description="x·tanh(softplus(x))"),
    "noisy_relu": ActivationSpec(
        lambda sigma: NoisyReLU(sigma), {"sigma": 1.0}, "x·Φ(x/σ) + σ·φ(x/σ) = E[ReLU(x+ε)]"
    ),
    "stochastic_gelu": ActivationSpec(
        lambda: StochasticGELU(),
        description="train: x with prob. Φ(x) else 0; eval: x·Φ(x)",
    ),
}

# Activation parameters whose admissible values are restricted (open interval lower bounds).
PARAM_LOWER_BOUNDS: dict[str, float] = {"alpha": 0.0, "beta": 0.0, "sigma": 0.0}


class ActivationError(ValueError):
    """A bad activation name or parameter (message is a single line)."""


def names() -> list[str]:
    """All registered activation names, in registry order."""
    return list(REGISTRY)


def resolve_params(name: str, **params: float | bool | None) -> dict[str, float | bool]:
    """Check ``name`` and ``params`` against the registry; return the full parameter set.

    ``None`` means "use the default". Raises :class:`ActivationError` with a one-line message.
    """
    if name not in REGISTRY:
        raise ActivationError(
            f"activation.name={name!r} is not a registered activation; valid: {', '.join(REGISTRY)}"
        )
    spec = REGISTRY[name]
    resolved = dict(spec.params)
    for key, value in params.items():
        if value is None:
            continue
        if key not in spec.params:
            accepted = ", ".join(spec.params) or "no parameters"
            raise ActivationError(
                f"activation.{key}={value!r} is not a parameter of {name}; {name} takes: {accepted}"
            )
        bound = PARAM_LOWER_BOUNDS.get(key)
        if bound is not None and not float(value) > bound:
            raise ActivationError(
                f"activation.{key}={value!r} is out of range; must be > {bound:g}"
            )
        if key == "negative_slope" and not 0.0 <= float(value) < 1.0:
            raise ActivationError(f"activation.{key}={value!r} is out of range; must be in [0, 1)")
        resolved[key] = value
    return resolved


def build(name: str, **params: float | bool | None) -> nn.Module:
    """A fresh activation module (call once per layer so learnable parameters are not shared)."""
    resolved = resolve_params(name, **params)
    return REGISTRY[name].build(**resolved)


def _second_moment(module: nn.Module, n_points: int = 200) -> float:
    """E[f(z)²] for z ~ N(0, 1) by Gauss–Hermite quadrature in float64."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_points)
    z = torch.from_numpy(nodes)
    module = module.double().eval()
    with torch.no_grad():
        if isinstance(module, StochasticGELU):
            sq = StochasticGELU.expected_square(z)
        else:
            sq = module(z) ** 2
    return float((sq.numpy() * weights).sum() / math.sqrt(2.0 * math.pi))


@functools.cache
def _init_gain_cached(name: str, frozen_params: tuple[tuple[str, float | bool], ...]) -> float:
    return 1.0 / math.sqrt(_second_moment(build(name, **dict(frozen_params))))


def init_gain(name: str, **params: float | bool | None) -> float:
    """Variance-preserving gain g: with W ~ N(0, g²/fan_in), E[z²] of pre-activations stays 1.

    g² = 1 / E[f(z)²], z ~ N(0, 1), computed numerically (ReLU gives √2, identity 1). This makes
    E[z²] = 1 a fixed point of the layer-to-layer variance map; for non-homogeneous activations
    (GELU, SiLU) the fixed point is mildly unstable, so very deep, narrow nets still drift.
    """
    resolved = resolve_params(name, **params)
    return _init_gain_cached(name, tuple(sorted(resolved.items())))


def factory_gain(factory: Callable[[], nn.Module]) -> tuple[str | None, float]:
    """Registry name and init gain behind a ``partial(build, name=..., **params)`` factory.

    Any other factory is treated as unknown: no name, gain 1.
    """
    if not isinstance(factory, functools.partial):
        return None, 1.0
    params = dict(factory.keywords)
    name = params.pop("name", None)
    return name, init_gain(name, **params) if name else 1.0
