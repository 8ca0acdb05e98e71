"""``make report``: a sweep's run records -> statistics, tables and figures in ``reports/<sweep>/``.

A sweep writes one folder per configuration under ``multirun/<sweep>/`` (``summary.json``,
``config.yaml``, ``metrics.csv``). This module reads those records, never the training code, so it
works on a sweep that is still running: runs that are ``running``, ``failed`` or ``diverged`` are
counted and listed, and only completed runs enter the statistics.

Protocol. Activations are compared within a unit (model x dataset x any other swept setting).
In a two-stage sweep, ``tune`` runs pick one learning rate per (unit, activation) by the mean
validation score over tuning seeds, and only ``confirm`` runs (fresh seeds) are ranked; a sweep
without stages ranks all its runs. Test accuracies are compared with paired t-tests (paired by
seed: same seed, same batches and init stream), Holm-Bonferroni corrected within each family.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import itertools
import json
import logging
import math
import os
import re
import sys
import tempfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

log = logging.getLogger(__name__)

STATUSES = ("completed", "diverged", "failed", "running")
RANK_METRIC = "test/acc"
TUNE_METRIC = "val/acc_best"  # maximised
ALPHA = 0.05
CONFIDENCE = 0.95
BASELINES = ("relu", "gelu")
DEAD_KEYS = ("dead/hard", "dead/dormant_0.1", "dead/dormant_0.025", "dead/frozen")
CSV_METRICS = (
    "test/acc",
    "test/loss",
    "val/acc",
    "val/acc_best",
    "val/loss",
    "train/loss",
    *DEAD_KEYS,
    "curv/top_eig",
    "curv/trace",
    "grad/global_norm",
)
CURVE_KEYS = ("train/loss", "val/loss", *DEAD_KEYS, "grad/global_norm", "curv/top_eig")
# Overrides that are axes of the comparison, or never change what a run measures (the latter
# mirror conf/config.yaml's override_dirname exclude_keys).
AXIS_KEYS = ("activation", "seed", "optimizer.lr", "model", "data")
PRESENTATION_KEYS = (
    "logger",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "rerun",
    "torch_threads",
    "sweep.name",
    "sweep.stage",
    "run_dir",
)
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


class ReportError(ValueError):
    """A user error (unknown sweep, no records); the message is one line."""


# ----------------------------------------------------------------------------- statistics


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Mean and the half-width of its two-sided t confidence interval (NaN half-width at n < 2)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    if x.size < 2:
        return float(x.mean()), math.nan
    t = stats.t.ppf(0.5 + confidence / 2, x.size - 1)
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


@dataclass(frozen=True)
class PairedTest:
    diff: float  # mean of a - b over the shared seeds
    p: float  # two-sided; NaN with fewer than two pairs
    n: int  # number of pairs


def paired_t_test(a: Mapping[Any, float], b: Mapping[Any, float]) -> PairedTest:
    """Two-sided paired t-test of a vs b over the keys (seeds) both have a finite value for."""
    keys = sorted(k for k in set(a) & set(b) if math.isfinite(a[k]) and math.isfinite(b[k]))
    d = np.asarray([a[k] - b[k] for k in keys], dtype=float)
    if d.size == 0:
        return PairedTest(math.nan, math.nan, 0)
    if d.size < 2:
        return PairedTest(float(d.mean()), math.nan, 1)
    if np.ptp(d) == 0:  # zero variance: no t statistic; equal seeds are no evidence either way
        return PairedTest(float(d.mean()), 1.0 if d[0] == 0 else math.nan, int(d.size))
    p = stats.ttest_rel([a[k] for k in keys], [b[k] for k in keys]).pvalue
    return PairedTest(float(d.mean()), float(p), int(d.size))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaNs stay NaN
    and do not count towards the family size."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * p[i]))
        out[i] = running
    return out


@dataclass
class RankRow:
    activation: str
    scores: dict[Any, float]  # seed -> score
    mean: float
    std: float
    half_width: float
    rank: int
    better_than: list[str]
    tied_with: list[str]

    @property
    def n(self) -> int:
        return len(self.scores)


def rank_activations(
    scores: Mapping[str, Mapping[Any, float]], alpha: float = ALPHA
) -> list[RankRow]:
    """Rows in order of mean score; rank = 1 + the number of activations significantly better.

    Every pair is compared with a paired t-test, Holm-corrected over all pairs of the unit; a pair
    that is not significant (or cannot be tested: under two shared seeds) is a tie, so activations
    that nothing beats significantly share rank 1.
    """
    acts = sorted(scores, key=lambda a: (-_nanmean(scores[a].values()), a))
    pairs = list(itertools.combinations(acts, 2))
    tests = [paired_t_test(scores[a], scores[b]) for a, b in pairs]
    adjusted = holm([t.p for t in tests])
    beaten_by: dict[str, set[str]] = defaultdict(set)
    tied: dict[str, set[str]] = defaultdict(set)
    for (a, b), test, p in zip(pairs, tests, adjusted, strict=True):
        if math.isfinite(p) and p < alpha and test.diff != 0:
            winner, loser = (a, b) if test.diff > 0 else (b, a)
            beaten_by[loser].add(winner)
        else:
            tied[a].add(b)
            tied[b].add(a)
    rows = []
    for a in acts:
        values = list(scores[a].values())
        mean, half = t_interval(values)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        better = sorted(b for b in acts if a in beaten_by[b])
        rows.append(
            RankRow(
                activation=a,
                scores=dict(scores[a]),
                mean=mean,
                std=std,
                half_width=half,
                rank=1 + len(beaten_by[a]),
                better_than=better,
                tied_with=[b for b in acts if b in tied[a]],
            )
        )
    return rows


def baseline_family(
    scores: Mapping[str, Mapping[Any, float]], baseline: str
) -> dict[str, tuple[PairedTest, float]]:
    """Each other activation vs ``baseline``: (paired test, Holm-adjusted p within this family)."""
    if baseline not in scores:
        return {}
    others = [a for a in scores if a != baseline]
    tests = [paired_t_test(scores[a], scores[baseline]) for a in others]
    adjusted = holm([t.p for t in tests])
    return {a: (t, float(p)) for a, t, p in zip(others, tests, adjusted, strict=True)}


def _nanmean(values: Iterable[float]) -> float:
    x = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(x)) if x else -math.inf


# ----------------------------------------------------------------------------- records


@dataclass
class Run:
    """One run folder of a sweep, flattened to what the report needs."""

    folder: Path
    status: str
    stage: str | None
    model: str
    dataset: str
    activation: str  # name plus any non-default activation.* overrides
    lr: float | None
    seed: int | None
    metrics: dict[str, float]
    wall_time_s: float | None
    steps: int | None
    max_steps: int | None
    diverged_at_step: int | None
    peak_rss_mib: float | None
    peak_gpu_mib: float | None
    run_id: str
    overrides: dict[str, str]
    summary: dict[str, Any]
    config: dict[str, Any]
    setting: str = ""  # the other swept overrides that vary between runs, "" when none

    @property
    def unit(self) -> tuple[str, str, str]:
        return (self.model, self.dataset, self.setting)


def load_runs(sweep_dir: Path) -> list[Run]:
    """Every run folder directly under ``sweep_dir`` that holds a readable ``summary.json``."""
    runs = []
    for folder in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir()):
        if folder.name == "previous" or folder.name.startswith("."):
            continue
        summary = _read_json(folder / "summary.json")
        if not isinstance(summary, dict):
            continue  # not a run folder (wandb/, a half-created job folder)
        config = _read_yaml(folder / "config.yaml")
        runs.append(_make_run(folder, summary, config))
    _assign_settings(runs)
    return runs


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _parse_overrides(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items or ():
        if "=" in item:
            key, value = item.split("=", 1)
            out[key.lstrip("+~")] = value
    return out


def _get(mapping: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = mapping
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    f = _float(value)
    return int(f) if f is not None and math.isfinite(f) else None


def _make_run(folder: Path, summary: dict[str, Any], config: dict[str, Any]) -> Run:
    ov = _parse_overrides(summary.get("overrides") or [])
    # config.yaml is written just after the first summary, so a fresh run may lack it.
    name = _first(_get(summary, "activation.name"), _get(config, "activation.name"))
    name = str(_first(name, ov.get("activation"), "?"))
    params = sorted((k.split(".", 1)[1], v) for k, v in ov.items() if k.startswith("activation."))
    label = name + (f"({', '.join(f'{k}={v}' for k, v in params)})" if params else "")
    metrics = {
        k: float(v)
        for k, v in (summary.get("metrics") or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    peak = summary.get("peak_memory") or {}
    return Run(
        folder=folder,
        status=str(summary.get("status") or "failed"),
        stage=_first(_get(summary, "sweep.stage"), _get(config, "sweep.stage")),
        model=str(_first(_get(config, "model.name"), ov.get("model"), "?")),
        dataset=str(
            _first(_get(config, "data.name"), _get(summary, "data.dataset"), ov.get("data"), "?")
        ),
        activation=label,
        lr=_float(_first(_get(config, "optimizer.lr"), ov.get("optimizer.lr"))),
        seed=_int(_first(_get(summary, "seeds.seed"), config.get("seed"), ov.get("seed"))),
        metrics=metrics,
        wall_time_s=_float(summary.get("wall_time_s")),
        steps=_int(summary.get("steps")),
        max_steps=_int(_first(_get(config, "trainer.max_steps"), ov.get("trainer.max_steps"))),
        diverged_at_step=_int(summary.get("diverged_at_step")),
        peak_rss_mib=_float(peak.get("rss_mib")),
        peak_gpu_mib=_float(peak.get("gpu_mib")),
        run_id=str(summary.get("run_id") or folder.name),
        overrides=ov,
        summary=summary,
        config=config,
    )


def _assign_settings(runs: list[Run]) -> None:
    """Other overrides that vary between runs (a swept depth, say) split the comparison units."""
    ignored = (*AXIS_KEYS, *PRESENTATION_KEYS)
    keys = {
        k
        for r in runs
        for k in r.overrides
        if k not in ignored
        and not k.startswith("activation.")
        and not k.startswith(("logger.", "sweep."))
    }
    varying = sorted(k for k in keys if len({r.overrides.get(k) for r in runs}) > 1)
    for r in runs:
        r.setting = ",".join(f"{k}={r.overrides.get(k, '-')}" for k in varying)


# ----------------------------------------------------------------------------- the analysis


@dataclass
class LRCell:
    scores: list[float]
    n_diverged: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores)) if self.scores else math.nan


def lr_table(runs: Iterable[Run], metric: str = TUNE_METRIC) -> dict[str, dict[float, LRCell]]:
    """activation -> lr -> validation scores of completed runs and the number that diverged;
    failed and running runs are no result and are left out."""
    table: dict[str, dict[float, LRCell]] = defaultdict(dict)
    for r in runs:
        if r.lr is None or r.status not in ("completed", "diverged"):
            continue
        cell = table[r.activation].setdefault(r.lr, LRCell([], 0))
        if r.status == "diverged":
            cell.n_diverged += 1
        elif math.isfinite(r.metrics.get(metric, math.nan)):
            cell.scores.append(r.metrics[metric])
    return {a: dict(sorted(cells.items())) for a, cells in sorted(table.items())}


def select_lr(table: Mapping[str, Mapping[float, LRCell]]) -> dict[str, float]:
    """The LR with the highest mean validation score per activation (ties: the smaller LR).

    An LR that diverged on any tuning seed is never chosen (it is unstable), the same rule the
    sweep runner applies when it picks the LR to confirm."""
    chosen = {}
    for act, cells in table.items():
        scored = [
            (lr, c.mean) for lr, c in cells.items() if not c.n_diverged and math.isfinite(c.mean)
        ]
        if scored:
            chosen[act] = max(scored, key=lambda item: (item[1], -item[0]))[0]
    return chosen


@dataclass
class Unit:
    """The comparison within one model x dataset (x setting)."""

    key: tuple[str, str, str]
    runs: list[Run]  # all runs of the unit, every status and stage
    staged: bool
    tune_runs: list[Run]
    ranked_runs: list[Run]  # the runs the ranking draws on (completed or not)
    lrs: dict[str, dict[float, LRCell]]
    chosen_lr: dict[str, float]
    rows: list[RankRow]
    vs: dict[str, dict[str, tuple[PairedTest, float]]]  # baseline -> activation -> test

    @property
    def label(self) -> str:
        model, dataset, setting = self.key
        return f"{model} on {dataset}" + (f" [{setting}]" if setting else "")

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "-".join(p for p in self.key if p))

    @property
    def completed(self) -> list[Run]:
        return [r for r in self.ranked_runs if r.status == "completed"]


def analyse_unit(key: tuple[str, str, str], runs: list[Run]) -> Unit:
    staged = any(r.stage for r in runs)
    tune = [r for r in runs if r.stage == "tune"] if staged else list(runs)
    lrs = lr_table(tune)
    chosen = select_lr(lrs)
    # Rank one LR per activation: the chosen one (confirmation runs left at an LR chosen by an
    # earlier, incomplete tuning stage are listed, never mixed into the ranking).
    if staged:
        ranked = [
            r for r in runs if r.stage == "confirm" and r.lr == chosen.get(r.activation, r.lr)
        ]
    else:  # single stage: where an activation ran at several LRs, rank its best one only
        ranked = [
            r
            for r in runs
            if len(lrs.get(r.activation, {})) < 2 or r.lr == chosen.get(r.activation)
        ]
    scores: dict[str, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in ranked:
        value = r.metrics.get(RANK_METRIC, math.nan)
        if r.status == "completed" and math.isfinite(value):
            scores[r.activation][r.seed].append(value)
    paired = {
        a: {s: float(np.mean(v)) for s, v in by_seed.items()} for a, by_seed in scores.items()
    }
    return Unit(
        key=key,
        runs=runs,
        staged=staged,
        tune_runs=tune if staged else [],
        ranked_runs=ranked,
        lrs=lrs,
        chosen_lr=chosen,
        rows=rank_activations(paired),
        vs={b: baseline_family(paired, b) for b in BASELINES},
    )


def analyse(runs: list[Run]) -> list[Unit]:
    by_unit: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for r in runs:
        by_unit[r.unit].append(r)
    return [analyse_unit(k, v) for k, v in sorted(by_unit.items())]


def status_counts(runs: Iterable[Run]) -> Counter[str]:
    return Counter(r.status for r in runs)


# ----------------------------------------------------------------------------- curves


def read_curves(path: Path, keys: Sequence[str] = CURVE_KEYS) -> dict[str, np.ndarray]:
    """key -> array of (step, value) rows from Lightning's wide ``metrics.csv`` (empty cells
    skipped; a step logged twice keeps its last value)."""
    found: dict[str, dict[int, float]] = defaultdict(dict)
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                step = _int(row.get("step"))
                if step is None:
                    continue
                for key in keys:
                    value = _float(row.get(key) or None)
                    if value is not None:
                        found[key][step] = value
    except OSError:
        return {}
    return {k: np.array(sorted(v.items()), dtype=float) for k, v in found.items()}


def aggregate_curves(curves: Sequence[np.ndarray]) -> tuple[np.ndarray, ...] | None:
    """Steps, mean, min and max over runs at each step any run logged (the band is min-max)."""
    per_step: dict[float, list[float]] = defaultdict(list)
    for curve in curves:
        for step, value in curve:
            if math.isfinite(value):
                per_step[step].append(value)
    if not per_step:
        return None
    steps = np.array(sorted(per_step))
    vals = [per_step[s] for s in steps]
    return (
        steps,
        np.array([np.mean(v) for v in vals]),
        np.array([np.min(v) for v in vals]),
        np.array([np.max(v) for v in vals]),
    )


# ----------------------------------------------------------------------------- figures


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
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def _log_scale_if_positive(ax: Any, values: Iterable[float]) -> bool:
    vals = [v for v in values if math.isfinite(v)]
    if vals and min(vals) > 0:
        ax.set_yscale("log")
        return True
    return False


def plot_curves(
    unit: Unit,
    curves: Mapping[Path, dict[str, np.ndarray]],
    keys: Sequence[str],
    path: Path,
    title: str,
    ylabel: str,
    log_x: bool = False,
    log_y: bool = False,
) -> Path | None:
    """One panel per key: mean over seeds with a min-max band, one line per activation."""
    keys = [k for k in keys if any(k in curves.get(r.folder, {}) for r in unit.completed)]
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
            agg = aggregate_curves([curves[r.folder][key] for r in runs if key in curves[r.folder]])
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
    ax.set_yticklabels([f"{r.activation} (rank {r.rank})" for r in reversed(rows)])
    ax.set_xlabel(f"test accuracy (%), mean with {CONFIDENCE:.0%} t-interval; ticks: seeds")
    ax.set_title(f"Ranking — {unit.label}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


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
        if act in unit.chosen_lr:
            best = unit.chosen_lr[act]
            ax.plot(best, cells[best].mean * 100, "*", color=colour, ms=14, mec="k", mew=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"{TUNE_METRIC} (%), mean over completed tuning seeds")
    ax.set_title(
        f"LR sensitivity — {unit.label} (bars: min–max; ★ chosen; × diverged on a seed)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2 if len(unit.lrs) > 6 else 1)
    return _save(fig, path)


def make_figures(unit: Unit, out_dir: Path) -> tuple[dict[str, Path], str]:
    """All figures of a unit; also says which loss the loss figure shows."""
    curves = {r.folder: read_curves(r.folder / "metrics.csv") for r in unit.completed}
    has_train_loss = any("train/loss" in c for c in curves.values())
    loss_key = "train/loss" if has_train_loss else "val/loss"
    s = unit.slug
    figures = {
        "ranking": plot_ranking(unit, out_dir / f"ranking_{s}.png"),
        "loss": plot_curves(
            unit, curves, [loss_key], out_dir / f"loss_{s}.png",
            "Training loss" if has_train_loss else "Validation loss (no train/loss recorded)",
            loss_key, log_y=True,
        ),
        "dead": plot_curves(
            unit, curves, DEAD_KEYS, out_dir / f"dead_{s}.png", "Dead / dormant / frozen units",
            "fraction of units", log_x=True,
        ),
        "grad_norm": plot_curves(
            unit, curves, ["grad/global_norm"], out_dir / f"grad_norm_{s}.png",
            "Global gradient norm", "grad/global_norm", log_x=True, log_y=True,
        ),
        "sharpness": plot_curves(
            unit, curves, ["curv/top_eig"], out_dir / f"sharpness_{s}.png",
            "Sharpness (top Hessian eigenvalue)", "curv/top_eig",
            log_x=True, log_y=True,
        ),
        "lr_sensitivity": plot_lr_sensitivity(unit, out_dir / f"lr_sensitivity_{s}.png"),
    }  # fmt: skip
    return {k: v for k, v in figures.items() if v is not None}, loss_key


# ----------------------------------------------------------------------------- tables


SUMMARY_COLUMNS = (
    "sweep", "stage", "model", "dataset", "setting", "activation", "lr", "seed", "status",
    "test/acc", "test/loss", "val/acc_best", *DEAD_KEYS, "curv/top_eig", "curv/trace",
    "grad/global_norm", "wall_time_s", "steps", "diverged_at_step", "peak_rss_mib",
    "peak_gpu_mib", "run_id", "run_folder",
)  # fmt: skip
_STAGE_ORDER = {"tune": 0, "confirm": 1, None: 2}


def summary_rows(runs: Iterable[Run], sweep: str) -> list[dict[str, Any]]:
    """One row per run (not aggregates), every status."""
    rows = []
    ordered = sorted(
        runs,
        key=lambda r: (r.unit, _STAGE_ORDER.get(r.stage, 3), r.activation, r.lr or 0, r.seed or 0),
    )
    for r in ordered:
        row: dict[str, Any] = {
            "sweep": sweep,
            "stage": r.stage or "",
            "model": r.model,
            "dataset": r.dataset,
            "setting": r.setting,
            "activation": r.activation,
            "lr": r.lr,
            "seed": r.seed,
            "status": r.status,
            "wall_time_s": r.wall_time_s,
            "steps": r.steps,
            "diverged_at_step": r.diverged_at_step,
            "peak_rss_mib": r.peak_rss_mib,
            "peak_gpu_mib": r.peak_gpu_mib,
            "run_id": r.run_id,
            "run_folder": str(r.folder),
        }
        for key in SUMMARY_COLUMNS:
            if key not in row:
                row[key] = r.metrics.get(key)
        rows.append({k: ("" if row[k] is None else row[k]) for k in SUMMARY_COLUMNS})
    return rows


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_summary_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write_text(path, buf.getvalue())
    return path


# ----------------------------------------------------------------------------- README


def _pct(x: float | None, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}" if x is not None and math.isfinite(x) else "—"


def _num(x: float | None, fmt: str = ".3g") -> str:
    return format(x, fmt) if x is not None and math.isfinite(x) else "—"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _lr(lr: float | None) -> str:
    return f"{lr:g}" if lr is not None else "—"


def _join(values: Iterable[Any]) -> str:
    items = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
    return ", ".join(str(v) for v in items) if items else "—"


def _mean_of(runs: Sequence[Run], get: Any) -> float:
    vals = [v for v in (get(r) for r in runs) if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def _status_phrase(counts: Mapping[str, int]) -> str:
    names = [*STATUSES, *sorted(set(counts) - set(STATUSES))]
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in names if counts.get(s, 0) or s in STATUSES)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _model_phrase(runs: Sequence[Run]) -> str:
    descs = set()
    for r in runs:
        model = r.config.get("model") or {}
        params = [
            f"{k}={v}"
            for k, v in model.items()
            if k not in ("_target_", "_partial_", "name") and not isinstance(v, (dict, list))
        ]
        descs.add(f"`{r.model}`" + (f" ({', '.join(params)})" if params else ""))
    return "; ".join(sorted(descs))


def _data_phrase(runs: Sequence[Run]) -> str:
    parts = []
    sizes = {
        " / ".join(f"{k} {v}" for k, v in _get(r.summary, "data.sizes").items())
        for r in runs
        if isinstance(_get(r.summary, "data.sizes"), dict)
    }
    parts += [f"{s} examples" for s in sorted(sizes)]
    split = _join(_get(r.config, "data.split_seed") for r in runs)
    fingerprints = {_get(r.summary, "data.fingerprint") for r in runs} - {None}
    fp = (
        f"fingerprint {next(iter(fingerprints))}"
        if len(fingerprints) == 1
        else f"**{len(fingerprints)} different data fingerprints**: {_join(fingerprints)}"
        if fingerprints
        else "no fingerprint recorded"
    )
    augment = _join(_get(r.config, "data.augment") for r in runs)
    return f"`{runs[0].dataset}`: " + "; ".join(
        [*parts, f"split seed {split}", f"augment {augment}", fp]
    )


def _training_phrase(runs: Sequence[Run]) -> str:
    budget = _join(r.max_steps for r in runs)
    trained = Counter(r.steps for r in runs if r.status == "completed" and r.steps is not None)
    trained_txt = ", ".join(f"{s} ({n} runs)" for s, n in sorted(trained.items())) or "—"
    opt = _join(
        "{} (weight decay {}, schedule {})".format(
            *(_get(r.config, f"optimizer.{k}") for k in ("name", "weight_decay", "schedule"))
        )
        for r in runs
        if _get(r.config, "optimizer.name")
    )
    batch = _join(_get(r.config, "data.batch_size") for r in runs)
    loss = _join(r.config.get("loss") for r in runs)
    return (
        f"budget {budget} optimizer steps (steps trained by completed runs: {trained_txt}); "
        f"optimizer {opt}; batch size {batch}; loss {loss}"
    )


def _environment_lines(runs: Sequence[Run]) -> list[str]:
    devices = Counter(
        "{} ({}, {} torch threads)".format(
            *(
                _get(r.summary, f"reproducibility.{k}")
                for k in ("device", "device_name", "torch_threads")
            )
        )
        for r in runs
        if _get(r.summary, "reproducibility.device")
    )
    commits = Counter(
        f"{str(_get(r.summary, 'reproducibility.git.commit'))[:10]}"
        + (" (dirty)" if _get(r.summary, "reproducibility.git.dirty") else "")
        for r in runs
        if _get(r.summary, "reproducibility.git.commit")
    )
    versions = next(
        (_get(r.summary, "reproducibility.versions") for r in runs if r.status == "completed"),
        None,
    )
    total = sum(r.wall_time_s or 0.0 for r in runs)
    lines = [
        "- Hardware: " + (", ".join(f"{d}: {n} runs" for d, n in devices.items()) or "—") + ".",
        "- Code: git " + (", ".join(f"{c}: {n} runs" for c, n in commits.items()) or "—") + ".",
    ]
    if versions:
        lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    lines.append(f"- Compute: {total / 60:.1f} min of recorded run wall time in total.")
    return lines


def _runs_phrase(row_runs: Sequence[Run]) -> str:
    counts = status_counts(row_runs)
    order = dict.fromkeys((*STATUSES, *sorted(counts)))
    return ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)) or "—"


def _unit_section(unit: Unit, figures: Mapping[str, Path], loss_key: str) -> list[str]:
    lines = [f"## {unit.label}", ""]
    ranked = unit.ranked_runs
    seeds_ranked = _join(r.seed for r in ranked)
    lines += [
        f"- Model: {_model_phrase(unit.runs)}.",
        f"- Data: {_data_phrase(unit.runs)}.",
        f"- Training: {_training_phrase(unit.runs)}.",
    ]
    if unit.staged:
        lines.append(
            f"- Two stages: {len(unit.tune_runs)} tuning runs (seeds "
            f"{_join(r.seed for r in unit.tune_runs)}; learning rates "
            f"{_join(_lr(r.lr) for r in unit.tune_runs)}) chose one LR per activation on "
            f"`{TUNE_METRIC}`; "
            + (
                f"{len(ranked)} confirmation runs (seeds {seeds_ranked}) are ranked."
                if ranked
                else "no confirmation run yet."
            )
        )
    else:
        lines.append(f"- Single stage: {len(ranked)} runs ranked, seeds {seeds_ranked}.")
    lines.append("")

    lines += ["### Ranking", ""]
    if not unit.rows:
        lines += ["No completed run to rank yet.", ""]
    else:
        header = ["rank", "activation", "test acc % (mean ± std)", "95 % CI", "n"]
        header += [f"Δ vs {b} pp (Holm p)" for b in BASELINES if unit.vs.get(b)]
        header += ["tied with (not significantly different)", "LR", "runs"]
        table_rows = []
        for row in unit.rows:
            runs = [r for r in ranked if r.activation == row.activation]
            ci = (
                f"[{_pct(row.mean - row.half_width)}, {_pct(row.mean + row.half_width)}]"
                if math.isfinite(row.half_width)
                else "—"
            )
            cells = [
                row.rank,
                f"`{row.activation}`",
                f"{_pct(row.mean, 2)} ± {_pct(row.std, 2)}",
                ci,
                row.n,
            ]
            for b in BASELINES:
                if not unit.vs.get(b):
                    continue
                test = unit.vs[b].get(row.activation)
                cells.append(
                    "—"
                    if test is None
                    else f"{100 * test[0].diff:+.2f} ({_p(test[1])})"
                    if math.isfinite(test[0].diff)
                    else "—"
                )
            cells += [
                ", ".join(row.tied_with) or "—",
                _join(_lr(r.lr) for r in runs),
                _runs_phrase(runs),
            ]
            table_rows.append(cells)
        lines += [*_table(header, table_rows), ""]
        unranked = sorted({r.activation for r in ranked} - {row.activation for row in unit.rows})
        if unranked:
            lines += [f"Not ranked (no completed run yet): {', '.join(unranked)}.", ""]
        top = [row.activation for row in unit.rows if row.rank == 1]
        lines += [
            f"Rank 1 (no activation significantly better): {', '.join(f'`{a}`' for a in top)}. "
            f"Ranked on `{RANK_METRIC}`; Δ in percentage points, paired by seed.",
            "",
        ]
        if "ranking" in figures:
            lines += [f"![ranking]({figures['ranking'].name})", ""]

    lines += _lr_section(unit, figures)
    lines += _diagnostics_section(unit)
    lines += ["### Training dynamics", ""]
    if not unit.completed:
        return [*lines, "No completed ranked run yet.", ""]
    captions = {
        "loss": f"`{loss_key}`"
        + ("" if loss_key == "train/loss" else " (no `train/loss` in these records' metrics.csv)"),
        "dead": "dead, dormant and frozen unit fractions",
        "grad_norm": "global gradient norm",
        "sharpness": "sharpness (`curv/top_eig`)",
    }
    for key, caption in captions.items():
        if key in figures:
            lines += [f"![{caption}]({figures[key].name})", ""]
        else:
            lines += [f"No {caption} in the completed runs' metrics.csv.", ""]
    return lines


def _lr_section(unit: Unit, figures: Mapping[str, Path]) -> list[str]:
    lines = ["### Learning rate", ""]
    all_lrs = sorted({lr for cells in unit.lrs.values() for lr in cells})
    if not unit.staged and len(all_lrs) <= 1:
        return [
            *lines,
            f"Every run used optimizer.lr = {_join(_lr(r.lr) for r in unit.runs)}; this sweep "
            "tunes no learning rate, so the ranking holds at that learning rate only.",
            "",
        ]
    if not unit.staged:
        lines += [
            "Single-stage sweep with several LRs: each activation is ranked at the LR with the "
            f"best mean `{TUNE_METRIC}`, chosen on the same seeds it is then tested on, which "
            "flatters every activation a little (no held-out seeds).",
            "",
        ]
    header = ["activation", "chosen LR", *(_lr(lr) for lr in all_lrs)]
    rows = []
    for act, cells in unit.lrs.items():
        chosen = unit.chosen_lr.get(act)
        row = [f"`{act}`", _lr(chosen)]
        for lr in all_lrs:
            cell = cells.get(lr)
            if cell is None or not (cell.scores or cell.n_diverged):
                row.append("—")
                continue
            text = f"{_pct(cell.mean)} (n={len(cell.scores)}"
            text += f", {cell.n_diverged} diverged)" if cell.n_diverged else ")"
            row.append(f"**{text}**" if lr == chosen else text)
        rows.append(row)
    lines += [
        f"Mean `{TUNE_METRIC}` (%) per learning rate over tuning seeds; bold: chosen "
        "(an LR that diverged on any tuning seed is never chosen).",
        "",
        *_table(header, rows),
        "",
    ]
    if unit.staged:
        mismatched = sorted(
            {
                f"`{r.activation}` ran at {_lr(r.lr)}, "
                f"chosen {_lr(unit.chosen_lr.get(r.activation))}"
                for r in unit.ranked_runs
                if r.lr != unit.chosen_lr.get(r.activation)
            }
        )
        if mismatched:
            lines += ["Confirmation runs not at the chosen LR: " + "; ".join(mismatched) + ".", ""]
    if "lr_sensitivity" in figures:
        lines += [f"![LR sensitivity]({figures['lr_sensitivity'].name})", ""]
    return lines


def _diagnostics_section(unit: Unit) -> list[str]:
    lines = ["### Final diagnostics and cost", ""]
    done = unit.completed
    if not done:
        return [*lines, "No completed run yet.", ""]
    has_gpu = any(r.peak_gpu_mib is not None for r in done)
    header = [
        "activation", "dead/hard %", "dormant τ=0.1 %", "dormant τ=0.025 %", "frozen %",
        "sharpness (curv/top_eig)", "curv/trace", "grad/global_norm", "wall time s",
        "peak RSS MiB", *(["peak GPU MiB"] if has_gpu else []),
    ]  # fmt: skip
    rows = []
    for row in unit.rows:
        runs = [r for r in done if r.activation == row.activation]
        m = {k: _mean_of(runs, lambda r, k=k: r.metrics.get(k)) for k in CSV_METRICS}
        cells = [
            f"`{row.activation}`",
            *(_pct(m[k], 2) for k in DEAD_KEYS),
            _num(m["curv/top_eig"]),
            _num(m["curv/trace"]),
            _num(m["grad/global_norm"]),
            _num(_mean_of(runs, lambda r: r.wall_time_s), ".1f"),
            _num(_mean_of(runs, lambda r: r.peak_rss_mib), ".0f"),
        ]
        if has_gpu:
            cells.append(_num(_mean_of(runs, lambda r: r.peak_gpu_mib), ".0f"))
        rows.append(cells)
    lines += [
        "Means over completed ranked runs at the end of training. Wall time is fit + test with "
        "diagnostics, as recorded (parallel workers shared the machine). Peak RSS is the worker "
        "process's peak (`ru_maxrss`), which includes the interpreter, the data and any earlier "
        "job the same worker ran.",
        "",
        *_table(header, rows),
        "",
    ]
    return lines


METHOD_LINES = [
    "## How the numbers were computed",
    "",
    f"- Score: `{RANK_METRIC}`, accuracy on the held-out test split with the final weights (one "
    "evaluation after the last step). Mean ± sample standard deviation over seeds; "
    f"{CONFIDENCE:.0%} CI = mean ± t(0.975, n−1)·s/√n (not clipped to [0, 100] %; with 2 seeds "
    "t = 12.7, so such intervals are very wide).",
    "- Pairing: a seed fixes the data order and the initialisation stream for every activation, so "
    "differences are paired t-tests over the seeds both activations completed.",
    "- Multiple comparisons: Holm–Bonferroni within each family: (a) every activation against "
    "`relu`, (b) every activation against `gelu` (m = number of other activations each), (c) all "
    f"pairs of activations within a unit, for the ranks. Significance level α = {ALPHA}.",
    "- Ties: rank = 1 + the number of activations significantly better after (c); activations that "
    "no other beats significantly share rank 1, and 'tied with' lists those not significantly "
    "different. A tie means these seeds cannot separate them, not that they are equal; with "
    "few seeds only large, consistent differences are significant. Pairs with fewer than two "
    "shared seeds cannot be tested and count as ties.",
    "- Only completed runs are ranked. Diverged runs (non-finite training loss) are counted and "
    "shown in the 'runs' column; failed and running runs are counted and listed below.",
    f"- Learning rate (two-stage sweeps): the LR with the highest mean `{TUNE_METRIC}` over the "
    "tuning seeds per activation (an LR that diverged on any tuning seed is never chosen; ties "
    "go to the smaller LR); "
    "only confirmation runs on fresh seeds are ranked, so the selection does not bias the test.",
    "- Curves: mean over completed seeds at each logged step, band from the minimum to the maximum "
    "over seeds. Colours are fixed per activation across every figure.",
    "",
]


def write_readme(
    sweep: str,
    sweep_dir: Path,
    runs: list[Run],
    units: list[Unit],
    figures: Mapping[tuple[str, str, str], tuple[dict[str, Path], str]],
    path: Path,
) -> Path:
    counts = status_counts(runs)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Report: sweep `{sweep}`",
        "",
        f"Generated {now} by `actbench-report` from {len(runs)} run records in `{sweep_dir}` "
        f"({_status_phrase(counts)}). Per-run numbers: [summary.csv](summary.csv).",
        "",
    ]
    unfinished = counts.get("running", 0)
    if unfinished:
        lines += [
            f"> **Incomplete sweep**: {unfinished} of {len(runs)} runs are still running "
            "(or were interrupted); the statistics below use the runs finished so far.",
            "",
        ]
    lines += ["## What was measured", ""]
    lines += [
        f"- {len(units)} comparison unit(s): " + ", ".join(u.label for u in units) + ".",
        "- Activations: " + _join(r.activation for r in runs) + ".",
        "- Protocol: "
        + (
            "two stages (tune LR on validation, confirm on fresh seeds)."
            if any(u.staged for u in units)
            else "single stage (every run is ranked; no separate tuning stage)."
        ),
        *_environment_lines(runs),
        "",
    ]
    stage_header = ["unit", "stage", *STATUSES, "total"]
    stage_rows = []
    for u in units:
        for stage in sorted({r.stage for r in u.runs}, key=lambda s: _STAGE_ORDER.get(s, 3)):
            c = status_counts(r for r in u.runs if r.stage == stage)
            stage_rows.append(
                [u.label, stage or "single", *(c.get(s, 0) for s in STATUSES), sum(c.values())]
            )
    lines += ["Run status counts:", "", *_table(stage_header, stage_rows), ""]
    lines += METHOD_LINES
    for u in units:
        figs, loss_key = figures[u.key]
        lines += _unit_section(u, figs, loss_key)
    others = [r for r in runs if r.status != "completed"]
    lines += ["## Runs not completed", ""]
    if others:
        rows = [
            [
                r.status, r.stage or "single", f"`{r.activation}`", r.seed, _lr(r.lr),
                r.diverged_at_step if r.diverged_at_step is not None else "—",
                str(r.summary.get("error") or "—").replace("|", "/")[:120],
                f"`{r.folder.name}`",
            ]
            for r in sorted(others, key=lambda r: (r.status, r.activation, r.seed or 0))
        ]  # fmt: skip
        lines += _table(
            ["status", "stage", "activation", "seed", "LR", "diverged at step", "error", "folder"],
            rows,
        )
    else:
        lines.append("None: every run completed.")
    lines.append("")
    _atomic_write_text(path, "\n".join(lines))
    return path


# ----------------------------------------------------------------------------- W&B


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def log_to_wandb(
    sweep: str,
    sweep_dir: Path,
    rows: list[dict[str, Any]],
    units: list[Unit],
    images: Sequence[Path],
    project: str = "actbench",
) -> Path | None:
    """Log the report to one W&B run (job_type "report", group = sweep); only warns on failure.

    Returns the W&B run folder, or None when W&B is disabled or failed."""
    try:
        import wandb

        from actbench import tracking

        ids = ",".join(sorted(str(r["run_id"]) for r in rows))
        # One report run per set of records: rerunning the report resumes the same W&B run.
        run_id = f"report-{sweep}-{hashlib.sha1(ids.encode()).hexdigest()[:8]}"
        # start_wandb has no job_type argument; wandb reads it from the environment.
        with _env(WANDB_JOB_TYPE="report"):
            logger = tracking.start_wandb(
                sweep_dir,
                run_id,
                name=f"{sweep}-report",
                group=sweep,
                config={"sweep": sweep, "sweep_dir": str(sweep_dir), "runs": len(rows)},
                project=project,
                tags=["report"],
            )
        if logger is None:
            return None
        run = logger.experiment
        columns = list(SUMMARY_COLUMNS)
        payload: dict[str, Any] = {
            "report/runs": wandb.Table(
                # summary.csv spells a missing value ""; W&B columns need one type: None
                columns=columns,
                data=[[None if r[c] == "" else r[c] for c in columns] for r in rows],
            )
        }
        rank_cols = ["unit", "rank", "activation", "mean", "std", "ci_half_width", "n", "tied_with"]
        payload["report/ranking"] = wandb.Table(
            columns=rank_cols,
            data=[
                [
                    u.label,
                    x.rank,
                    x.activation,
                    x.mean,
                    x.std,
                    x.half_width,
                    x.n,
                    ",".join(x.tied_with),
                ]
                for u in units
                for x in u.rows
            ],
        )
        for image in images:
            payload[f"figures/{image.stem}"] = wandb.Image(str(image))
        run.log(payload)
        counts = Counter(r["status"] for r in rows)
        for status in STATUSES:
            run.summary[f"runs/{status}"] = counts.get(status, 0)
        run_dir = Path(run.dir).parent
        wandb.finish()
        return run_dir
    except Exception as err:
        log.warning("W&B logging of the report failed (%s); the report files are written", err)
        with contextlib.suppress(Exception):
            import wandb

            if wandb.run is not None:
                wandb.finish(exit_code=1)
        return None


# ----------------------------------------------------------------------------- entry points


def build_report(
    sweep_dir: Path,
    out_dir: Path,
    *,
    sweep_name: str | None = None,
    log_wandb: bool = False,
    project: str = "actbench",
) -> Path:
    """Read every run record in ``sweep_dir`` and write README.md, summary.csv and figures into
    ``out_dir``; returns the README path. Works on an unfinished sweep (callable repeatedly while
    it runs); ``log_wandb`` also logs one W&B report run. Raises ReportError without records."""
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir)
    sweep = sweep_name or sweep_dir.name
    runs = load_runs(sweep_dir) if sweep_dir.is_dir() else []
    if not runs:
        raise ReportError(
            f"no run records (summary.json) in {sweep_dir}; valid sweeps: "
            + (", ".join(available_sweeps(sweep_dir.parent)) or "none yet (run make sweep)")
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    units = analyse(runs)
    figures = {u.key: make_figures(u, out_dir) for u in units}
    written = [p for figs, _ in figures.values() for p in figs.values()]
    for stale in out_dir.glob("*.png"):  # figures of units or metrics no longer present
        if stale.name.startswith(FIGURE_PREFIXES) and stale not in written:
            stale.unlink()
    rows = summary_rows(runs, sweep)
    write_summary_csv(rows, out_dir / "summary.csv")
    readme = write_readme(sweep, sweep_dir, runs, units, figures, out_dir / "README.md")
    if log_wandb:
        log_to_wandb(sweep, sweep_dir, rows, units, written, project=project)
    return readme


def _has_records(folder: Path) -> bool:
    return folder.is_dir() and any(
        (p / "summary.json").is_file() for p in folder.iterdir() if p.is_dir()
    )


def available_sweeps(runs_root: Path) -> list[str]:
    """Names of the sweep folders under ``runs_root`` that hold at least one run record."""
    if not Path(runs_root).is_dir():
        return []
    return sorted(p.name for p in Path(runs_root).iterdir() if _has_records(p))


def resolve_sweep(arg: str, runs_root: Path) -> tuple[str, Path]:
    """A sweep file path (sweeps/x.yaml -> x), a sweep folder, or a sweep name -> (name, folder)."""
    path = Path(arg)
    if path.suffix in (".yaml", ".yml"):
        name = path.stem
    elif path.is_dir() and _has_records(path):
        return path.name, path
    else:
        name = arg
    folder = Path(runs_root) / name
    if not _has_records(folder):
        valid = available_sweeps(runs_root)
        raise ReportError(
            f"sweep {arg!r} has no run records in {folder}; valid: "
            + (", ".join(valid) or f"none under {runs_root} yet (run make sweep)")
        )
    return name, folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actbench-report",
        description="Statistics, tables and figures from a sweep's run records.",
    )
    parser.add_argument("sweep", help="sweep file (sweeps/default.yaml) or sweep name (default)")
    parser.add_argument(
        "--runs-root", type=Path, default=Path("multirun"), help="where sweeps write their runs"
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="writes OUT/<sweep>/")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the report to W&B")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="actbench-report: warning: %(message)s")
    try:
        name, sweep_dir = resolve_sweep(args.sweep, args.runs_root)
        readme = build_report(
            sweep_dir, args.out / name, sweep_name=name, log_wandb=not args.no_wandb
        )
    except ReportError as err:
        print(f"actbench-report: error: {err}", file=sys.stderr)
        return 2
    counts = status_counts(load_runs(sweep_dir))
    print(f"actbench-report: {name}: {_status_phrase(counts)} -> {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
