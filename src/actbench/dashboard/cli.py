"""``actbench-dashboard``: a sweep's records -> ``reports/<sweep>/dashboard.html`` and the W&B
workspace spec beside it; ``--wandb`` also saves the workspace, ``--create-workspace SPEC``
saves one from a spec written earlier (offline)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from actbench.dashboard.page import build_dashboard
from actbench.dashboard.workspace import (
    SPEC_NAME,
    WorkspaceError,
    create_command,
    read_spec,
    save_workspace,
)
from actbench.report.analysis import ReportError, read_runs, status_counts
from actbench.report.cli import available_sweeps, resolve_sweep
from actbench.report.readme import status_phrase

PROG = "actbench-dashboard"


def _has_api_key() -> bool:
    from actbench.tracking import has_wandb_api_key

    return has_wandb_api_key()


def _save(spec_path: Path, entity: str | None) -> int:
    url = save_workspace(read_spec(spec_path), entity)
    print(f"{PROG}: W&B workspace saved -> {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A self-contained HTML dashboard of a sweep's run records (opens from disk, "
        "no network) and its W&B workspace, built from code.",
    )
    parser.add_argument(
        "sweep", nargs="?", help="sweep file (sweeps/quick.yaml) or sweep name (quick)"
    )
    parser.add_argument(
        "--runs-root", type=Path, default=Path("multirun"), help="where sweeps write their runs"
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="writes OUT/<sweep>/")
    parser.add_argument(
        "--wandb", action="store_true", help="also save the W&B workspace (needs an API key)"
    )
    parser.add_argument(
        "--create-workspace",
        type=Path,
        metavar="SPEC",
        help=f"save the W&B workspace of a spec written earlier ({SPEC_NAME}) and exit",
    )
    parser.add_argument("--entity", default=None, help="W&B entity (default: your default)")
    args = parser.parse_args(argv)
    try:
        if args.create_workspace is not None:
            return _save(args.create_workspace, args.entity)
        if args.sweep is None:
            valid = ", ".join(available_sweeps(args.runs_root)) or "none yet (run make sweep)"
            raise ReportError(f"no sweep given; valid: {valid} (or --create-workspace SPEC)")
        name, sweep_dir = resolve_sweep(args.sweep, args.runs_root)
        page = build_dashboard(sweep_dir, args.out / name, sweep_name=name)
        spec_path = page.parent / SPEC_NAME
        counts = status_counts(read_runs(sweep_dir))  # the runs the page shows
        print(f"{PROG}: {name}: {status_phrase(counts)} -> {page}")
        if not args.wandb:
            print(f"{PROG}: W&B workspace spec -> {spec_path}; create it with: "
                  f"{create_command(spec_path)}")  # fmt: skip
        elif not _has_api_key():
            print(f"{PROG}: no W&B API key: the workspace is not saved; its spec -> {spec_path}; "
                  f"create it later with: {create_command(spec_path)}")  # fmt: skip
        else:
            return _save(spec_path, args.entity)
    except (ReportError, WorkspaceError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
