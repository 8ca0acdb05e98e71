"""``make bench``: what actbench costs, measured side by side on this machine.

Every row compares variants in one invocation, alternating them repetition by repetition (the
order reversed on every other repetition, so a drifting machine load hits both alike), and
reports the median and the range. Rows (``--only``):

``mlp_steps``, ``vit_steps``
    ms per optimizer step and steps/s of actbench's full training path (the real ``train()``
    with its DataModule, Classifier, Trainer, checkpoint, divergence and resume callbacks and the
    CSV log, diagnostics off) against :func:`reference_loop`, a plain PyTorch loop over the same
    model, data tensors, optimizer, batch size and thread count, and against the same module in a
    bare Lightning ``Trainer`` (Lightning's own loop). Start-up is excluded: the time runs from
    the end of optimizer step N0 to the end of step N1.
``diagnostics``
    wall-time share of the three diagnostics callbacks at their default cadence: by their own
    clocks (``diagnostics_s`` in the run record), and on vs off.
``hvp``
    one Hessian-vector product against one forward+backward, and one full sharpness estimate.
``startup``
    process start to the first optimizer step, through the real entry point.
``sweep``
    the same small sweep grid with ``--jobs`` = cores against ``--jobs 1``, one torch thread per
    run: the whole command and its run phase.
``memory``
    peak memory (RSS; GPU when used) of a training run and of one curvature estimate.
``epoch60k``
    epoch time of an MLP on 60 000 synthetic MNIST-shaped samples resident on the device
    (run by default on CUDA only).

Writes ``reports/bench/README.md`` and ``bench.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from actbench.data import DataModule

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"
ROWS = ("mlp_steps", "vit_steps", "diagnostics", "hvp", "startup", "sweep", "memory", "epoch60k")
DEVICE_ROWS = ("mlp_steps", "vit_steps", "diagnostics", "hvp", "startup", "memory", "epoch60k")
TARGETS = {
    "mlp_steps": 0.8,  # actbench steps/s ÷ reference steps/s, at least
    "vit_steps": 0.95,
    "epoch60k": None,
    "diagnostics": 0.10,  # share of wall time, at most
    "hvp": 2.5,  # HVP ÷ forward+backward, at most
    "startup": 6.0,  # seconds to the first optimizer step, at most
    "sweep": 1.7,  # speed-up of n_jobs=cores over n_jobs=1, at least
}
# What "diagnostics off, as configured" means for a training-throughput row: the checkpoint
# callback stays (it is part of every real run), W&B is off (the CSV log always runs).
TRAIN_PATH = ["callbacks=no_diagnostics", "logger=none", "trainer.enable_progress_bar=false"]


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
        Path(self.out).write_text(json.dumps(record))


def timer_overrides(out: Path, start: int = 0, end: int = 0, profile: bool = False) -> list[str]:
    node = "+callbacks.bench_timer"
    return [
        f"{node}._target_=actbench.bench.StepTimer",
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
        rows.append((own, cum, calls, f"{_short(filename)}:{line}({name})"))
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


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    return filename


# --- helpers ------------------------------------------------------------------------------------


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


def summary(values: list[float]) -> dict[str, float]:
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


# --- rows: training throughput ------------------------------------------------------------------


# name -> (row's config, warm-up steps N0, timed steps N1 − N0, the same for --quick)
STEP_ROWS: dict[str, tuple[list[str], int, int, int, int]] = {
    # The reference setting: GELU MLP 64→256→256→256→10 on digits, batch 128.
    "mlp_steps": (["data=digits", "model=mlp", "activation=gelu"], 60, 600, 3, 12),
    # The default ViT (conf/model/vit.yaml) on MNIST-1D, batch 128.
    "vit_steps": (["data=mnist1d", "model=vit", "activation=gelu"], 10, 100, 2, 4),
    # 60 000 synthetic MNIST-shaped samples: one warm-up epoch, then exactly one epoch timed.
    "epoch60k": (
        ["data=mnist", "data._target_=actbench.bench.SyntheticMNIST", "model=mlp"],
        469,
        469,
        4,
        8,
    ),
}


class SyntheticMNIST(DataModule):
    """MNIST-shaped uniform-noise images through the real DataModule (split, standardise, device).

    66 667 examples, so the 10 % validation split leaves exactly 60 000 for training (469 batches
    of 128); only the loader differs from a real MNIST run. Nothing is read from disk.
    """

    samples = 66_667

    def _load(self) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (self.samples, 1, 28, 28), dtype=np.uint8)
        x_test = rng.integers(0, 256, (10_000, 1, 28, 28), dtype=np.uint8)
        y, y_test = rng.integers(0, 10, self.samples), rng.integers(0, 10, 10_000)
        return x, y, x_test, y_test


class SyntheticMNISTQuick(SyntheticMNIST):
    """The same path with 2 000 examples, for ``--quick``."""

    samples = 2_000


def reference_loop(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer_cfg: dict[str, Any],
    batch_size: int,
    seed: int,
    warmup: int,
    steps: int,
) -> float:
    """Plain PyTorch training; seconds from the end of step ``warmup`` to ``warmup + steps``.

    The yardstick for actbench's training path, and deliberately frozen: a seeded permutation
    per epoch, index-sliced batches of device tensors (the last one short), train mode,
    cross-entropy, ``zero_grad``/``backward``/``step`` with the same optimizer and settings.
    Nothing in it may be made slower to flatter actbench, nor may it be skipped.
    """
    import torch.nn.functional as F

    name = optimizer_cfg["name"]
    kwargs: dict[str, Any] = {
        "lr": optimizer_cfg["lr"],
        "weight_decay": optimizer_cfg.get("weight_decay", 0.0),
    }
    if name == "sgd":
        opt = torch.optim.SGD(model.parameters(), momentum=optimizer_cfg["momentum"], **kwargs)
    else:
        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
        betas = (optimizer_cfg["beta1"], optimizer_cfg["beta2"])
        opt = cls(model.parameters(), betas=betas, **kwargs)
    cuda = x.device.type == "cuda"
    model.train()
    n, step, epoch, t0 = len(x), 0, 0, 0.0
    while True:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen).to(x.device)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step == warmup:
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            elif step == warmup + steps:
                if cuda:
                    torch.cuda.synchronize()
                return time.perf_counter() - t0
        epoch += 1


@contextlib.contextmanager
def plain_torch() -> Iterator[None]:
    """The environment of a process that never imported Lightning.

    Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1``; on a machine without CUDA
    every ``torch.cuda.is_available()`` then loads NVML again, and Adam asks once per step
    (about 0.06 ms). A plain PyTorch script does not pay that, so the reference does not either.
    """
    saved = os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = saved


def steps_row(ctx: Context, row: str) -> dict[str, Any]:
    """actbench's full training path against :func:`reference_loop`, alternating A/B."""

    from actbench import train as entry

    config, warmup, steps, q_warmup, q_steps = STEP_ROWS[row]
    if ctx.quick:
        warmup, steps = q_warmup, q_steps
        config = [c.replace("SyntheticMNIST", "SyntheticMNISTQuick") for c in config]
    end = warmup + steps
    fixed = [
        *TRAIN_PATH,
        *ctx.accelerator,
        f"trainer.max_steps={end}",
        f"torch_threads={ctx.threads}",
    ]
    base = [*config, *ctx.overrides, *fixed]
    cfg = compose([*base, "run_dir=."])
    data_cfg = cfg.data

    def actbench_path(profile: bool = False) -> dict[str, Any]:
        run_dir = ctx.tmp(f"{row}-")
        out = run_dir / "timer.json"
        run_cfg = compose(
            [*base, f"run_dir={run_dir}", *timer_overrides(out, warmup, end, profile)]
        )
        with quiet():
            entry.train(run_cfg)
        timer = json.loads(out.read_text())
        shutil.rmtree(run_dir, ignore_errors=True)
        return timer

    def reference() -> dict[str, Any]:
        torch.set_num_threads(ctx.threads)
        datamodule, model = build(cfg, ctx.device)
        x, y = datamodule.splits["train"]
        with plain_torch():
            seconds = reference_loop(
                model, x, y, dict(cfg.optimizer), data_cfg.batch_size, cfg.seed, warmup, steps
            )
        return {"steps": steps, "seconds": seconds, "examples": len(y)}

    def lightning_floor() -> dict[str, Any]:
        # The same Classifier and data in a bare Trainer: no loggers, checkpoint, validation or
        # callbacks besides the timer. Lightning's own per-step loop, which actbench builds on
        # and cannot go below; the gap between it and the reference is not actbench's.
        from actbench.module import Classifier

        torch.set_num_threads(ctx.threads)
        datamodule, model = build(cfg, ctx.device)
        module = Classifier(
            model,
            num_classes=datamodule.num_classes,
            optimizer=dict(cfg.optimizer),
            loss=cfg.loss,
            max_steps=end,
            log_every_n_steps=cfg.trainer.log_every_n_steps,
        )
        out = ctx.tmp(f"{row}-floor-") / "timer.json"
        trainer = pl.Trainer(
            accelerator=cfg.trainer.accelerator,
            devices=1,
            precision=cfg.trainer.precision,
            max_steps=end,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[StepTimer(str(out), warmup, end)],
        )
        with quiet(), plain_torch():
            trainer.fit(module, datamodule=datamodule)
        return json.loads(out.read_text())

    variants = {"actbench": actbench_path, "lightning": lightning_floor, "reference": reference}
    runs = alternate(variants, ctx.reps)
    ms = {k: [1e3 * r["seconds"] / steps for r in v] for k, v in runs.items()}
    med = {k: statistics.median(v) for k, v in ms.items()}
    a = runs["actbench"]
    result: dict[str, Any] = {
        "config": [*config, *ctx.overrides],
        "device": ctx.device,
        "threads": ctx.threads,
        "window": [warmup, end],
        "ms_per_step": {k: summary(v) for k, v in ms.items()},
        "steps_per_s": {k: summary([1e3 / t for t in v]) for k, v in ms.items()},
        "ratio": med["reference"] / med["actbench"],  # actbench steps/s ÷ reference steps/s
        # Lightning's bare loop ÷ reference: the ceiling of any Lightning-based training path.
        "lightning_ratio": med["reference"] / med["lightning"],
        "ratio_per_rep": [r / b for r, b in zip(ms["reference"], ms["actbench"], strict=True)],
        # Where actbench's window went, ms per step (medians): inside training batches (forward,
        # backward, optimizer, per-step hooks), between batches within an epoch (next batch,
        # loop), at epoch ends (validation, checkpoint, next epoch's set-up).
        "split_ms_per_step": {
            k: statistics.median(1e3 * r[k] / steps for r in a)
            for k in ("in_batch_s", "between_batches_s", "epoch_end_s", "validation_s")
        },
        "epoch_ends_in_window": a[0]["epoch_ends"],
        # The same ratio without the epoch ends: what the per-step path alone costs.
        "ratio_without_epoch_ends": med["reference"]
        / statistics.median(1e3 * (r["seconds"] - r["epoch_end_s"]) / steps for r in a),
        "target_ratio": TARGETS.get(row),
        "batch_size": data_cfg.batch_size,
        "train_examples": runs["reference"][0]["examples"],
    }
    if row == "epoch60k":  # ms per step over a window of one whole epoch, end included
        per_epoch = -(-result["train_examples"] // result["batch_size"])
        result["steps_per_epoch"] = per_epoch
        result["epoch_s"] = {k: summary([t * per_epoch / 1e3 for t in v]) for k, v in ms.items()}
    if ctx.profile:
        result["profile"] = actbench_path(profile=True)["profile"]
    return result


# --- rows: diagnostics share, HVP cost ----------------------------------------------------------

# --quick: the curvature callback with a probe small enough to take no time.
QUICK_CURVATURE = [
    "callbacks.curvature.probe_size=64",
    "callbacks.curvature.lanczos_max_iter=3",
    "callbacks.curvature.trace_samples=1",
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
        record = json.loads((run_dir / "summary.json").read_text())
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
        "target_share": TARGETS["diagnostics"],
    }


def hvp_row(ctx: Context) -> dict[str, Any]:
    """One HVP over the default curvature probe's data ÷ one forward+backward over the same data,
    and the time of one full sharpness estimate as the curvature callback makes it."""
    from hydra.utils import instantiate

    from actbench import hessian
    from actbench.module import classification_loss

    torch.set_num_threads(ctx.threads)
    cfg = compose([*ctx.overrides, "run_dir=."])
    datamodule, model = build(cfg, ctx.device)
    x, y = datamodule.splits["train"]
    if ctx.quick:
        x, y = x[:128], y[:128]
    params = list(model.parameters())
    sync = torch.cuda.synchronize if ctx.device == "cuda" else (lambda: None)

    def timed(fn: Callable[[], Any]) -> float:
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t

    hvp, n = hessian.model_hvp(model, lambda o, t: classification_loss(cfg.loss, o, t), [(x, y)])
    vec = torch.randn(n, device=ctx.device)
    hvp(vec)  # warm-up
    reps = max(9, ctx.reps)  # a product takes milliseconds: enough repetitions to beat noise

    def fwd_bwd() -> None:
        torch.autograd.grad(classification_loss(cfg.loss, model(x), y), params)

    times = alternate(
        {"forward_backward": lambda: timed(fwd_bwd), "hvp": lambda: timed(lambda: hvp(vec))}, reps
    )

    # One sharpness estimate: the configured curvature callback, after a few Adam steps so the
    # preconditioned (Adam) sharpness is part of it, as at every cadence point after step 0.
    node = dict(compose(["callbacks=default", *ctx.overrides, "run_dir=."]).callbacks.curvature)
    if ctx.quick:
        node.update(probe_size=128, lanczos_max_iter=4, trace_samples=1)
    monitor = instantiate(node)
    px, py = x[: monitor.probe_size], y[: monitor.probe_size]
    monitor.chunks = list(
        zip(px.split(monitor.chunk_size), py.split(monitor.chunk_size), strict=True)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    for _ in range(3):
        optimizer.zero_grad()
        classification_loss(cfg.loss, model(x[:128]), y[:128]).backward()
        optimizer.step()

    def estimate() -> None:
        # Cold, as at a cadence point far from the last: a warm start at the same weights would
        # stop the top-converging Lanczos after a product or two.
        monitor._v0 = monitor._v0_pre = None
        monitor.compute(model, optimizer)

    first = timed(estimate)  # includes the atlas lookup
    sharp = [timed(estimate) for _ in range(reps)]
    fb, hv = statistics.median(times["forward_backward"]), statistics.median(times["hvp"])
    return {
        "config": list(ctx.overrides),
        "device": ctx.device,
        "examples": len(y),
        "parameters": n,
        "forward_backward_ms": {k: 1e3 * v for k, v in summary(times["forward_backward"]).items()},
        "hvp_ms": {k: 1e3 * v for k, v in summary(times["hvp"]).items()},
        "ratio": hv / fb,
        "target_ratio": TARGETS["hvp"],
        "sharpness": {
            "probe_size": len(py),
            "lanczos_max_iter": monitor.lanczos_max_iter,
            "trace_samples": monitor.trace_samples,
            "first_s": first,
            "seconds": summary(sharp),
        },
    }


# --- rows: start-up, sweep throughput, memory ---------------------------------------------------

STARTUP_VARIANTS = {
    # `make train` as a user runs it: W&B (offline here), the three diagnostics.
    "default": [],
    # The lightest real run: CSV log and checkpoint only.
    "bare": ["logger=none", "callbacks=no_diagnostics"],
}


def startup_row(ctx: Context) -> dict[str, Any]:
    """Process start to the first optimizer step, through ``python -m actbench.train``.

    The run gets one more callback (:class:`StepTimer`) that notes when the first optimizer step
    is about to run (the first batch's forward and backward done); the clock starts just before
    the process is spawned. ``imports``: the same interpreter importing ``actbench.train`` and
    Lightning and nothing else.
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
    _ensure_data(ctx)

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
        "seconds": {k: summary([r["first_optimizer_step"] for r in v]) for k, v in runs.items()},
        # Median seconds from process start to each hook: where the start-up goes.
        "phases": {
            k: {p: statistics.median(r[p] for r in v) for p in v[0]} for k, v in runs.items()
        },
        "target_s": TARGETS["startup"],
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
            rows.append((cum, calls, f"{_short(filename)}:{line}({name})"))
    lines = [f"cProfile of a one-step default run, whole process ({total:.2f} s; cumulative):"]
    for cum, calls, where in sorted(rows, reverse=True)[:top]:
        lines.append(f"  {cum:7.2f} s {calls:6d}  {where}")
    return "\n".join(lines)


def _ensure_data(ctx: Context) -> None:
    """Generate (once) the dataset the runs use, so no timed run pays for it."""
    from hydra.utils import instantiate

    instantiate(compose([*ctx.overrides, "run_dir=."]).data, seed=0).prepare_data()


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


def sweep_row(ctx: Context) -> dict[str, Any]:
    """The sweep file through ``actbench-sweep`` with ``--jobs`` = cores and ``--jobs 1``.

    Each sweep runs in a fresh scratch working directory (its sweep folder and outputs land
    there), so nothing is skipped as already done and no real sweep is touched; the data cache
    is shared (``data.root`` made absolute) so no run regenerates data. Two clocks: the whole
    command, and its run phase, from the moment the sweeper hands the runs to the launcher
    (``started`` in its manifest) to the last run record written; the difference is the fixed
    start (checking every grid value, Hydra's start), the same for both variants. For
    single-stage sweep files: a two-stage file's manifest is rewritten at each stage.
    """
    from actbench.sweep import MANIFEST, usable_cores

    cores = usable_cores()
    data_root = Path(compose([*ctx.overrides, "run_dir=."]).data.root).resolve()
    grid = SWEEP_GRID_QUICK if ctx.quick else SWEEP_GRID
    extra = [*grid, *ctx.overrides, f"data.root={data_root}", *ctx.accelerator]
    script = Path(sys.executable).with_name("actbench-sweep")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "actbench.sweep"]
    flags = ["--no-report"]  # time the runs, not a report
    sweep_file = ctx.sweep_file.resolve()
    _ensure_data(ctx)

    def run(jobs: int) -> dict[str, Any]:
        cwd = ctx.tmp(f"sweep-j{jobs}-")
        command = [*launcher, str(sweep_file), "--jobs", str(jobs), *flags, *extra]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=child_env())
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"sweep failed: {' '.join(command)}\n{proc.stderr[-3000:]}")
        paths = list(cwd.rglob("summary.json"))
        records = [json.loads(r.read_text()) for r in paths]
        done = [r for r in records if r.get("status") == "completed"]
        if not done or len(done) != len(records):
            raise RuntimeError(f"sweep in {cwd}: {len(done)} of {len(records)} runs completed")
        launched = min(json.loads(m.read_text())["started"] for m in cwd.rglob(MANIFEST))
        run_phase = max(p.stat().st_mtime for p in paths) - launched
        run_wall = statistics.median(r["wall_time_s"] for r in done)
        shutil.rmtree(cwd, ignore_errors=True)
        return {"elapsed": elapsed, "run_phase": run_phase, "run_wall": run_wall, "runs": len(done)}

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
        "seconds": {k: summary(v) for k, v in clocks["elapsed"].items()},
        "run_phase_s": {k: summary(v) for k, v in clocks["run_phase"].items()},
        # One run's own wall time (fit + test), alone vs beside cores − 1 others: what sharing
        # the machine's caches and memory bandwidth costs each run.
        "run_wall_s": {k: summary(v) for k, v in clocks["run_wall"].items()},
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
        "target_speedup": TARGETS["sweep"],
    }


MEMORY_MODELS = {"mlp": ["model=mlp"], "vit": ["model=vit"]}


def memory_row(ctx: Context) -> dict[str, Any]:
    """Peak RSS (and GPU memory) of a training run and of one curvature estimate, per model.

    Each is its own process: the training run's peak comes from its run record; the curvature
    estimate is a child of this module that builds the model and probe as a run does, then
    makes one full estimate (``--child curvature``).
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
        train_peak = json.loads((run_dir / "summary.json").read_text())["peak_memory"]
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
        node.update(probe_size=128, lanczos_max_iter=4, trace_samples=1)
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


# --- report -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:

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


def _ms(s: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    return (
        f"{scale * s['median']:.{digits}f} "
        f"({scale * s['min']:.{digits}f}–{scale * s['max']:.{digits}f})"
    )


def _meets(ok: bool) -> str:
    return "meets" if ok else "misses"


def render(result: dict[str, Any]) -> str:
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
            lines += ["", *RENDER[row](data, device)]
    return "\n".join(lines) + "\n"


def _load(m: dict[str, Any]) -> str:
    return ", ".join(f"{v:.2f}" for v in m["load_average"]) if m.get("load_average") else "n/a"


def _render_steps(d: dict[str, Any], device: str) -> list[str]:
    title = {"mlp_steps": "MLP", "vit_steps": "ViT", "epoch60k": "60k-sample MLP epoch"}
    row = d["row"]
    ms, sps = d["ms_per_step"], d["steps_per_s"]
    target = d["target_ratio"]
    verdict = "" if target is None else f" ({_meets(d['ratio'] >= target)} the ≥ {target} target)"
    w0, w1 = d["window"]
    sp = d["split_ms_per_step"]
    out = [
        f"## Training throughput: {title[row]} ({device})",
        "",
        f"`{' '.join(d['config'])}`; {d['train_examples']} training examples, batch "
        f"{d['batch_size']}, {d['threads']} threads. Timed from the end of optimizer step {w0} "
        f"to the end of step {w1} (start-up excluded; {d['epoch_ends_in_window']} epoch ends "
        "inside the window, each with its validation and checkpoint as configured).",
        "",
        "| path | ms per step | steps/s |",
        "|---|---|---|",
        f"| actbench (`train()`: Trainer, callbacks, CSV log, checkpoint) | "
        f"{_ms(ms['actbench'])} | {_ms(sps['actbench'], digits=0)} |",
        *(
            [
                f"| Lightning alone (same module and data; bare Trainer, no validation) | "
                f"{_ms(ms['lightning'])} | {_ms(sps['lightning'], digits=0)} |"
            ]
            if "lightning" in ms
            else []
        ),
        f"| reference (plain PyTorch loop) | {_ms(ms['reference'])} | "
        f"{_ms(sps['reference'], digits=0)} |",
        "",
        f"Ratio of steps/s, actbench ÷ reference: **{d['ratio']:.2f}**{verdict}; per repetition "
        f"{', '.join(f'{r:.2f}' for r in d['ratio_per_rep'])}; without the epoch ends "
        f"{d['ratio_without_epoch_ends']:.2f}."
        + (
            f" Lightning alone ÷ reference: {d['lightning_ratio']:.2f} (Lightning's own loop, "
            "which actbench's training path is built on)."
            if "lightning_ratio" in d
            else ""
        ),
        "",
        "| actbench's step, split | ms per step |",
        "|---|---|",
        f"| inside training batches (forward, backward, optimizer, per-step hooks) | "
        f"{sp['in_batch_s']:.3f} |",
        f"| between batches within an epoch (next batch, loop) | {sp['between_batches_s']:.3f} |",
        f"| at epoch ends (validation, checkpoint, next epoch's set-up) | "
        f"{sp['epoch_end_s']:.3f} |",
        f"| of which validation | {sp['validation_s']:.3f} |",
    ]
    if "lightning" in ms:
        a, lt, r = (ms[k]["median"] for k in ("actbench", "lightning", "reference"))
        val = sp["validation_s"]
        out += [
            "",
            f"Where actbench's {a - r:.2f} ms per step over the reference go (medians; the "
            f"parts are differences of noisy figures): Lightning's own loop {lt - r:.2f} ms "
            f"(bare Trainer − reference), validation {val:.2f} ms, everything else (checkpoint, "
            f"actbench's callbacks and logging) {a - lt - val:.2f} ms. `--profile` adds a "
            "cProfile of the window.",
        ]
    if "epoch_s" in d:
        e = d["epoch_s"]
        out += [
            "",
            f"One epoch ({d['steps_per_epoch']} steps and one epoch end): actbench "
            f"{_ms(e['actbench'])} s, reference {_ms(e['reference'])} s; data resident on "
            f"the device, synthetic uniform-noise {d['train_examples']} × 784 tensors.",
        ]
    if d.get("profile"):
        out += ["", "```", d["profile"], "```"]
    return out


def _render_diagnostics(d: dict[str, Any], device: str) -> list[str]:
    t = d["times_s"]
    target = d["target_share"]
    own = ", ".join(f"{k} {v:.2f} s" for k, v in d["measuring_s"].items())
    per_rep = ", ".join(
        f"{100 * (on - off) / on:.0f} %" for on, off in zip(t["on"], t["off"], strict=True)
    )
    off = summary(t["off"])
    noise = 100 * (off["max"] - off["min"]) / off["median"]
    return [
        f"## Diagnostics share of wall time, default cadence ({device})",
        "",
        f"`{' '.join(d['config']) or '(defaults)'}`; wall time is fit + test from the run record.",
        "",
        "| variant | wall time, s |",
        "|---|---|",
        f"| diagnostics off (`callbacks=no_diagnostics`) | {_ms(off, digits=1)} |",
        f"| all three on (`callbacks=default`) | {_ms(summary(t['on']), digits=1)} |",
        "",
        f'Share of the three callbacks by their own clocks in the "on" runs (`diagnostics_s` '
        f"in the run record; each callback times its measurements and their logging): {own}; "
        f"**{100 * d['share_own_clock']:.0f} %** of the run's wall time "
        f"({_meets(d['share_own_clock'] <= target)} the {100 * target:.0f} % target). "
        f"Cross-check, (on − off) ÷ on of the medians: {100 * d['share_all']:.0f} % (per "
        f"repetition {per_rep}). It also counts what the callbacks cost outside their "
        "measurements (their hooks on every step, wider CSV rows), but the off runs alone "
        f"spread by {noise:.0f} % of their median on this machine, so it can neither confirm "
        "nor refute a share near the target. Curvature is nearly all of "
        "it: Hessian-vector products on its probe at each cadence point (one Lanczos run for "
        "both spectrum ends, one for Adam's preconditioned sharpness, Hutchinson samples); see "
        "the next row for one estimate's cost.",
    ]


def _render_hvp(d: dict[str, Any], device: str) -> list[str]:
    s = d["sharpness"]
    return [
        f"## One Hessian-vector product vs one forward+backward ({device})",
        "",
        f"{d['examples']} examples, {d['parameters']} parameters "
        f"(`{' '.join(d['config']) or 'default GELU MLP'}`): forward+backward "
        f"{_ms(d['forward_backward_ms'], digits=1)} ms, HVP {_ms(d['hvp_ms'], digits=1)} ms, "
        f"ratio **{d['ratio']:.2f}×** ({_meets(d['ratio'] <= d['target_ratio'])} the "
        f"{d['target_ratio']}× target).",
        "",
        f"One full sharpness estimate as the curvature callback makes it, started cold (probe "
        f"{s['probe_size']}, ≤ {s['lanczos_max_iter']} Lanczos iterations for the spectrum and "
        f"as many for Adam's preconditioned sharpness, {s['trace_samples']} Hutchinson "
        "samples): "
        f"{_ms(s['seconds'], digits=2)} s (first one {s['first_s']:.2f} s, with the atlas "
        "lookup).",
    ]


def _render_startup(d: dict[str, Any], device: str) -> list[str]:
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
            f"| `{label}` | {_ms(s[k])} | {p['created']:.2f} | {p['fit_start']:.2f} | "
            f"{p['train_start']:.2f} | {p['first_step_end']:.2f} |"
        )
    if "imports" in s:
        out.append(
            f"| interpreter + `import actbench.train, pytorch_lightning`, nothing else | "
            f"{_ms(s['imports'])} | | | | |"
        )
    out += [
        "",
        f"Default run: **{s['default']['median']:.2f} s** "
        f"({_meets(s['default']['median'] <= d['target_s'])} the ≤ {d['target_s']:.0f} s "
        f"target); bare run {s['bare']['median']:.2f} s. `callbacks built`: after imports, "
        "config, data, model and W&B start; `fit start` → `train start`: Trainer set-up and "
        "the diagnostics' on_train_start (curvature's step-0 estimate); then the first batch's "
        "forward and backward with the other step-0 measurements. The last column, after the "
        "step, holds the measurements the log-spaced cadence makes at step 1 (not start-up).",
    ]
    if d.get("profile"):
        out += ["", "```", d["profile"], "```"]
    return out


def _render_sweep(d: dict[str, Any], device: str) -> list[str]:
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
            f"| `--jobs {k.split('=')[1]}` | {_ms(s[k], digits=1)} | {_ms(ph[k], digits=1)} | "
            f"{d['runs_per_min'][k]:.1f} | {_ms(rw[k], digits=1)} |"
        )
    out += [
        "",
        f"Speed-up of the run phase (from the launch to the last record): **{d['speedup']:.2f}×** "
        f"on {d['cores']} cores ({_meets(d['speedup'] >= d['target_speedup'])} the ≥ "
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


def _render_memory(d: dict[str, Any], device: str) -> list[str]:
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


RENDER: dict[str, Callable[[dict[str, Any], str], list[str]]] = {
    "mlp_steps": _render_steps,
    "vit_steps": _render_steps,
    "epoch60k": _render_steps,
    "diagnostics": _render_diagnostics,
    "hvp": _render_hvp,
    "startup": _render_startup,
    "sweep": _render_sweep,
    "memory": _render_memory,
}


# --- command line -------------------------------------------------------------------------------


def run_row(ctx: Context, row: str) -> dict[str, Any]:
    if row in STEP_ROWS:
        return {"row": row, **steps_row(ctx, row)}
    fn = {
        "diagnostics": diagnostics_row,
        "hvp": hvp_row,
        "startup": startup_row,
        "sweep": sweep_row,
        "memory": memory_row,
    }[row]
    return {"row": row, **fn(ctx)}


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_intermixed_args(argv)
    if args.child:
        if args.threads:
            torch.set_num_threads(args.threads)
        device = "cuda" if args.device == "cuda" else "cpu"
        print(json.dumps(curvature_child(device, args.quick, args.overrides)))
        return 0

    rows = [r.strip() for r in args.only.split(",") if r.strip()] or list(ROWS)
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"--only {','.join(unknown)}: unknown row; valid: {','.join(ROWS)}")
    has_cuda = torch.cuda.is_available()
    if args.device == "cuda" and not has_cuda:
        parser.error("--device cuda: CUDA is not available on this machine")
    devices = {"auto": ["cpu", *(["cuda"] if has_cuda else [])], "cpu": ["cpu"], "cuda": ["cuda"]}[
        args.device
    ]
    explicit = bool(args.only)
    result: dict[str, Any] = {
        "machine": machine(),
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
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "README.md").write_text(render(result))
    print(render(result))
    print(f"actbench-bench: wrote {args.out}/README.md and bench.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
