"""The seed article's claims about GELU, ReLU, Softplus and sigmoid gates, each with what the
atlas measured and a verdict derived from the measurements (never typed in).

Reads only the atlas dict that :func:`actbench.atlas.measure.compute_atlas` assembles, plus a few
direct evaluations of the registry's GELU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from actbench import activation_modules
from actbench.activation_shape import F64, GRID_STEP, WINDOW, derivatives, module_for
from actbench.number_text import interval_text, num


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
    gelu_module = module_for("gelu")  # float64 x·Φ(x), for values the profile does not hold
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
    sigmas = list(dict.fromkeys(row["sigma"] for row in noisy["rows"]))  # in the order run
    wrong_noisy = noisy["wrong"]["x*Phi(x/sigma) (no sigma*phi term)"]
    wrong_var = noisy["wrong"]["x*Phi(x/sigma^2) + sigma^2*phi(x/sigma^2)"]
    add(
        "E[ReLU(x + eps)] = x*Phi(x/sigma) + sigma*phi(x/sigma) for eps ~ N(0, sigma^2).",
        f"Monte Carlo over sigma in {sigmas}, {nc['n']} points: max |z| = "
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
        f"The gap E[ReLU(x+eps)] - GELU(x) peaks at x = {num(gap['max_gap_at'])} with "
        f"{num(gap['max_gap'])} (phi(0) = {num(phi0)}); it is the whole noisy-ReLU value at 0, "
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
    d4 = 4.0 - float(derivatives(gelu_module, 4.0)[0][0])
    f_m4 = float(derivatives(gelu_module, -4.0)[0][0])
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
        gv = gelu_module(neg)
    ratio_err = float((gv / neg - activation_modules.normal_cdf(neg)).abs().max())
    sign_kept = bool(torch.all(gv < 0))
    v32, v64 = gelu["vanishes_float32_below"], gelu["vanishes_float64_below"]
    # What float64 gives where float32 already returns exactly 0: the size that is lost.
    lost = float(derivatives(gelu_module, v32)[0][0]) if v32 else None
    add(
        "For x < 0, GELU(x)/x = Phi(x) is in (0, 0.5): negative inputs keep their sign and "
        "become small but do not vanish entirely.",
        f"max |GELU(x)/x - Phi(x)| = {ratio_err:.1e} and GELU(x) < 0 on all of [-8, 0): "
        f"{sign_kept}. But PyTorch's GELU returns exactly 0 for x <= {num(v32, 4)} in float32 "
        f"(where the float64 value is {num(lost, 3)}, far above float32's smallest number) and "
        f"for x <= {num(v64, 4)} in float64; GELU(-10) evaluates to {num(gelu['f_at_m10'])}.",
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
        + ", ".join(f"x = {num(k['x'])} ({num(k['left'])} -> {num(k['right'])})" for k in relu_k)
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
        + (", ".join(num(r) for r in roots) or "nowhere")
        + f"; GELU' < 0 on {', '.join(interval_text(*r) for r in gelu['negative_slope_region'])}"
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
