"""An activation's shape, measured numerically: f′ and f″ at chosen points, kinks, inflection
points, the convex region, the minimum, where the slope is zero or negative for x < 0, the right
tail and where the output vanishes in float32 / float64 (:func:`profile`, :func:`profile_all`).

Everything is computed, nothing is typed in from a table: derivatives by ``torch.autograd`` in
float64 on the modules that :func:`actbench.activations.build` returns, roots by bracketing
(``scipy.optimize.brentq``) on sign changes found on a fine grid, kinks by bisecting jumps of
f′ and f″, limits at ±inf from f at x = ±8·2^k, and the tails by least-squares fits
(:mod:`actbench.activation_tails`). A new registry entry is measured with no change here.

Only measurements live here (the profile's ``text`` fields are the measured values written
out); the activation atlas (:mod:`actbench.atlas`) turns them into tables, figures and verdicts,
and the curvature diagnostic reads the convex region.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import optimize
from torch import nn

from actbench import activations
from actbench.activation_tails import tail, vanishing_point
from actbench.number_text import interval_text, num

F64 = torch.float64

# Scan window and grid for roots, kinks, extrema. Step 1e-3 resolves every feature of the
# registered activations; roots and jump locations are then refined far below the step.
WINDOW = (-8.0, 8.0)
GRID_STEP = 1e-3
# Jumps of f′ or f″ smaller than this are treated as numerical noise, not kinks.
JUMP_FLOOR = 1e-9


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
# Minimum and limits at +-inf
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
            "text": f"unbounded below ({where}, slope {num(beh['slope'])})",
        }
    return {
        "kind": "infimum",
        "value": beh["limit"],
        "text": f"inf {num(beh['limit'])} as {where}, not attained",
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
            text = f"{num(v)} at x = {num(r)}"
            cands.append((v, 0, {"kind": "attained", "value": v, "x": r, "text": text}))
    for x0 in changes["through_jumps"]:
        jump = next(j for j in d1_jumps if j["x"] == x0)
        if jump["left"] < 0 < jump["right"]:
            v = float(derivatives(module, x0)[0][0])
            text = f"{num(v)} at x = {num(x0)} (kink)"
            cands.append((v, 0, {"kind": "attained", "value": v, "x": x0, "text": text}))
    tails = {side: _edge_behaviour(module, side) for side in (-1, 1)}
    for a, b in changes["zero_runs"]:
        i, j = np.searchsorted(grid, a), np.searchsorted(grid, b)
        if f[i] != f[j]:
            continue
        v = float(f[i])
        lo = -math.inf if i == 0 and tails[-1]["limit"] == v else a
        hi = math.inf if j == len(grid) - 1 and tails[1]["limit"] == v else _snap(b, [], d1_jumps)
        text = f"{num(v)} on {interval_text(lo, hi)}"
        cands.append((v, 0, {"kind": "interval", "value": v, "interval": [lo, hi], "text": text}))
    for side in (-1, 1):
        cands.append((tails[side]["limit"], 1, _tail_minimum(side, tails[side])))
    return min(cands, key=lambda c: (c[0], c[1]))[2]


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
            return {"defined": True, "value": value, "text": num(value)}
        which, jump = ("f'", j1) if j1 is not None else ("f''", j2)
        delta = 1e-9 * max(1.0, abs(x0))
        left, right = derivatives(module, np.array([x0 - delta, x0 + delta]))[order]
        text = f"undefined ({which} jumps {num(jump['left'])} -> {num(jump['right'])})"
        return {"defined": False, "left": float(left), "right": float(right), "text": text}

    inflect = sign_changes(d2_fn, grid, d2, [*d1_jumps, *d2_jumps])
    roots = inflect["roots"]
    non_c2 = sorted({j["x"] for j in [*d1_jumps, *d2_jumps]})
    if roots or inflect["through_jumps"]:
        parts = [num(r) for r in roots] + [
            f"{num(r)} (by a jump)" for r in inflect["through_jumps"]
        ]
        infl_text = ", ".join(parts)
    elif np.all(d2 == 0.0):
        infl_text = "none (f'' = 0)" if not non_c2 else "none (f'' = 0 off the kinks)"
    else:
        infl_text = "none"
    if non_c2:
        infl_text += "; f'' undefined at " + ", ".join(num(x) for x in non_c2)

    convex = convex_region(grid, d2, roots, d1_jumps)
    if np.all(d2 == 0.0) and not d1_jumps:
        convex_text = "everywhere (affine)"
    elif convex == [(-math.inf, math.inf)]:
        convex_text = "everywhere"
    elif not convex:
        convex_text = "nowhere"
    else:
        convex_text = " u ".join(interval_text(a, b) for a, b in convex)

    neg = grid < 0
    neg_sign = sign_changes(d1_fn, grid[neg], d1[neg], d1_jumps)
    zero_slope = [{"kind": "root", "x": r, "text": num(r)} for r in neg_sign["roots"]]
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
            text = "f' = 0 on " + interval_text(lo, hi, open_right=kink is not None)
            out.append({"kind": "interval", "interval": [lo, hi], "text": text})
        else:
            b32 = [grid[j] for i, j in _runs(zero32) if grid[i] <= a + GRID_STEP]
            text = (
                f"f' rounds to 0 for x <= {num(b, 4)} (float32: "
                f"{num(b32[0], 4) if b32 else 'never'}; nonzero in exact arithmetic)"
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
