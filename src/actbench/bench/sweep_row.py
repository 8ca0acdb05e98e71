"""``sweep``: the same small sweep grid through ``actbench-sweep`` with ``--jobs`` = cores
against ``--jobs 1``, one torch thread per run: the whole command and its run phase."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from actbench import records
from actbench.bench.report import fmt_range, meets
from actbench.bench.timing import Context, alternate, child_env, compose, ensure_data, median_range

TARGET_SPEEDUP = 1.7  # speed-up of n_jobs=cores over n_jobs=1, at least
# The sweep file's grid narrowed to eight equal runs (later overrides win in Hydra), so the workers
# stay busy to the end. One torch thread per run in both variants: the row measures what the
# launcher's workers add, not what torch's threads do (--jobs 1 would otherwise give its one run
# every core). --quick: one run of a few steps.
SWEEP_GRID = ["activation=relu,gelu", "seed=0,1,2,3", "trainer.max_steps=800", "torch_threads=1"]
# The longest row: two repetitions at most (each is two whole sweeps).
SWEEP_REPS = 2
SWEEP_GRID_QUICK = [
    "data=digits",
    "activation=relu",
    "seed=0",
    "trainer.max_steps=5",
    "callbacks=no_diagnostics",
    "logger=none",
    "torch_threads=1",
]


def time_sweep(ctx: Context, sweep_file: Path, jobs: int, extra: list[str]) -> dict[str, Any]:
    """One sweep through ``actbench-sweep`` in a fresh scratch working directory (its sweep
    folder and outputs land there, so nothing is skipped as already done and no real sweep is
    touched): the whole command's seconds, its run phase (from the moment the sweeper hands
    the runs to the launcher, ``started`` in its manifest, to the last run record written),
    the median run's own wall time and the run count. For single-stage sweep files: a
    two-stage file's manifest is rewritten at each stage."""
    from actbench.sweep import MANIFEST

    script = Path(sys.executable).with_name("actbench-sweep")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "actbench.sweep"]
    cwd = ctx.tmp(f"sweep-j{jobs}-")
    command = [*launcher, str(sweep_file.resolve()), "--jobs", str(jobs), "--no-report", *extra]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=child_env())
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"sweep failed: {' '.join(command)}\n{proc.stderr[-3000:]}")
    # The manifest sits in the sweep folder, the run records directly under it.
    manifests = list(cwd.rglob(MANIFEST))
    runs = [r for m in manifests for r in records.read_sweep(m.parent)]
    done = [r for r in runs if r.ok]
    if not done or len(done) != len(runs):
        raise RuntimeError(f"sweep in {cwd}: {len(done)} of {len(runs)} runs completed")
    launched = min(json.loads(m.read_text())["started"] for m in manifests)
    last_record = max((r.folder / records.SUMMARY).stat().st_mtime for r in runs)
    run_wall = statistics.median(r.wall_time_s for r in done)
    shutil.rmtree(cwd, ignore_errors=True)
    return {"elapsed": elapsed, "run_phase": last_record - launched, "run_wall": run_wall,
            "runs": len(done)}  # fmt: skip


def sweep_row(ctx: Context) -> dict[str, Any]:
    """The sweep file through ``actbench-sweep`` with ``--jobs`` = cores and ``--jobs 1``
    (:func:`time_sweep`). The data cache is shared (``data.root`` made absolute) so no run
    regenerates data. The difference between the two clocks is the fixed start (checking every
    grid value, Hydra's start), the same for both variants.
    """
    from actbench.sweep import usable_cores

    cores = usable_cores()
    data_root = Path(compose([*ctx.overrides, "run_dir=."]).data.root).resolve()
    grid = SWEEP_GRID_QUICK if ctx.quick else SWEEP_GRID
    extra = [*grid, *ctx.overrides, f"data.root={data_root}", *ctx.accelerator]
    ensure_data(ctx)

    def run(jobs: int) -> dict[str, Any]:
        return time_sweep(ctx, ctx.sweep_file, jobs, extra)

    par = f"jobs={cores}"
    reps = min(ctx.reps, SWEEP_REPS)
    runs = alternate({par: lambda: run(cores), "jobs=1": lambda: run(1)}, reps)
    clocks = {
        clock: {k: [r[clock] for r in v] for k, v in runs.items()}
        for clock in ("elapsed", "run_phase", "run_wall")
    }
    med = {c: {k: statistics.median(v) for k, v in t.items()} for c, t in clocks.items()}
    n_runs = runs["jobs=1"][0]["runs"]
    return {
        "sweep": str(ctx.sweep_file),
        "overrides": [*grid, *ctx.overrides, *ctx.accelerator],
        "runs": n_runs,
        "reps": reps,
        "cores": cores,
        "seconds": {k: median_range(v) for k, v in clocks["elapsed"].items()},
        "run_phase_s": {k: median_range(v) for k, v in clocks["run_phase"].items()},
        # One run's own wall time (fit + test), alone vs beside cores − 1 others: what sharing
        # the machine's caches and memory bandwidth costs each run.
        "run_wall_s": {k: median_range(v) for k, v in clocks["run_wall"].items()},
        "runs_per_min": {k: 60 * n_runs / v for k, v in med["run_phase"].items()},
        # The run phase minus the runs' own wall times (each worker's share of them): what
        # starting the workers and running outside train() (imports, W&B, Hydra) cost there.
        "start_s": {
            par: med["run_phase"][par] - n_runs / cores * med["run_wall"][par],
            "jobs=1": med["run_phase"]["jobs=1"] - n_runs * med["run_wall"]["jobs=1"],
        },
        "speedup": med["run_phase"]["jobs=1"] / med["run_phase"][par],
        "speedup_whole_command": med["elapsed"]["jobs=1"] / med["elapsed"][par],
        "slowdown_side_by_side": med["run_wall"][par] / med["run_wall"]["jobs=1"],
        "target_speedup": TARGET_SPEEDUP,
    }


def render_sweep(d: dict[str, Any], device: str) -> list[str]:
    s, ph, rw = d["seconds"], d["run_phase_s"], d["run_wall_s"]
    par = next(k for k in s if k != "jobs=1")
    out = [
        "## Sweep throughput",
        "",
        f"`actbench-sweep {d['sweep']} --jobs N {' '.join(d['overrides'])}`: {d['runs']} runs, "
        "a fresh sweep folder each time (nothing skipped), W&B offline where on; "
        f"{d.get('reps', '?')} repetitions.",
        "",
        "| launcher | whole command, s | run phase, s | runs/min (run phase) | one run's wall, s |",
        "|---|---|---|---|---|",
    ]
    for k in (par, "jobs=1"):
        out.append(
            f"| `--jobs {k.split('=')[1]}` | {fmt_range(s[k], digits=1)} | "
            f"{fmt_range(ph[k], digits=1)} | "
            f"{d['runs_per_min'][k]:.1f} | {fmt_range(rw[k], digits=1)} |"
        )
    out += [
        "",
        f"Speed-up of the run phase (from the launch to the last record): **{d['speedup']:.2f}×** "
        f"on {d['cores']} cores ({meets(d['speedup'] >= d['target_speedup'])} the ≥ "
        f"{d['target_speedup']}× target); of the whole command {d['speedup_whole_command']:.2f}× "
        "(it includes the fixed start, checking every grid value and Hydra's start, the same "
        "for both).",
    ]
    if "start_s" in d:
        st = d["start_s"]
        out += [
            "",
            "What bounds it: starting the workers. The run phase minus the runs' own wall times "
            f"leaves {st[par]:.1f} s at `--jobs {d['cores']}` ({d['cores']} fresh worker "
            "processes side by side, each importing torch and Lightning, starting W&B and loading "
            f"data before its first run) against {st['jobs=1']:.1f} s at `--jobs 1` (the same "
            "once, in the launching process), next to runs of "
            f"{rw['jobs=1']['median']:.1f} s each. The runs themselves barely contend: one is "
            f"{d['slowdown_side_by_side']:.2f}× slower beside {d['cores'] - 1} other(s) than "
            "alone, so sweeps of longer or more runs approach "
            f"{d['cores'] / d['slowdown_side_by_side']:.2f}×.",
        ]
    return out
