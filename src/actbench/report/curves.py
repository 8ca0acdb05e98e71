"""Training curves of the ranked runs: read from each run's ``metrics.csv`` (by the records
module) and aggregated over seeds for the figures."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from actbench import records
from actbench.records import RunRecord
from actbench.report.analysis import DEAD_KEYS

CURVE_KEYS = ("train/loss", "val/loss", *DEAD_KEYS, "grad/global_norm", "curv/top_eig")


def load_curves(runs: Iterable[RunRecord], keys: Sequence[str] = CURVE_KEYS) -> None:
    """Fill each run's ``curves`` with ``keys`` from its ``metrics.csv``: only the runs a figure
    shows, so a sweep's tuning runs are never parsed."""
    for r in runs:
        r.curves = records.read_curves(r.folder / records.METRICS, keys)


def aggregate_curves(
    curves: Sequence[Iterable[tuple[float, float]]],
) -> tuple[np.ndarray, ...] | None:
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
