"""A run's lifecycle: what an earlier record in its folder means (finished, resume, set aside),
the record at each state (running, completed, diverged, failed), its W&B run, and checkpoints
that resume it exactly.

:class:`RunLifecycle` is one run from opening its folder to closing its record and W&B run; the
training entry point only builds and fits. It holds no Trainer of its own (it is handed the one
that trains it), so one Trainer can later drive several of them. A run killed at any moment and
started again with the same command resumes from ``last.ckpt`` and ends with the same numbers
as an uninterrupted run (CPU, fixed seed and thread count): the checkpoint carries the RNG
states, how many ``metrics.csv`` rows existed when it was written and the metrics logged by then.
One process trains a run at a time (the folder's lock), and a folder's record or checkpoint
counts only for the configuration it was made by (its ``run_id``).

Over 500 lines because opening a run's folder (lock, earlier records, set-asides) and the
checkpoints that resume it are one lifecycle, whose parts must agree on what a folder holds.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger

from actbench import provenance, ranks, records, tracking
from actbench.config import one_line_error, run_id
from actbench.divergence import Diverged
from actbench.run_lock import RunLock

log = logging.getLogger("actbench.train")
FINISHED = records.FINISHED


class RunLifecycle:
    """One run's record and W&B run, from opening its folder to closing both.

    Use: :meth:`open` the folder (``earlier_result`` is set when the run already finished);
    build the model inside :meth:`setting_up` (a failure leaves a failed record); :meth:`begin`
    writes the running record and config; :meth:`loggers` gives the CSV and W&B loggers; fit and
    test inside :meth:`training`, calling :meth:`complete` with the final metrics. Divergence
    ends the block as a result; any other error leaves a failed record and propagates.
    """

    def __init__(self, cfg: DictConfig, typed: Any, overrides: list[str]) -> None:
        from pytorch_lightning.utilities.rank_zero import rank_zero_only

        self.cfg, self.typed, self.overrides = cfg, typed, list(overrides)
        self.run_dir = Path(cfg.run_dir).resolve()
        self.run_id = run_id(cfg)
        # The other ranks of a data-parallel run train beside rank 0 and leave the run's folder,
        # record, metrics.csv and W&B run to it; they resume from the checkpoint rank 0 chose.
        self.from_rank_zero = ranks.launched_by_rank_zero()
        self.rank_zero = self.from_rank_zero is None and rank_zero_only.rank == 0
        self.previous: dict[str, Any] | None = None
        self.earlier_result: dict[str, Any] | None = None
        self.resume = False
        self.started = time.time()
        self.summary: dict[str, Any] = {}
        self.wandb_logger: Logger | None = None
        self.group: str | None = None
        self.lock: RunLock | None = None
        self.busy = False  # another process holds the lock and trains this run
        # Set when the run trains in a pack (actbench.packing): what the pack was, so the record
        # can say what its wall time and memory mean.
        self.pack: dict[str, Any] | None = None
        self.resumed_from: dict[str, Any] | None = None  # a packed member's restored state

    # -- opening the folder ----------------------------------------------------------------

    @classmethod
    def open(cls, cfg: DictConfig, typed: Any, overrides: list[str]) -> RunLifecycle:
        """Take the run folder's lock and read what an earlier attempt left.

        ``earlier_result`` is set when this invocation must not train: the run finished (and
        ``rerun`` is false), or another process holds the lock and trains it (``busy``; the
        folder is left as it is). A record or checkpoint of another configuration (its
        ``run_id`` differs) is set aside with one line naming the keys that differ, never
        resumed; a finished attempt is set aside when ``rerun`` is true; a folder of the
        earlier naming that holds this configuration's record is moved here first.
        """
        run = cls(cfg, typed, overrides)
        if run.rank_zero:  # other ranks train under rank 0's lock
            run.lock = RunLock(run.run_dir)
            if not run.lock.acquire():
                run.busy = True
                run.earlier_result = {"run_id": run.run_id, "skipped": "trained elsewhere"}
                return run
            run._adopt_legacy_folder()
            run.previous = records.read_summary(run.run_dir)
            records.clear_partial_writes(run.run_dir)  # left by a run killed mid-write
            run._set_aside_other_configuration()
        if records.is_result_of(run.previous, run.run_id) and not cfg.rerun:
            run.earlier_result = run.previous
            run.release()
            return run
        if run.previous and cfg.rerun:
            log.info("previous outputs moved to %s", set_aside_previous(run.run_dir))
            run.previous = None
        if run.from_rank_zero is not None:
            run.resume = run.from_rank_zero["ckpt_path"] is not None
        else:
            run.resume = run.last_ckpt.exists()  # an interrupted or failed attempt: carry on
        run.started = time.time()
        # What every record of this attempt says, whether set-up succeeds or not.
        run.summary = {
            "attempt": (run.previous or {}).get("attempt", 0) + 1,
            "run_id": run.run_id,
            "overrides": run.overrides,
            "sweep": {"name": typed.sweep.name, "stage": typed.sweep.stage},
            "metrics": {},
            "seeds": {"seed": typed.seed, "data_split_seed": typed.data.split_seed},
        }
        return run

    def release(self) -> None:
        """Let other processes train this run (the attempt is over)."""
        if self.lock is not None:
            self.lock.release()

    def _adopt_legacy_folder(self) -> None:
        """Move here a folder of the earlier naming beside this one that holds this run."""
        from hydra.core.hydra_config import HydraConfig

        from actbench.config import legacy_run_dirname

        if HydraConfig.initialized():
            name = legacy_run_dirname(HydraConfig.get().job.override_dirname)
            if records.adopt_legacy(self.run_dir, self.run_dir.parent / name, self.run_id):
                print(f"actbench: run {self.run_id}: moved {name} (named the earlier way) to "
                      f"{self.run_dir}", flush=True)  # fmt: skip

    def _set_aside_other_configuration(self) -> None:
        """Another configuration's record, or a checkpoint with no record to vouch for it, is
        never reported or resumed as this run's: set aside, with one line, to train afresh."""
        from actbench.config import identity_diff

        stored = (self.previous or {}).get("run_id")
        if stored == self.run_id or (self.previous is None and not self.last_ckpt.exists()):
            return
        what = "a last.ckpt with no record"
        if self.previous is not None:
            saved = records.read_config(self.run_dir)
            keys = identity_diff(saved, self.cfg) if saved else ["? (no config.yaml)"]
            shown = ", ".join(keys[:8]) + ", ..." * (len(keys) > 8) or "none (the id rule changed)"
            what = f"run {stored}, another configuration (keys that differ: {shown})"
        dest = set_aside_previous(self.run_dir)
        print(f"actbench: run {self.run_id}: {self.run_dir} held {what}; set aside in {dest}, "
              "training afresh", flush=True)  # fmt: skip
        self.previous = None

    @property
    def last_ckpt(self) -> Path:
        return self.run_dir / "last.ckpt"

    @property
    def ckpt_path(self) -> str | None:
        return str(self.last_ckpt) if self.resume else None

    def already_finished_line(self) -> str:
        """The one line of an invocation that does not train (see ``earlier_result``)."""
        if self.busy:
            return (
                f"actbench: run {self.run_id} is being trained by another process in "
                f"{self.run_dir}; skipped"
            )
        prev = self.earlier_result or {}
        acc = prev.get("metrics", {}).get("test/acc")
        return (
            f"actbench: run {self.run_id} already {prev.get('status')} in {self.run_dir} "
            f"(test/acc={acc}); pass rerun=true to train it again"
        )

    # -- set-up ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def setting_up(self) -> Iterator[None]:
        """Around data and model construction: a failure (missing data files, a model that
        cannot be built) leaves a failed record naming the error, so sweeps and reports see it."""
        try:
            yield
        except BaseException as err:
            if self.rank_zero:
                self._save_config()
                self._write(
                    {
                        "status": "failed",
                        **self.summary,
                        "error": one_line_error(err)[:500],
                        "activation": {"name": self.typed.activation.name},
                        "wall_time_s": self._elapsed(),
                    }
                )
            self.release()
            raise

    def begin(self, init_gain: float, data_stats: dict[str, Any]) -> None:
        """The running record and the resolved config, once the run is built."""
        self.summary = {
            "status": "running",
            **self.summary,
            "diverged_at_step": None,
            "wall_time_s": None,
            "activation": {"name": self.typed.activation.name, "init_gain": init_gain},
            "data": data_stats,
        }
        # W&B ids are global to a project: the config hash plus a nonce kept in the record, so
        # a resumed attempt reuses its id while other machines and reruns get their own.
        wandb_id = (self.previous or {}).get("wandb_id") if not self.cfg.rerun else None
        self.summary["wandb_id"] = wandb_id or f"{self.run_id}-{secrets.token_hex(3)}"
        if self.rank_zero:
            self._write(self.summary)
            self._save_config()

    def loggers(self, wandb_config: dict[str, Any]) -> list[Logger]:
        """The CSV logger (with the rows up to the checkpoint kept when resuming) and, on rank
        0 when enabled, the W&B logger."""
        typed = self.typed
        self.group = self.cfg.logger.group or default_group(self.cfg)
        csv_logger = tracking.csv_logger(self.run_dir)
        # A packed member resumes from its pack state (actbench.packing.state), not last.ckpt.
        state = self.resumed_from or (checkpoint_state(self.last_ckpt) if self.resume else None)
        if state is not None and self.rank_zero:  # keep the rows logged up to the checkpoint
            metrics_csv = self.run_dir / records.METRICS
            header, rows = records.read_metrics_rows(metrics_csv, state.get("metrics_rows"))
            writer = csv_logger.experiment  # Lightning's writer deletes an existing metrics.csv...
            if header:
                records.write_metrics_rows(metrics_csv, header, rows)  # ...so put the rows back
                writer.metrics_keys = list(header)
            log.info("resuming %s from step %d", self.run_dir, state["global_step"])
        loggers: list[Logger] = [csv_logger]
        if typed.logger.wandb and self.rank_zero:
            self.wandb_logger = tracking.start_wandb(
                self.run_dir,
                self.summary["wandb_id"],
                name=f"{typed.activation.name}-{typed.model.name}-{typed.data.name}-s{typed.seed}",
                group=self.group,
                config={**wandb_config, "cfg": OmegaConf.to_container(self.cfg, resolve=True)},
                project=typed.logger.project,
                entity=typed.logger.entity,
                tags=list(typed.logger.tags),
                mode=typed.logger.mode,
                init_timeout_s=typed.logger.init_timeout_s,
            )
            if self.wandb_logger is not None:
                loggers.append(self.wandb_logger)
        return loggers

    # -- training ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def training(self, trainer: pl.Trainer, callbacks: list[Any]) -> Iterator[None]:
        """Around fit and test: starts the other ranks of a data-parallel run, records a
        divergence as a result (the block ends, nothing propagates) and any other error as
        failed (it propagates), and always writes the final record and closes W&B."""
        rank_procs: Any = contextlib.nullcontext()
        if self.rank_zero and (extra := ranks.extra_ranks(trainer)):
            rank_procs = ranks.RankProcesses(
                extra, self.overrides, self.run_dir, self.ckpt_path,
                cwd=_original_cwd(), on_failure=self._rank_failed,
            )  # fmt: skip
        exit_code = 1
        try:
            with rank_procs:
                yield
            exit_code = 0
        except Diverged as err:  # a result (too high a learning rate), not a crash
            self.summary.update(
                status="diverged",
                diverged_at_step=err.step,
                metrics=scalars(trainer.callback_metrics),
            )
            exit_code = 0
        except BaseException as err:
            error = one_line_error(err)
            if isinstance(rank_procs, ranks.RankProcesses) and rank_procs.failure:
                error = f"{rank_failure(self.run_dir, *rank_procs.failure)}; rank 0: {error}"
            self.summary.update(status="failed", error=error[:500])
            raise
        finally:
            try:
                self._close(trainer, callbacks, exit_code)
            finally:
                self.release()  # the record is final: another invocation may read it now

    def complete(self, metrics: dict[str, float]) -> None:
        self.summary.update(status="completed", metrics=dict(sorted(metrics.items())))

    def _rank_failed(self, rank: int, code: int) -> None:
        # Called just before every rank is killed: the record says why the run stopped.
        self.summary.update(
            status="failed",
            error=rank_failure(self.run_dir, rank, code),
            wall_time_s=self._elapsed(),
        )
        self._write(self.summary)

    def _close(self, trainer: pl.Trainer, callbacks: list[Any], exit_code: int) -> None:
        from actbench.diagnostics.base import Diagnostic

        summary = self.summary
        summary["wall_time_s"] = self._elapsed()
        summary["steps"] = trainer.global_step
        summary["peak_memory"] = provenance.peak_memory()
        if self.pack is not None:
            summary.update(pack_shares(self.pack, summary["wall_time_s"], summary["peak_memory"]))
        summary["diagnostics_s"] = {
            type(c).__name__: round(c.seconds, 3) for c in callbacks if isinstance(c, Diagnostic)
        }
        summary["reproducibility"] = provenance.reproducibility(
            trainer.strategy.root_device,
            world_size=trainer.world_size,
            backend=getattr(trainer.strategy, "process_group_backend", None),
        )
        summary["wandb"] = (
            {"group": self.group, "dir": str(self.run_dir / "wandb")} if self.wandb_logger else None
        )
        if self.rank_zero:
            self._write(summary)
        tracking.finish_wandb(
            self.wandb_logger,
            exit_code,
            {**summary["metrics"], "status": summary["status"],
             "diverged_at_step": summary["diverged_at_step"]},
        )  # fmt: skip

    def outcome_line(self) -> str:
        s, typed = self.summary, self.typed
        acc = s["metrics"].get("test/acc", float("nan"))
        outcome = (
            f"loss non-finite at step {s['diverged_at_step']}"
            if s["status"] == "diverged"
            else f"test/acc={acc:.4f}"
        )
        return (
            f"actbench: {s['status']} {typed.activation.name} {typed.model.name} on "
            f"{typed.data.name}: {outcome} in {s['wall_time_s']:.1f} s -> {self.run_dir}"
        )

    # -- writing -----------------------------------------------------------------------------

    def _write(self, summary: dict[str, Any]) -> None:
        records.write_summary(self.run_dir, summary)

    def _save_config(self) -> None:
        OmegaConf.save(self.cfg, self.run_dir / records.CONFIG, resolve=True)

    def _elapsed(self) -> float:
        return round(time.time() - self.started, 3)


def default_group(cfg: DictConfig) -> str:
    """The W&B group of a run: the runs that differ only in seed."""
    from actbench.config import group_id

    return f"{cfg.model.name}-{cfg.activation.name}-{cfg.data.name}-{group_id(cfg)}"


def pack_shares(pack: dict[str, Any], wall_time_s: float, peak: dict[str, Any]) -> dict[str, Any]:
    """A packed member's cost: the pack's totals under ``pack``, and the member's equal share
    of them as its ``wall_time_s`` and ``peak_memory`` (what one run of a pack cost), so cost
    columns compare packed and unpacked runs per run."""
    size = max(int(pack["size"]), 1)
    share = {k: round(v / size, 3) for k, v in peak.items() if isinstance(v, int | float)}
    return {
        "pack": {**pack, "wall_time_s": wall_time_s, "peak_memory": peak,
                 "member_share": "wall_time_s and peak_memory are the pack's divided by size"},
        "wall_time_s": round(wall_time_s / size, 3),
        "peak_memory": share,
    }  # fmt: skip


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The one-element entries of Lightning's ``callback_metrics`` as floats."""
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def set_aside_previous(run_dir: Path) -> Path | None:
    """Move a previous attempt's outputs into ``previous/<time>/`` so nothing is lost; that
    folder, None when there was nothing to move. The lock file stays where others look."""
    old = [
        p
        for p in run_dir.iterdir()
        if p.name not in {".hydra", "previous", "train.log", records.LOCK}
    ]
    if not old:
        return None
    stamp, n = time.strftime("%Y%m%d-%H%M%S"), 1
    while (dest := run_dir / "previous" / (stamp if n == 1 else f"{stamp}-{n}")).exists():
        n += 1  # set aside twice within a second (another configuration's, then a rerun)
    dest.mkdir(parents=True)
    for p in old:
        shutil.move(str(p), dest / p.name)
    return dest


def rank_failure(run_dir: Path, rank: int, code: int) -> str:
    return f"rank {rank} exited with code {code} (its traceback: {run_dir}/train_rank{rank}.log)"


def _original_cwd() -> str:
    import os

    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    return get_original_cwd() if HydraConfig.initialized() else os.getcwd()


# --- checkpoints --------------------------------------------------------------------------------


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
                rows = records.metrics_row_count(Path(logger.log_dir) / records.METRICS)
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
