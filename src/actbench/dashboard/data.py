"""What the dashboard shows, gathered from a sweep's run records: the report's units (ranking,
significance letters, LR table, chosen LRs), every curve each ranked run logged, aggregated over
seeds per activation, and one row per run folder with its W&B run.

Every number comes from the report's analysis (:func:`actbench.report.analysis.analyse` on
:func:`actbench.report.analysis.read_sweep_records`, the report's loader: the sweep's current
grid), the stats of :mod:`actbench.report.stats`, the seed
band of :func:`actbench.report.curves.aggregate_curves`); this module only arranges it. Records
are read through :mod:`actbench.records` alone.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from actbench import records
from actbench.records import RunRecord
from actbench.report.analysis import (
    RANK_METRIC,
    Unit,
    analyse,
    read_sweep_records,
    status_counts,
)
from actbench.report.curves import aggregate_curves, load_curves

# Columns of metrics.csv that are no curve over steps.
NOT_CURVES = ("step", "epoch")
NOT_CURVE_PREFIXES = ("test/",)  # logged once, after training: the ranking shows them
# The diagnostics the issue names, in the order the page shows them; other logged keys follow.
PRIMARY_KEYS = (
    "train/loss",
    "val/loss",
    "val/acc",
    "val/acc_best",
    "train/acc",
    "dead/hard",
    "dead/dormant_0.1",
    "dead/dormant_0.025",
    "dead/frozen",
    "grad/global_norm",
    "curv/top_eig",
    "curv/stability_ratio",
    "curv/trace",
)
# Sections of curves, by the key's first path segment (unknown prefixes go to "Other").
SECTIONS = (
    (("train", "val"), "Loss and accuracy"),
    (("dead",), "Dead, dormant and frozen units"),
    (("grad",), "Gradient norms"),
    (("curv",), "Curvature: sharpness, stability ratio, trace"),
    (("act",), "Pre-activation statistics"),
)
OTHER_SECTION = "Other"
# Curves whose values are positive and span decades are easier to read on a log axis.
LOG_Y_PREFIXES = ("train/loss", "val/loss", "grad/", "curv/top_eig", "curv/trace")


@dataclass(frozen=True)
class Band:
    """One activation's curve for one key: the mean over its runs and the min-max seed band."""

    activation: str
    steps: list[float]
    mean: list[float]
    lo: list[float]
    hi: list[float]
    runs: int  # runs that logged the key


@dataclass
class Family:
    """A logged quantity: its total (``dead/hard``) and its per-layer keys
    (``dead/hard/<layer>``), each key's bands per activation."""

    key: str
    section: str
    total: list[Band] = field(default_factory=list)
    layers: dict[str, list[Band]] = field(default_factory=dict)  # layer -> bands

    @property
    def log_y(self) -> bool:
        return self.key.startswith(LOG_Y_PREFIXES)


@dataclass(frozen=True)
class RunRow:
    """One run folder in the run table."""

    folder: str  # the folder's name
    href: str  # relative link from the dashboard to the folder
    unit: str
    stage: str
    activation: str
    lr: float | None
    seed: int | None
    status: str
    ranked: bool  # among the runs the ranking draws on
    test_acc: float | None
    wall_time_s: float | None
    steps: int | None
    wandb_id: str | None
    wandb_href: str | None  # relative link to the local W&B run folder (offline-run-* or run-*)
    wandb_group: str | None


@dataclass
class UnitView:
    unit: Unit
    families: list[Family]


@dataclass
class Dashboard:
    sweep: str
    sweep_dir: Path
    counts: Counter[str]
    units: list[UnitView]
    runs: list[RunRow]
    project: str
    earlier: list[str] = field(default_factory=list)  # folders of an earlier grid, left out


def layer_split(key: str) -> tuple[str, str | None]:
    """``dead/hard/hidden.0.act`` -> (``dead/hard``, ``hidden.0.act``); a two-part key is a
    total: (key, None). The diagnostics log per-layer values as ``<metric>/<layer>``."""
    parts = key.split("/")
    if len(parts) <= 2:
        return key, None
    return "/".join(parts[:2]), "/".join(parts[2:])


def section_of(key: str) -> str:
    head = key.split("/", 1)[0]
    return next((title for heads, title in SECTIONS if head in heads), OTHER_SECTION)


def curve_keys(runs: Iterable[RunRecord]) -> list[str]:
    """Every column any of ``runs`` logged over steps, in display order (sections, then the
    primary keys, then by name)."""
    found: set[str] = set()
    for r in runs:
        header, _ = records.read_metrics_rows(r.folder / records.METRICS, rows=0)
        found.update(
            k for k in header if k not in NOT_CURVES and not k.startswith(NOT_CURVE_PREFIXES)
        )
    return sorted(found, key=_display_order)


def _display_order(key: str) -> tuple[int, int, str]:
    titles = [title for _, title in SECTIONS] + [OTHER_SECTION]
    family, _ = layer_split(key)
    primary = PRIMARY_KEYS.index(family) if family in PRIMARY_KEYS else len(PRIMARY_KEYS)
    return titles.index(section_of(key)), primary, key


def activation_order(unit: Unit) -> list[str]:
    """The report's display order of the ranking, then activations with no ranked score."""
    ranked = [row.activation for row in unit.rows]
    rest = sorted({r.activation for r in unit.runs} - set(ranked))
    return ranked + rest


def bands(unit: Unit, key: str, runs: Sequence[RunRecord]) -> list[Band]:
    out = []
    for act in activation_order(unit):
        logged = [r for r in runs if r.activation == act and r.curve(key)]
        agg = aggregate_curves([r.curve(key) for r in logged])
        if agg is None:
            continue
        steps, mean, lo, hi = agg
        out.append(Band(act, _floats(steps), _floats(mean), _floats(lo), _floats(hi), len(logged)))
    return out


def families(unit: Unit) -> list[Family]:
    """The curves of the unit's completed ranked runs (the runs the report's figures show),
    every logged key, grouped into totals and per-layer families."""
    runs = unit.completed
    keys = curve_keys(runs)
    load_curves(runs, keys)
    by_key: dict[str, Family] = {}
    for key in keys:
        name, layer = layer_split(key)
        fam = by_key.setdefault(name, Family(key=name, section=section_of(name)))
        found = bands(unit, key, runs)
        if not found:
            continue
        if layer is None:
            fam.total = found
        else:
            fam.layers[layer] = found
    return [f for f in by_key.values() if f.total or f.layers]


def wandb_run_folder(run: RunRecord) -> Path | None:
    """The local W&B run folder of a run (``offline-run-*-<id>`` or ``run-*-<id>``), from the
    W&B folder and id its summary names; the newest when a rerun left several."""
    base, wandb_id = run.summary_value("wandb.dir"), run.summary.get("wandb_id")
    if not base or not wandb_id:
        return None
    found = sorted(Path(base).glob(f"*run-*-{wandb_id}"))
    return found[-1] if found else None


def relative_href(target: Path, page_dir: Path) -> str:
    """A relative link from a page in ``page_dir`` to ``target`` (opens as file:// from disk)."""
    rel = os.path.relpath(Path(target).resolve(), Path(page_dir).resolve())
    return urllib.parse.quote(Path(rel).as_posix()) + ("/" if Path(target).is_dir() else "")


def run_rows(units: Sequence[Unit], page_dir: Path) -> list[RunRow]:
    rows = []
    for unit in units:
        ranked = {id(r) for r in unit.ranked_runs}
        for r in sorted(unit.runs, key=_run_order):
            wandb_dir = wandb_run_folder(r)
            rows.append(
                RunRow(
                    folder=r.folder.name,
                    href=relative_href(r.folder, page_dir),
                    unit=unit.label,
                    stage=r.stage or "",
                    activation=r.activation,
                    lr=r.lr,
                    seed=r.seed,
                    status=r.status,
                    ranked=id(r) in ranked,
                    test_acc=r.metric(RANK_METRIC) if r.ok else None,
                    wall_time_s=r.wall_time_s,
                    steps=r.steps,
                    wandb_id=r.summary.get("wandb_id"),
                    wandb_href=relative_href(wandb_dir, page_dir) if wandb_dir else None,
                    wandb_group=r.summary_value("wandb.group"),
                )
            )
    return rows


def _run_order(r: RunRecord) -> tuple[str, str, float, int]:
    stage = {"confirm": "0", "tune": "1"}.get(r.stage or "", "2")
    return stage, r.activation, r.lr if r.lr is not None else math.inf, r.seed or 0


def project_of(runs: Iterable[RunRecord], default: str = "actbench") -> str:
    """The W&B project most of the runs logged to (their resolved ``logger.project``)."""
    found = Counter(str(p) for r in runs if (p := r.param("logger.project")))
    return found.most_common(1)[0][0] if found else default


def gather(sweep_dir: Path, page_dir: Path, sweep: str | None = None) -> Dashboard:
    """Everything the page shows, from the records in ``sweep_dir`` (links relative to
    ``page_dir``). A sweep without a finished run still gives its run table."""
    sweep_dir = Path(sweep_dir)
    runs, earlier = read_sweep_records(sweep_dir)
    units = analyse(runs, records.read_selection(sweep_dir))
    return Dashboard(
        sweep=sweep or sweep_dir.name,
        sweep_dir=sweep_dir,
        counts=status_counts(runs),
        units=[UnitView(u, families(u)) for u in units],
        runs=run_rows(units, page_dir),
        project=project_of(runs),
        earlier=[r.folder.name for r in earlier],
    )


def _floats(values: Iterable[float]) -> list[float]:
    # Plain floats: the page's JSON holds lists a browser reads back as they are.
    return [float(v) for v in values]
