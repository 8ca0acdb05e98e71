"""``pack``: packed runs (:mod:`actbench.packing`) against one run per job, side by side.

Two measurements, the variants alternated:

- the default sweep's MLP unit (``sweeps/mlp_unit.yaml``: its activations × five seeds, default
  callbacks, W&B offline) through ``actbench-sweep --jobs <cores>``, ``pack=auto`` against
  ``pack=off``: the run phase and the whole command (:func:`~actbench.bench.sweep_row.time_sweep`),
  at a reduced step budget so one repetition takes minutes;
- per member-step: the digits MLP of the ``mlp_steps`` row (batch 128, diagnostics off) in a
  pack of :data:`MEMBERS`, its record's ``pack.member_step_ms``, against the frozen plain PyTorch
  loop's step (:func:`~actbench.bench.steps.reference_loop`) on the same model and data.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from actbench.bench.report import fmt_range, meets
from actbench.bench.sweep_row import time_sweep
from actbench.bench.timing import (
    REPO,
    Context,
    alternate,
    build,
    compose,
    ensure_data,
    median_range,
)

TARGET_SPEEDUP = 1.5  # packed run phase ÷ one run per job, at least (floor)
GOAL_SPEEDUP = 1.8
TARGET_STEP_RATIO = 1.1  # a member-step ÷ the plain loop's step, at most
UNIT_FILE = REPO / "sweeps" / "mlp_unit.yaml"
UNIT_STEPS = 500  # of the file's 2000: the launcher's costs are per run, the training per step
MEMBERS = 8
STEP_RUN = ["data=digits", "model=mlp", "activation=gelu", "trainer.max_steps=660"]
QUICK = {
    "unit": ["activation=relu", "seed=0,1", "trainer.max_steps=5", "data=digits", "callbacks=none"],
    "steps": ["data=digits", "model=mlp", "activation=gelu", "trainer.max_steps=24"],
}


def _pack_step_ms(ctx: Context, overrides: list[str], members: int) -> float:
    """ms per member-step of a fresh pack of ``members`` (seeds 0..members-1)."""
    from omegaconf import OmegaConf

    from actbench.config import run_dirname
    from actbench.packing.run import train_pack

    root = ctx.tmp("pack-steps-")
    cfgs = []
    for seed in range(members):
        cfg = compose([*overrides, f"seed={seed}", f"run_dir={root}"])
        OmegaConf.update(cfg, "run_dir", str(root / run_dirname(cfg)))
        cfgs.append(cfg)
    summaries = train_pack(cfgs)
    return float(summaries[0]["pack"]["member_step_ms"])


def _plain_step_ms(ctx: Context, overrides: list[str], steps: int) -> float:
    from omegaconf import OmegaConf

    from actbench.bench.steps import plain_torch, reference_loop

    cfg = compose([*overrides, "run_dir=."])
    datamodule, model = build(cfg, "cuda" if ctx.device == "cuda" else "cpu")
    x, y = datamodule.splits["train"]
    warm = steps // 10
    with plain_torch():
        seconds = reference_loop(
            model, x, y, OmegaConf.to_container(cfg.optimizer), cfg.data.batch_size, cfg.seed,
            warm, steps - warm,
        )  # fmt: skip
    return 1000 * seconds / (steps - warm)


def pack_row(ctx: Context) -> dict[str, Any]:
    """Packed against one run per job: a sweep unit's run phase, and a member-step's time."""
    import torch

    from actbench.sweep import usable_cores

    cores = usable_cores()
    ensure_data(ctx)
    data_root = Path(compose([*ctx.overrides, "run_dir=."]).data.root).resolve()
    unit = QUICK["unit"] if ctx.quick else [f"trainer.max_steps={UNIT_STEPS}"]
    common = [*unit, *ctx.overrides, f"data.root={data_root}", *ctx.accelerator,
              "torch_threads=1"]  # fmt: skip
    reps = 1  # each repetition is two whole sweeps of the unit
    sweeps = alternate(
        {
            "pack=auto": lambda: time_sweep(ctx, UNIT_FILE, cores, [*common, "pack=auto"]),
            "pack=off": lambda: time_sweep(ctx, UNIT_FILE, cores, [*common, "pack=off"]),
        },
        reps,
    )
    phase = {k: [r["run_phase"] for r in v] for k, v in sweeps.items()}
    whole = {k: [r["elapsed"] for r in v] for k, v in sweeps.items()}

    step_run = QUICK["steps"] if ctx.quick else STEP_RUN
    base = [*step_run, "callbacks=no_diagnostics", "logger=none", *ctx.accelerator,
            f"data.root={data_root}", "trainer.enable_progress_bar=false"]  # fmt: skip
    steps = int(step_run[-1].split("=")[1])
    torch.set_num_threads(ctx.threads)
    per_step = alternate(
        {
            "pack": lambda: _pack_step_ms(ctx, [*base, f"torch_threads={ctx.threads}"], MEMBERS),
            "plain": lambda: _plain_step_ms(ctx, base, steps),
        },
        max(ctx.reps, 1),
    )
    med = {k: statistics.median(v) for k, v in per_step.items()}
    return {
        "unit": str(UNIT_FILE.relative_to(REPO)),
        "overrides": common,
        "runs": sweeps["pack=off"][0]["runs"],
        "cores": cores,
        "reps": reps,
        "run_phase_s": {k: median_range(v) for k, v in phase.items()},
        "seconds": {k: median_range(v) for k, v in whole.items()},
        "speedup": statistics.median(phase["pack=off"]) / statistics.median(phase["pack=auto"]),
        "speedup_whole_command": statistics.median(whole["pack=off"])
        / statistics.median(whole["pack=auto"]),
        "member_step_ms": median_range(per_step["pack"]),
        "plain_step_ms": median_range(per_step["plain"]),
        "step_ratio": med["pack"] / med["plain"],
        "members": MEMBERS,
        "step_run": base,
        "targets": {"speedup": TARGET_SPEEDUP, "goal": GOAL_SPEEDUP, "step": TARGET_STEP_RATIO},
    }


def render_pack(d: dict[str, Any], device: str) -> list[str]:
    ph, s, t = d["run_phase_s"], d["seconds"], d["targets"]
    out = [
        f"## Packed runs against one run per job ({device})",
        "",
        f"`actbench-sweep {d['unit']} --jobs {d['cores']} {' '.join(d['overrides'])}` with "
        f"`pack=auto` and `pack=off`: {d['runs']} runs, a fresh sweep folder each time; "
        f"{d['reps']} repetition(s).",
        "",
        "| variant | run phase, s | whole command, s |",
        "|---|---|---|",
    ]
    for k in ("pack=auto", "pack=off"):
        out.append(f"| `{k}` | {fmt_range(ph[k], digits=1)} | {fmt_range(s[k], digits=1)} |")
    goal = "meets" if d["speedup"] >= t["goal"] else "misses"
    out += [
        "",
        f"Speed-up of the run phase: **{d['speedup']:.2f}×** ({meets(d['speedup'] >= t['speedup'])}"
        f" the ≥ {t['speedup']}× floor; {goal} the {t['goal']}× goal); whole command "
        f"{d['speedup_whole_command']:.2f}×.",
        "",
        f"Per member-step, a pack of {d['members']} (`{' '.join(d['step_run'])}`): "
        f"{fmt_range(d['member_step_ms'], digits=2)} ms against the plain PyTorch loop's "
        f"{fmt_range(d['plain_step_ms'], digits=2)} ms: **{d['step_ratio']:.2f}×** "
        f"({meets(d['step_ratio'] <= t['step'])} the ≤ {t['step']}× target). The pack's figure "
        "includes its validation at each epoch end; the plain loop validates nothing.",
    ]
    return out
