"""Run lifecycle: divergence as a result, checkpoints that resume a run exactly, and the ranks
of a data-parallel run.

A run killed at any moment and started again with the same command resumes from ``last.ckpt``
and ends with the same numbers as an uninterrupted run (CPU, fixed seed and thread count): the
checkpoint carries the RNG states, how many ``metrics.csv`` rows existed when it was written and
the metrics logged by then. A DDP run's extra ranks are started by rank 0 (:class:`RankProcesses`)
as the same job in the same folder; rank 0 alone writes the record.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger


class Diverged(RuntimeError):
    """The training loss became NaN or infinite at ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training loss became non-finite at step {step}")
        self.step = step


class DivergenceMonitor(pl.Callback):
    """Stops the run at the first non-finite training loss, without a host sync every step.

    Each step writes its finiteness into a small device buffer; the buffer is read every
    ``check_every`` steps and at each epoch end — before the checkpoint callback runs, so
    ``last.ckpt`` always holds the last good weights. Under data parallelism the first bad step
    is agreed across ranks (one all-reduce per check): a rank whose own shard stayed finite must
    stop with the others, or it would wait forever in the next gradient all-reduce.
    """

    def __init__(self, check_every: int = 25) -> None:
        self.check_every = check_every
        self._bad: torch.Tensor | None = None
        self._filled = 0  # entries of _bad written since the last check
        self._start = 0  # the step of entry 0
        self._distributed = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        if self._bad is None or self._bad.device != loss.device:
            self._bad = torch.zeros(self.check_every, dtype=torch.bool, device=loss.device)
        if self._filled == 0:
            self._start = trainer.global_step - 1  # the step whose loss this is
            self._distributed = trainer.world_size > 1
        self._bad[self._filled] = ~torch.isfinite(loss.detach())
        self._filled += 1
        if self._filled == self.check_every:
            self.check()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`Diverged` if any loss since the last check was not finite."""
        if self._bad is None or self._filled == 0:
            return  # every rank has taken the same steps, so all return here together
        seen = self._bad[: self._filled]
        if self._distributed:
            self._filled = 0
            first = self._first_bad_across_ranks(seen)
            if first is not None:
                raise Diverged(self._start + first)
            return
        if bool(seen.any()):  # the one host sync, on the cadence
            raise Diverged(self._start + int(seen.nonzero()[0, 0]))
        self._filled = 0

    @staticmethod
    def _first_bad_across_ranks(seen: torch.Tensor) -> int | None:
        """The earliest non-finite entry on any rank (None when all were finite)."""
        import torch.distributed as dist

        n = len(seen)
        index = torch.arange(n, device=seen.device)
        first = torch.where(seen, index, torch.full_like(index, n)).min().reshape(1)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
        value = int(first.item())
        return value if value < n else None


class Checkpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` at epoch ends, at most once per ``min_interval_s`` seconds
    of training, and always at the end of training.

    Epoch-end checkpoints are what make a resumed run identical to an uninterrupted one, but a
    small model on a small dataset ends an epoch every few milliseconds, and writing weights,
    optimizer and RNG states each time cost more than the training itself (``make bench``). A
    kill loses at most ``min_interval_s`` seconds of training plus one epoch; ``0`` saves at
    every epoch end Lightning's own rule (``every_n_epochs``) allows. Always at training-epoch
    ends, also when validation runs less often (Lightning would then save after validation).
    """

    def __init__(self, *args: Any, min_interval_s: float = 0.0, **kwargs: Any) -> None:
        if min_interval_s < 0:
            raise ValueError(f"callbacks.checkpoint.min_interval_s={min_interval_s}: must be >= 0")
        kwargs.setdefault("save_on_train_epoch_end", True)
        super().__init__(*args, **kwargs)
        self.min_interval_s = min_interval_s
        self._last_save_time = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_save_time = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        due = time.monotonic() - self._last_save_time >= self.min_interval_s
        # Rank 0's clock decides for all: saving ends in a barrier every rank must reach.
        if not trainer.strategy.broadcast(due or training_ends(trainer)):
            return
        saved_before = self._last_global_step_saved
        super().on_train_epoch_end(trainer, pl_module)
        if self._last_global_step_saved != saved_before:
            self._last_save_time = time.monotonic()


def training_ends(trainer: pl.Trainer) -> bool:
    """Whether the epoch now ending is the last of this fit (step or epoch limit, or a stop)."""
    steps_done = trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps
    epochs = trainer.max_epochs
    epochs_done = epochs not in (None, -1) and trainer.current_epoch + 1 >= epochs
    return bool(trainer.should_stop or steps_done or epochs_done)


def rng_states() -> dict[str, Any]:
    """All RNG states as tensors and plain values, so checkpoints load with ``weights_only``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def csv_rows(path: Path) -> int:
    """Data rows in a CSV file (0 when it does not exist)."""
    try:
        with open(path, newline="") as f:
            return max(0, sum(1 for _ in csv.reader(f)) - 1)
    except FileNotFoundError:
        return 0


class ResumableState(pl.Callback):
    """Adds RNG states, the ``metrics.csv`` row count and the latest logged metrics to every
    checkpoint; restores the RNG, and keeps the metrics in ``restored_metrics``.

    A run killed after its last checkpoint (while it tests or writes its record) resumes with
    nothing left to train, so nothing is logged again; the metrics saved with the checkpoint are
    what the uninterrupted run had at that point.
    """

    def __init__(self) -> None:
        self.restored_metrics: dict[str, float] = {}
        self._restored_epoch: int | None = None
        self._trained = False

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        rows = None
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.save()  # flush, so the row count matches what the weights have seen
                rows = csv_rows(Path(logger.log_dir) / "metrics.csv")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        checkpoint["actbench"] = {
            "rng_states": rng_states(),
            "metrics_rows": rows,
            "callback_metrics": metrics,
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("actbench")
        if state:
            set_rng_states(state["rng_states"])
            self.restored_metrics = dict(state.get("callback_metrics", {}))
        self._restored_epoch = checkpoint.get("epoch")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trained = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trained = True  # not called when a restored run has no steps left

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Resumed from the last epoch's checkpoint with no steps left, Lightning skips the loop
        # that counts that epoch as completed on a restart, and the test row would log the
        # previous epoch's number. Checkpoints are written at epoch ends, so the epochs done
        # are the checkpoint's epoch plus one.
        if self._restored_epoch is not None and not self._trained:
            progress = trainer.fit_loop.epoch_progress.current
            progress.completed = max(progress.completed, self._restored_epoch + 1)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning bumps its logging step counter by one when it restarts from an epoch-end
        # checkpoint, which would shift every later logged step; with one optimizer the counter
        # equals the global step at each epoch start, so restore that (a no-op otherwise).
        loop = trainer.fit_loop.epoch_loop
        if hasattr(loop, "_batches_that_stepped"):
            loop._batches_that_stepped = trainer.global_step


def checkpoint_state(path: Path) -> dict[str, Any]:
    """Step and actbench state of a checkpoint, without building any model."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {"global_step": ckpt.get("global_step", 0), **ckpt.get("actbench", {})}


def read_metrics(path: Path, rows: int | None) -> tuple[list[str], list[list[str]]]:
    """Header and the first ``rows`` data rows of ``metrics.csv`` (all rows when None)."""
    if not path.exists():
        return [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        kept = list(reader)
    return header, kept if rows is None else kept[:rows]


def write_metrics(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write ``metrics.csv`` atomically (temporary file and rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


# --- data-parallel ranks ------------------------------------------------------------------------

# Set only in the environment of the processes a rank 0 starts; holds what they take from it.
RANK_ENV = "ACTBENCH_DDP_RANK_OF"
_DIST_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_by_rank_zero() -> dict[str, Any] | None:
    """In a rank > 0 started by :class:`RankProcesses`: rank 0's run folder and checkpoint."""
    raw = os.environ.get(RANK_ENV)
    if not raw or os.environ.get("LOCAL_RANK", "0") == "0":
        return None
    return json.loads(raw)


def extra_ranks(trainer: pl.Trainer) -> int:
    """How many processes Lightning would start by re-running the command (0: none)."""
    # Lightning's subprocess launcher is the one that re-runs sys.argv; the class is private,
    # but it is the only thing that says which kind of launch is coming.
    from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher

    strategy = trainer.strategy
    if not isinstance(getattr(strategy, "launcher", None), _SubprocessScriptLauncher):
        return 0
    if strategy.cluster_environment.creates_processes_externally or trainer.num_nodes > 1:
        return 0  # torchrun, SLURM tasks, or other nodes: their launcher starts the ranks
    return max(0, strategy.num_processes - 1)


def _hydra_quote(value: str) -> str:
    """A Hydra override value that stays one string (run folders hold '=' and ',')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class RankProcesses:
    """Ranks 1..n-1 of a one-node DDP run, started by rank 0 as fresh ``actbench.train`` runs.

    Lightning's own launcher re-runs ``sys.argv``, which under Hydra goes wrong in the cases a
    benchmark meets: in a multirun the command is the whole sweep, from a joblib or submitit
    worker it is the worker's module, and the folder it passes is ``hydra.run.dir`` rather than
    the job's. Here every rank gets the job's own overrides and rank 0's run folder and
    checkpoint; ``LOCAL_RANK`` in rank 0's environment then tells Lightning the processes are
    started externally (its documented torchrun-style mode), so it starts none itself. Each
    rank's log and stderr (tracebacks included) go to ``<run_dir>/train_rank<r>.log``.

    A rank that dies would leave the others blocked in a collective for the process group's
    timeout (30 min); a watcher reports it through ``on_failure`` and kills every rank instead,
    as Lightning's own launcher does. The processes are waited for (or killed) on exit, and
    ``failure`` holds the first rank that failed and its exit code.
    """

    def __init__(
        self,
        count: int,
        overrides: list[str],
        run_dir: Path,
        ckpt_path: str | None,
        cwd: str | None = None,
        on_failure: Callable[[int, int], None] | None = None,
        wait_s: float = 120.0,
    ) -> None:
        self.count, self.overrides, self.run_dir = count, list(overrides), Path(run_dir)
        self.ckpt_path, self.cwd, self.on_failure, self.wait_s = ckpt_path, cwd, on_failure, wait_s
        self.procs: list[subprocess.Popen] = []
        self.failure: tuple[int, int] | None = None
        self._logs: list[Any] = []
        self._saved: dict[str, str | None] = {}
        self._watching = False

    def log_path(self, rank: int) -> Path:
        return self.run_dir / f"train_rank{rank}.log"

    def command(self, rank: int) -> list[str]:
        return [
            sys.executable, "-m", "actbench.train", *self.overrides,
            f"hydra.run.dir={_hydra_quote(str(self.run_dir))}",
            "hydra.output_subdir=null",  # rank 0 alone writes .hydra/
            f"hydra.job.name=train_rank{rank}",  # Hydra's log file: train_rank<r>.log
        ]  # fmt: skip

    def __enter__(self) -> RankProcesses:
        from lightning_fabric.plugins.environments.lightning import find_free_network_port

        self._saved = {k: os.environ.get(k) for k in _DIST_ENV}
        os.environ.update(
            LOCAL_RANK="0",
            NODE_RANK="0",
            WORLD_SIZE=str(self.count + 1),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(find_free_network_port()),
        )
        info = json.dumps({"run_dir": str(self.run_dir), "ckpt_path": self.ckpt_path})
        for rank in range(1, self.count + 1):
            env = {**os.environ, "LOCAL_RANK": str(rank), RANK_ENV: info}
            log = open(self.log_path(rank), "ab")
            self._logs.append(log)
            # stdout only repeats what Hydra's file handler writes to the same log.
            self.procs.append(
                subprocess.Popen(
                    self.command(rank), env=env, cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=log
                )
            )
        self._watching = True
        threading.Thread(target=self._watch, name="actbench-rank-watcher", daemon=True).start()
        return self

    def _first_failure(self) -> tuple[int, int] | None:
        for rank, proc in enumerate(self.procs, start=1):
            code = proc.poll()
            if code:
                return rank, code
        return None

    def _watch(self) -> None:
        while self._watching:
            failure = self._first_failure()
            if failure and self._watching:
                self.failure = failure
                if self.on_failure is not None:
                    self.on_failure(*failure)
                self._kill()
                os.kill(os.getpid(), signal.SIGKILL)  # blocked in a collective: no way out
            time.sleep(0.5)

    def _kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # SIGTERM would wait for Python code that a collective never reaches
        for proc in self.procs:
            proc.wait()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._watching = False
        try:
            if exc_type is None or issubclass(exc_type, Diverged):
                # Every rank finished (or stopped at the same agreed step): let them exit.
                deadline = time.time() + self.wait_s
            else:
                # Rank 0 failed. When another rank died first (rank 0 then sees a closed
                # connection), it has exited or is about to: wait briefly to name it.
                deadline = time.time() + 2.0
            while time.time() < deadline and any(p.poll() is None for p in self.procs):
                if exc_type is not None and self._first_failure():
                    break
                time.sleep(0.05)
            self.failure = self.failure or self._first_failure()
            self._kill()
        finally:
            import torch.distributed as dist

            for log in self._logs:
                log.close()
            # A joblib or submitit worker runs the next job in this process: no stale group.
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
            for key, value in self._saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
