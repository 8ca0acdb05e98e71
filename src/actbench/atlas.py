"""Activation atlas: every registered activation's shape, measured numerically, and the seed
article's claims audited against the measurements.

Everything is computed, nothing is typed in from a table: derivatives by ``torch.autograd`` in
float64 on the modules that :func:`actbench.activations.build` returns, roots by bracketing
(``scipy.optimize.brentq``) on sign changes found on a fine grid, kinks by bisecting jumps of
f′ and f″, tails by least-squares fits of log|x − f(x)|, the probabilistic readings by seeded Monte
Carlo, and "born dead" nets by simulating many random initialisations at once with batched
matmuls. Every loop runs over :func:`actbench.activations.names`, so a new registry entry gets
its table row, its curves and its born-dead line with no change here.

Run ``actbench-atlas`` (``make atlas``); it writes ``README.md``, ``atlas.json`` and PNG figures.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import optimize, stats
from torch import nn

from actbench import activation_modules, activations

F64 = torch.float64

# Scan window and grid for roots, kinks, extrema. Step 1e-3 resolves every feature of the
# registered activations; roots and jump locations are then refined far below the step.
WINDOW = (-8.0, 8.0)
GRID_STEP = 1e-3
# Jumps of f′ or f″ smaller than this are treated as numerical noise, not kinks.
JUMP_FLOOR = 1e-9
# Tail fits of log|x − f(x)|: window start, hard end, and the cancellation floor. In float64,
# x − f(x) carries an absolute rounding error of a few ulp(x) ≈ 1e-16·x, so points with
# |x − f(x)| < 1e-9·x (relative error above ~1e-6) are dropped instead of fitted.
TAIL_LO, TAIL_HI, TAIL_STEP = 3.0, 40.0, 0.01
CANCELLATION_FLOOR = 1e-9
# Monte Carlo: every mean must have a standard error below this bound.
MC_SE_BOUND = 2e-3
MC_SAMPLES = 2**21
MC_X = tuple(float(v) for v in np.linspace(-3.0, 3.0, 13))
MC_SIGMAS = (0.5, 1.0, 2.0)
Z_LIMIT = 3.0
# Born dead: grid, inputs and the tolerance on a hidden layer's output range over the inputs.
DEAD_WIDTHS = (2, 3, 4, 5, 10)
DEAD_DEPTHS = (5, 10, 20, 50)
DEAD_INPUTS = 101
DEAD_TOL = 1e-6
DEFAULT_TRIALS = 1000
# The sigmoid gate's usual constant, quoted beside the numerically matched one.
USUAL_BETA = 1.702


# --------------------------------------------------------------------------------------------
# Derivatives
# --------------------------------------------------------------------------------------------


def module_for(name: str) -> nn.Module:
    """The registry's module with default parameters, in float64 and eval mode.

    Eval mode matters only for stochastic modules (``stochastic_gelu``): it gives the
    deterministic expectation, which is the map whose shape the atlas measures.
    """
    return activations.build(name).double().eval()


def is_stochastic(name: str, seed: int = 0) -> bool:
    """Whether the module's training-mode output is random (two calls on one input differ)."""
    module = activations.build(name).double().train()
    x = torch.linspace(-2.0, 2.0, 257, dtype=F64)
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # leave the caller's RNG untouched
        torch.manual_seed(seed)
        return not torch.equal(module(x), module(x))


def derivatives(module: nn.Module, x: np.ndarray | float) -> tuple[np.ndarray, ...]:
    """f, f′, f″ at the points ``x`` by autograd in float64 (elementwise modules only).

    Where autograd has no second-order graph (piecewise-linear modules, identity) f″ is 0, which is
    what it is away from kinks; kinks are located separately by :func:`find_jumps`.
    """
    t = torch.as_tensor(np.atleast_1d(np.asarray(x, dtype=np.float64))).clone().requires_grad_()
    y = module(t)
    (d1,) = torch.autograd.grad(y.sum(), t, create_graph=True)
    d2 = None
    if d1.requires_grad:
        (d2,) = torch.autograd.grad(d1.sum(), t, allow_unused=True)
    if d2 is None:
        d2 = torch.zeros_like(t)
    return y.detach().numpy(), d1.detach().numpy(), d2.detach().numpy()


def _derivative_fn(module: nn.Module, order: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: derivatives(module, x)[order]


def _scalar(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[float], float]:
    return lambda x: float(fn(np.array([x]))[0])


def window_grid() -> np.ndarray:
    """The scan grid over :data:`WINDOW` (exactly representable step ends, 0 included)."""
    n = round((WINDOW[1] - WINDOW[0]) / GRID_STEP)
    return np.linspace(WINDOW[0], WINDOW[1], n + 1)


# --------------------------------------------------------------------------------------------
# Kinks, roots, convexity
# --------------------------------------------------------------------------------------------


def find_jumps(
    fn: Callable[[np.ndarray], np.ndarray], grid: np.ndarray, values: np.ndarray | None = None
) -> list[dict[str, float]]:
    """Jump discontinuities of ``fn`` on ``grid``: location and one-sided limits.

    A grid interval is a candidate when its change is large or stands out from both neighbours.
    Each candidate is bisected ~50 times, always keeping the half with the larger change: a
    continuous function's change shrinks with the interval, a jump's does not.
    """
    values = fn(grid) if values is None else values
    diffs = np.abs(np.diff(values))
    neighbours = np.maximum(np.r_[0.0, diffs[:-1]], np.r_[diffs[1:], 0.0])
    candidates = np.nonzero((diffs > JUMP_FLOOR) & ((diffs > 1e-2) | (diffs > 8 * neighbours)))[0]
    jumps: list[dict[str, float]] = []
    for i in candidates:
        a, b = float(grid[i]), float(grid[i + 1])
        ga, gb = float(values[i]), float(values[i + 1])
        initial = abs(gb - ga)
        for _ in range(60):
            m = 0.5 * (a + b)
            if m in (a, b):
                break
            gm = _scalar(fn)(m)
            if abs(gm - ga) >= abs(gb - gm):
                b, gb = m, gm
            else:
                a, ga = m, gm
        if abs(gb - ga) < max(0.5 * initial, JUMP_FLOOR):
            continue  # shrank with the interval: steep but continuous
        x0 = 0.5 * (a + b)
        x0 = 0.0 if abs(x0) < 1e-9 else x0
        if any(abs(j["x"] - x0) < 1e-6 for j in jumps):
            continue
        delta = 1e-9 * max(1.0, abs(x0))
        left, right = fn(np.array([x0 - delta, x0 + delta]))
        jumps.append({"x": x0, "left": float(left), "right": float(right)})
    return jumps


def _near_jump(a: float, b: float, jumps: Sequence[dict[str, float]]) -> dict[str, float] | None:
    for j in jumps:
        if a - 1e-9 <= j["x"] <= b + 1e-9:
            return j
    return None


def sign_changes(
    fn: Callable[[np.ndarray], np.ndarray],
    grid: np.ndarray,
    values: np.ndarray,
    jumps: Sequence[dict[str, float]] = (),
) -> dict[str, list]:
    """Where ``fn`` changes sign on ``grid``.

    Returns ``roots`` (continuous sign changes refined by brentq), ``through_jumps`` (sign changes
    that happen by a jump, e.g. at a kink) and ``zero_runs`` (intervals of ≥ 2 grid points on which
    the value is exactly 0, e.g. ReLU's slope on x < 0).
    """
    out: dict[str, list] = {"roots": [], "through_jumps": [], "zero_runs": []}
    zero = values == 0.0
    # Runs of exact zeros.
    i = 0
    while i < len(values):
        if zero[i]:
            j = i
            while j + 1 < len(values) and zero[j + 1]:
                j += 1
            if j > i:
                out["zero_runs"].append((float(grid[i]), float(grid[j])))
            i = j + 1
        else:
            i += 1
    nonzero = np.nonzero(~zero)[0]
    signs = np.sign(values[nonzero])
    for k in np.nonzero(signs[1:] != signs[:-1])[0]:
        i, j = nonzero[k], nonzero[k + 1]
        a, b = float(grid[i]), float(grid[j])
        jump = _near_jump(a, b, jumps)
        if jump is not None:
            out["through_jumps"].append(jump["x"])
        elif j == i + 1:
            out["roots"].append(optimize.brentq(_scalar(fn), a, b, xtol=1e-15, rtol=1e-15))
        elif j == i + 2:
            out["roots"].append(float(grid[i + 1]))  # an exact zero on the grid
        # else: the sign changes across a run of exact zeros, already listed in zero_runs.
    return out


def _interval_text(a: float, b: float, open_left: bool = False, open_right: bool = False) -> str:
    left = "(-inf" if a == -math.inf else ("(" if open_left else "[") + _num(a)
    right = "inf)" if b == math.inf else _num(b) + (")" if open_right else "]")
    return f"{left}, {right}"


def convex_region(
    grid: np.ndarray,
    d2: np.ndarray,
    roots: Sequence[float],
    d1_jumps: Sequence[dict[str, float]],
) -> list[tuple[float, float]]:
    """Maximal intervals on which f is convex: f″ ≥ 0 and f′ jumps (if any) only upward.

    Runs reaching the window edge are reported as extending to ±inf.
    """
    ok = d2 >= 0.0
    for j in d1_jumps:
        if j["right"] < j["left"]:  # a downward step in f′ breaks convexity at the kink
            ok[np.argmin(np.abs(grid - j["x"]))] = False
    intervals = []
    i = 0
    while i < len(ok):
        if not ok[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(ok) and ok[j + 1]:
            j += 1
        a = -math.inf if i == 0 else _snap(float(grid[i]), roots, d1_jumps)
        b = math.inf if j == len(ok) - 1 else _snap(float(grid[j]), roots, d1_jumps)
        intervals.append((a, b))
        i = j + 1
    return intervals


def _snap(x: float, roots: Sequence[float], jumps: Sequence[dict[str, float]]) -> float:
    """Move a grid boundary onto the refined root or kink that lies within two grid steps."""
    for r in [*roots, *(j["x"] for j in jumps)]:
        if abs(r - x) <= 2 * GRID_STEP:
            return float(r)
    return x


# --------------------------------------------------------------------------------------------
# Minimum, negative side, tails
# --------------------------------------------------------------------------------------------

# Far points for limits: x = ±8·2^k up to ±8192.
_FAR = 8.0 * 2.0 ** np.arange(0, 11)


def _edge_behaviour(module: nn.Module, side: int) -> dict[str, float]:
    """Limit of f as x → side·inf, judged from f at side·8·2^k (k = 0..10).

    Increments that do not shrink geometrically (linear, √x or log growth) mean there is no
    finite limit; the limit is then ±inf in the direction of the last increment.
    """
    xs = side * _FAR
    vals = derivatives(module, xs)[0]
    steps = np.diff(vals)
    slope = float(derivatives(module, xs[-1:])[1][0])
    growing = abs(steps[-1]) > 1e-9 * max(1.0, abs(vals[-1])) and abs(steps[-1]) >= 0.75 * abs(
        steps[-2]
    )
    limit = math.copysign(math.inf, steps[-1]) if growing else float(vals[-1])
    return {"limit": limit, "slope": slope}


def _tail_minimum(side: int, beh: dict[str, float]) -> dict[str, Any]:
    where = "x -> -inf" if side < 0 else "x -> inf"
    if beh["limit"] == -math.inf:
        return {
            "kind": "unbounded",
            "value": -math.inf,
            "text": f"unbounded below ({where}, slope {_num(beh['slope'])})",
        }
    return {
        "kind": "infimum",
        "value": beh["limit"],
        "text": f"inf {_num(beh['limit'])} as {where}, not attained",
    }


def minimum(
    module: nn.Module,
    grid: np.ndarray,
    f: np.ndarray,
    d1: np.ndarray,
    d1_jumps: Sequence[dict[str, float]] = (),
) -> dict[str, Any]:
    """The minimum of f: attained (value, location), on an interval, an infimum, or unbounded.

    Candidates are genuine critical points only (f′ changing sign from − to +, at a root or a
    kink), intervals where f′ is exactly 0 and f constant, and the limits at ±inf. Comparing raw
    grid values instead would crown rounding noise (x·Φ(x) + φ(x) dips to −1e-16 near x = −8).
    """
    d1_fn = _derivative_fn(module, 1)
    changes = sign_changes(d1_fn, grid, d1, d1_jumps)
    cands: list[tuple[float, int, dict[str, Any]]] = []  # (value, preference, description)
    for r in changes["roots"]:
        if _scalar(d1_fn)(r - 1e-6) < 0:
            v = float(derivatives(module, r)[0][0])
            text = f"{_num(v)} at x = {_num(r)}"
            cands.append((v, 0, {"kind": "attained", "value": v, "x": r, "text": text}))
    for x0 in changes["through_jumps"]:
        jump = next(j for j in d1_jumps if j["x"] == x0)
        if jump["left"] < 0 < jump["right"]:
            v = float(derivatives(module, x0)[0][0])
            text = f"{_num(v)} at x = {_num(x0)} (kink)"
            cands.append((v, 0, {"kind": "attained", "value": v, "x": x0, "text": text}))
    tails = {side: _edge_behaviour(module, side) for side in (-1, 1)}
    for a, b in changes["zero_runs"]:
        i, j = np.searchsorted(grid, a), np.searchsorted(grid, b)
        if f[i] != f[j]:
            continue
        v = float(f[i])
        lo = -math.inf if i == 0 and tails[-1]["limit"] == v else a
        hi = math.inf if j == len(grid) - 1 and tails[1]["limit"] == v else _snap(b, [], d1_jumps)
        text = f"{_num(v)} on {_interval_text(lo, hi)}"
        cands.append((v, 0, {"kind": "interval", "value": v, "interval": [lo, hi], "text": text}))
    for side in (-1, 1):
        cands.append((tails[side]["limit"], 1, _tail_minimum(side, tails[side])))
    return min(cands, key=lambda c: (c[0], c[1]))[2]


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
    dev = x - _eval_in(name, F64)(x)
    f32 = np.float32(_eval_in(name, torch.float32)(np.array([5.0]))[0])
    out: dict[str, Any] = {
        "deviation_at_5_float64": float(5.0 - _eval_in(name, F64)(np.array([5.0]))[0]),
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
            "text": f"no decay: x - f(x) grows (slope {_num(slope, 3)}); f has no asymptote y = x",
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
    resid = float(np.max(np.abs(y - _fit_eval(xs, coef))))
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
        f" * x^{_num(coef['log x'], 2)} (from {side}; fit on [{xs[0]:g}, {xs[-1]:.3g}])",
    }


def _law_text(law: str, coefficient: float, digits: int) -> str:
    """'exp(a*x^2)' with the fitted coefficient written in for a."""
    return law.split()[-1].replace("a", _num(coefficient, digits))


def _fit_eval(x: np.ndarray, coef: dict[str, float]) -> np.ndarray:
    basis = {"x3": x**3, "x2": x**2, "x": x, "log x": np.log(x), "1": np.ones_like(x)}
    return sum(c * basis[t] for t, c in coef.items())


# --------------------------------------------------------------------------------------------
# One activation's profile
# --------------------------------------------------------------------------------------------


def profile(name: str) -> dict[str, Any]:
    """All measured shape properties of one registered activation (see module docstring)."""
    module = module_for(name)
    grid = window_grid()
    f, d1, d2 = derivatives(module, grid)
    d1_fn, d2_fn = _derivative_fn(module, 1), _derivative_fn(module, 2)
    d1_jumps = find_jumps(d1_fn, grid, d1)
    # f″ jumps that are not just the shadow of an f′ jump (where f″ is undefined anyway).
    d2_jumps = [
        j for j in find_jumps(d2_fn, grid, d2) if _near_jump(j["x"], j["x"], d1_jumps) is None
    ]

    def at(x0: float, order: int) -> dict[str, Any]:
        """f′ or f″ at x0, or "undefined" with the one-sided values where a kink sits at x0."""
        j1 = next((j for j in d1_jumps if abs(j["x"] - x0) < 1e-9), None)
        j2 = next((j for j in d2_jumps if abs(j["x"] - x0) < 1e-9), None) if order == 2 else None
        if j1 is None and j2 is None:
            value = float(derivatives(module, x0)[order][0])
            return {"defined": True, "value": value, "text": _num(value)}
        which, jump = ("f'", j1) if j1 is not None else ("f''", j2)
        delta = 1e-9 * max(1.0, abs(x0))
        left, right = derivatives(module, np.array([x0 - delta, x0 + delta]))[order]
        text = f"undefined ({which} jumps {_num(jump['left'])} -> {_num(jump['right'])})"
        return {"defined": False, "left": float(left), "right": float(right), "text": text}

    inflect = sign_changes(d2_fn, grid, d2, [*d1_jumps, *d2_jumps])
    roots = inflect["roots"]
    non_c2 = sorted({j["x"] for j in [*d1_jumps, *d2_jumps]})
    if roots or inflect["through_jumps"]:
        parts = [_num(r) for r in roots] + [
            f"{_num(r)} (by a jump)" for r in inflect["through_jumps"]
        ]
        infl_text = ", ".join(parts)
    elif np.all(d2 == 0.0):
        infl_text = "none (f'' = 0)" if not non_c2 else "none (f'' = 0 off the kinks)"
    else:
        infl_text = "none"
    if non_c2:
        infl_text += "; f'' undefined at " + ", ".join(_num(x) for x in non_c2)

    convex = convex_region(grid, d2, roots, d1_jumps)
    if np.all(d2 == 0.0) and not d1_jumps:
        convex_text = "everywhere (affine)"
    elif convex == [(-math.inf, math.inf)]:
        convex_text = "everywhere"
    elif not convex:
        convex_text = "nowhere"
    else:
        convex_text = " u ".join(_interval_text(a, b) for a, b in convex)

    neg = grid < 0
    neg_sign = sign_changes(d1_fn, grid[neg], d1[neg], d1_jumps)
    zero_slope = [{"kind": "root", "x": r, "text": _num(r)} for r in neg_sign["roots"]]
    zero_slope += _zero_slope_runs(name, grid[neg], neg_sign["zero_runs"], d1_jumps)
    # Where the slope is negative on x < 0 (gradient flows with reversed sign).
    gneg = grid[neg]
    negative_slope = [
        [
            -math.inf if i == 0 else _snap(float(gneg[i]), neg_sign["roots"], d1_jumps),
            _snap(float(gneg[j]), neg_sign["roots"], d1_jumps),
        ]
        for i, j in _runs(d1[neg] < 0)
    ]
    minimum_info = minimum(module, grid, f, d1, d1_jumps)
    stochastic = is_stochastic(name)
    spec = activations.REGISTRY[name]
    return {
        "name": name,
        "description": spec.description,
        "params": dict(spec.params),
        "stochastic_in_training": stochastic,
        "init_gain": activations.init_gain(name),
        "f_prime_0": at(0.0, 1),
        "f_second_0": at(0.0, 2),
        "f_prime_m1": at(-1.0, 1),
        "f_prime_m3": float(derivatives(module, -3.0)[1][0]),
        "f_prime_m5": float(derivatives(module, -5.0)[1][0]),
        "kinks_f_prime": d1_jumps,
        "kinks_f_second": d2_jumps,
        "inflections": roots,
        "inflections_by_jump": inflect["through_jumps"],
        "inflection_text": infl_text,
        "convex_region": [list(c) for c in convex],
        "convex_text": convex_text,
        "minimum": minimum_info,
        "zero_slope_negative": zero_slope,
        "zero_slope_text": "; ".join(z["text"] for z in zero_slope) or "none",
        "negative_slope_region": negative_slope,
        "tail": tail(name),
        "f_at_m10": float(derivatives(module, -10.0)[0][0]),
        "f_at_m40": float(derivatives(module, -40.0)[0][0]),
        "vanishes_float32_below": vanishing_point(name, torch.float32),
        "vanishes_float64_below": vanishing_point(name, F64),
        "window": list(WINDOW),
    }


def _slope_in(name: str, dtype: torch.dtype, x: np.ndarray) -> np.ndarray:
    """f′ by autograd entirely in ``dtype`` (to see where rounding, not the function, gives 0)."""
    module = activations.build(name).to(dtype).eval()
    t = torch.as_tensor(x, dtype=dtype).clone().requires_grad_()
    (d1,) = torch.autograd.grad(module(t).sum(), t)
    return d1.double().numpy()


def _zero_slope_runs(
    name: str, grid: np.ndarray, runs: Sequence[tuple[float, float]], kinks: Sequence[dict]
) -> list[dict[str, Any]]:
    """Describe intervals where f′ is exactly 0 and tell structure from rounding.

    A structural zero (ReLU on x < 0) has the same extent in float32 and float64; a zero produced
    by saturation (1 + tanh(u) rounding to 0) moves with the precision.
    """
    zero32 = _slope_in(name, torch.float32, grid) == 0.0
    out = []
    for a, b in runs:
        lo = -math.inf if a == grid[0] else a
        kink = next((j["x"] for j in kinks if abs(j["x"] - b) <= 2 * GRID_STEP), None)
        hi = b if kink is None else kink
        ends32 = [grid[j] for _, j in _runs(zero32) if abs(grid[j] - b) <= 2 * GRID_STEP]
        if ends32:
            text = "f' = 0 on " + _interval_text(lo, hi, open_right=kink is not None)
            out.append({"kind": "interval", "interval": [lo, hi], "text": text})
        else:
            b32 = [grid[j] for i, j in _runs(zero32) if grid[i] <= a + GRID_STEP]
            text = (
                f"f' rounds to 0 for x <= {_num(b, 4)} (float32: "
                f"{_num(b32[0], 4) if b32 else 'never'}; nonzero in exact arithmetic)"
            )
            out.append({"kind": "rounding", "interval": [lo, hi], "text": text})
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [i, j] of the True runs in ``mask``."""
    runs, i = [], 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j + 1 < len(mask) and mask[j + 1]:
                j += 1
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    return runs


def profile_all(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """:func:`profile` for every registered activation (registry order)."""
    return [profile(n) for n in (activations.names() if names is None else names)]


# --------------------------------------------------------------------------------------------
# GELU against the sigmoid gate
# --------------------------------------------------------------------------------------------


def _gelu() -> nn.Module:
    return nn.GELU().double()


def swish64(beta: float) -> nn.Module:
    """The registry's x·σ(βx) module in float64 (a fixed β is held as an exact Python float)."""
    return activation_modules.Swish(beta).double()


def _max_gap(
    f: Callable[[torch.Tensor], torch.Tensor], g: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[float, float]:
    """max |f − g| over the window and where: grid search, then bounded Brent refinement."""
    grid = torch.as_tensor(window_grid())
    with torch.no_grad():
        gap = (f(grid) - g(grid)).abs().numpy()
    i = int(np.argmax(gap))
    lo, hi = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])

    def neg_gap(x: float) -> float:
        t = torch.tensor([x], dtype=F64)
        with torch.no_grad():
            return -float((f(t) - g(t)).abs()[0])

    res = optimize.minimize_scalar(
        neg_gap, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}
    )
    return -float(res.fun), float(res.x)


def sigmoid_match() -> dict[str, Any]:
    """x·σ(βx) against GELU: the curvature-matched β, the minimax β, and their largest gaps."""
    gelu = _gelu()
    target = float(derivatives(gelu, 0.0)[2][0])

    def curvature_gap(beta: float) -> float:
        return float(derivatives(swish64(beta), 0.0)[2][0]) - target

    beta_star = optimize.brentq(curvature_gap, 0.1, 10.0, xtol=1e-15, rtol=1e-15)

    def gap_for(beta: float) -> tuple[float, float]:
        return _max_gap(swish64(beta), gelu)

    minimax = optimize.minimize_scalar(
        lambda b: gap_for(b)[0], bounds=(1.0, 2.5), method="bounded", options={"xatol": 1e-6}
    )
    rows = {}
    for label, beta in (
        ("curvature_matched", beta_star),
        ("usual", USUAL_BETA),
        ("minimax", float(minimax.x)),
    ):
        gap, where = gap_for(beta)
        swish = swish64(beta)
        rows[label] = {
            "beta": beta,
            "f_second_0": float(derivatives(swish, 0.0)[2][0]),
            "max_gap": gap,
            "max_gap_at": where,
        }
    # Which unit is closer to the identity for x > 0: compare x − f(x) on (0, 6].
    x = torch.linspace(0.01, 6.0, 600, dtype=F64)
    with torch.no_grad():
        d_gelu = (x - gelu(x)).numpy()
        d_sig = (x - swish64(beta_star)(x)).numpy()
        d_usual = (x - swish64(USUAL_BETA)(x)).numpy()
        at = torch.tensor([1.0, 2.0, 4.0, 6.0], dtype=F64)
        ratios = ((at - gelu(at)) / (at - swish64(beta_star)(at))).tolist()
    ratio = {f"{v:g}": r for v, r in zip(at.tolist(), ratios, strict=True)}
    return {
        "gelu_f_second_0": target,
        **rows,
        "gelu_closer_to_identity_share": float(np.mean(d_gelu < d_sig)),
        "gelu_closer_than_usual_share": float(np.mean(d_gelu < d_usual)),
        "deviation_ratio_gelu_over_matched": ratio,
    }


# --------------------------------------------------------------------------------------------
# The two probabilistic readings (Monte Carlo)
# --------------------------------------------------------------------------------------------


def _z_summary(z: np.ndarray, se: np.ndarray) -> dict[str, Any]:
    """Summary of z-scores; ``passes`` if the formula is consistent with the Monte Carlo means.

    Each point is checked at 3 SE. With many points a true formula still gives the odd |z| > 3
    (probability 0.27% each), so the verdict asks that the number of such points is not
    improbable under the formula (binomial p >= 0.01) and that χ² = Σz² is not (p >= 0.001),
    besides every SE being below :data:`MC_SE_BOUND`.
    """
    chi2 = float(np.sum(z**2))
    p3 = 2 * stats.norm.sf(Z_LIMIT)
    beyond = int(np.sum(np.abs(z) > Z_LIMIT))
    binom_p = float(stats.binom.sf(beyond - 1, len(z), p3))  # P(at least `beyond` by chance)
    chi2_p = float(stats.chi2.sf(chi2, len(z)))
    se_ok = bool(np.max(se) < MC_SE_BOUND)
    return {
        "n": len(z),
        "max_abs_z": float(np.max(np.abs(z))),
        "all_within_limit": bool(beyond == 0),
        "n_beyond_limit": beyond,
        "expected_beyond_by_chance": float(len(z) * p3),
        "beyond_binomial_p": binom_p,
        "chi2": chi2,
        "chi2_p": chi2_p,
        "max_se": float(np.max(se)),
        "se_below_bound": se_ok,
        "passes": bool(se_ok and binom_p >= 0.01 and chi2_p >= 1e-3),
    }


NOISY_WRONG: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    # Drops the σ·φ(x/σ) term: GELU-like x·Φ(x/σ), the reading "GELU is noisy ReLU".
    "x*Phi(x/sigma) (no sigma*phi term)": lambda x, s: x * activation_modules.normal_cdf(x / s),
    # Variance where the standard deviation belongs; identical to the truth at σ = 1 only.
    "x*Phi(x/sigma^2) + sigma^2*phi(x/sigma^2)": lambda x, s: activation_modules.NoisyReLU(s * s)(
        x
    ),
}

GATE_WRONG: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "x*sigmoid(1.702x)": lambda x: swish64(USUAL_BETA)(x),
    "x*Phi(x) + phi(x) (noisy ReLU)": lambda x: activation_modules.NoisyReLU(1.0)(x),
}


# The z-score rests on the normal approximation of a mean; with very few nonzero draws (ReLU(x + ε)
# far below 0, the gate at x ≈ 0) it does not hold, so such points are reported but not tested.
MC_MIN_NONZERO = 1000


def _mc_row(v: torch.Tensor, formula: float, wrong: dict[str, float], **where: float) -> dict:
    n = v.numel()
    mean, se = float(v.mean()), float(v.std() / math.sqrt(n))
    nonzero = int((v != 0).sum())
    row: dict[str, Any] = {**where, "mean": mean, "se": se, "formula": formula}
    row["nonzero_draws"] = nonzero
    row["tested"] = nonzero >= MC_MIN_NONZERO and se > 0
    row["z"] = (mean - formula) / se if row["tested"] else None
    row["wrong_z"] = {k: (mean - w) / se if row["tested"] else None for k, w in wrong.items()}
    return row


def mc_noisy_relu(
    xs: Sequence[float] = MC_X,
    sigmas: Sequence[float] = MC_SIGMAS,
    n: int = MC_SAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Monte Carlo means of ReLU(x + ε), ε ~ N(0, σ²), against x·Φ(x/σ) + σ·φ(x/σ).

    The ReLU is the registry's module; the formula is the registry's ``NoisyReLU``. The same
    check is applied to deliberately wrong formulas (:data:`NOISY_WRONG`) to show it has power.
    """
    gen = torch.Generator().manual_seed(seed)
    relu = module_for("relu")
    rows = []
    with torch.no_grad():
        for sigma in sigmas:
            for x in xs:
                v = relu(x + sigma * torch.randn(n, generator=gen, dtype=F64))
                xt = torch.tensor([x], dtype=F64)
                formula = float(activation_modules.NoisyReLU(sigma)(xt)[0])
                wrong = {k: float(w(xt, sigma)[0]) for k, w in NOISY_WRONG.items()}
                rows.append(_mc_row(v, formula, wrong, x=x, sigma=sigma))
    return _mc_result(rows, list(NOISY_WRONG), n, seed)


def mc_stochastic_gate(
    xs: Sequence[float] = MC_X, n: int = MC_SAMPLES, seed: int = 1
) -> dict[str, Any]:
    """Monte Carlo means of the stochastic gate (training-mode ``StochasticGELU``) vs x·Φ(x)."""
    gate = activation_modules.StochasticGELU().double().train()
    gelu = _gelu()
    rows = []
    with (
        torch.random.fork_rng(devices=[]),
        torch.no_grad(),
    ):  # Bernoulli draws use the global generator
        torch.manual_seed(seed)
        for x in xs:
            v = gate(torch.full((n,), x, dtype=F64))
            xt = torch.tensor([x], dtype=F64)
            wrong = {k: float(w(xt)[0]) for k, w in GATE_WRONG.items()}
            rows.append(_mc_row(v, float(gelu(xt)[0]), wrong, x=x))
    return _mc_result(rows, list(GATE_WRONG), n, seed)


def _mc_result(rows: list[dict[str, Any]], wrong: list[str], n: int, seed: int) -> dict[str, Any]:
    tested = [r for r in rows if r["tested"]]
    se = np.array([r["se"] for r in tested])
    return {
        "samples": n,
        "seed": seed,
        "se_bound": MC_SE_BOUND,
        "z_limit": Z_LIMIT,
        "min_nonzero_draws": MC_MIN_NONZERO,
        "untested": [
            {k: r[k] for k in r if k in ("x", "sigma", "nonzero_draws")}
            for r in rows
            if not r["tested"]
        ],
        "rows": rows,
        "correct": _z_summary(np.array([r["z"] for r in tested]), se),
        "wrong": {k: _z_summary(np.array([r["wrong_z"][k] for r in tested]), se) for k in wrong},
    }


def noisy_gap() -> dict[str, Any]:
    """How far GELU is from the noisy-ReLU expectation at σ = 1 (the article's 'correction')."""
    x = torch.as_tensor(window_grid())
    with torch.no_grad():
        noisy = activation_modules.NoisyReLU(1.0)(x).numpy()
        gelu = _gelu()(x).numpy()
    gap = noisy - gelu
    i = int(np.argmax(np.abs(gap)))
    xn = x.numpy()
    small = np.abs(gap) < 1e-2
    # From which x on (to the right) the gap stays below 0.01.
    beyond = float(xn[len(xn) - np.argmin(small[::-1])]) if not small.all() else float(xn[0])
    neg = (xn < 0) & (xn >= -5)
    return {
        "max_gap": float(gap[i]),
        "max_gap_at": float(xn[i]),
        "gap_at_0": float(gap[np.argmin(np.abs(xn))]),
        "phi_0": float(activation_modules.normal_pdf(torch.tensor(0.0, dtype=F64))),
        "gap_below_0.01_for_x_above": beyond,
        # [−5, 0): beyond, both values are within a few ulp of 0 and their signs are rounding.
        "opposite_signs_on_negative_side": bool(np.all((noisy[neg] > 0) & (gelu[neg] < 0))),
        "relative_gap_at_1": float(
            gap[np.argmin(np.abs(xn - 1))] / abs(noisy[np.argmin(np.abs(xn - 1))])
        ),
    }


# --------------------------------------------------------------------------------------------
# Born dead
# --------------------------------------------------------------------------------------------


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops single-threaded, then restore the thread count.

    The born-dead loop is thousands of small batched ops; with several intra-op threads on a
    busy machine the threads' synchronisation costs far more than the ops (measured: 16 s vs
    0.6 s for a 4-trial grid on 2 loaded cores).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def born_dead(
    names: Sequence[str] | None = None,
    widths: Sequence[int] = DEAD_WIDTHS,
    depths: Sequence[int] = DEAD_DEPTHS,
    trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    tol: float = DEAD_TOL,
) -> dict[str, Any]:
    """Share of untrained deep narrow nets in which some hidden layer is constant over the inputs.

    Net: 1-D input on a grid over [−1, 1], ``depth`` hidden layers of ``width`` units, zero
    biases, weights N(0, gain²/fan_in) with the activation's :func:`activations.init_gain`.
    A layer counts as constant ("dead") when every unit's output range over the inputs is at most
    ``tol`` times the layer's largest |output|. The tolerance is relative because a deep narrow
    net can shrink (or grow) all its signals without losing the input: a linear net is never
    constant, and an absolute threshold would call it dead once its outputs are small. A range of
    exactly 0 (ReLU units off on every input) is counted separately as "exact", and nets whose
    layer outputs all fall to |h| <= ``tol`` before they die as "vanished" (signal lost in scale,
    not in shape).

    All trials run at once (``torch.bmm`` over a trial batch); a trial leaves the batch once it
    is dead, since later layers cannot revive it for the "some layer" criterion. A depth-d net is
    the first d layers of the deepest net, and every activation sees the same standard-normal
    draws (common random numbers), so comparisons across rows are paired.
    """
    names = activations.names() if names is None else list(names)
    x = torch.linspace(-1.0, 1.0, DEAD_INPUTS, dtype=F64).view(1, 1, -1)
    max_depth = max(depths)
    result: dict[str, Any] = {
        "trials": trials,
        "seed": seed,
        "tol": tol,
        "tol_kind": "relative: max unit range <= tol * max |layer output|",
        "inputs": DEAD_INPUTS,
        "widths": list(widths),
        "depths": list(depths),
        "rows": {n: {} for n in names},
    }
    for width in widths:
        gen = torch.Generator().manual_seed(seed * 7919 + width)
        first = torch.randn(trials, width, 1, generator=gen, dtype=F64)
        rest = torch.randn(max_depth - 1, trials, width, width, generator=gen, dtype=F64)
        for name in names:
            act = module_for(name)
            gain = activations.init_gain(name)
            dead = torch.zeros(trials, dtype=torch.bool)
            exact = torch.zeros(trials, dtype=torch.bool)
            vanished = torch.zeros(trials, dtype=torch.bool)
            alive = torch.arange(trials)
            with torch.no_grad(), _one_thread():
                h = act(gain * first * x)  # (trials, width, inputs); fan_in = 1
                for layer in range(1, max_depth + 1):
                    if layer > 1 and len(alive):
                        w = rest[layer - 2].index_select(0, alive) * (gain / math.sqrt(width))
                        h = act(torch.bmm(w, h))
                    lo, hi = torch.aminmax(h, dim=2)
                    spread = (hi - lo).amax(dim=1)
                    scale = torch.maximum(hi.abs(), lo.abs()).amax(dim=1)
                    now_dead = spread <= tol * scale
                    dead[alive[now_dead]] = True
                    exact[alive[spread == 0]] = True
                    vanished[alive[scale <= tol]] = True
                    alive, h = alive[~now_dead], h[~now_dead]
                    if layer in depths:
                        result["rows"][name][f"{width}x{layer}"] = {
                            "width": width,
                            "depth": layer,
                            "dead": int(dead.sum()),
                            "exact": int(exact.sum()),
                            "vanished": int(vanished.sum()),
                            "share": float(dead.float().mean()),
                        }
    return result


# --------------------------------------------------------------------------------------------
# Claims of the seed article
# --------------------------------------------------------------------------------------------


def _by_name(profiles: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in profiles}


def _verdict(ok: bool | None, partly: bool = False, why: str = "") -> str:
    """'holds', 'partly: why', 'does not hold: why' or 'not measured' from measured booleans."""
    if ok is None:
        return "not measured"
    if not ok:
        return "does not hold" + (f": {why}" if why else "")
    return "partly" + (f": {why}" if why else "") if partly else "holds"


def claims(atlas: dict[str, Any]) -> list[dict[str, str]]:
    """The article's claims, each with what the atlas measured and a verdict derived from it."""
    p = _by_name(atlas["profiles"])
    missing = sorted({"gelu", "relu", "softplus", "silu", "gelu_sigmoid"} - set(p))
    if missing or not {"relu", "gelu"} <= set(atlas["born_dead"]["rows"]):
        return [
            {
                "claim": "The article's claims concern GELU, ReLU, Softplus and sigmoid gates.",
                "measured": f"not registered / not profiled: {', '.join(missing) or 'born dead'}",
                "verdict": _verdict(None),
            }
        ]
    gelu, relu, softplus = p["gelu"], p["relu"], p["softplus"]
    gate, noisy = atlas["mc_stochastic_gate"], atlas["mc_noisy_relu"]
    gap, sig = atlas["noisy_gap"], atlas["sigmoid_match"]
    phi0 = gap["phi_0"]
    sqrt2 = math.sqrt(2.0)
    out = []

    def add(claim: str, measured: str, verdict: str) -> None:
        out.append({"claim": claim, "measured": measured, "verdict": verdict})

    gc, wrong_gate = gate["correct"], gate["wrong"]["x*sigmoid(1.702x)"]
    add(
        "GELU(x) = x*Phi(x) is the expectation of the stochastic gate (x with prob. Phi(x), "
        "else 0).",
        f"Monte Carlo ({gate['samples']} draws per x, {gc['n']} x in [-3, 3]): max |z| = "
        f"{gc['max_abs_z']:.2f}, chi2 p = {gc['chi2_p']:.2f}, max SE = {gc['max_se']:.1e}. The "
        f"same check rejects x*sigmoid(1.702x) (max |z| = {wrong_gate['max_abs_z']:.1f}).",
        _verdict(gc["passes"] and not wrong_gate["passes"]),
    )
    nc = noisy["correct"]
    wrong_noisy = noisy["wrong"]["x*Phi(x/sigma) (no sigma*phi term)"]
    wrong_var = noisy["wrong"]["x*Phi(x/sigma^2) + sigma^2*phi(x/sigma^2)"]
    add(
        "E[ReLU(x + eps)] = x*Phi(x/sigma) + sigma*phi(x/sigma) for eps ~ N(0, sigma^2).",
        f"Monte Carlo over sigma in {list(MC_SIGMAS)}, {nc['n']} points: max |z| = "
        f"{nc['max_abs_z']:.2f}, {nc['n_beyond_limit']} beyond 3 SE, chi2 p = "
        f"{nc['chi2_p']:.2f}, max SE = {nc['max_se']:.1e}. Wrong formulas fail: without "
        f"sigma*phi max |z| = {wrong_noisy['max_abs_z']:.0f}; sigma^2 for sigma max |z| = "
        f"{wrong_var['max_abs_z']:.0f}.",
        _verdict(nc["passes"] and not wrong_noisy["passes"]),
    )
    beyond = gap["gap_below_0.01_for_x_above"]
    add(
        "At sigma = 1 the extra phi(x) is a small correction, negligible for large inputs; GELU "
        "is a close approximation of what a noisy signal through ReLU gives.",
        f"The gap E[ReLU(x+eps)] - GELU(x) peaks at x = {_num(gap['max_gap_at'])} with "
        f"{_num(gap['max_gap'])} (phi(0) = {_num(phi0)}); it is the whole noisy-ReLU value at 0, "
        f"{100 * gap['relative_gap_at_1']:.0f}% of it at x = 1, and below 0.01 only for "
        f"x > {beyond:.3f}. On [-5, 0) the two have opposite signs everywhere: "
        f"{gap['opposite_signs_on_negative_side']}.",
        _verdict(
            beyond < WINDOW[1],
            partly=gap["max_gap"] >= 0.05,
            why=f"negligible only for |x| > {beyond:.2f}; near 0, where pre-activations are "
            "dense, the gap is the noisy-ReLU value itself",
        ),
    )
    d4 = 4.0 - float(derivatives(_gelu(), 4.0)[0][0])
    f_m4 = float(derivatives(_gelu(), -4.0)[0][0])
    add(
        "For large positive x GELU(x) ~ x; for large negative x GELU(x) ~ 0.",
        f"x - GELU(x) at x = 4: {d4:.2e}; GELU(-4) = {f_m4:.2e}.",
        _verdict(d4 < 1e-3 and abs(f_m4) < 1e-3),
    )
    xs = torch.linspace(-8, 8, 16001, dtype=F64, requires_grad=True)
    (dphi,) = torch.autograd.grad(activation_modules.normal_cdf(xs).sum(), xs)
    xs = xs.detach()
    err = float((dphi - activation_modules.normal_pdf(xs)).abs().max())
    peak = float(xs[torch.argmax(dphi)])
    add(
        "The gate's rate of change dPhi/dx is the Gaussian density phi(x), largest at x = 0.",
        f"autograd dPhi/dx vs phi: max |diff| = {err:.1e} on [-8, 8]; argmax at x = {peak:.1e}.",
        _verdict(err < 1e-12 and abs(peak) < GRID_STEP),
    )
    neg = torch.linspace(-8, -1e-3, 8000, dtype=F64)
    with torch.no_grad():
        gv = _gelu()(neg)
    ratio_err = float((gv / neg - activation_modules.normal_cdf(neg)).abs().max())
    sign_kept = bool(torch.all(gv < 0))
    v32, v64 = gelu["vanishes_float32_below"], gelu["vanishes_float64_below"]
    # What float64 gives where float32 already returns exactly 0: the size that is lost.
    lost = float(derivatives(_gelu(), v32)[0][0]) if v32 else None
    add(
        "For x < 0, GELU(x)/x = Phi(x) is in (0, 0.5): negative inputs keep their sign and "
        "become small but do not vanish entirely.",
        f"max |GELU(x)/x - Phi(x)| = {ratio_err:.1e} and GELU(x) < 0 on all of [-8, 0): "
        f"{sign_kept}. But PyTorch's GELU returns exactly 0 for x <= {_num(v32, 4)} in float32 "
        f"(where the float64 value is {_num(lost, 3)}, far above float32's smallest number) and "
        f"for x <= {_num(v64, 4)} in float64; GELU(-10) evaluates to {_num(gelu['f_at_m10'])}.",
        _verdict(
            sign_kept and ratio_err < 1e-12,
            partly=v32 is not None,
            why="in exact arithmetic; in floating point the outputs do vanish below the stated x",
        ),
    )
    relu_k = relu["kinks_f_prime"]
    add(
        "ReLU's derivative is undefined at 0 and exactly 0 for all negative inputs.",
        "Kinks of ReLU' found: "
        + ", ".join(f"x = {_num(k['x'])} ({_num(k['left'])} -> {_num(k['right'])})" for k in relu_k)
        + f"; {relu['zero_slope_text']}.",
        _verdict(
            any(k["x"] == 0.0 for k in relu_k)
            and any(
                z["kind"] == "interval" and z["interval"] == [-math.inf, 0.0]
                for z in relu["zero_slope_negative"]
            )
        ),
    )
    add(
        "ReLU'(-1) = 0: a sample with pre-activation -1 sends no gradient to its weight.",
        f"ReLU'(-1) = {relu['f_prime_m1']['text']}.",
        _verdict(relu["f_prime_m1"].get("value") == 0.0),
    )
    g1 = gelu["f_prime_0"]["value"]
    add("GELU'(0) = Phi(0) = 1/2.", f"GELU'(0) = {g1!r}.", _verdict(abs(g1 - 0.5) < 1e-12))
    gm1 = gelu["f_prime_m1"]["value"]
    add(
        "GELU'(-1) = Phi(-1) - phi(-1) ~ -0.0833.",
        f"GELU'(-1) = {gm1:.10f}.",
        _verdict(abs(gm1 + 0.0833) < 5e-5),
    )
    roots = [z["x"] for z in gelu["zero_slope_negative"] if z["kind"] == "root"]
    add(
        "GELU has a non-zero gradient for negative inputs, so gradient keeps flowing there.",
        "GELU' = 0 at x = "
        + (", ".join(_num(r) for r in roots) or "nowhere")
        + f"; GELU' < 0 on {', '.join(_interval_text(*r) for r in gelu['negative_slope_region'])}"
        f" (the gradient changes sign), and it is tiny far out: GELU'(-3) = "
        f"{gelu['f_prime_m3']:.2e}, GELU'(-5) = {gelu['f_prime_m5']:.2e}.",
        _verdict(
            not roots,
            why="the slope is exactly 0 at one negative x, negative beyond it, and ~0 below -5",
        ),
    )
    dead = atlas["born_dead"]
    key = f"{min(dead['widths'])}x{max(dead['depths'])}"
    dr, dg = dead["rows"]["relu"][key], dead["rows"]["gelu"][key]
    others = [
        f"{n} {100 * rows[key]['share']:.0f}%"
        for n, rows in dead["rows"].items()
        if n not in ("relu", "gelu") and rows[key]["share"] > 0
    ]
    add(
        "GELU avoids the 'dying ReLU' problem (dead neurons).",
        f"Measured only at initialisation (born dead, width {min(dead['widths'])}, depth "
        f"{max(dead['depths'])}, {dead['trials']} nets): some layer constant in "
        f"{100 * dr['share']:.1f}% of ReLU nets ({dr['exact']} exactly) vs "
        f"{100 * dg['share']:.1f}% of GELU nets (relative tolerance {dead['tol']:g}). Also born "
        f"dead there: {', '.join(others) or 'no other activation'}. Death during training is "
        "not measured here.",
        _verdict(dg["share"] < dr["share"], partly=True, why="at initialisation only"),
    )
    s1 = softplus["f_prime_0"]["value"]
    add(
        "Softplus and GELU have the same slope 1/2 at the origin.",
        f"Softplus'(0) = {s1!r}, GELU'(0) = {g1!r}.",
        _verdict(abs(s1 - 0.5) < 1e-12 and abs(g1 - 0.5) < 1e-12),
    )
    g2, s2 = gelu["f_second_0"]["value"], softplus["f_second_0"]["value"]
    add(
        "GELU''(0) = 2/sqrt(2*pi) ~ 0.798 while Softplus''(0) = 1/4.",
        f"GELU''(0) = {g2!r}, Softplus''(0) = {s2!r}.",
        _verdict(abs(g2 - 2 * phi0) < 1e-12 and abs(s2 - 0.25) < 1e-12),
    )
    add(
        "Softplus is convex everywhere.",
        f"Softplus convex on: {softplus['convex_text']}; inflections: "
        f"{softplus['inflection_text']}.",
        _verdict(softplus["convex_text"] == "everywhere"),
    )
    infl = gelu["inflections"]
    add(
        "GELU has inflection points at x = +-sqrt(2), convex between them and concave outside.",
        f"GELU'' roots: {', '.join(repr(r) for r in infl)} (sqrt(2) = {sqrt2!r}); "
        f"convex on {gelu['convex_text']}.",
        _verdict(
            len(infl) == 2
            and abs(infl[0] + sqrt2) < 1e-9
            and abs(infl[1] - sqrt2) < 1e-9
            and len(gelu["convex_region"]) == 1
        ),
    )
    add(
        "Non-convexity lets GELU model more complex functions than a globally convex activation.",
        "A statement about expressivity; the atlas measures shape only.",
        _verdict(None),
    )
    cm, us = sig["curvature_matched"], sig["usual"]
    add(
        "x*sigmoid(beta*x) can match GELU's curvature at the origin by the choice of beta.",
        f"beta = {cm['beta']:.10f} (solved numerically) matches GELU''(0); its largest gap to "
        f"GELU is {cm['max_gap']:.4f} at x = {cm['max_gap_at']:.3f}. The usual 1.702 has "
        f"f''(0) = {us['f_second_0']:.4f} (not matched) and largest gap {us['max_gap']:.4f}; the "
        f"minimax beta {sig['minimax']['beta']:.4f} gives {sig['minimax']['max_gap']:.4f}.",
        _verdict(abs(cm["f_second_0"] - sig["gelu_f_second_0"]) < 1e-9),
    )
    tg, ts = gelu["tail"], p["silu"]["tail"]
    add(
        "x - GELU(x) decays like exp(-x^2/2); for x*sigmoid(beta*x) it decays like x*exp(-beta*x).",
        f"Fitted log|x - f|: GELU {tg['law']} with a = {tg['leading_coefficient']:.3f}; "
        f"SiLU (beta = 1) {ts['law']} with a = {ts['leading_coefficient']:.3f} and power of x "
        f"{ts['log_x_coefficient']:.2f}; gelu_sigmoid a = "
        f"{p['gelu_sigmoid']['tail']['leading_coefficient']:.3f}.",
        _verdict(
            tg.get("order") == 2
            and abs(tg["leading_coefficient"] + 0.5) < 0.05
            and ts.get("order") == 1
            and abs(ts["log_x_coefficient"] - 1) < 0.2
        ),
    )
    r = sig["deviation_ratio_gelu_over_matched"]
    add(
        "GELU snaps to linearity far more rapidly than the curvature-matched sigmoid unit.",
        f"(x - GELU)/(x - x*sigmoid(beta*x)) = {r['1']:.3f} at x = 1, {r['2']:.3f} at 2, "
        f"{r['4']:.2e} at 4, {r['6']:.2e} at 6; GELU is the closer one on "
        f"{100 * sig['gelu_closer_to_identity_share']:.0f}% of (0, 6].",
        _verdict(
            r["4"] < 0.1,
            partly=r["1"] > 0.9,
            why="asymptotically; for x <~ 1 the two deviations are within 10% of each other",
        ),
    )
    add(
        "GELU is a stochastic regularizer built into the activation function.",
        "The deterministic GELU is the gate's expectation (checked above); whether using it "
        "regularises training is not measured here. The registry's stochastic_gelu samples the "
        "gate only in training mode.",
        _verdict(None),
    )
    return out


# --------------------------------------------------------------------------------------------
# Whole atlas, report, figures
# --------------------------------------------------------------------------------------------


def compute_atlas(
    trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    mc_samples: int = MC_SAMPLES,
    names: Sequence[str] | None = None,
    widths: Sequence[int] = DEAD_WIDTHS,
    depths: Sequence[int] = DEAD_DEPTHS,
) -> dict[str, Any]:
    """Every measurement of the atlas, as one JSON-ready dict."""
    names = activations.names() if names is None else list(names)
    t0 = time.perf_counter()
    atlas: dict[str, Any] = {
        "settings": {
            "window": list(WINDOW),
            "grid_step": GRID_STEP,
            "tail_window": [TAIL_LO, TAIL_HI],
            "cancellation_floor": CANCELLATION_FLOOR,
            "mc_se_bound": MC_SE_BOUND,
            "z_limit": Z_LIMIT,
            "seed": seed,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "profiles": profile_all(names),
        "sigmoid_match": sigmoid_match(),
        "mc_noisy_relu": mc_noisy_relu(n=mc_samples, seed=seed),
        "mc_stochastic_gate": mc_stochastic_gate(n=mc_samples, seed=seed + 1),
        "noisy_gap": noisy_gap(),
        "born_dead": born_dead(names, widths, depths, trials=trials, seed=seed),
    }
    atlas["claims"] = claims(atlas)
    atlas["settings"]["compute_seconds"] = time.perf_counter() - t0
    return atlas


def _num(v: float | None, digits: int = 6) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    return f"{v:.{digits}g}"


def _jsonable(obj: Any) -> Any:
    """Non-finite floats as strings ("inf", "-inf", "nan"), which strict JSON cannot hold."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def property_table(profiles: Sequence[dict[str, Any]]) -> str:
    """Markdown table, one row per activation."""
    head = [
        "activation",
        "f'(0)",
        "f''(0)",
        "inflection points",
        "convex on",
        "minimum",
        "f'(-1)",
        "f' = 0 for x < 0",
        "x - f(x) as x -> inf",
        "f(-10)",
        "f = 0 exactly below (f32 / f64)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in profiles:
        name = f"`{p['name']}`"
        if p["stochastic_in_training"]:
            name += " (eval map; training mode is the random gate)"
        vanish = " / ".join(
            _num(p[k], 5) if p[k] is not None else "never"
            for k in ("vanishes_float32_below", "vanishes_float64_below")
        )
        cells = [
            name,
            p["f_prime_0"]["text"],
            p["f_second_0"]["text"],
            p["inflection_text"],
            p["convex_text"],
            p["minimum"]["text"],
            p["f_prime_m1"]["text"],
            p["zero_slope_text"],
            p["tail"]["text"],
            _num(p["f_at_m10"], 4),
            vanish,
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def born_dead_table(dead: dict[str, Any], key: str = "dead") -> str:
    """Markdown table: rows activations, columns depths, cells the percent per width."""
    widths = dead["widths"]
    head = ["activation", *(f"depth {d}" for d in dead["depths"])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, cells in dead["rows"].items():
        row = [f"`{name}`"]
        for d in dead["depths"]:
            parts = []
            for w in widths:
                c = cells[f"{w}x{d}"]
                text = f"{100 * c[key] / dead['trials']:.1f}"
                if key == "dead" and c["exact"] != c["dead"]:
                    text += f" ({100 * c['exact'] / dead['trials']:.1f})"
                parts.append(text)
            row.append(" / ".join(parts))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _mc_table(mc: dict[str, Any], label: str) -> str:
    lines = [
        f"| check ({label}) | points | max SE | max abs z | beyond 3 SE (by chance) | chi2 p "
        "| consistent |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, s in [("correct formula", mc["correct"]), *mc["wrong"].items()]:
        lines.append(
            f"| {key} | {s['n']} | {s['max_se']:.2e} | {s['max_abs_z']:.2f} | "
            f"{s['n_beyond_limit']} ({s['expected_beyond_by_chance']:.2f}) | {s['chi2_p']:.3g} | "
            f"{'yes' if s['passes'] else 'no'} |"
        )
    return "\n".join(lines)


def render_readme(atlas: dict[str, Any], figures: Sequence[str], runtime: float) -> str:
    """The README.md text of the atlas."""
    st, sig, gap = atlas["settings"], atlas["sigmoid_match"], atlas["noisy_gap"]
    dead = atlas["born_dead"]
    tails = [p for p in atlas["profiles"] if p["tail"]["kind"] == "decay"]
    fig = {Path(f).stem: Path(f).name for f in figures}
    out = [
        "# Activation atlas",
        "",
        "Generated by `make atlas` (`actbench-atlas`, module `actbench.atlas`); do not edit by "
        f"hand. Seed {st['seed']}, torch {st['torch']}, Python {st['python']}, "
        f"{runtime:.0f} s. The numbers are in `atlas.json`.",
        "",
        "Every number below is measured, not copied from a formula sheet: derivatives by "
        "`torch.autograd` in float64 on the registry's modules (`actbench.activations.build`), "
        f"roots by `brentq` on sign changes over a grid of step {st['grid_step']:g} on "
        f"[{st['window'][0]:g}, {st['window'][1]:g}] (intervals reaching the window edge are "
        "written with inf), kinks by bisecting jumps of f' and f'' (a jump that does not shrink "
        "with the interval), minima by root finding on f' plus the limits at x = +-8*2^k. "
        "Stochastic modules are measured in eval mode (their expectation).",
        "",
        "## Properties",
        "",
        property_table(atlas["profiles"]),
        "",
        "Tail fits: log|x - f(x)| is fitted by least squares on [3, x_end] with x^3, x^2, x, "
        "log x, 1; the leading order is the term contributing most at x_end, then the law is "
        "refitted truncated at that order. x_end is where |x - f(x)| falls below "
        f"{st['cancellation_floor']:g}*x: up to there the float64 subtraction keeps a relative "
        "error below ~1e-6. The leading coefficient is what separates the laws; the power of x "
        "is a free fit parameter that also absorbs sub-leading corrections on short windows. The "
        "last column shows what the same subtraction gives in float32.",
        "",
        "| activation | law | leading coefficient a | power of x | fit window | max residual | "
        "x - f(x) at 5 (float64) | float32 relative error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in tails:
        t = p["tail"]
        d64, d32 = t["deviation_at_5_float64"], t["deviation_at_5_float32"]
        out.append(
            f"| `{p['name']}` | {t['law']} | {t['leading_coefficient']:.4f} | "
            f"{t['log_x_coefficient']:.3f} | [{t['fit_window'][0]:g}, {t['fit_window'][1]:.3g}] | "
            f"{t['max_residual']:.1e} | {d64:.6e} | {abs(d32 - d64) / abs(d64):.1e} |"
        )
    rounding = [
        p["name"]
        for p in atlas["profiles"]
        if p["vanishes_float64_below"] is not None and p["vanishes_float64_below"] < 0
    ]
    if rounding:
        out += [
            "",
            "Last column of the property table: below that x the module returns exactly 0 although "
            "the function is nonzero there (rounding or underflow), for "
            + ", ".join(f"`{n}`" for n in rounding)
            + "; a 0 means f is identically 0 for x < 0. This is why f(-10) can read 0.",
        ]
    cm, us, mm = sig["curvature_matched"], sig["usual"], sig["minimax"]
    out += [
        "",
        "## GELU against x*sigmoid(beta*x)",
        "",
        "| beta | how chosen | f''(0) | largest gap to GELU | at x |",
        "|---|---|---|---|---|",
        f"| {cm['beta']:.10f} | matches GELU''(0) = {sig['gelu_f_second_0']:.10f} (brentq) | "
        f"{cm['f_second_0']:.10f} | {cm['max_gap']:.6f} | {cm['max_gap_at']:.4f} |",
        f"| {us['beta']:g} | the usual constant | {us['f_second_0']:.6f} | {us['max_gap']:.6f} | "
        f"{us['max_gap_at']:.4f} |",
        f"| {mm['beta']:.6f} | minimises the largest gap | {mm['f_second_0']:.6f} | "
        f"{mm['max_gap']:.6f} | {mm['max_gap_at']:.4f} |",
        "",
        "## The two probabilistic readings (Monte Carlo)",
        "",
        f"Seeded `torch.Generator`, {atlas['mc_noisy_relu']['samples']} samples per point, "
        f"x in {{{', '.join(f'{v:g}' for v in MC_X)}}}; z = (MC mean - formula) / SE; every SE "
        f"must be below {MC_SE_BOUND:g}. Each point is checked at {Z_LIMIT:g} SE; a formula is "
        "consistent when the number of points beyond 3 SE is not improbable by chance "
        "(binomial p >= 0.01; each has probability 0.0027) and chi2 = sum z^2 has p >= 0.001. "
        f"Points with fewer than {MC_MIN_NONZERO} nonzero draws (where the normal approximation "
        "behind z fails) are listed in `atlas.json` and not tested. Deliberately wrong formulas "
        "go through the same check.",
        "",
        _mc_table(atlas["mc_noisy_relu"], f"ReLU(x + eps), sigma in {list(MC_SIGMAS)}"),
        "",
        _mc_table(atlas["mc_stochastic_gate"], "stochastic gate vs x*Phi(x)"),
        "",
        f"GELU vs the noisy-ReLU expectation at sigma = 1: the gap is largest at "
        f"x = {_num(gap['max_gap_at'])} with {gap['max_gap']:.6f} (phi(0) = {gap['phi_0']:.6f}), "
        f"drops below 0.01 for x > {gap['gap_below_0.01_for_x_above']:.3f}, and on [-5, 0) the two "
        f"have opposite signs: {gap['opposite_signs_on_negative_side']}.",
        "",
        "## Born dead",
        "",
        f"Untrained nets: 1-D input on {dead['inputs']} points over [-1, 1], `depth` hidden layers "
        "of `width` units, zero biases, weights N(0, gain^2/fan_in) with the activation's "
        f"`init_gain`; {dead['trials']} nets per cell (seed {dead['seed']}). A net is born dead "
        "when some hidden layer is constant over the inputs: every unit's output range over the "
        f"inputs is <= {dead['tol']:g} times the layer's largest |output| (relative, so that a "
        "net that merely shrinks its signals is not called dead; for ReLU-type units this is the "
        "same as range exactly 0). Cells: percent dead for widths "
        + " / ".join(str(w) for w in dead["widths"])
        + "; where it differs, the percent with a layer exactly constant (range 0 in float64) "
        "follows in brackets. Depths are nested (a depth-d net is the first d layers of the "
        "deepest one) and all activations see the same random draws. `identity` is the control: "
        "a linear net is never constant, so it must read 0. Stochastic modules run in eval "
        "mode (their expectation) with the registry's init gain.",
        "",
        born_dead_table(dead),
        "",
        "For contrast, an absolute criterion: percent of nets in which, before dying, some "
        f"layer's outputs all shrank to |h| <= {dead['tol']:g} (the signal vanished in scale; a "
        "linear net can do this too, so this is not death):",
        "",
        born_dead_table(dead, key="vanished"),
        "",
    ]
    if "born_dead" in fig:
        out += [f"![born dead]({fig['born_dead']})", ""]
    out += ["## Claims checked", ""]
    for i, c in enumerate(atlas["claims"], 1):
        out.append(f"{i}. **{c['verdict']}** - {c['claim']} Measured: {c['measured']}")
    out += ["", "## Figures", ""]
    for f in figures:
        out.append(f"![{Path(f).stem}]({Path(f).name})")
    out.append("")
    return "\n".join(out)


def make_figures(atlas: dict[str, Any], out: Path) -> list[str]:
    """PNG figures: f, f′, f″ per activation on shared axes, overlays, tails, MC z, born dead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = atlas["profiles"]
    x = np.linspace(-4.0, 4.0, 1601)
    curves = {p["name"]: derivatives(module_for(p["name"]), x) for p in profiles}
    paths = []

    def save(fig: Any, stem: str) -> None:
        path = out / f"{stem}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(str(path))

    # Small multiples: one panel per activation, identical axes.
    n = len(profiles)
    ncols = 4
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4 * ncols, 3.1 * nrows), sharex=True, sharey=True
    )
    axes = np.atleast_1d(axes).ravel()
    for ax, p in zip(axes, profiles, strict=False):
        f, d1, d2 = curves[p["name"]]
        ax.axhline(0, color="0.8", lw=0.8)
        ax.axvline(0, color="0.8", lw=0.8)
        ax.plot(x, f, color="C0", lw=2, label="f")
        ax.plot(x, d1, color="C1", lw=1.5, ls="--", label="f'")
        ax.plot(x, d2, color="C2", lw=1.5, ls=":", label="f''")
        module = module_for(p["name"])
        marks = [
            ([r for r in p["inflections"] if x[0] <= r <= x[-1]], {"marker": "o", "color": "C3"}),
            ([z["x"] for z in p["zero_slope_negative"] if z["kind"] == "root"],
             {"marker": "v", "color": "C4"}),
            ([j["x"] for j in [*p["kinks_f_prime"], *p["kinks_f_second"]]],
             {"marker": "x", "color": "k", "mew": 2, "ms": 8}),
        ]  # fmt: skip
        for points, style in marks:
            if points:
                ys = derivatives(module, np.array(points))[0]
                ax.plot(points, ys, ls="", zorder=5, **{"ms": 6, **style})
        ax.set_title(p["name"] + (" (eval)" if p["stochastic_in_training"] else ""), fontsize=10)
        ax.set_ylim(-1.5, 2.5)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.axis("off")
    handles = [
        plt.Line2D([], [], color="C0", lw=2, label="f"),
        plt.Line2D([], [], color="C1", ls="--", label="f'"),
        plt.Line2D([], [], color="C2", ls=":", label="f''"),
        plt.Line2D([], [], color="C3", marker="o", ls="", label="inflection"),
        plt.Line2D([], [], color="C4", marker="v", ls="", label="f' = 0 (x < 0)"),
        plt.Line2D([], [], color="k", marker="x", ls="", mew=2, label="kink"),
    ]
    fig.suptitle("f, f', f'' of every registered activation (shared axes)", y=0.995)
    fig.legend(handles=handles, loc="upper center", ncol=6, bbox_to_anchor=(0.5, 0.975))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save(fig, "curves")

    # Overlays: one panel per derivative order, all activations.
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), sharex=True)
    styles = ["-", "--", "-.", ":"]
    cmap = plt.get_cmap("tab20")
    for k, (ax, title) in enumerate(zip(axes, ("f", "f'", "f''"), strict=True)):
        for i, p in enumerate(profiles):
            ax.plot(
                x,
                curves[p["name"]][k],
                color=cmap(i % 20),
                ls=styles[i % 4],
                lw=1.4,
                label=p["name"],
            )
            infl = [r for r in p["inflections"] if x[0] <= r <= x[-1]]
            if infl:
                vals = derivatives(module_for(p["name"]), np.array(infl))[k]
                ax.plot(infl, vals, "o", color=cmap(i % 20), ms=4)
        ax.set_title(title + " (dots: inflection points)")
        ax.axhline(0, color="0.7", lw=0.8)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-1.5, 4)
    axes[1].set_ylim(-0.3, 1.3)
    axes[2].set_ylim(-0.4, 1.1)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(len(labels), 7),
        fontsize=9,
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save(fig, "overlay")

    # Tails: log10|x − f(x)| and the fitted law.
    decaying = [p for p in profiles if p["tail"]["kind"] == "decay"]
    if decaying:
        fig, ax = plt.subplots(figsize=(9, 6))
        strong = plt.get_cmap("tab10")
        for i, p in enumerate(decaying):
            t = p["tail"]
            xt = np.linspace(t["fit_window"][0], t["fit_window"][1], 300)
            with torch.no_grad():
                dev = np.abs(xt - module_for(p["name"])(torch.as_tensor(xt)).numpy())
            lead = format(t["leading_coefficient"], ".3f")
            ax.plot(
                xt,
                np.log10(dev),
                color=strong(i % 10),
                lw=3 if i < 10 else 1.5,
                alpha=0.8,
                ls="-" if i < 10 else "--",
                label=f"{p['name']}: {t['law'].split()[-1].replace('a', lead)}",
            )
            fit = _fit_eval(xt, t["coefficients"]) / math.log(10)
            ax.plot(xt, fit, color="k", lw=0.8, ls=":")
        ax.set_xlabel("x")
        ax.set_ylabel("log10 |x - f(x)|  (dotted black: fitted law)")
        ax.set_title("Right tails: Gaussian vs exponential approach to y = x (float64)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "tails")

    # GELU against the sigmoid gates and the noisy ReLU.
    sig = atlas["sigmoid_match"]
    xg = torch.linspace(-6, 6, 1201, dtype=F64)
    with torch.no_grad():
        gelu = _gelu()(xg).numpy()
        beta = sig["curvature_matched"]["beta"]
        others = {
            f"x*sigmoid({beta:.4f}x) (curvature-matched)": swish64(beta)(xg).numpy(),
            f"x*sigmoid({USUAL_BETA}x)": swish64(USUAL_BETA)(xg).numpy(),
            "E[ReLU(x+eps)], sigma = 1": activation_modules.NoisyReLU(1.0)(xg).numpy(),
        }
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.8))
    a1.plot(xg, gelu, "k", lw=2, label="GELU")
    for i, (label, v) in enumerate(others.items()):
        a1.plot(xg, v, color=f"C{i}", ls="--", label=label)
        a2.plot(xg, v - gelu, color=f"C{i}", label=label + " - GELU")
    a1.set_ylim(-0.5, 3)
    a1.legend(fontsize=8)
    a1.set_title("GELU and its neighbours")
    a2.set_ylim(-0.06, 0.45)
    a2.axhline(0, color="0.6", lw=0.8)
    a2.legend(fontsize=8)
    a2.set_title("difference to GELU")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    save(fig, "gelu_neighbours")

    # Monte Carlo z-scores, correct vs wrong formulas.
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, key, title in (
        (axes[0], "mc_noisy_relu", "ReLU(x + eps) vs formulas"),
        (axes[1], "mc_stochastic_gate", "stochastic gate vs formulas"),
    ):
        mc = atlas[key]
        rows = [r for r in mc["rows"] if r["tested"]]
        # Small horizontal offsets keep the σ values of one x apart.
        xs = np.array([r["x"] + 0.04 * (r.get("sigma", 1.0) - 1) for r in rows])
        ax.axhspan(-Z_LIMIT, Z_LIMIT, color="C2", alpha=0.15, label="|z| < 3")
        ax.plot(xs, [r["z"] for r in rows], "o", color="C2", label="correct formula")
        for i, w in enumerate(mc["wrong"]):
            ax.plot(
                xs, [r["wrong_z"][w] for r in rows], "x", color=f"C{i + 3}", label=f"wrong: {w}"
            )
        ax.set_yscale("symlog", linthresh=Z_LIMIT)
        ax.set_title(title)
        ax.set_xlabel("x")
        ax.set_ylabel("z = (MC mean - formula) / SE  (symlog)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    save(fig, "monte_carlo")

    # Born dead: share vs depth, one line per width, one panel per activation.
    dead = atlas["born_dead"]
    names = list(dead["rows"])
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), sharex=True, sharey=True)
    axes = np.atleast_1d(axes).ravel()
    pos = np.arange(len(dead["depths"]))
    for ax, name in zip(axes, names, strict=False):
        for i, w in enumerate(dead["widths"]):
            cells = [dead["rows"][name][f"{w}x{d}"] for d in dead["depths"]]
            share = np.array([c["share"] for c in cells])
            se = np.sqrt(share * (1 - share) / dead["trials"])
            ax.errorbar(
                pos, share, yerr=se, marker="o", ms=3, color=f"C{i}", label=f"width {w}", capsize=2
            )
        ax.set_xticks(pos, [str(d) for d in dead["depths"]])
        ax.set_title(name, fontsize=10)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.axis("off")
    axes[0].legend(fontsize=7, loc="center left")
    fig.supxlabel("depth (hidden layers)")
    for ax in axes[: len(names)]:
        ax.xaxis.set_tick_params(labelbottom=True)  # panels without one below them
    fig.supylabel(f"share born dead (layer range <= {dead['tol']:g} x its scale)")
    fig.tight_layout(rect=(0.02, 0.02, 1, 1))
    save(fig, "born_dead")
    return paths


def _int_list(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 2,3,5; got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``actbench-atlas``: compute, write README.md, atlas.json, figures."""
    parser = argparse.ArgumentParser(prog="actbench-atlas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/atlas"), help="output folder")
    parser.add_argument(
        "--trials", type=int, default=DEFAULT_TRIALS, help="born-dead nets per cell"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for Monte Carlo and born dead")
    parser.add_argument(
        "--mc-samples", type=int, default=MC_SAMPLES, help="Monte Carlo samples per point"
    )
    parser.add_argument(
        "--widths", type=_int_list, default=DEAD_WIDTHS, help="born-dead widths, e.g. 2,3,4,5,10"
    )
    parser.add_argument(
        "--depths", type=_int_list, default=DEAD_DEPTHS, help="born-dead depths, e.g. 5,10,20,50"
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.mc_samples < 2:
        parser.error("--trials must be >= 1 and --mc-samples >= 2")
    t0 = time.perf_counter()
    atlas = compute_atlas(
        trials=args.trials,
        seed=args.seed,
        mc_samples=args.mc_samples,
        widths=args.widths,
        depths=args.depths,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    figures = [] if args.no_figures else make_figures(atlas, args.out)
    runtime = time.perf_counter() - t0
    atlas["settings"]["total_seconds"] = runtime
    (args.out / "atlas.json").write_text(json.dumps(_jsonable(atlas), indent=1) + "\n")
    (args.out / "README.md").write_text(render_readme(atlas, figures, runtime))
    print(f"actbench-atlas: wrote {args.out / 'README.md'}, {args.out / 'atlas.json'}")
    for f in figures:
        print(f"actbench-atlas: wrote {f}")
    failed = [c for c in atlas["claims"] if c["verdict"].startswith("does not hold")]
    print(
        f"actbench-atlas: {len(atlas['claims'])} claims checked, {len(failed)} do not hold "
        f"({runtime:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
