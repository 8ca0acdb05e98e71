"""``diagnostics``: the wall-time share of the three diagnostics callbacks at their default
cadence, by their own clocks (``diagnostics_s`` in the run record) and on vs off."""

from __future__ import annotations

import shutil
import statistics
from typing import Any

from actbench.bench.report import fmt_range, meets
from actbench.bench.timing import Context, alternate, median_range, run_entry_point, run_record

TARGET_SHARE = 0.10  # share of wall time, at most
# --quick: the curvature callback with a probe small enough to take no time.
QUICK_CURVATURE = [
    "callbacks.curvature.probe_size=64",
    "callbacks.curvature.lanczos_max_iter=3",
    "callbacks.curvature.trace_samples=1",
    "callbacks.curvature.precond_max_iter=3",
    "callbacks.curvature.points=2",
]
# Each callback's own share comes from its clock in the "on" runs (diagnostics_s in the record).
VARIANTS = {"off": ["callbacks=no_diagnostics"], "on": ["callbacks=default"]}


def diagnostics_row(ctx: Context) -> dict[str, Any]:
    """Alternate the variants; share = (on − off) / on on the medians of the run records' times."""
    base = [
        "logger=none",
        "trainer.enable_progress_bar=false",
        *ctx.accelerator,
        f"torch_threads={ctx.threads}",
    ]
    variants = dict(VARIANTS)
    if ctx.quick:  # digits, a handful of steps, a tiny probe: the code path, not a measurement
        base += ["data=digits", "trainer.max_steps=6"]
        variants["on"] = [*variants["on"], *QUICK_CURVATURE]

    def run(extra: list[str]) -> dict[str, Any]:
        run_dir = ctx.tmp("diag-")
        run_entry_point([*base, *ctx.overrides, *extra], run_dir)
        record = run_record(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        return {"wall": record["wall_time_s"], "measuring": record.get("diagnostics_s", {})}

    runs = alternate({k: (lambda e=e: run(e)) for k, e in variants.items()}, ctx.reps)
    times = {k: [r["wall"] for r in v] for k, v in runs.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    # The callbacks' own clocks in the "on" runs: their time inside the run ÷ the run's wall
    # time. Free of the run-to-run noise that the on − off difference carries on a shared
    # machine, but blind to what they cost outside their measurements (logging, memory).
    own = [sum(r["measuring"].values()) / r["wall"] for r in runs["on"]]
    per_callback = {
        name: statistics.median(r["measuring"].get(name, 0.0) for r in runs["on"])
        for name in runs["on"][0]["measuring"]
    }
    return {
        "config": [*base, *ctx.overrides],
        "device": ctx.device,
        "times_s": times,
        "median_s": med,
        "share_all": (med["on"] - med["off"]) / med["on"],
        "share_own_clock": statistics.median(own),
        "measuring_s": per_callback,
        "target_share": TARGET_SHARE,
    }


def render_diagnostics(d: dict[str, Any], device: str) -> list[str]:
    t = d["times_s"]
    target = d["target_share"]
    own = ", ".join(f"{k} {v:.2f} s" for k, v in d["measuring_s"].items())
    per_rep = ", ".join(
        f"{100 * (on - off) / on:.0f} %" for on, off in zip(t["on"], t["off"], strict=True)
    )
    off = median_range(t["off"])
    noise = 100 * (off["max"] - off["min"]) / off["median"]
    return [
        f"## Diagnostics share of wall time, default cadence ({device})",
        "",
        f"`{' '.join(d['config']) or '(defaults)'}`; wall time is fit + test from the run record.",
        "",
        "| variant | wall time, s |",
        "|---|---|",
        f"| diagnostics off (`callbacks=no_diagnostics`) | {fmt_range(off, digits=1)} |",
        f"| all three on (`callbacks=default`) | {fmt_range(median_range(t['on']), digits=1)} |",
        "",
        f'Share of the three callbacks by their own clocks in the "on" runs (`diagnostics_s` '
        f"in the run record; each callback times its measurements and their logging): {own}; "
        f"**{100 * d['share_own_clock']:.0f} %** of the run's wall time "
        f"({meets(d['share_own_clock'] <= target)} the {100 * target:.0f} % target). "
        f"Cross-check, (on − off) ÷ on of the medians: {100 * d['share_all']:.0f} % (per "
        f"repetition {per_rep}). It also counts what the callbacks cost outside their "
        "measurements (their hooks on every step, wider CSV rows), but the off runs alone "
        f"spread by {noise:.0f} % of their median on this machine, so it can neither confirm "
        "nor refute a share near the target. Curvature is nearly all of "
        "it: Hessian-vector products on its probe at each cadence point (one Lanczos run for "
        "both spectrum ends, one for Adam's preconditioned sharpness, Hutchinson samples); see "
        "the next row for one estimate's cost.",
    ]
