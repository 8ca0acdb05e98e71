"""The dashboard's figures as plotly.js figure dicts (``{"data": [...], "layout": {...}}``): the
ranking with its intervals, the LR sensitivity and the curves over steps, one colour per
activation (the report's :func:`~actbench.report.figures.activation_colour`).

Plain dicts rather than ``plotly.graph_objects``: a figure object carries plotly's whole
template into every figure's JSON, and the page holds dozens; plotly.js styles them itself.
Every trace has a ``meta`` naming what it shows, so the page (and its test) can read each
plotted value back and tell it apart.
"""

from __future__ import annotations

import math
from typing import Any

from actbench.dashboard.data import Band, Family
from actbench.report.analysis import Unit
from actbench.report.figures import activation_colour
from actbench.report.stats import CONFIDENCE

Figure = dict[str, Any]
LAYER_COLUMNS = 3
FONT = {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12}


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "height": height,
        "margin": {"l": 70, "r": 20, "t": 50, "b": 50},
        "font": FONT,
        "hovermode": "closest",
        "legend": {"orientation": "v"},
        "plot_bgcolor": "#fafafa",
        **extra,
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ----------------------------------------------------------------------------- the ranking


def ranking_figure(unit: Unit) -> Figure | None:
    """Mean test accuracy per activation with its t-interval, best at the top, each seed a tick;
    hover gives the numbers and the significance letters."""
    rows = [r for r in unit.rows if math.isfinite(r.mean)]
    if not rows:
        return None
    labels = [r.activation for r in rows]
    data = []
    for row in rows:
        colour = activation_colour(row.activation)
        half = _finite(row.half_width)
        interval = f"± {half * 100:.2f}" if half is not None else "(no interval: n < 2)"
        tags = f"letters {row.letters}" + (" · could be best" if row.could_be_best else "")
        if row.unstable:
            tags += f" · unstable ({row.diverged} diverged)"
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": row.activation,
                "legendgroup": row.activation,
                "x": [row.mean * 100],
                "y": [row.activation],
                "marker": {"color": colour, "size": 11},
                "error_x": {
                    "type": "data",
                    "array": [half * 100 if half is not None else 0.0],
                    "visible": half is not None,
                    "color": colour,
                    "thickness": 2,
                    "width": 6,
                },
                "hovertemplate": (
                    f"<b>{row.activation}</b> (row {row.position})<br>"
                    f"mean %{{x:.2f}} % {interval} ({CONFIDENCE:.0%} t-interval), "
                    f"n={row.n}<br>{tags}<extra></extra>"
                ),
                "meta": {"kind": "mean", "activation": row.activation, "key": "test/acc"},
            }
        )
        seeds = sorted(row.scores)
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{row.activation} seeds",
                "legendgroup": row.activation,
                "showlegend": False,
                "x": [row.scores[s] * 100 for s in seeds],
                "y": [row.activation] * len(seeds),
                "customdata": [str(s) for s in seeds],
                "marker": {"color": colour, "symbol": "line-ns-open", "size": 14, "opacity": 0.7},
                "hovertemplate": (
                    f"{row.activation}, seed %{{customdata}}: %{{x:.2f}} %<extra></extra>"
                ),
                "meta": {"kind": "seeds", "activation": row.activation, "key": "test/acc"},
            }
        )
    layout = _layout(
        f"Ranking — {unit.label}: test accuracy (%), mean with {CONFIDENCE:.0%} t-interval; "
        "ticks: seeds",
        110 + 36 * len(rows),
        showlegend=False,
        xaxis={"title": {"text": "test accuracy (%)"}, "zeroline": False},
        yaxis={"categoryorder": "array", "categoryarray": labels[::-1], "automargin": True},
    )
    return {"data": data, "layout": layout}


# ----------------------------------------------------------------------------- LR sensitivity


def lr_figure(unit: Unit) -> Figure | None:
    """Validation score against the learning rate per activation (bars: min-max over tuning
    seeds; a star marks the chosen LR; an x an LR that diverged on a seed)."""
    if not any(len(cells) > 1 for cells in unit.lrs.values()):
        return None
    data = []
    for act, cells in unit.lrs.items():
        colour = activation_colour(act)
        lrs = [lr for lr, c in cells.items() if c.scores]
        means = [cells[lr].mean * 100 for lr in lrs]
        lows = [min(cells[lr].scores) * 100 for lr in lrs]
        highs = [max(cells[lr].scores) * 100 for lr in lrs]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": act,
                "legendgroup": act,
                "x": lrs,
                "y": means,
                "line": {"color": colour},
                "marker": {"color": colour, "size": 7},
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [hi - m for hi, m in zip(highs, means, strict=True)],
                    "arrayminus": [m - lo for lo, m in zip(lows, means, strict=True)],
                    "color": colour,
                },
                "customdata": [[len(cells[lr].scores), cells[lr].n_diverged] for lr in lrs],
                "hovertemplate": (
                    f"<b>{act}</b> lr %{{x:.3g}}<br>mean %{{y:.2f}} % over %{{customdata[0]}} "
                    "seeds, %{customdata[1]} diverged<extra></extra>"
                ),
                "meta": {"kind": "lr", "activation": act, "key": unit.select_metric},
            }
        )
        chosen = unit.chosen_lr.get(act)
        if chosen in cells and cells[chosen].scores:
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": f"{act} chosen",
                    "legendgroup": act,
                    "showlegend": False,
                    "x": [chosen],
                    "y": [cells[chosen].mean * 100],
                    "marker": {
                        "color": colour,
                        "symbol": "star",
                        "size": 16,
                        "line": {"color": "black", "width": 1},
                    },
                    "hovertemplate": f"<b>{act}</b> chosen lr %{{x:.3g}}<extra></extra>",
                    "meta": {"kind": "chosen", "activation": act, "key": unit.select_metric},
                }
            )
        diverged = [lr for lr, c in cells.items() if c.n_diverged]
        if diverged:
            floor = min(means) if means else 0.0
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": f"{act} diverged",
                    "legendgroup": act,
                    "showlegend": False,
                    "x": diverged,
                    "y": [floor] * len(diverged),
                    "marker": {"color": colour, "symbol": "x", "size": 11},
                    "customdata": [cells[lr].n_diverged for lr in diverged],
                    "hovertemplate": (
                        f"<b>{act}</b> lr %{{x:.3g}}: diverged on %{{customdata}} seed(s)"
                        "<extra></extra>"
                    ),
                    "meta": {"kind": "diverged", "activation": act, "key": unit.select_metric},
                }
            )
    layout = _layout(
        f"LR sensitivity — {unit.label} (bars: min–max over tuning seeds; ★ chosen; "
        "× diverged on a seed)",
        420,
        xaxis={"type": "log", "title": {"text": "learning rate (log scale)"}},
        yaxis={"title": {"text": f"{unit.select_metric} (%)"}},
    )
    return {"data": data, "layout": layout}


# ----------------------------------------------------------------------------- curves


def _band_traces(
    band: Band, key: str, axes: tuple[str, str] = ("x", "y"), legend: bool = True
) -> list[dict[str, Any]]:
    colour = activation_colour(band.activation)
    xa, ya = axes
    fill = {
        "type": "scatter",
        "mode": "lines",
        "x": band.steps + band.steps[::-1],
        "y": band.hi + band.lo[::-1],
        "fill": "toself",
        "fillcolor": _rgba(colour, 0.18),
        "line": {"width": 0, "color": _rgba(colour, 0.0)},
        "hoverinfo": "skip",
        "legendgroup": band.activation,
        "showlegend": False,
        "name": f"{band.activation} band",
        "xaxis": xa,
        "yaxis": ya,
        "meta": {"kind": "band", "activation": band.activation, "key": key},
    }
    mean = {
        "type": "scatter",
        "mode": "lines+markers" if len(band.steps) < 30 else "lines",
        "x": band.steps,
        "y": band.mean,
        "customdata": [[lo, hi] for lo, hi in zip(band.lo, band.hi, strict=True)],
        "line": {"color": colour, "width": 2},
        "marker": {"size": 4},
        "name": f"{band.activation} (n={band.runs})",
        "legendgroup": band.activation,
        "showlegend": legend,
        "xaxis": xa,
        "yaxis": ya,
        "hovertemplate": (
            f"<b>{band.activation}</b> {key}<br>step %{{x}}: mean %{{y:.4g}}<br>"
            f"seeds min–max %{{customdata[0]:.4g}} – %{{customdata[1]:.4g}} "
            f"(n={band.runs})<extra></extra>"
        ),
        "meta": {"kind": "mean", "activation": band.activation, "key": key},
    }
    return [fill, mean]


def _log_axis(family: Family, bands: list[Band]) -> bool:
    values = [v for b in bands for v in b.lo]
    return family.log_y and bool(values) and min(values) > 0


def x_scale_buttons(axes: list[str], y: float = 1.0) -> list[dict[str, Any]]:
    """A linear/log switch for the step axes: diagnostics are logged at log-spaced steps, dense
    early, where a linear axis squeezes them (a log axis leaves out step 0)."""
    return [
        {
            "type": "buttons",
            "direction": "left",
            "x": 0.0,
            "y": y,
            "xanchor": "left",
            "yanchor": "bottom",
            "pad": {"t": 2, "b": 2},
            "font": {"size": 10},
            "buttons": [
                {"label": label, "method": "relayout", "args": [{f"{a}.type": kind for a in axes}]}
                for label, kind in (("linear steps", "linear"), ("log steps", "log"))
            ],
        }
    ]


def curve_figure(unit: Unit, family: Family) -> Figure | None:
    """One key over steps: per activation the mean over seeds and the min-max band."""
    if not family.total:
        return None
    data = [t for band in family.total for t in _band_traces(band, family.key)]
    log_y = _log_axis(family, family.total)
    layout = _layout(
        family.key,
        400,
        xaxis={"title": {"text": "optimizer step"}},
        yaxis={"title": {"text": family.key}, "type": "log" if log_y else "linear"},
        legend={"orientation": "h", "x": 0, "y": -0.22, "yanchor": "top"},
        margin={"l": 70, "r": 20, "t": 60, "b": 40},
        updatemenus=x_scale_buttons(["xaxis"]),
    )
    layout["title"].update({"x": 0.5, "y": 0.97, "yanchor": "top"})
    return {"data": data, "layout": layout}


def layers_figure(unit: Unit, family: Family) -> Figure | None:
    """The per-layer keys of a family, one small panel per layer, the same lines and bands."""
    if not family.layers:
        return None
    layers = list(family.layers)
    cols = min(LAYER_COLUMNS, len(layers))
    nrows = math.ceil(len(layers) / cols)
    gap_x, gap_y = 0.06, 0.12 / max(nrows, 1)
    width = (1 - gap_x * (cols - 1)) / cols
    height = (1 - gap_y * (nrows - 1)) / nrows
    layout = _layout(
        f"{family.key} per layer",
        150 + 240 * nrows,
    )
    data: list[dict[str, Any]] = []
    annotations = []
    all_bands = [b for bands in family.layers.values() for b in bands]
    log_y = _log_axis(family, all_bands)
    for k, layer in enumerate(layers):
        row, col = divmod(k, cols)
        suffix = "" if k == 0 else str(k + 1)
        x0 = col * (width + gap_x)
        y1 = 1 - row * (height + gap_y)
        layout[f"xaxis{suffix}"] = {
            "domain": [x0, x0 + width],
            "anchor": f"y{suffix}",
            "title": {"text": "step" if row == nrows - 1 else ""},
        }
        layout[f"yaxis{suffix}"] = {
            "domain": [y1 - height, y1],
            "anchor": f"x{suffix}",
            "type": "log" if log_y else "linear",
        }
        annotations.append(
            {
                "text": layer,
                "xref": "paper",
                "yref": "paper",
                "x": x0 + width / 2,
                "y": y1,
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 11},
            }
        )
        axes = (f"x{suffix}", f"y{suffix}")
        for band in family.layers[layer]:
            data += _band_traces(band, f"{family.key}/{layer}", axes, legend=k == 0)
    layout["annotations"] = annotations
    axes_names = [f"xaxis{'' if k == 0 else k + 1}" for k in range(len(layers))]
    layout["updatemenus"] = x_scale_buttons(axes_names, y=1.0 + 40 / layout["height"])
    layout["legend"] = {"orientation": "h", "x": 0, "y": -75 / layout["height"], "yanchor": "top"}
    layout["margin"] = {"l": 70, "r": 20, "t": 90, "b": 90}
    return {"data": data, "layout": layout}
