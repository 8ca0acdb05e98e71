"""The bench's report: ``README.md`` (one section per row, rendered by the row's own module) and
``bench.json`` (every figure), written atomically; plus the formatting the sections share."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from actbench import records

# A row's section of README.md: (the row's result, the device) -> Markdown lines.
Renderer = Callable[[dict[str, Any], str], list[str]]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def fmt_range(s: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    """``median (min–max)`` of a :func:`~actbench.bench.timing.median_range`."""
    return (
        f"{scale * s['median']:.{digits}f} "
        f"({scale * s['min']:.{digits}f}–{scale * s['max']:.{digits}f})"
    )


def meets(ok: bool) -> str:
    return "meets" if ok else "misses"


def render(result: dict[str, Any], renderers: Mapping[str, Renderer]) -> str:
    """The whole README.md: the machine and method, then each measured row's section."""
    m = result["machine"]
    lines = [
        "# actbench benchmarks",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} "
        f"threads), Lightning {m['lightning']}, GPU: {m['cuda'] or 'none'}; measured {m['date']}, "
        f"load average at start {_load(m)}. Each row alternates its variants "
        f"{result['options']['reps']}× (order reversed every other repetition); figures are "
        "median (min–max). Regenerate with `make bench` (`--only ROW,...`, `--reps N`).",
    ]
    if result["options"]["quick"]:
        lines += ["", "**--quick: tiny runs that exercise the code path; not measurements.**"]
    for device, rows in result["results"].items():
        for row, data in rows.items():
            lines += ["", *renderers[row](data, device)]
    return "\n".join(lines) + "\n"


def _load(m: dict[str, Any]) -> str:
    return ", ".join(f"{v:.2f}" for v in m["load_average"]) if m.get("load_average") else "n/a"


def write(out: Path, result: dict[str, Any], renderers: Mapping[str, Renderer]) -> str:
    """Write ``bench.json`` and ``README.md`` into ``out``; the Markdown written."""
    text = render(result, renderers)
    records.atomic_write_json(out / "bench.json", result, indent=2)
    records.atomic_write_text(out / "README.md", text)
    return text
