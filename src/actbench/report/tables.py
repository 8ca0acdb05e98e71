"""``summary.csv``: one row per run record of the sweep, every status and stage (not
aggregates), so any statistic the README does not show can be recomputed from it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from actbench import records
from actbench.records import RunRecord
from actbench.report.analysis import DEAD_KEYS

SUMMARY_COLUMNS = (
    "sweep", "stage", "model", "dataset", "setting", "activation", "lr", "seed", "status",
    "test/acc", "test/loss", "val/acc_best", *DEAD_KEYS, "curv/top_eig", "curv/trace",
    "grad/global_norm", "wall_time_s", "steps", "diverged_at_step", "peak_rss_mib",
    "peak_gpu_mib", "run_id", "run_folder",
)  # fmt: skip
STAGE_ORDER = {"tune": 0, "confirm": 1, None: 2}


def summary_rows(runs: Iterable[RunRecord], sweep: str) -> list[dict[str, Any]]:
    """One row per run (not aggregates), every status."""
    rows = []
    ordered = sorted(
        runs,
        key=lambda r: (r.unit, STAGE_ORDER.get(r.stage, 3), r.activation, r.lr or 0, r.seed or 0),
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
        metrics = r.metrics
        for key in SUMMARY_COLUMNS:
            if key not in row:
                row[key] = metrics.get(key)
        rows.append({k: ("" if row[k] is None else row[k]) for k in SUMMARY_COLUMNS})
    return rows


def write_summary_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return records.atomic_write_text(path, buf.getvalue())
