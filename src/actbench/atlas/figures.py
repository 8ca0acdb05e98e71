"""The atlas's PNG figures: f, f′, f″ of every activation (small multiples and overlays), the
right tails with their fitted laws, GELU against its neighbours, the Monte Carlo z-scores and the
born-dead shares. Each file is written atomically."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actbench import activation_modules, records
from actbench.activation_shape import F64, derivatives, module_for
from actbench.activation_tails import fit_eval
from actbench.atlas.measure import USUAL_BETA, Z_LIMIT, gelu64, swish64


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
        # The temporary path keeps the .png suffix, from which savefig takes the format.
        with records.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
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
            fit = fit_eval(xt, t["coefficients"]) / math.log(10)
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
        gelu = gelu64()(xg).numpy()
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
