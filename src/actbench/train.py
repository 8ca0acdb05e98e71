"""Hydra entry point: ``python -m actbench.train [overrides]`` (console script ``actbench-train``).

Seed, instantiate, fit, test, write the run record, and always close the W&B run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from actbench.config import ConfigError, group_id, one_line_error, register_configs, run_id

log = logging.getLogger("actbench.train")
register_configs()


def _quiet_library_chatter(in_sweep: bool) -> None:
    """Silence known-harmless library chatter that would bury the one line a user needs.

    Called inside the task function, not at import: a sweep's workers receive the task by value
    (it lives in ``__main__``), so module-level code never runs there.
    """
    for pattern in (
        ".*LeafSpec.*",
        ".*smaller than the logging interval.*",
        ".*exists and is not empty.*",
        ".*does not have many workers.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    if in_sweep:  # "GPU available: ..." once per job is noise between the progress lines
        logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
        logging.getLogger("lightning_fabric").setLevel(logging.WARNING)


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _flat_config(cfg: Any, gain: float) -> dict[str, Any]:
    """Flat keys for W&B tables and filters, beside the nested config."""
    return {
        "activation": cfg.activation.name,
        "model": cfg.model.name,
        "dataset": cfg.data.name,
        "optimizer": cfg.optimizer.name,
        "lr": cfg.optimizer.lr,
        "seed": cfg.seed,
        "batch_size": cfg.data.batch_size,
        "max_steps": cfg.trainer.max_steps,
        "depth": getattr(cfg.model, "depth", None),
        "width": getattr(cfg.model, "width", None),
        "loss": cfg.loss,
        "init_gain": gain,
    }


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def _set_aside_previous(run_dir: Path) -> None:
    """Move a previous attempt's outputs into ``previous/<time>/`` so ``rerun`` loses nothing."""
    keep = {".hydra", "previous", "train.log"}
    old = [p for p in run_dir.iterdir() if p.name not in keep]
    if not old:
        return
    dest = run_dir / "previous" / time.strftime("%Y%m%d-%H%M%S")
    dest.mkdir(parents=True, exist_ok=True)
    for p in old:
        shutil.move(str(p), dest / p.name)
    log.info("previous outputs moved to %s", dest)


# The split each diagnostic takes its probe from (its first probe_size examples).
PROBE_SPLITS = {"CurvatureMonitor": "train", "DeadNeuronMonitor": "val"}


def _probe_sizes(cfg: DictConfig, sizes: dict[str, int], warn: bool) -> dict[str, dict[str, int]]:
    """Probe sizes larger than their split, clamped to the whole split with one warning each.

    A larger probe cannot be drawn, and "all of it" is what such a value asks for (the README
    suggests 4096 on MNIST-1D's 3600 training examples), so this is a warning, not an error.
    """
    clamped: dict[str, dict[str, int]] = {}
    for name, node in cfg.callbacks.items():
        size = node.get("probe_size") if isinstance(node, DictConfig) else None
        split = PROBE_SPLITS.get(str(node.get("_target_", "")).rsplit(".", 1)[-1])
        if size is None or split is None or size <= sizes[split]:
            continue
        clamped[name] = {"probe_size": sizes[split]}
        if warn:
            log.warning(
                "callbacks.%s.probe_size=%d is larger than the %s split (%d examples); "
                "the probe is the whole split",
                name, size, split, sizes[split],
            )  # fmt: skip
    return clamped


def _rank_failure(run_dir: Path, rank: int, code: int) -> str:
    return f"rank {rank} exited with code {code} (its traceback: {run_dir}/train_rank{rank}.log)"


def _original_cwd() -> str:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    return get_original_cwd() if HydraConfig.initialized() else os.getcwd()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one configuration end to end; return its summary record."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import TQDMProgressBar
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    from actbench import lifecycle, record, tracking
    from actbench.config import validate
    from actbench.diagnostics.base import Diagnostic
    from actbench.module import Classifier

    # Lightning's import sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (so a parent process can fork
    # before CUDA starts); then every torch.cuda.is_available() loads NVML again (~0.04 ms here,
    # against ~1 µs), and Adam asks on every step. Without a GPU it protects nothing.
    if not torch.cuda.is_available():
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    # After the imports: Lightning sets its logger's level when imported.
    _quiet_library_chatter(in_sweep=OmegaConf.select(cfg, "sweep.name") is not None)
    typed = validate(cfg)
    run_dir = Path(cfg.run_dir).resolve()
    overrides = _task_overrides()
    rid = run_id(cfg)
    # The other ranks of a data-parallel run train beside rank 0 and leave the run's folder,
    # record, metrics.csv and W&B run to it; they resume from the checkpoint rank 0 chose.
    from_rank_zero = lifecycle.launched_by_rank_zero()
    rank_zero = from_rank_zero is None and rank_zero_only.rank == 0
    previous = record.read_summary(run_dir) if rank_zero else None
    if rank_zero:
        record.clear_partial_writes(run_dir)  # left by a run killed mid-write
    finished = previous and previous.get("status") in ("completed", "diverged")
    if finished and not cfg.rerun:
        acc = previous.get("metrics", {}).get("test/acc")
        print(
            f"actbench: run {rid} already {previous['status']} in {run_dir} (test/acc={acc}); "
            "pass rerun=true to train it again"
        )
        return previous
    if previous and cfg.rerun:
        _set_aside_previous(run_dir)
        previous = None
    last_ckpt = run_dir / "last.ckpt"
    if from_rank_zero is not None:
        resume = from_rank_zero["ckpt_path"] is not None
    else:
        resume = last_ckpt.exists()  # an interrupted or failed attempt: carry on from it

    started = time.time()
    if typed.torch_threads:
        torch.set_num_threads(typed.torch_threads)
    torch.set_float32_matmul_precision(typed.matmul_precision)
    pl.seed_everything(typed.seed, workers=True, verbose=False)

    # What every record of this attempt says, whether set-up succeeds or not.
    identity: dict[str, Any] = {
        "attempt": (previous or {}).get("attempt", 0) + 1,
        "run_id": rid,
        "overrides": overrides,
        "sweep": {"name": typed.sweep.name, "stage": typed.sweep.stage},
        "metrics": {},
        "seeds": {"seed": typed.seed, "data_split_seed": typed.data.split_seed},
    }
    try:
        datamodule = instantiate(cfg.data, seed=typed.seed)
        datamodule.prepare_data()
        datamodule.setup("fit")
        activation = instantiate(cfg.activation)
        # Same seed -> same init stream for every activation (common random numbers).
        torch.manual_seed(typed.seed)
        model = instantiate(cfg.model)(
            input_shape=datamodule.input_shape,
            num_classes=datamodule.num_classes,
            activation=activation,
        )
        module = Classifier(
            model,
            num_classes=datamodule.num_classes,
            optimizer=OmegaConf.to_container(cfg.optimizer),
            loss=typed.loss,
            max_steps=typed.trainer.max_steps,
            log_every_n_steps=typed.trainer.log_every_n_steps,
            compile_model=typed.compile,
        )
    except BaseException as err:  # set-up failed (data files, a model that cannot be built)
        if rank_zero:  # a record all the same, so sweeps and reports see the failure
            OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
            record.atomic_write_json(
                run_dir / record.SUMMARY,
                {
                    "status": "failed",
                    **identity,
                    "error": one_line_error(err)[:500],
                    "activation": {"name": typed.activation.name},
                    "wall_time_s": round(time.time() - started, 3),
                },
            )
        raise

    summary: dict[str, Any] = {
        "status": "running",
        **identity,
        "diverged_at_step": None,
        "wall_time_s": None,
        "activation": {"name": typed.activation.name, "init_gain": model.init_gain},
        "data": datamodule.stats,
    }
    # W&B ids are global to a project: the config hash plus a nonce kept in the record, so
    # a resumed attempt reuses its id while other machines and reruns get their own.
    wandb_id = (previous or {}).get("wandb_id") if not cfg.rerun else None
    summary["wandb_id"] = wandb_id or f"{rid}-{secrets.token_hex(3)}"
    summary_path = run_dir / record.SUMMARY
    if rank_zero:
        record.atomic_write_json(summary_path, summary)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    gid = cfg.logger.group or (
        f"{typed.model.name}-{typed.activation.name}-{typed.data.name}-{group_id(cfg)}"
    )
    flat = _flat_config(typed, model.init_gain)
    csv_logger = tracking.csv_logger(run_dir)
    if resume and rank_zero:  # keep the rows logged up to the checkpoint: none counted twice
        state = lifecycle.checkpoint_state(last_ckpt)
        metrics_csv = run_dir / "metrics.csv"
        header, rows = lifecycle.read_metrics(metrics_csv, state.get("metrics_rows"))
        writer = csv_logger.experiment  # Lightning's writer deletes an existing metrics.csv...
        if header:
            lifecycle.write_metrics(metrics_csv, header, rows)  # ...so put the kept rows back
            writer.metrics_keys = list(header)
        log.info("resuming from %s (step %d)", last_ckpt, state["global_step"])
    loggers: list[Any] = [csv_logger]
    wandb_logger = None
    if typed.logger.wandb and rank_zero:
        wandb_logger = tracking.start_wandb(
            run_dir,
            summary["wandb_id"],
            name=f"{typed.activation.name}-{typed.model.name}-{typed.data.name}-s{typed.seed}",
            group=gid,
            config={**flat, "cfg": OmegaConf.to_container(cfg, resolve=True)},
            project=typed.logger.project,
            entity=typed.logger.entity,
            tags=list(typed.logger.tags),
            mode=typed.logger.mode,
            init_timeout_s=typed.logger.init_timeout_s,
        )
        if wandb_logger is not None:
            loggers.append(wandb_logger)

    probes = _probe_sizes(cfg, datamodule.stats["sizes"], warn=rank_zero)
    callbacks = [instantiate(node, **probes.get(name, {})) for name, node in cfg.callbacks.items()]
    resumable = lifecycle.ResumableState()
    callbacks += [lifecycle.DivergenceMonitor(), resumable]
    if typed.trainer.enable_progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    trainer = instantiate(
        cfg.trainer, logger=loggers, callbacks=callbacks, default_root_dir=str(run_dir)
    )
    ckpt_path = str(last_ckpt) if resume else None
    ranks: Any = contextlib.nullcontext()
    if rank_zero and (extra := lifecycle.extra_ranks(trainer)):

        def rank_failed(rank: int, code: int) -> None:
            # Called just before every rank is killed: the record says why the run stopped.
            summary.update(
                status="failed",
                error=_rank_failure(run_dir, rank, code),
                wall_time_s=round(time.time() - started, 3),
            )
            record.atomic_write_json(summary_path, summary)

        ranks = lifecycle.RankProcesses(
            extra, overrides, run_dir, ckpt_path, cwd=_original_cwd(), on_failure=rank_failed
        )
    exit_code = 1
    try:
        with ranks:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            # test() replaces the fit-time metrics; a resumed run with no steps left logged
            # none, and takes them from the checkpoint.
            metrics = {**resumable.restored_metrics, **_scalars(trainer.callback_metrics)}
            trainer.test(module, datamodule=datamodule, verbose=False)
        metrics.update(_scalars(trainer.callback_metrics))
        for callback in trainer.callbacks:  # final values of the diagnostics
            metrics.update(getattr(callback, "last", {}))
        summary.update(status="completed", metrics=dict(sorted(metrics.items())))
        exit_code = 0
    except lifecycle.Diverged as err:  # a result (too high a learning rate), not a crash
        metrics = _scalars(trainer.callback_metrics)
        summary.update(status="diverged", diverged_at_step=err.step, metrics=metrics)
        exit_code = 0
    except BaseException as err:
        error = one_line_error(err)
        if isinstance(ranks, lifecycle.RankProcesses) and ranks.failure:
            error = f"{_rank_failure(run_dir, *ranks.failure)}; rank 0: {error}"
        summary.update(status="failed", error=error[:500])
        raise
    finally:
        summary["wall_time_s"] = round(time.time() - started, 3)
        summary["steps"] = trainer.global_step
        summary["peak_memory"] = record.peak_memory()
        summary["diagnostics_s"] = {
            type(c).__name__: round(c.seconds, 3) for c in callbacks if isinstance(c, Diagnostic)
        }
        summary["reproducibility"] = record.reproducibility(
            trainer.strategy.root_device,
            world_size=trainer.world_size,
            backend=getattr(trainer.strategy, "process_group_backend", None),
        )
        summary["wandb"] = {"group": gid, "dir": str(run_dir / "wandb")} if wandb_logger else None
        if rank_zero:
            record.atomic_write_json(summary_path, summary)
        tracking.finish_wandb(
            wandb_logger,
            exit_code,
            {**summary["metrics"], "status": summary["status"],
             "diverged_at_step": summary["diverged_at_step"]},
        )  # fmt: skip
    if not rank_zero:
        return summary
    acc = summary["metrics"].get("test/acc", float("nan"))
    outcome = (
        f"loss non-finite at step {summary['diverged_at_step']}"
        if summary["status"] == "diverged"
        else f"test/acc={acc:.4f}"
    )
    print(
        f"actbench: {summary['status']} {typed.activation.name} {typed.model.name} on "
        f"{typed.data.name}: {outcome} in {summary['wall_time_s']:.1f} s -> {run_dir}"
    )
    return summary


# Absolute: a relative config_path is resolved against the *package* when this module is
# imported (the actbench-train console script, a wrapper script), where no 'conf' package exists.
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        train(cfg)
    except Exception as err:
        # A single run stops here with one line; in a multirun the launcher records the failure.
        single = HydraConfig.get().mode == RunMode.RUN
        if single and _is_user_error(err) and os.environ.get("ACTBENCH_TRACEBACK") != "1":
            print(f"actbench: error: {one_line_error(err)}", file=sys.stderr)
            sys.exit(2)
        raise


def main() -> None:
    """Console entry: user errors print one line (full traceback with ``HYDRA_FULL_ERROR=1``)."""
    # W&B agents pass Python's spelling of null; Hydra's grammar wants `null`.
    sys.argv = [re.sub(r"^([\w.+~]+)=None$", r"\1=null", a) for a in sys.argv]
    user_wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    if user_wants_traceback:
        os.environ["ACTBENCH_TRACEBACK"] = "1"
    # Let Hydra raise instead of printing its multi-line report; we condense it below.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
    except Exception as err:
        from actbench.sweep import SweepFailed

        if isinstance(err, SweepFailed) and not user_wants_traceback:
            print(f"actbench-sweep: error: {err}", file=sys.stderr)
            sys.exit(1)
        if user_wants_traceback or not _is_user_error(err):
            raise
        print(f"actbench: error: {one_line_error(err)}", file=sys.stderr)
        sys.exit(2)


def _is_user_error(err: BaseException) -> bool:
    """Bad input (config, data files) rather than a bug: those get the one-line treatment."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from actbench.activations import ActivationError
    from actbench.data import DataError

    user = (ConfigError, ActivationError, DataError, HydraException, OmegaConfBaseException)
    cur: BaseException | None = err
    while cur is not None:
        if isinstance(cur, user):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


if __name__ == "__main__":
    main()
