"""What every benchmark row shares: the step timer put into real runs, the A/B alternation, the
:class:`Context` of one device's rows, and the helpers that compose, build and launch runs
exactly as the entry point does."""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from actbench import records
from actbench.data import DataModule

REPO = Path(__file__).resolve().parents[3]
CONF_DIR = REPO / "conf"


# --- measuring inside a run ---------------------------------------------------------------------


class StepTimer(pl.Callback):
    """Timestamps of a run's optimizer steps, written to ``out`` (JSON) when training ends.

    Added to a real run as one more callback node (``+callbacks.bench_timer...``), so the run
    is otherwise exactly what the entry point builds. Records wall-clock times of the set-up
    hooks and of the first optimizer step (start-up), and the window from the end of step
    ``start_step`` to the end of step ``end_step`` (throughput), split into time inside training
    batches, gaps between batches within an epoch, and gaps at epoch ends (validation,
    checkpoint, the next epoch's set-up), with validation also on its own; with ``profile``, a
    ``cProfile`` of the window. On CUDA it synchronises only at the window's ends and before the
    first optimizer step, so the split is exact on the CPU and only indicative on a GPU.
    """

    def __init__(
        self, out: str, start_step: int = 0, end_step: int = 0, profile: bool = False
    ) -> None:
        self.out = out
        self.start_step, self.end_step, self.profile = start_step, end_step, profile
        self.wall: dict[str, float] = {"created": time.time()}
        self.split = {
            "in_batch_s": 0.0,
            "between_batches_s": 0.0,
            "epoch_end_s": 0.0,
            "validation_s": 0.0,
            "epoch_ends": 0,
        }
        self.seconds: float | None = None
        self._t0 = self._batch_start = self._batch_end = self._val_start = 0.0
        self._profiler: cProfile.Profile | None = None
        self._profile_text = ""
        self._cuda = False

    def _in_window(self, step: int) -> bool:
        """Whether what follows the end of step ``step`` is inside the window."""
        return self.start_step <= step < self.end_step

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._cuda = trainer.strategy.root_device.type == "cuda"
        self.wall["fit_start"] = time.time()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wall["train_start"] = time.time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._in_window(trainer.global_step):
            gap = now - self._batch_end
            self.split["epoch_end_s" if batch_idx == 0 else "between_batches_s"] += gap
            self.split["epoch_ends"] += batch_idx == 0
        self._batch_start = now

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # Start-up ends here: the first batch's forward and backward are done, its optimizer
        # step is next (diagnostics measuring after step 1 do not count as start-up).
        if "first_optimizer_step" not in self.wall:
            self._sync()
            self.wall["first_optimizer_step"] = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        step = trainer.global_step
        if "first_step_end" not in self.wall:
            self.wall["first_step_end"] = time.time()
        if self._in_window(step - 1):
            self.split["in_batch_s"] += now - self._batch_start
        if step == self.start_step:
            self._sync()
            if self.profile:
                self._profiler = cProfile.Profile()
                self._profiler.enable()
            self._t0 = time.perf_counter()
        elif step == self.end_step and self.end_step > self.start_step:
            self._sync()
            self.seconds = time.perf_counter() - self._t0
            if self._profiler is not None:
                self._profiler.disable()
                self._profile_text = profile_summary(self._profiler, self.seconds)
        self._batch_end = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._in_window(trainer.global_step):
            self.split["validation_s"] += time.perf_counter() - self._val_start

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record: dict[str, Any] = {"wall": self.wall}
        if self.seconds is not None:
            record.update(
                steps=self.end_step - self.start_step,
                seconds=self.seconds,
                **self.split,
                profile=self._profile_text,
            )
        Path(self.out).write_text(json.dumps(record))  # scratch, read back by this process


def timer_overrides(out: Path, start: int = 0, end: int = 0, profile: bool = False) -> list[str]:
    """The Hydra overrides that add a :class:`StepTimer` writing to ``out`` to a run."""
    node = "+callbacks.bench_timer"
    return [
        f"{node}._target_={StepTimer.__module__}.{StepTimer.__qualname__}",
        f"{node}.out={out}",
        f"{node}.start_step={start}",
        f"{node}.end_step={end}",
        f"{node}.profile={str(profile).lower()}",
    ]


def profile_summary(profiler: cProfile.Profile, total_s: float, top: int = 14) -> str:
    """Where the window's time went: a share per library, then the top functions by own time."""
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = {}
    rows = []
    for (filename, line, name), (_, calls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        group = _library(filename, name)
        groups[group] = groups.get(group, 0.0) + own
        rows.append((own, cum, calls, f"{short_path(filename)}:{line}({name})"))
    profiled = sum(groups.values()) or 1.0
    out = [f"cProfile of the window ({total_s:.2f} s wall, profiled {profiled:.2f} s; own time):"]
    for group, own in sorted(groups.items(), key=lambda kv: -kv[1]):
        out.append(f"  {100 * own / profiled:5.1f} %  {group}")
    out.append("  top functions: own s, cumulative s, calls")
    for own, cum, calls, where in sorted(rows, reverse=True)[:top]:
        out.append(f"  {own:7.3f} {cum:7.3f} {calls:7d}  {where}")
    return "\n".join(out)


def _library(filename: str, name: str) -> str:
    if filename == "~":  # a C function: nearly all torch operators and autograd here
        return "C calls (torch operators, autograd, optimizer kernels)"
    for key, label in (
        ("pytorch_lightning", "Lightning"),
        ("lightning_fabric", "Lightning"),
        ("lightning/", "Lightning"),
        ("torchmetrics", "torchmetrics"),
        ("actbench", "actbench"),
        ("torch/", "torch (Python)"),
        ("hydra", "Hydra"),
        ("omegaconf", "Hydra"),
    ):
        if key in filename:
            return label
    return "Python standard library and other"


def short_path(filename: str) -> str:
    """A profiled file's path from its package on (``site-packages``, ``src`` or ``lib`` off)."""
    parts = Path(filename).parts
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    return filename


# --- the rows' shared helpers -------------------------------------------------------------------


@dataclass
class Context:
    """What every row needs: options, the device, the scratch folder and the user's overrides."""

    device: str  # "cpu" or "cuda"
    reps: int
    quick: bool
    profile: bool
    workdir: Path
    overrides: list[str] = field(default_factory=list)
    threads: int = 1
    sweep_file: Path = REPO / "sweeps" / "quick.yaml"

    @property
    def accelerator(self) -> list[str]:
        return [
            f"trainer.accelerator={'gpu' if self.device == 'cuda' else 'cpu'}",
            "trainer.devices=1",
        ]

    def tmp(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.workdir))


def alternate(variants: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[Any]]:
    """Run the variants ``reps`` times each, interleaved; odd repetitions in reverse order."""
    results: dict[str, list[Any]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else reversed(names):
            results[name].append(variants[name]())
    return results


def median_range(values: list[float]) -> dict[str, float]:
    """``{"median", "min", "max"}`` of the repetitions: how every figure is reported."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def compose(overrides: list[str]) -> DictConfig:
    """The run's config as the entry point composes it (``run_dir`` must be among overrides)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from actbench.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def build(cfg: DictConfig, device: str) -> tuple[DataModule, torch.nn.Module]:
    """Data and model exactly as ``train()`` builds them (same seeds): (datamodule, model)."""
    from hydra.utils import instantiate

    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.data, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in datamodule.splits.items()}
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model)(
        input_shape=datamodule.input_shape,
        num_classes=datamodule.num_classes,
        activation=instantiate(cfg.activation),
    )
    return datamodule, model.to(device)


def ensure_data(ctx: Context) -> None:
    """Generate (once) the dataset the runs use, so no timed run pays for it."""
    from hydra.utils import instantiate

    instantiate(compose([*ctx.overrides, "run_dir=."]).data, seed=0).prepare_data()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """In-process runs: no Lightning banners, no per-run result line on the console."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "actbench")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def child_env() -> dict[str, str]:
    """Benchmark runs never reach a network: W&B offline when a row keeps it on."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_entry_point(overrides: list[str], run_dir: Path) -> float:
    """One run of ``python -m actbench.train`` (the console script's module); its wall time."""
    command = [sys.executable, "-m", "actbench.train", *overrides, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=child_env())
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark run failed: {' '.join(command)}\n{proc.stderr[-3000:]}")
    return elapsed


def run_record(run_dir: Path) -> dict[str, Any]:
    """The summary a benchmarked run wrote (it exited 0, so a missing one is a bug)."""
    summary = records.read_summary(run_dir)
    if summary is None:
        raise RuntimeError(f"benchmark run in {run_dir} left no readable run record")
    return summary
