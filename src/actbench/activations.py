"""Activation registry: name -> ``nn.Module``, plus each activation's variance-preserving init gain.

Built-in PyTorch modules are used where they exist and their second derivative stays finite (not
``nn.Mish``'s); the custom ones live in
:mod:`actbench.activation_modules`. torch is imported on the first build, not here: names and
parameters are checked (config validation, a sweep's pre-run check) without it. Pure math: no
Lightning here, so the atlas and the benchmarks reuse it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn


def _nn() -> Any:
    from torch import nn

    return nn


def _custom() -> Any:
    from actbench import activation_modules

    return activation_modules


@dataclass(frozen=True)
class ActivationSpec:
    """How to build one registered activation and which parameters it accepts (with defaults)."""

    build: Callable[..., nn.Module]
    params: dict[str, float | bool] = field(default_factory=dict)
    description: str = ""


REGISTRY: dict[str, ActivationSpec] = {
    "identity": ActivationSpec(lambda: _nn().Identity(), description="f(x) = x (linear control)"),
    "tanh": ActivationSpec(lambda: _nn().Tanh(), description="tanh(x) (saturating control)"),
    "relu": ActivationSpec(lambda: _nn().ReLU(), description="max(0, x)"),
    "leaky_relu": ActivationSpec(
        lambda negative_slope: _nn().LeakyReLU(negative_slope),
        {"negative_slope": 0.01},
        "max(0, x) + a·min(0, x)",
    ),
    "elu": ActivationSpec(
        lambda alpha: _nn().ELU(alpha), {"alpha": 1.0}, "x if x > 0 else α(eˣ − 1)"
    ),
    "softplus": ActivationSpec(
        lambda beta: _nn().Softplus(beta), {"beta": 1.0}, "log(1 + e^{βx}) / β"
    ),
    "gelu": ActivationSpec(lambda: _nn().GELU(), description="x·Φ(x) (exact)"),
    "gelu_tanh": ActivationSpec(
        lambda: _nn().GELU(approximate="tanh"),
        description="0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))",
    ),
    "gelu_sigmoid": ActivationSpec(lambda: _custom().Swish(1.702), description="x·σ(1.702x)"),
    "silu": ActivationSpec(lambda: _nn().SiLU(), description="x·σ(x)"),
    "swish": ActivationSpec(
        lambda beta, learnable: _custom().Swish(beta, learnable),
        {"beta": 1.0, "learnable": False},
        "x·σ(βx), β optionally learnable",
    ),
    # Not nn.Mish: the same forward and gradient, but a second derivative that does not overflow.
    "mish": ActivationSpec(lambda: _custom().Mish(), description="x·tanh(softplus(x))"),
    "noisy_relu": ActivationSpec(
        lambda sigma: _custom().NoisyReLU(sigma),
        {"sigma": 1.0},
        "x·Φ(x/σ) + σ·φ(x/σ) = E[ReLU(x+ε)]",
    ),
    "stochastic_gelu": ActivationSpec(
        lambda: _custom().StochasticGELU(),
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
    import torch

    stochastic_gelu = _custom().StochasticGELU
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_points)
    z = torch.from_numpy(nodes)
    module = module.double().eval()
    with torch.no_grad():
        if isinstance(module, stochastic_gelu):
            sq = stochastic_gelu.expected_square(z)
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
