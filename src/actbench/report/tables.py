"""``summary.csv``: one row per run record of the sweep, every status and stage (not
aggregates), so any statistic the README does not show can be recomputed from it; and
``ranking.csv``: one row per unit x activation, the ranking as the README states it, with the
unit's power figures on every row."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from actbench import records
from actbench.records import RunRecord
from actbench.report.analysis import DEAD_KEYS, Unit, device_kind

SUMMARY_COLUMNS = (
    "sweep", "stage", "model", "dataset", "setting", "activation", "lr", "seed", "status",
    "test/acc", "test/loss", "val/acc_best", *DEAD_KEYS, "curv/top_eig", "curv/trace",
    "grad/global_norm", "wall_time_s", "steps", "diverged_at_step", "collapsed", "device",
    "peak_rss_mib", "peak_gpu_mib", "run_id", "run_folder",
)  # fmt: skip
RANKING_COLUMNS = (
    "sweep", "unit", "model", "dataset", "setting", "position", "activation", "mean", "std",
    "ci_low", "ci_high", "n", "diverged", "divergence_rate", "unstable", "could_be_best",
    "worse_than", "letters", "delta_vs_best", "delta_t_low", "delta_t_high", "delta_boot_low",
    "delta_boot_high", "delta_boot", "chosen_lr", "bracketed", "bracket_reason", "collapsed",
    "devices", "mixed_devices", "pooled_sd", "alpha", "power", "power_seeds", "mde_best",
    "mde_pairwise", "seeds_1pt_best", "seeds_1pt_pairwise", "power_method",
)  # fmt: skip
STAGE_ORDER = {"tune": 0, "confirm": 1, None: 2}


def summary_rows(
    runs: Iterable[RunRecord], sweep: str, collapsed: Mapping[Path, str] | None = None
) -> list[dict[str, Any]]:
    """One row per run (not aggregates), every status; ``collapsed`` is
    :func:`actbench.report.analysis.collapse_flags` of the runs (the reason, per folder)."""
    collapsed = collapsed or {}
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
            "collapsed": collapsed.get(r.folder),
            "device": device_kind(r),
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
    return _write_csv(rows, SUMMARY_COLUMNS, path)


# ranking.csv column -> attribute of the unit's power figures / of a row's difference to row 1.
POWER = (
    ("pooled_sd", "pooled_sd"), ("alpha", "alpha"), ("power", "power"), ("power_seeds", "n"),
    ("mde_best", "mde_best"), ("mde_pairwise", "mde_pairwise"),
    ("seeds_1pt_best", "seeds_1pt_best"), ("seeds_1pt_pairwise", "seeds_1pt_pairwise"),
    ("power_method", "method"),
)  # fmt: skip
DELTA = (
    ("delta_vs_best", "diff"), ("delta_t_low", "t_low"), ("delta_t_high", "t_high"),
    ("delta_boot_low", "boot_low"), ("delta_boot_high", "boot_high"), ("delta_boot", "boot"),
)  # fmt: skip


def ranking_rows(units: Iterable[Unit], sweep: str) -> list[dict[str, Any]]:
    """One row per unit x activation in the README's order: the score (a diverged run at
    chance), its interval, divergence, the could-be-best flag, the letters, the difference to
    the first row, the chosen LR and whether it is bracketed, and the unit's power figures."""
    rows = []
    for u in units:
        power = {col: getattr(u.power, attr) if u.power else None for col, attr in POWER}
        for row in u.rows:
            delta = u.deltas.get(row.activation)
            bracketed, reason = u.brackets.get(row.activation, (None, None))
            half = row.half_width
            kinds = u.devices.get(row.activation, {})
            n_collapsed = sum(
                r.folder in u.collapsed for r in u.ranked_runs if r.activation == row.activation
            )
            rows.append(
                {
                    "sweep": sweep, "unit": u.label, "model": u.key[0], "dataset": u.key[1],
                    "setting": u.key[2], "position": row.position, "activation": row.activation,
                    "mean": row.mean, "std": row.std,
                    "ci_low": row.mean - half if math.isfinite(half) else None,
                    "ci_high": row.mean + half if math.isfinite(half) else None,
                    "n": row.n, "diverged": row.diverged,
                    "divergence_rate": row.diverged / row.n if row.n else None,
                    "unstable": row.unstable, "could_be_best": row.could_be_best,
                    "worse_than": " ".join(row.worse_than), "letters": row.letters,
                    **{col: getattr(delta, attr) if delta else None for col, attr in DELTA},
                    "chosen_lr": u.ranked_lr(row.activation),
                    "bracketed": bracketed, "bracket_reason": reason,
                    "collapsed": n_collapsed,
                    "devices": "; ".join(f"{k}: {n}" for k, n in sorted(kinds.items())),
                    "mixed_devices": u.mixed_devices,
                    **power,
                }
            )  # fmt: skip
    return [{k: _cell(row[k]) for k in RANKING_COLUMNS} for row in rows]


def write_ranking_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    return _write_csv(rows, RANKING_COLUMNS, path)


def _cell(value: Any) -> Any:
    """CSV cells: a missing or non-finite value is empty."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def _write_csv(rows: list[dict[str, Any]], columns: Iterable[str], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return records.atomic_write_text(path, buf.getvalue())
