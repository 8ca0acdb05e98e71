"""What the report compares: the comparison units of a sweep's records, the learning-rate table
of their tuning runs, which value each group was confirmed at, and which runs are ranked.

The tuned value is chosen once, by the sweeper, with :func:`actbench.records.select_per_group`,
and written to ``selection.json``; the report reads that choice. Only where the file is missing
(an old or hand-made sweep folder) does it apply the same rule to the tuning records itself.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from actbench import records
from actbench.records import Choice, RunRecord
from actbench.report.stats import PairedTest, RankRow, baseline_family, rank_activations

# The order statuses are shown in (tables, counts); records.STATUSES is the lifecycle order.
STATUS_ORDER = ("completed", "diverged", "failed", "running")
RANK_METRIC = "test/acc"
TUNE_METRIC = "val/acc_best"  # maximised
BASELINES = ("relu", "gelu")
LR_KEY = "optimizer.lr"
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
# Overrides that are axes of the comparison, or never change what a run measures (the latter
# mirror conf/config.yaml's override_dirname exclude_keys).
AXIS_KEYS = ("activation", "seed", LR_KEY, "model", "data")
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
# Where a unit's choice of the tuned value came from.
FROM_SWEEPER = "selection.json"  # the sweeper's own record of what it confirmed
RECOMPUTED = "recomputed"  # selection.json missing: the sweeper's rule applied to the records
SINGLE_STAGE = "single stage"  # no tuning stage: the rule applied to the ranked runs themselves


class ReportError(ValueError):
    """A user error (unknown sweep, no records); the message is one line."""


# ----------------------------------------------------------------------------- records


def read_runs(sweep_dir: Path) -> list[RunRecord]:
    """Every run record directly under ``sweep_dir``, each with its comparison setting."""
    runs = records.read_sweep(sweep_dir)
    assign_settings(runs)
    return runs


def assign_settings(runs: list[RunRecord]) -> None:
    """Other overrides that vary between runs (a swept depth, say) split the comparison units."""
    ignored = (*AXIS_KEYS, *PRESENTATION_KEYS)
    overrides = [r.overrides for r in runs]
    keys = {
        k
        for ov in overrides
        for k in ov
        if k not in ignored
        and not k.startswith("activation.")
        and not k.startswith(("logger.", "sweep."))
    }
    varying = sorted(k for k in keys if len({ov.get(k) for ov in overrides}) > 1)
    for r, ov in zip(runs, overrides, strict=True):
        r.setting = ",".join(f"{k}={ov.get(k, '-')}" for k in varying)


def status_counts(runs: Iterable[RunRecord]) -> Counter[str]:
    return Counter(r.status for r in runs)


# ----------------------------------------------------------------------------- the analysis


@dataclass
class LRCell:
    scores: list[float]
    n_diverged: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores)) if self.scores else math.nan


def lr_table(
    runs: Iterable[RunRecord], metric: str = TUNE_METRIC
) -> dict[str, dict[float, LRCell]]:
    """activation -> lr -> validation scores of completed runs and the number that diverged;
    failed and running runs are no result and are left out. For display: the choice itself is
    :func:`actbench.records.select_per_group`'s."""
    table: dict[str, dict[float, LRCell]] = defaultdict(dict)
    for r in runs:
        if r.lr is None or r.status not in records.FINISHED:
            continue
        cell = table[r.activation].setdefault(r.lr, LRCell([], 0))
        if r.status == "diverged":
            cell.n_diverged += 1
        elif math.isfinite(r.metrics.get(metric, math.nan)):
            cell.scores.append(r.metrics[metric])
    return {a: dict(sorted(cells.items())) for a, cells in sorted(table.items())}


@dataclass
class Unit:
    """The comparison within one model x dataset (x setting)."""

    key: tuple[str, str, str]
    runs: list[RunRecord]  # all runs of the unit, every status and stage
    staged: bool
    tune_runs: list[RunRecord]
    ranked_runs: list[RunRecord]  # the runs the ranking draws on (completed or not)
    lrs: dict[str, dict[float, LRCell]]
    chosen_lr: dict[str, float]  # activation -> the LR it is ranked at (when the LR is tuned)
    rows: list[RankRow]
    vs: dict[str, dict[str, tuple[PairedTest, float]]]  # baseline -> activation -> test
    select: str = LR_KEY  # the tuned parameter
    select_metric: str = TUNE_METRIC  # what it was chosen on
    selection_source: str = SINGLE_STAGE  # FROM_SWEEPER, RECOMPUTED or SINGLE_STAGE

    @property
    def label(self) -> str:
        model, dataset, setting = self.key
        return f"{model} on {dataset}" + (f" [{setting}]" if setting else "")

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "-".join(p for p in self.key if p))

    @property
    def completed(self) -> list[RunRecord]:
        return [r for r in self.ranked_runs if r.status == "completed"]


@dataclass(frozen=True)
class Selection:
    """The chosen value of the tuned parameter per group of runs, and where it came from."""

    select: str
    metric: str
    choices: Mapping[tuple[str, ...], Choice]
    source: str

    def choice_for(self, run: RunRecord) -> Choice | None:
        return self.choices.get(records.selection_group(run.override_list, self.select))

    def at_choice(self, run: RunRecord) -> bool:
        """Whether the run ran at its group's chosen value (False when there is no choice)."""
        choice = self.choice_for(run)
        return choice is not None and run.overrides.get(self.select) == choice.value


def unit_selection(
    staged: bool, tune: list[RunRecord], sweeper_choice: Mapping[str, Any] | None
) -> Selection:
    """The sweeper's choice (``selection.json``, as :func:`actbench.records.read_selection`
    returns it) for a two-stage unit; without that file, the sweeper's rule applied to ``tune``
    (the tuning runs, or every run of a single-stage unit)."""
    if staged and sweeper_choice is not None:
        return Selection(
            select=str(sweeper_choice.get("select") or LR_KEY),
            metric=str(sweeper_choice.get("metric") or TUNE_METRIC),
            choices=sweeper_choice.get("choices") or {},
            source=FROM_SWEEPER,
        )
    trials = [(r.override_list, r.summary) for r in tune]
    return Selection(
        select=LR_KEY,
        metric=TUNE_METRIC,
        choices=records.select_per_group(trials, LR_KEY, TUNE_METRIC),
        source=RECOMPUTED if staged else SINGLE_STAGE,
    )


def analyse_unit(
    key: tuple[str, str, str],
    runs: list[RunRecord],
    sweeper_choice: Mapping[str, Any] | None = None,
) -> Unit:
    staged = any(r.stage for r in runs)
    tune = [r for r in runs if r.stage == "tune"] if staged else list(runs)
    lrs = lr_table(tune)
    selection = unit_selection(staged, tune, sweeper_choice)
    # Rank one value per group: the chosen one (confirmation runs left at a value chosen by an
    # earlier, incomplete tuning stage are listed, never mixed into the ranking).
    if staged:
        ranked = [
            r
            for r in runs
            if r.stage == "confirm" and (selection.choice_for(r) is None or selection.at_choice(r))
        ]
    else:  # single stage: where an activation ran at several LRs, rank its best one only
        ranked = [r for r in runs if len(lrs.get(r.activation, {})) < 2 or selection.at_choice(r)]
    chosen_lr: dict[str, float] = {}
    if selection.select == LR_KEY:
        for r in runs:
            choice = selection.choice_for(r)
            value = None if choice is None else _as_float(choice.value)
            if value is not None:
                chosen_lr[r.activation] = value
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
        chosen_lr=chosen_lr,
        rows=rank_activations(paired),
        vs={b: baseline_family(paired, b) for b in BASELINES},
        select=selection.select,
        select_metric=selection.metric,
        selection_source=selection.source,
    )


def analyse(runs: list[RunRecord], sweeper_choice: Mapping[str, Any] | None = None) -> list[Unit]:
    """The units of ``runs``; ``sweeper_choice`` is the sweep's ``selection.json`` as
    :func:`actbench.records.read_selection` returns it (None: absent)."""
    by_unit: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in runs:
        by_unit[r.unit].append(r)
    return [analyse_unit(k, v, sweeper_choice) for k, v in sorted(by_unit.items())]


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
