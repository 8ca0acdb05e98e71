"""What the report compares: the comparison units of a sweep's records, the learning-rate table
of their tuning runs, which value each group was confirmed at, which runs are ranked and with
what score, and what the records say about them (collapsed runs, device kinds).

The tuned value is chosen once, by the sweeper, with :func:`actbench.records.select_per_group`,
and written to ``selection.json``; the report reads that choice. Only where the file is missing
(an old or hand-made sweep folder) does it apply the same rule to the tuning records itself.
Folders that the sweep's ``grid.json`` does not list are from an earlier grid: counted and
named, never analysed.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actbench import records
from actbench.config import NON_IDENTITY_KEYS
from actbench.records import Choice, RunRecord
from actbench.report.bootstrap import Delta, delta_vs
from actbench.report.stats import (
    PairedTest,
    Power,
    Ranking,
    RankRow,
    baseline_family,
    ranking,
    unit_power,
)

# The order statuses are shown in (tables, counts); records.STATUSES is the lifecycle order.
STATUS_ORDER = ("completed", "diverged", "failed", "running")
RANK_METRIC = "test/acc"
TUNE_METRIC = records.SELECT_METRIC  # the sweeper's default, for folders without selection.json
BASELINES = ("relu", "gelu")
LR_KEY = "optimizer.lr"
DEAD_KEYS = ("dead/hard", "dead/dormant_0.1", "dead/dormant_0.025", "dead/frozen")
CSV_METRICS = (
    "test/acc",
    "test/loss",
    "val/acc",
    "val/acc_best",
    "val/acc",
    "val/loss",
    "train/loss",
    *DEAD_KEYS,
    "curv/top_eig",
    "curv/trace",
    "grad/global_norm",
)
# Overrides that are axes of the comparison; those that never change what a run measures are
# the run identity's presentation keys (config.NON_IDENTITY_KEYS, one list for both).
AXIS_KEYS = ("activation", "seed", LR_KEY, "model", "data")
# The collapse rule (:func:`collapse_reason`): a final loss above both this multiple of its
# minimum and its first value.
COLLAPSE_KEYS = ("val/loss", "train/loss")
COLLAPSE_FACTOR = 2.0
# Where a unit's choice of the tuned value came from.
FROM_SWEEPER = "selection.json"  # the sweeper's own record of what it confirmed
RECOMPUTED = "recomputed"  # selection.json missing: the sweeper's rule applied to the records
SINGLE_STAGE = "single stage"  # no tuning stage: the rule applied to the ranked runs themselves


class ReportError(ValueError):
    """A user error (unknown sweep, no records); the message is one line."""


# ----------------------------------------------------------------------------- records


def read_runs(sweep_dir: Path) -> list[RunRecord]:
    """The run records of the sweep's current grid, each with its comparison setting."""
    return read_sweep_records(sweep_dir)[0]


def read_sweep_records(sweep_dir: Path) -> tuple[list[RunRecord], list[RunRecord]]:
    """(the records of the sweep's current grid, those of an earlier grid): a folder that the
    sweeper's ``grid.json`` does not list was left by an earlier grid (another LR range, say)
    and must not be mixed in. Without ``grid.json`` every record is the sweep's."""
    runs = records.read_sweep(sweep_dir)
    grid = records.grid_folders(sweep_dir)
    current = [r for r in runs if grid is None or r.folder.name in grid]
    earlier = [r for r in runs if grid is not None and r.folder.name not in grid]
    assign_settings(current)
    return current, earlier


def assign_settings(runs: list[RunRecord]) -> None:
    """Other overrides that vary between runs (a swept depth, say) split the comparison units."""
    overrides = [r.overrides for r in runs]
    presentation = tuple(f"{k}." for k in NON_IDENTITY_KEYS)
    keys = {
        k
        for ov in overrides
        for k in ov
        if k not in (*AXIS_KEYS, *NON_IDENTITY_KEYS)
        and not k.startswith(("activation.", *presentation))
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
    ranking: Ranking | None = None
    power: Power | None = None
    chance: float = math.nan  # the score a diverged ranked run gets
    deltas: dict[str, Delta] = field(default_factory=dict)  # activation -> vs the first row
    # activation -> (bracketed, reason); None: the sweeper did not assess it
    brackets: dict[str, tuple[bool | None, str | None]] = field(default_factory=dict)
    devices: dict[str, Counter[str]] = field(default_factory=dict)  # activation -> kind -> runs
    collapsed: dict[Path, str] = field(default_factory=dict)  # run folder -> why

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

    def ranked_lr(self, activation: str) -> float | None:
        """The LR an activation is ranked at: the chosen one, else (no tuning) the one its ranked
        runs share; None when they ran at several and none was chosen."""
        if activation in self.chosen_lr:
            return self.chosen_lr[activation]
        lrs = {r.lr for r in self.ranked_runs if r.activation == activation}
        return lrs.pop() if len(lrs) == 1 else None

    @property
    def device_kinds(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for kinds in self.devices.values():
            total.update(kinds)
        return total

    @property
    def mixed_devices(self) -> bool:
        """Whether the ranked runs came from more than one kind of device (the pairing by
        seed assumes the same arithmetic: another device draws other dropout streams)."""
        return len(self.device_kinds) > 1


@dataclass(frozen=True)
class Selection:
    """The chosen value of the tuned parameter per group of runs, and where it came from."""

    select: str
    metric: str
    choices: Mapping[tuple[str, ...], Choice]
    source: str
    brackets: Mapping[tuple[str, ...], Mapping[str, Any]] = field(default_factory=dict)

    def group_of(self, run: RunRecord) -> tuple[str, ...]:
        return records.selection_group(run.override_list, self.select)

    def choice_for(self, run: RunRecord) -> Choice | None:
        return self.choices.get(self.group_of(run))

    def bracket_for(self, run: RunRecord) -> tuple[bool | None, str | None]:
        """(bracketed, reason) as the sweeper recorded them; (None, None) where it did not."""
        entry = self.brackets.get(self.group_of(run)) or {}
        bracketed = entry.get("bracketed")
        return (None if bracketed is None else bool(bracketed)), entry.get("reason")

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
        brackets = sweeper_choice.get("brackets")
        if brackets is None:  # a reader that predates bracketing: the raw groups have them
            brackets = {
                tuple(sorted(g.get("group", []))): g for g in sweeper_choice.get("groups", [])
            }
        return Selection(
            select=str(sweeper_choice.get("select") or LR_KEY),
            metric=str(sweeper_choice.get("metric") or TUNE_METRIC),
            choices=sweeper_choice.get("choices") or {},
            source=FROM_SWEEPER,
            brackets=brackets,
        )
    trials = [(r.override_list, r.summary) for r in tune]
    return Selection(
        select=LR_KEY,
        metric=TUNE_METRIC,
        choices=records.select_per_group(trials, LR_KEY, TUNE_METRIC),
        source=RECOMPUTED if staged else SINGLE_STAGE,
    )


# ----------------------------------------------------------------------------- scores


def chance_accuracy(runs: Iterable[RunRecord]) -> float:
    """1 / the number of classes, as the records state it (0, the worst accuracy, where none
    does)."""
    for r in runs:
        classes = _as_float(r.summary_value("data.num_classes"))
        if classes and classes > 0:
            return 1.0 / classes
    return 0.0


def ranked_score(run: RunRecord, chance: float) -> float | None:
    """THE score a ranked run enters the ranking with: its final ``test/acc`` when it
    completed, chance accuracy when it diverged (a diverged seed is a result of the
    activation, never left out), None when it is no result yet (failed, running)."""
    if run.status == "diverged":
        return chance
    value = run.metrics.get(RANK_METRIC, math.nan)
    return value if run.status == "completed" and math.isfinite(value) else None


@dataclass
class ScoreTable:
    """A unit's ranked scores by activation and seed (several runs of one seed: their mean)."""

    scores: dict[str, dict[Any, float]]  # every result, a diverged run at chance
    completed: dict[str, dict[Any, float]]  # completed runs only: the spread of training
    diverged: dict[str, set[Any]]  # seeds that diverged
    # per-example correctness of each seed: an array (completed, with a file that matches its
    # test/acc), the chance score (diverged), or None (no usable file)
    examples: dict[str, dict[Any, np.ndarray | float | None]]


def score_table(ranked: Iterable[RunRecord], chance: float) -> ScoreTable:
    by_seed: dict[str, dict[Any, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in ranked:
        if ranked_score(r, chance) is not None:
            by_seed[r.activation][r.seed].append(r)
    table = ScoreTable({}, {}, {}, {})
    for act, seeds in sorted(by_seed.items()):
        table.scores[act], table.completed[act], table.examples[act] = {}, {}, {}
        table.diverged[act] = set()
        for seed, runs in seeds.items():
            table.scores[act][seed] = float(np.mean([ranked_score(r, chance) for r in runs]))
            done = [r.metrics[RANK_METRIC] for r in runs if r.status == "completed"]
            if done:
                table.completed[act][seed] = float(np.mean(done))
            if any(r.status == "diverged" for r in runs):
                table.diverged[act].add(seed)
            table.examples[act][seed] = _seed_examples(runs, chance)
    return table


def _seed_examples(runs: list[RunRecord], chance: float) -> np.ndarray | float | None:
    vectors: list[np.ndarray | float] = []
    for r in runs:
        if r.status == "diverged":
            vectors.append(chance)
            continue
        correct = records.read_test_correct(r.folder)
        # A file that does not reproduce the record's test/acc is not this record's.
        if correct is None or not correct.size:
            return None
        if abs(float(correct.mean()) - r.metrics[RANK_METRIC]) > 1e-6:
            return None
        vectors.append(correct.astype(float))
    sizes = {v.size for v in vectors if isinstance(v, np.ndarray)}
    if len(sizes) > 1:
        return None
    if not sizes:
        return float(np.mean(vectors))
    size = sizes.pop()
    return np.mean([np.broadcast_to(v, size) for v in vectors], axis=0)


# ----------------------------------------------------------------------------- flags


def collapse_reason(run: RunRecord) -> str | None:
    """THE collapse rule: a completed run whose final ``val/loss`` or ``train/loss`` is above
    both twice the minimum of its curve and its first logged value (it trained, then lost what
    it learned: a finite but bad loss is no divergence). The reason, or None."""
    if run.status != "completed":
        return None
    curves = run.curves if any(k in run.curves for k in COLLAPSE_KEYS) else None
    if curves is None:
        curves = records.read_curves(run.folder / records.METRICS, COLLAPSE_KEYS)
    for key in COLLAPSE_KEYS:
        values = [v for _, v in curves.get(key, []) if math.isfinite(v)]
        if len(values) < 3:
            continue
        first, lowest, final = values[0], min(values), values[-1]
        if final > COLLAPSE_FACTOR * lowest and final > first:
            return (
                f"final {key} {final:.3g} > {COLLAPSE_FACTOR:g} x its minimum {lowest:.3g} "
                f"and > its first {first:.3g}"
            )
    return None


def collapse_flags(runs: Iterable[RunRecord]) -> dict[Path, str]:
    """Run folder -> :func:`collapse_reason`, for the runs that collapsed."""
    out = {}
    for r in runs:
        reason = collapse_reason(r)
        if reason:
            out[r.folder] = reason
    return out


def device_kind(run: RunRecord) -> str | None:
    """The kind of device a run trained on, e.g. ``cuda (NVIDIA H100 80GB HBM3)`` or
    ``cpu (x86_64)``: the device type without its index, and the device name."""
    device = run.summary_value("reproducibility.device")
    if not device:
        return None
    name = run.summary_value("reproducibility.device_name")
    kind = str(device).split(":", 1)[0]
    return f"{kind} ({name})" if name else kind


# ----------------------------------------------------------------------------- the analysis


def analyse_unit(
    key: tuple[str, str, str],
    runs: list[RunRecord],
    sweeper_choice: Mapping[str, Any] | None = None,
    collapsed: Mapping[Path, str] | None = None,
) -> Unit:
    staged = any(r.stage for r in runs)
    tune = [r for r in runs if r.stage == "tune"] if staged else list(runs)
    selection = unit_selection(staged, tune, sweeper_choice)
    lrs = lr_table(tune, selection.metric)
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
    brackets: dict[str, tuple[bool | None, str | None]] = {}
    if selection.select == LR_KEY:
        for r in runs:
            choice = selection.choice_for(r)
            value = None if choice is None else _as_float(choice.value)
            if value is not None:
                chosen_lr[r.activation] = value
                brackets[r.activation] = selection.bracket_for(r)
    chance = chance_accuracy(runs)
    table = score_table(ranked, chance)
    rank = ranking(table.scores, table.diverged)
    best = rank.rows[0].activation if rank.rows else None
    deltas = {
        row.activation: delta_vs(
            table.scores[row.activation], table.scores[best],
            table.examples[row.activation], table.examples[best],
        )
        for row in rank.rows
        if best is not None and row.activation != best
    }  # fmt: skip
    devices: dict[str, Counter[str]] = defaultdict(Counter)
    for r in ranked:
        kind = device_kind(r)
        if kind and r.status in records.FINISHED:
            devices[r.activation][kind] += 1
    if collapsed is None:
        collapsed = collapse_flags(r for r in runs if r.status == "completed")
    return Unit(
        key=key,
        runs=runs,
        staged=staged,
        tune_runs=tune if staged else [],
        ranked_runs=ranked,
        lrs=lrs,
        chosen_lr=chosen_lr,
        rows=rank.rows,
        vs={b: baseline_family(table.scores, b) for b in BASELINES},
        select=selection.select,
        select_metric=selection.metric,
        selection_source=selection.source,
        ranking=rank,
        power=unit_power(table.completed, m=len(table.scores)),
        chance=chance,
        deltas=deltas,
        brackets=brackets,
        devices=dict(devices),
        collapsed={r.folder: collapsed[r.folder] for r in runs if r.folder in collapsed},
    )


def analyse(
    runs: list[RunRecord],
    sweeper_choice: Mapping[str, Any] | None = None,
    collapsed: Mapping[Path, str] | None = None,
) -> list[Unit]:
    """The units of ``runs``; ``sweeper_choice`` is the sweep's ``selection.json`` as
    :func:`actbench.records.read_selection` returns it (None: absent); ``collapsed`` is
    :func:`collapse_flags` of the runs when the caller has it already."""
    by_unit: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in runs:
        by_unit[r.unit].append(r)
    return [analyse_unit(k, v, sweeper_choice, collapsed) for k, v in sorted(by_unit.items())]


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
