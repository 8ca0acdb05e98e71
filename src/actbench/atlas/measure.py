"""The atlas's own measurements beyond each activation's shape: GELU against the sigmoid gate
x·σ(βx), seeded Monte Carlo checks of the two probabilistic readings of GELU (noisy ReLU,
stochastic gate), "born dead" nets simulated many random initialisations at once with batched
matmuls, and :func:`compute_atlas`, which gathers everything (with the per-activation profiles
of :mod:`actbench.activation_shape` and the claims audit) into one JSON-ready dict.

Every loop runs over :func:`actbench.activations.names`, so a new registry entry gets its
born-dead line with no change here.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from scipy import optimize, stats
from torch import nn

from actbench import activation_modules, activations
from actbench.activation_shape import (
    F64,
    GRID_STEP,
    WINDOW,
    derivatives,
    module_for,
    profile_all,
    window_grid,
)
from actbench.activation_tails import CANCELLATION_FLOOR, TAIL_HI, TAIL_LO
from actbench.atlas.claims import claims

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
# GELU against the sigmoid gate
# --------------------------------------------------------------------------------------------


def gelu64() -> nn.Module:
    """PyTorch's exact GELU x·Φ(x) in float64: what the sigmoid gates and noisy ReLU are held to."""
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
    gelu = gelu64()
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
    gelu = gelu64()
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
        gelu = gelu64()(x).numpy()
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
# The whole atlas
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
