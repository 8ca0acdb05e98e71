"""``memory``: peak memory (RSS; GPU when used) of a training run and of one curvature
estimate, each in a process of its own."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from actbench.bench.timing import Context, build, child_env, compose, run_entry_point, run_record

MEMORY_MODELS = {"mlp": ["model=mlp"], "vit": ["model=vit"]}


def memory_row(ctx: Context) -> dict[str, Any]:
    """Peak RSS (and GPU memory) of a training run and of one curvature estimate, per model.

    Each is its own process: the training run's peak comes from its run record; the curvature
    estimate is a child of this package that builds the model and probe as a run does, then
    makes one full estimate (``--child curvature``, :func:`curvature_child`).
    """
    models = {"mlp": MEMORY_MODELS["mlp"]} if ctx.quick else MEMORY_MODELS
    steps = 5 if ctx.quick else 100
    base = [
        "trainer.enable_progress_bar=false",
        *ctx.accelerator,
        f"trainer.max_steps={steps}",
        "logger=none",
        "callbacks=no_diagnostics",
        f"torch_threads={ctx.threads}",
    ]
    if ctx.quick:
        base.append("data=digits")
    result: dict[str, Any] = {"config": [*base, *ctx.overrides], "device": ctx.device}
    for name, extra in models.items():
        run_dir = ctx.tmp(f"mem-{name}-")
        run_entry_point([*base, *extra, *ctx.overrides], run_dir)
        train_peak = run_record(run_dir)["peak_memory"]
        shutil.rmtree(run_dir, ignore_errors=True)
        child = [
            sys.executable,
            "-m",
            "actbench.bench",
            "--child",
            "curvature",
            "--device",
            ctx.device,
            "--threads",
            str(ctx.threads),
            *(["--quick"] if ctx.quick else []),
            *extra,
            *ctx.overrides,
        ]
        if ctx.quick:
            child.append("data=digits")
        proc = subprocess.run(child, capture_output=True, text=True, env=child_env(), check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"curvature child failed: {' '.join(child)}\n{proc.stderr[-3000:]}")
        curvature = json.loads(proc.stdout.strip().splitlines()[-1])
        result[name] = {"training_run": train_peak, "curvature_estimate": curvature}
    return result


def curvature_child(device: str, quick: bool, overrides: list[str]) -> dict[str, Any]:
    """In a fresh process: memory after the imports, before and at the peak of one full
    curvature estimate (the peak is the estimate's own where Linux lets it be reset)."""
    from hydra.utils import instantiate

    imports = {"rss_after_imports_mib": _rss_mib(), "peak_after_imports_mib": _rss_mib("VmHWM")}
    cfg = compose(["callbacks=default", *overrides, "run_dir=."])
    datamodule, model = build(cfg, device)
    node = dict(cfg.callbacks.curvature)
    if quick:
        node.update(probe_size=128, lanczos_max_iter=4, precond_max_iter=4, trace_samples=2)
    monitor = instantiate(node)
    x, y = datamodule.splits["train"]
    x, y = x[: monitor.probe_size], y[: monitor.probe_size]
    monitor.chunks = list(
        zip(x.split(monitor.chunk_size), y.split(monitor.chunk_size), strict=True)
    )
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    gpu_before = torch.cuda.memory_allocated() / 2**20 if device == "cuda" else None
    rss_before = _rss_mib()
    own_peak = _reset_peak_rss()
    t = time.perf_counter()
    monitor.compute(model)
    seconds = time.perf_counter() - t
    out = {
        "probe_size": len(y),
        "seconds": seconds,
        **imports,
        "rss_before_mib": rss_before,
        "rss_peak_mib": _rss_mib("VmHWM"),
        "peak_is_the_estimates": own_peak,  # else the process's peak so far
    }
    if device == "cuda":
        out.update(
            gpu_before_mib=gpu_before, gpu_peak_mib=torch.cuda.max_memory_allocated() / 2**20
        )
    return out


def _rss_mib(field: str = "VmRSS") -> float:
    """Resident set size now (``VmRSS``) or its peak (``VmHWM``) from Linux's /proc; the
    process's peak (``getrusage``) where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ≥ 4.0: ``5`` to clear_refs); whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def render_memory(d: dict[str, Any], device: str) -> list[str]:
    out = [
        f"## Peak memory ({device})",
        "",
        f"Training run: `{' '.join(d['config'])}`, peak RSS of the process from its run record. "
        "Curvature: one full estimate at the configured probe in a process of its own; RSS "
        "after the imports, before the estimate (data and model built) and its peak during "
        "the estimate.",
        "",
        "| model | training run, peak RSS MiB | curvature: RSS after imports → before → peak "
        "MiB | estimate | GPU MiB: run peak; estimate before → peak |",
        "|---|---|---|---|---|",
    ]
    for name in ("mlp", "vit"):
        if name not in d:
            continue
        tr, cu = d[name]["training_run"], d[name]["curvature_estimate"]
        gpu = "–"
        if "gpu_peak_mib" in cu:
            gpu = (
                f"{tr.get('gpu_mib', float('nan')):.0f}; {cu['gpu_before_mib']:.0f} → "
                f"{cu['gpu_peak_mib']:.0f}"
            )
        peak = f"{cu['rss_peak_mib']:.0f}" + ("" if cu["peak_is_the_estimates"] else " (process)")
        out.append(
            f"| {name} | {tr['rss_mib']:.0f} | {cu['rss_after_imports_mib']:.0f} → "
            f"{cu['rss_before_mib']:.0f} → {peak} | probe {cu['probe_size']}, "
            f"{cu['seconds']:.1f} s | {gpu} |"
        )
    out += [
        "",
        "Most of a run's RSS is the libraries (torch with its CUDA build, Lightning, "
        "torchmetrics pulling in torchvision and SciPy): compare the training run's peak with "
        "the RSS after the imports alone.",
    ]
    return out
