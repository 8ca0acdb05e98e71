"""The report's figures (matplotlib, object-oriented Agg: no pyplot state): the ranking, the
training curves of the ranked runs and the LR sensitivity, one file per figure and unit."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from actbench import records
from actbench.report.analysis import DEAD_KEYS, Unit
from actbench.report.curves import aggregate_curves, load_curves
from actbench.report.stats import CONFIDENCE

# One fixed colour per registered activation, the same in every figure and every report.
ACTIVATION_COLOURS = {
    "relu": "#1f77b4",
    "gelu": "#d62728",
    "identity": "#7f7f7f",
    "tanh": "#8c564b",
    "elu": "#2ca02c",
    "softplus": "#bcbd22",
    "silu": "#9467bd",
    "mish": "#e377c2",
    "gelu_tanh": "#ff7f0e",
    "swish": "#17becf",
    "leaky_relu": "#393b79",
    "gelu_sigmoid": "#ad494a",
    "noisy_relu": "#637939",
    "stochastic_gelu": "#7b4173",
}
_EXTRA_COLOURS = (
    "#5254a3", "#8ca252", "#bd9e39", "#843c39", "#a55194", "#6b6ecf", "#b5cf6b", "#e7ba52",
    "#d6616b", "#ce6dbd", "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c", "#de9ed6", "#3182bd",
)  # fmt: skip
FIGURE_PREFIXES = ("ranking_", "loss_", "dead_", "grad_norm_", "sharpness_", "lr_sensitivity_")


def activation_colour(label: str) -> str:
    """Fixed colour per activation; unregistered names and variants get a stable hashed one."""
    if label in ACTIVATION_COLOURS:
        return ACTIVATION_COLOURS[label]
    return _EXTRA_COLOURS[zlib.crc32(label.encode()) % len(_EXTRA_COLOURS)]


def _new_figure(
    width: float = 7.0, height: float = 4.2, nrows: int = 1, ncols: int = 1
) -> tuple[Any, np.ndarray]:
    # Object-oriented Agg figures: no pyplot global state, safe inside a sweep runner.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    with records.atomic_path(path) as tmp:  # keeps the .png suffix savefig infers the format from
        fig.savefig(tmp, dpi=110)
    return path


def _log_scale_if_positive(ax: Any, values: Iterable[float]) -> bool:
    vals = [v for v in values if math.isfinite(v)]
    if vals and min(vals) > 0:
        ax.set_yscale("log")
        return True
    return False


def plot_curves(
    unit: Unit,
    keys: Sequence[str],
    path: Path,
    title: str,
    ylabel: str,
    log_x: bool = False,
    log_y: bool = False,
) -> Path | None:
    """One panel per key: mean over seeds with a min-max band, one line per activation (the
    runs' curves as :func:`actbench.report.curves.load_curves` read them)."""
    keys = [k for k in keys if any(k in r.curves for r in unit.completed)]
    if not keys:
        return None
    ncols = 2 if len(keys) > 1 else 1
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = _new_figure(
        7.0 if ncols == 1 else 10.0, 4.2 if nrows == 1 else 3.4 * nrows, nrows, ncols
    )
    for ax, key in zip(axes.flat, keys, strict=False):
        everything: list[float] = []
        for row in unit.rows:
            runs = [r for r in unit.completed if r.activation == row.activation]
            agg = aggregate_curves([r.curve(key) for r in runs if key in r.curves])
            if agg is None:
                continue
            steps, mean, lo, hi = agg
            colour = activation_colour(row.activation)
            ax.plot(steps, mean, color=colour, lw=1.6, label=f"{row.activation} (n={len(runs)})")
            ax.fill_between(steps, lo, hi, color=colour, alpha=0.18, lw=0)
            everything += list(lo) + list(hi)
        if log_x:
            ax.set_xscale("symlog", linthresh=10)
        logged = log_y and _log_scale_if_positive(ax, everything)
        ax.set_xlabel("optimizer step" + (" (symlog)" if log_x else ""))
        ax.set_ylabel((key if len(keys) > 1 else ylabel) + (" (log scale)" if logged else ""))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, ncols=2 if len(unit.rows) > 6 else 1)
    fig.suptitle(f"{title} — {unit.label} (mean over seeds, band: min–max)", fontsize=10)
    return _save(fig, path)


def plot_ranking(unit: Unit, path: Path) -> Path | None:
    rows = [r for r in unit.rows if math.isfinite(r.mean)]
    if not rows:
        return None
    fig, axes = _new_figure(7.0, 0.9 + 0.38 * len(rows))
    ax = axes[0, 0]
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i  # best at the top
        colour = activation_colour(row.activation)
        half = row.half_width * 100 if math.isfinite(row.half_width) else 0.0
        ax.errorbar(row.mean * 100, y, xerr=half, fmt="o", color=colour, capsize=4, ms=6)
        seeds = [v * 100 for v in row.scores.values()]
        ax.plot(seeds, [y] * len(seeds), "|", color=colour, ms=10, alpha=0.6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_ranking_label(r) for r in reversed(rows)])
    ax.set_xlabel(
        f"test accuracy (%), mean with {CONFIDENCE:.0%} t-interval; ticks: seeds\n"
        "(a diverged seed at chance); ★ could be best; (letters)"
    )
    ax.set_title(f"Ranking — {unit.label}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _ranking_label(row: Any) -> str:
    mark = "★ " if row.could_be_best else ""
    extra = f", {row.diverged}/{row.n} diverged" if row.diverged else ""
    return f"{mark}{row.activation} ({row.letters}{extra})"


def plot_lr_sensitivity(unit: Unit, path: Path) -> Path | None:
    if not any(len(cells) > 1 for cells in unit.lrs.values()):
        return None
    fig, axes = _new_figure()
    ax = axes[0, 0]
    bottom = ax.get_xaxis_transform()  # x in data units, y in axes units
    for i, (act, cells) in enumerate(unit.lrs.items()):
        colour = activation_colour(act)
        for lr, c in cells.items():
            if c.n_diverged:  # x along the bottom, one row per activation: diverged on a seed
                ax.plot(lr, 0.03 + 0.04 * i, "x", color=colour, ms=9, mew=2, transform=bottom)
        lrs = [lr for lr, c in cells.items() if c.scores]
        if not lrs:
            continue
        means = np.array([cells[lr].mean for lr in lrs]) * 100
        lo = means - np.array([min(cells[lr].scores) for lr in lrs]) * 100
        hi = np.array([max(cells[lr].scores) for lr in lrs]) * 100 - means
        ax.errorbar(lrs, means, yerr=[lo, hi], color=colour, marker="o", ms=4, capsize=3, label=act)
        best = unit.chosen_lr.get(act)
        if best in cells and cells[best].scores:  # the sweeper's choice may lie off this table
            ax.plot(best, cells[best].mean * 100, "*", color=colour, ms=14, mec="k", mew=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"{unit.select_metric} (%), mean over completed tuning seeds")
    ax.set_title(
        f"LR sensitivity — {unit.label} (bars: min–max; ★ chosen; × diverged on a seed)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2 if len(unit.lrs) > 6 else 1)
    return _save(fig, path)


def make_figures(unit: Unit, out_dir: Path) -> tuple[dict[str, Path], str]:
    """All figures of a unit; also says which loss the loss figure shows."""
    load_curves(unit.completed)
    has_train_loss = any("train/loss" in r.curves for r in unit.completed)
    loss_key = "train/loss" if has_train_loss else "val/loss"
    s = unit.slug
    figures = {
        "ranking": plot_ranking(unit, out_dir / f"ranking_{s}.png"),
        "loss": plot_curves(
            unit, [loss_key], out_dir / f"loss_{s}.png",
            "Training loss" if has_train_loss else "Validation loss (no train/loss recorded)",
            loss_key, log_y=True,
        ),
        "dead": plot_curves(
            unit, DEAD_KEYS, out_dir / f"dead_{s}.png", "Dead / dormant / frozen units",
            "fraction of units", log_x=True,
        ),
        "grad_norm": plot_curves(
            unit, ["grad/global_norm"], out_dir / f"grad_norm_{s}.png",
            "Global gradient norm", "grad/global_norm", log_x=True, log_y=True,
        ),
        "sharpness": plot_curves(
            unit, ["curv/top_eig"], out_dir / f"sharpness_{s}.png",
            "Sharpness (top Hessian eigenvalue)", "curv/top_eig",
            log_x=True, log_y=True,
        ),
        "lr_sensitivity": plot_lr_sensitivity(unit, out_dir / f"lr_sensitivity_{s}.png"),
    }  # fmt: skip
    return {k: v for k, v in figures.items() if v is not None}, loss_key
