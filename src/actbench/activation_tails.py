"""An activation's behaviour far out and at the limits of floating point: how x − f(x) decays
as x → inf (the tail law, fitted), and from which negative x on the module returns exactly 0 in a
given precision (the vanishing point).

Part of an activation's measured shape (:mod:`actbench.activation_shape` puts both into the
profile), kept apart because the tail fit is its own piece of numerics. f is always evaluated on
the registry's module (:func:`actbench.activations.build`) in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from actbench import activations
from actbench.number_text import num

# Tail fits of log|x − f(x)|: window start, hard end, and the cancellation floor. In float64,
# x − f(x) carries an absolute rounding error of a few ulp(x) ≈ 1e-16·x, so points with
# |x − f(x)| < 1e-9·x (relative error above ~1e-6) are dropped instead of fitted.
TAIL_LO, TAIL_HI, TAIL_STEP = 3.0, 40.0, 0.01
CANCELLATION_FLOOR = 1e-9


def _eval_in(name: str, dtype: torch.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """f evaluated entirely in ``dtype`` (a fresh eval-mode module), returned as float64."""
    module = activations.build(name).to(dtype).eval()

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.as_tensor(np.atleast_1d(x), dtype=dtype)).double().numpy()

    return fn


def vanishing_point(name: str, dtype: torch.dtype) -> float | None:
    """Largest x < 0 from which on f(x) is exactly 0 in ``dtype`` (None if it never is).

    0 means f ≡ 0 on the whole negative half-line (ReLU); a finite negative value is where the
    output rounds or underflows to 0 although it is nonzero in exact arithmetic (GELU).
    """
    fn = _eval_in(name, dtype)
    xs = -np.logspace(-6, 4, 400)
    zero = fn(xs) == 0.0
    if not zero[-1]:
        return None
    k = len(xs) - 1
    while k > 0 and zero[k - 1]:
        k -= 1
    if k == 0:
        return 0.0
    a, b = float(xs[k]), float(xs[k - 1])  # f(a) == 0 != f(b); bisect to the dtype's resolution
    for _ in range(80):
        m = 0.5 * (a + b)
        if fn(np.array([m]))[0] == 0.0:
            a = m
        else:
            b = m
    return a


def _fit(x: np.ndarray, y: np.ndarray, terms: Sequence[str]) -> dict[str, float]:
    basis = {"x3": x**3, "x2": x**2, "x": x, "log x": np.log(x), "1": np.ones_like(x)}
    design = np.stack([basis[t] for t in terms], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return {t: float(c) for t, c in zip(terms, coef, strict=True)}


_LAWS = {3: "exp(a*x^3)", 2: "gaussian exp(a*x^2)", 1: "exponential exp(a*x)"}


def tail(name: str) -> dict[str, Any]:
    """Right tail: how x − f(x) behaves for large x, with a fitted decay law.

    log|x − f(x)| is fitted on [3, x_end] by least squares against x³, x², x, log x, 1; the leading
    order is the power whose term contributes most at x_end, and the law is refitted truncated at
    that order (Gaussian: coefficient of x² ≈ −1/2; x·σ(βx): coefficient of x ≈ −β, of log x ≈ 1).
    x_end is where float64 cancellation would start to dominate (see :data:`CANCELLATION_FLOOR`).
    """
    x = np.arange(round((TAIL_HI - TAIL_LO) / TAIL_STEP) + 1) * TAIL_STEP + TAIL_LO
    dev = x - _eval_in(name, torch.float64)(x)
    f32 = np.float32(_eval_in(name, torch.float32)(np.array([5.0]))[0])
    out: dict[str, Any] = {
        "deviation_at_5_float64": float(5.0 - _eval_in(name, torch.float64)(np.array([5.0]))[0]),
        "deviation_at_5_float32": float(np.float32(5.0) - f32),  # subtraction in float32
    }
    if np.all(dev == 0.0):
        return out | {
            "kind": "exact",
            "text": f"x - f(x) = 0 exactly on [{TAIL_LO:g}, {TAIL_HI:g}]",
        }
    if abs(dev[-1]) > abs(dev[0]):
        slope = float(np.polyfit(x[-200:], dev[-200:], 1)[0])
        return out | {
            "kind": "no_decay",
            "text": f"no decay: x - f(x) grows (slope {num(slope, 3)}); f has no asymptote y = x",
        }
    keep = np.abs(dev) >= CANCELLATION_FLOOR * x
    end = int(np.argmin(keep)) if not keep.all() else len(x)
    if end < 50:
        return out | {"kind": "too_fast", "text": "decays below the float64 floor before x = 3.5"}
    xs, y = x[:end], np.log(np.abs(dev[:end]))
    full = _fit(xs, y, ["x3", "x2", "x", "log x", "1"])
    contrib = {k: abs(full[t]) * xs[-1] ** k for k, t in ((3, "x3"), (2, "x2"), (1, "x"))}
    order = max(contrib, key=contrib.get)
    terms = {3: ["x3", "x2", "x", "log x", "1"], 2: ["x2", "x", "log x", "1"]}.get(
        order, ["x", "log x", "1"]
    )
    coef = _fit(xs, y, terms)
    lead = coef[{3: "x3", 2: "x2", 1: "x"}[order]]
    resid = float(np.max(np.abs(y - fit_eval(xs, coef))))
    side = "below" if dev[0] > 0 else "above"
    return out | {
        "kind": "decay",
        "order": order,
        "law": _LAWS[order],
        "leading_coefficient": lead,
        "log_x_coefficient": coef["log x"],
        "coefficients": coef,
        "fit_window": [float(xs[0]), float(xs[-1])],
        "max_residual": resid,
        "approach": side,
        "text": f"{_law_text(_LAWS[order], lead, 4)}"
        f" * x^{num(coef['log x'], 2)} (from {side}; fit on [{xs[0]:g}, {xs[-1]:.3g}])",
    }


def _law_text(law: str, coefficient: float, digits: int) -> str:
    """'exp(a*x^2)' with the fitted coefficient written in for a."""
    return law.split()[-1].replace("a", num(coefficient, digits))


def fit_eval(x: np.ndarray, coef: dict[str, float]) -> np.ndarray:
    basis = {"x3": x**3, "x2": x**2, "x": x, "log x": np.log(x), "1": np.ones_like(x)}
    return sum(c * basis[t] for t, c in coef.items())
