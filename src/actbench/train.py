"""Hydra entry point: ``python -m actbench.train [overrides]`` (console script ``actbench-train``).

Seed, instantiate, fit, test, write the run record, and always close the W&B run.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from actbench.config import is_user_error, one_line_error, register_configs

log = logging.getLogger("actbench.train")
register_configs()


def quiet_library_chatter() -> None:
    """Silence known-harmless library chatter that would bury the one line a user needs: a
    run prints its progress bar (on a terminal) and its result line, nothing else.

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
    # Lightning's INFO lines ("GPU available", a product tip, "max_steps reached") say nothing
    # the run line does not; its warnings still show.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one configuration end to end; return its summary record.

    Seed, instantiate, fit, test; what an earlier record means, the record at each state and
    the W&B run belong to :class:`actbench.lifecycle.RunLifecycle`.
    """
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import TQDMProgressBar

    from actbench.config import validate, validate_trainer
    from actbench.diagnostics.base import instantiate_callbacks
    from actbench.divergence import DivergenceMonitor
    from actbench.lifecycle import ResumableState, RunLifecycle, scalars
    from actbench.module import build_classifier, skip_nvml_check_without_cuda
    from actbench.tracking import flat_config

    skip_nvml_check_without_cuda()
    # After the imports: Lightning sets its logger's level when imported.
    quiet_library_chatter()
    if cfg.get("pack_members"):  # the sweeper's job for a pack of runs
        from actbench.packing.run import train_job

        return {"pack": train_job(cfg)}
    typed = validate(cfg)
    validate_trainer(typed.trainer)
    run = RunLifecycle.open(cfg, typed, _task_overrides())
    if run.earlier_result is not None:
        print(run.already_finished_line())
        return run.earlier_result

    if typed.torch_threads:
        torch.set_num_threads(typed.torch_threads)
    torch.set_float32_matmul_precision(typed.matmul_precision)
    pl.seed_everything(typed.seed, workers=True, verbose=False)
    with run.setting_up():
        datamodule = instantiate(cfg.data, seed=typed.seed)
        datamodule.prepare_data()
        datamodule.setup("fit")
        module = build_classifier(cfg, typed, datamodule)
        model = module.model
    run.begin(model.init_gain, datamodule.stats)
    loggers = run.loggers(flat_config(typed, model.init_gain))

    callbacks = instantiate_callbacks(cfg, datamodule.stats["sizes"], warn=run.rank_zero)
    resumable = ResumableState()
    callbacks += [DivergenceMonitor(), resumable]
    # The bar redraws itself on a terminal; written to a file or a pipe it is only noise.
    progress_bar = typed.trainer.enable_progress_bar and sys.stdout.isatty()
    if progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    trainer = instantiate(
        cfg.trainer,
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(run.run_dir),
        enable_progress_bar=progress_bar,
    )
    with run.training(trainer, callbacks):
        trainer.fit(module, datamodule=datamodule, ckpt_path=run.ckpt_path)
        # test() replaces the fit-time metrics; a resumed run with no steps left logged none,
        # and takes them from the checkpoint.
        metrics = {**resumable.restored_metrics, **scalars(trainer.callback_metrics)}
        trainer.test(module, datamodule=datamodule, verbose=False)
        metrics.update(scalars(trainer.callback_metrics))
        for callback in trainer.callbacks:  # final values of the diagnostics
            metrics.update(getattr(callback, "last", {}))
        run.complete(metrics)
    if run.rank_zero:
        print(run.outcome_line())
    return run.summary


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
        if single and is_user_error(err) and os.environ.get("ACTBENCH_TRACEBACK") != "1":
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
        if user_wants_traceback or not is_user_error(err):
            raise
        print(f"actbench: error: {one_line_error(err)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
