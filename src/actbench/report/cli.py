"""``actbench-report``: resolve a sweep, build its report folder, print one line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from actbench import records
from actbench.dashboard.page import build_dashboard
from actbench.report.analysis import (
    ReportError,
    analyse,
    collapse_flags,
    read_sweep_records,
    status_counts,
)
from actbench.report.figures import FIGURE_PREFIXES, make_figures
from actbench.report.readme import status_phrase, write_readme
from actbench.report.tables import (
    ranking_rows,
    summary_rows,
    write_ranking_csv,
    write_summary_csv,
)
from actbench.report.wandb_log import log_to_wandb


def build_report(
    sweep_dir: Path,
    out_dir: Path,
    *,
    sweep_name: str | None = None,
    log_wandb: bool = False,
    project: str = "actbench",
) -> Path:
    """Read the run records of ``sweep_dir``'s current grid and write README.md, summary.csv,
    ranking.csv, figures and the offline dashboard into ``out_dir``; returns the README path.
    Works on an unfinished sweep (callable repeatedly while it runs); ``log_wandb`` also logs
    one W&B report run.
    Raises ReportError without records."""
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir)
    sweep = sweep_name or sweep_dir.name
    runs, earlier = read_sweep_records(sweep_dir)
    if not runs:
        raise ReportError(
            f"no run records ({records.SUMMARY}) in {sweep_dir}; valid sweeps: "
            + (", ".join(available_sweeps(sweep_dir.parent)) or "none yet (run make sweep)")
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    collapsed = collapse_flags(r for r in runs if r.status == "completed")
    units = analyse(runs, records.read_selection(sweep_dir), collapsed)
    figures = {u.key: make_figures(u, out_dir) for u in units}
    written = [p for figs, _ in figures.values() for p in figs.values()]
    for stale in out_dir.glob("*.png"):  # figures of units or metrics no longer present
        if stale.name.startswith(FIGURE_PREFIXES) and stale not in written:
            stale.unlink()
    rows = summary_rows(runs, sweep, collapsed)
    write_summary_csv(rows, out_dir / "summary.csv")
    write_ranking_csv(ranking_rows(units, sweep), out_dir / "ranking.csv")
    readme = write_readme(
        sweep, sweep_dir, runs, units, figures, out_dir / "README.md", earlier_grid=earlier
    )
    build_dashboard(sweep_dir, out_dir, sweep_name=sweep)  # the same records, browsable offline
    if log_wandb:
        log_to_wandb(sweep, sweep_dir, rows, units, written, project=project)
    return readme


def _has_records(folder: Path) -> bool:
    return bool(records.run_folders(folder))


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
    parser.add_argument(
        "--export-records",
        type=Path,
        default=None,
        metavar="DIR",
        help="also copy the grid's run records (summary, config, metrics, test correctness; "
        "no checkpoints) into DIR, from which actbench-report DIR rebuilds the report",
    )
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
    counts = status_counts(read_sweep_records(sweep_dir)[0])
    print(f"actbench-report: {name}: {status_phrase(counts)} -> {readme}")
    if args.export_records is not None:
        copied = records.export_records(sweep_dir, args.export_records)
        print(f"actbench-report: {copied} run records -> {args.export_records}")
    return 0
