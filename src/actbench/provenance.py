"""Provenance: what besides the config decided a run's numbers (code, packages, machine,
threads, precision) and what it cost (peak memory). The run record (:mod:`actbench.records`)
stores these; this module only measures them.
"""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = (
    "actbench",
    "torch",
    "torchvision",
    "pytorch-lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "wandb",
    "numpy",
    "scikit-learn",
    "mnist1d",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_state() -> dict[str, Any]:
    """Commit of the source tree and whether it had uncommitted changes."""
    src = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=src, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def peak_memory() -> dict[str, float]:
    """Peak resident set size of this process, and peak GPU memory when CUDA was used (MiB)."""
    peak = {"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def reproducibility(
    device: torch.device, world_size: int = 1, backend: str | None = None
) -> dict[str, Any]:
    """Everything besides the config that decides a run's numbers.

    ``world_size`` and ``backend``: data-parallel processes and their collective backend (the
    effective batch is ``world_size`` times ``data.batch_size``).
    """
    return {
        "world_size": world_size,
        "process_group_backend": backend if world_size > 1 else None,
        "git": git_state(),
        "command": [sys.executable, *sys.argv],
        "versions": package_versions(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
