"""The run record: ``summary.json`` beside Lightning's ``metrics.csv``, always written atomically.

A record is what a report, a test and a human read back; a half-written file must never be
mistaken for a finished one, so every write goes to a temporary file and is renamed into place.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

SUMMARY = "summary.json"
STATUSES = ("running", "completed", "diverged", "failed")
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


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def clear_partial_writes(run_dir: Path, names: tuple[str, ...] = (SUMMARY, "metrics.csv")) -> None:
    """Remove the temporary files of atomic writes that a killed process left half-written.

    They never replace the real file, so they are harmless, but they would pile up in the run
    folder with every kill. Only call this while no other process writes into ``run_dir``.
    """
    for name in names:
        for tmp in Path(run_dir).glob(f".{name}.*"):
            tmp.unlink(missing_ok=True)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, json.JSONDecodeError):
        return None


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
