"""``startup``: process start to the first optimizer step, through the real entry point."""

from __future__ import annotations

import json
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actbench.bench.diagnostics import QUICK_CURVATURE
from actbench.bench.report import fmt_range, meets
from actbench.bench.timing import (
    Context,
    alternate,
    child_env,
    ensure_data,
    median_range,
    short_path,
    timer_overrides,
)

TARGET_S = 6.0  # seconds to the first optimizer step, at most
STARTUP_VARIANTS = {
    # `make train` as a user runs it: W&B (offline here), the three diagnostics.
    "default": [],
    # The lightest real run: CSV log and checkpoint only.
    "bare": ["logger=none", "callbacks=no_diagnostics"],
}


def startup_row(ctx: Context) -> dict[str, Any]:
    """Process start to the first optimizer step, through ``python -m actbench.train``.

    The run gets one more callback (:class:`~actbench.bench.timing.StepTimer`) that notes when
    the first optimizer step is about to run (the first batch's forward and backward done); the
    clock starts just before the process is spawned. ``imports``: the same interpreter
    importing ``actbench.train`` and Lightning and nothing else.
    """
    steps = 2 if ctx.quick else 20
    base = [
        "trainer.enable_progress_bar=false",
        *ctx.accelerator,
        f"trainer.max_steps={steps}",
        f"torch_threads={ctx.threads}",
    ]
    variants = dict(STARTUP_VARIANTS)
    if ctx.quick:
        base.append("data=digits")
        variants["default"] = [*variants["default"], *QUICK_CURVATURE]
    ensure_data(ctx)

    def run(extra: list[str], profile: bool = False) -> dict[str, float]:
        run_dir = ctx.tmp("startup-")
        out = run_dir / "timer.json"
        overrides = [*base, *ctx.overrides, *extra, *timer_overrides(out)]
        prof = ["-m", "cProfile", "-o", str(run_dir / "prof.out")] if profile else []
        command = [
            sys.executable,
            *prof,
            "-m",
            "actbench.train",
            *overrides,
            f"hydra.run.dir={run_dir}",
        ]
        start = time.time()
        proc = subprocess.run(command, capture_output=True, text=True, env=child_env())
        if proc.returncode != 0:
            raise RuntimeError(f"start-up run failed: {' '.join(command)}\n{proc.stderr[-3000:]}")
        wall = json.loads(out.read_text())["wall"]
        phases = {k: v - start for k, v in wall.items()}
        if profile:
            phases["profile"] = startup_profile(run_dir / "prof.out")  # type: ignore[assignment]
        shutil.rmtree(run_dir, ignore_errors=True)
        return phases

    def imports() -> dict[str, float]:
        code = "import actbench.train, pytorch_lightning, time; print(time.time())"
        start = time.time()
        proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                              text=True, env=child_env())  # fmt: skip
        return {"first_optimizer_step": float(proc.stdout.split()[-1]) - start}

    calls: dict[str, Callable[[], Any]] = {k: (lambda e=e: run(e)) for k, e in variants.items()}
    if not ctx.quick:  # one process fewer for the test
        calls["imports"] = imports
    runs = alternate(calls, ctx.reps)
    result: dict[str, Any] = {
        "config": [*base, *ctx.overrides],
        "device": ctx.device,
        "variants": {k: " ".join(e) or "(defaults)" for k, e in variants.items()},
        "seconds": {
            k: median_range([r["first_optimizer_step"] for r in v]) for k, v in runs.items()
        },
        # Median seconds from process start to each hook: where the start-up goes.
        "phases": {
            k: {p: statistics.median(r[p] for r in v) for p in v[0]} for k, v in runs.items()
        },
        "target_s": TARGET_S,
    }
    if ctx.profile:
        # One step: the process is then almost all start-up (plus the test and the record).
        one_step = [*variants["default"], "trainer.max_steps=1"]
        result["profile"] = run(one_step, profile=True)["profile"]
    return result


def startup_profile(path: Path, top: int = 20) -> str:
    """Cumulative times of a one-step run's big pieces: imports, actbench's own set-up, the
    Trainer; cProfile slows Python-heavy parts, so read them as shares, not seconds."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = max(v[3] for v in stats.values())
    trainer_calls = ("__init__", "fit", "test")
    rows = []
    for (filename, line, name), (_, calls, _own, cum, _) in stats.items():
        wanted = (
            name == "_find_and_load"
            or ("/actbench/" in filename and cum > 0.02 * total)
            or (filename.endswith("trainer/trainer.py") and name in trainer_calls)
        )
        if wanted:
            rows.append((cum, calls, f"{short_path(filename)}:{line}({name})"))
    lines = [f"cProfile of a one-step default run, whole process ({total:.2f} s; cumulative):"]
    for cum, calls, where in sorted(rows, reverse=True)[:top]:
        lines.append(f"  {cum:7.2f} s {calls:6d}  {where}")
    return "\n".join(lines)


def render_startup(d: dict[str, Any], device: str) -> list[str]:
    s, ph = d["seconds"], d["phases"]
    out = [
        f"## Start-up: process start to the first optimizer step ({device})",
        "",
        f"`python -m actbench.train {' '.join(d['config'])} [variant]` with a timing callback; "
        "W&B offline. Phases are medians, seconds since the process was spawned.",
        "",
        "| variant | to the first optimizer step, s | callbacks built | fit start | train start "
        "| first step's hooks done |",
        "|---|---|---|---|---|---|",
    ]
    for k, label in d["variants"].items():
        p = ph[k]
        out.append(
            f"| `{label}` | {fmt_range(s[k])} | {p['created']:.2f} | {p['fit_start']:.2f} | "
            f"{p['train_start']:.2f} | {p['first_step_end']:.2f} |"
        )
    if "imports" in s:
        out.append(
            f"| interpreter + `import actbench.train, pytorch_lightning`, nothing else | "
            f"{fmt_range(s['imports'])} | | | | |"
        )
    out += [
        "",
        f"Default run: **{s['default']['median']:.2f} s** "
        f"({meets(s['default']['median'] <= d['target_s'])} the ≤ {d['target_s']:.0f} s "
        f"target); bare run {s['bare']['median']:.2f} s. `callbacks built`: after imports, "
        "config, data, model and W&B start; `fit start` → `train start`: Trainer set-up and "
        "the diagnostics' on_train_start (curvature's step-0 estimate); then the first batch's "
        "forward and backward with the other step-0 measurements. The last column, after the "
        "step, holds the measurements the log-spaced cadence makes at step 1 (not start-up).",
    ]
    if d.get("profile"):
        out += ["", "```", d["profile"], "```"]
    return out
