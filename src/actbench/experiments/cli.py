"""``actbench-experiments``: run a grid, collect its records, render and check the documents.

actbench-experiments run NAME [--scale small] [--jobs N] [overrides]  (via actbench-sweep)
actbench-experiments collect NAME [--scale small]  # multirun/exp_NAME/ -> docs/.../records/
actbench-experiments render [NAME ...]   # records -> docs/experiments/NAME.md and NAME.png
actbench-experiments check               # exit 1 if a document differs from its records
actbench-experiments list                # the experiments and their sweep files
actbench-experiments                     # no command: render every experiment
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from actbench.experiments.base import DOCS, SCALES, ExperimentError
from actbench.experiments.collect import collect, run_sweep
from actbench.experiments.document import check, render
from actbench.experiments.registry import EXPERIMENTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actbench-experiments",
        description="Reproduction experiments: run a grid, collect its records, render and check "
        "the documents in docs/experiments/. With no command: render every experiment.",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="documents folder (records/ in it)")
    parser.add_argument("--check", action="store_true", help="same as the check command")
    sub = parser.add_subparsers(dest="command")
    p_run = sub.add_parser("run", help="run the experiment's grid with actbench-sweep")
    p_run.add_argument("name", choices=list(EXPERIMENTS))
    p_run.add_argument("--scale", choices=SCALES, default="full")
    p_run.add_argument("--jobs", type=int, default=1, help="parallel workers")
    p_col = sub.add_parser("collect", help="copy a sweep's finished runs into the records")
    p_col.add_argument("name", choices=list(EXPERIMENTS))
    p_col.add_argument("--scale", choices=SCALES, default="full")
    p_col.add_argument("--multirun", type=Path, default=Path("multirun"), help="sweeps' root")
    p_ren = sub.add_parser("render", help="regenerate documents and figures from the records")
    p_ren.add_argument("names", nargs="*", help="experiments (default: all)")
    sub.add_parser("check", help="exit 1 if a document differs from what its records give")
    sub.add_parser("list", help="the experiments and their sweep files")
    # `run` passes what it does not know (Hydra overrides, sweep options) on to actbench-sweep.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.check or args.command == "check":
            problems = check(args.docs)
            for line in problems:
                print(f"actbench-experiments: {line}", file=sys.stderr)
            if not problems:
                print(f"actbench-experiments: {len(EXPERIMENTS)} documents match their records")
            return 1 if problems else 0
        if args.command == "run":
            return run_sweep(args.name, args.scale, max(1, args.jobs), extra)
        if args.command == "collect":
            collect(args.name, args.scale, args.multirun, args.docs)
            return 0
        if args.command == "list":
            for name, exp in EXPERIMENTS.items():
                print(f"{name}: {exp.title} (sweeps/{exp.sweep_file.name})")
            return 0
        for name in getattr(args, "names", None) or list(EXPERIMENTS):
            print(f"actbench-experiments: wrote {render(name, args.docs)}")
        return 0
    except ExperimentError as err:
        print(f"actbench-experiments: error: {err}", file=sys.stderr)
        return 2
