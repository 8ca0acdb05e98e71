"""``make bench``: what actbench costs, measured side by side on this machine.

Every row compares variants in one invocation, alternating them repetition by repetition (the
order reversed on every other repetition, so a drifting machine load hits both alike), and
reports the median and the range. Rows (``--only``), each measured and rendered by its module:

``mlp_steps``, ``vit_steps`` (:mod:`~actbench.bench.steps`)
    ms per optimizer step and steps/s of actbench's full training path (the real ``train()``
    with its DataModule, Classifier, Trainer, checkpoint, divergence and resume callbacks and the
    CSV log, diagnostics off) against a plain PyTorch loop over the same model, data tensors,
    optimizer, batch size and thread count, and against the same module in a bare Lightning
    ``Trainer`` (Lightning's own loop). Start-up is excluded: the time runs from the end of
    optimizer step N0 to the end of step N1.
``diagnostics`` (:mod:`~actbench.bench.diagnostics`)
    wall-time share of the three diagnostics callbacks at their default cadence: by their own
    clocks (``diagnostics_s`` in the run record), and on vs off.
``hvp`` (:mod:`~actbench.bench.hvp`)
    one Hessian-vector product against one forward+backward, and one full sharpness estimate.
``startup`` (:mod:`~actbench.bench.startup`)
    process start to the first optimizer step, through the real entry point.
``sweep`` (:mod:`~actbench.bench.sweep_row`)
    the same small sweep grid with ``--jobs`` = cores against ``--jobs 1``, one torch thread per
    run: the whole command and its run phase.
``memory`` (:mod:`~actbench.bench.memory`)
    peak memory (RSS; GPU when used) of a training run and of one curvature estimate.
``epoch60k`` (:mod:`~actbench.bench.epoch60k`, measured by ``steps``)
    epoch time of an MLP on 60 000 synthetic MNIST-shaped samples resident on the device
    (run by default on CUDA only).

Writes ``reports/bench/README.md`` and ``bench.json`` (:mod:`~actbench.bench.report`).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import actbench.bench.report as report
from actbench.bench.diagnostics import diagnostics_row, render_diagnostics
from actbench.bench.hvp import hvp_row, render_hvp
from actbench.bench.memory import curvature_child, memory_row, render_memory
from actbench.bench.pack_row import pack_row, render_pack
from actbench.bench.startup import render_startup, startup_row
from actbench.bench.steps import STEP_ROWS, render_steps, steps_row
from actbench.bench.sweep_row import render_sweep, sweep_row
from actbench.bench.timing import REPO, Context

ROWS = (
    *("mlp_steps", "vit_steps", "diagnostics", "hvp", "startup"),
    *("sweep", "pack", "memory", "epoch60k"),
)
DEVICE_ROWS = ("mlp_steps", "vit_steps", "diagnostics", "hvp", "startup", "memory", "epoch60k")
MEASURE: dict[str, Callable[[Context], dict[str, Any]]] = {
    **{row: functools.partial(steps_row, row=row) for row in STEP_ROWS},
    "diagnostics": diagnostics_row,
    "hvp": hvp_row,
    "startup": startup_row,
    "sweep": sweep_row,
    "pack": pack_row,
    "memory": memory_row,
}
RENDER: dict[str, report.Renderer] = {
    **{row: render_steps for row in STEP_ROWS},
    "diagnostics": render_diagnostics,
    "hvp": render_hvp,
    "startup": render_startup,
    "sweep": render_sweep,
    "pack": render_pack,
    "memory": render_memory,
}


def run_row(ctx: Context, row: str) -> dict[str, Any]:
    """One row's result, tagged with its name (the renderers read it)."""
    return {"row": row, **MEASURE[row](ctx)}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actbench-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--reps", type=int, default=3, help="A/B repetitions per variant")
    parser.add_argument("--only", default="", help=f"comma-separated rows; all: {','.join(ROWS)}")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: the CPU, and CUDA too when present",
    )
    parser.add_argument("--quick", action="store_true", help="tiny runs: the code path only")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="add cProfile summaries (throughput windows, start-up)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the in-process rows (default: torch's)",
    )
    parser.add_argument("--sweep", type=Path, default=REPO / "sweeps" / "quick.yaml")
    parser.add_argument("--child", choices=("curvature",), help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every benchmarked run")
    return parser


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_intermixed_args(argv)
    if args.child:
        if args.threads:
            torch.set_num_threads(args.threads)
        device = "cuda" if args.device == "cuda" else "cpu"
        print(json.dumps(curvature_child(device, args.quick, args.overrides)))
        return 0

    rows = [r.strip() for r in args.only.split(",") if r.strip()] or list(ROWS)
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        cli.error(f"--only {','.join(unknown)}: unknown row; valid: {','.join(ROWS)}")
    has_cuda = torch.cuda.is_available()
    if args.device == "cuda" and not has_cuda:
        cli.error("--device cuda: CUDA is not available on this machine")
    devices = {"auto": ["cpu", *(["cuda"] if has_cuda else [])], "cpu": ["cpu"], "cuda": ["cuda"]}[
        args.device
    ]
    explicit = bool(args.only)
    result: dict[str, Any] = {
        "machine": report.machine(),
        "options": {"reps": args.reps, "quick": args.quick, "rows": rows, "devices": devices},
        "overrides": list(args.overrides),
        "results": {},
    }
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="actbench-bench-") as tmp:
        for device in devices:
            ctx = Context(
                device,
                args.reps,
                args.quick,
                args.profile,
                Path(tmp),
                list(args.overrides),
                threads,
                args.sweep,
            )
            for row in rows:
                if row not in DEVICE_ROWS and device != devices[0]:
                    continue  # device-independent: measured once
                if row == "epoch60k" and device == "cpu" and not explicit:
                    continue  # the 60k epoch is a GPU figure unless asked for by name
                print(f"actbench-bench: {row} on {device} ...", file=sys.stderr, flush=True)
                start = time.perf_counter()
                result["results"].setdefault(device, {})[row] = run_row(ctx, row)
                took = time.perf_counter() - start
                print(f"actbench-bench: {row} on {device}: {took:.1f} s", file=sys.stderr)
    print(report.write(args.out, result, RENDER))
    print(f"actbench-bench: wrote {args.out}/README.md and bench.json")
    return 0
