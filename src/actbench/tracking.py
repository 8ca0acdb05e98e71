"""Experiment tracking: W&B (offline unless an API key is configured) beside the local CSV log."""

from __future__ import annotations

import logging
import netrc
import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

log = logging.getLogger(__name__)


def has_wandb_api_key() -> bool:
    """True when W&B could authenticate without asking: env var or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(requested: str) -> str:
    """Resolve ``auto``: ``WANDB_MODE`` wins, then online with a key, else offline (never asks)."""
    env = os.environ.get("WANDB_MODE")
    if env in ("disabled", "offline", "online"):
        return env
    if env == "dryrun":
        return "offline"
    if requested != "auto":
        return requested
    return "online" if has_wandb_api_key() else "offline"


def _settings(timeout_s: float):
    import wandb

    # Tiny runs: no console capture, no system-stats sampler, bounded start-up.
    return wandb.Settings(init_timeout=timeout_s, console="off", x_disable_stats=True, silent=True)


def start_wandb(
    run_dir: Path,
    run_id: str,
    name: str,
    group: str,
    config: dict[str, Any],
    project: str = "actbench",
    entity: str | None = None,
    tags: list[str] | None = None,
    mode: str = "auto",
    init_timeout_s: float = 20.0,
) -> WandbLogger | None:
    """A started W&B logger, falling back to offline (one warning) if online start-up fails."""
    resolved = wandb_mode(mode)
    if resolved == "disabled":
        return None
    os.environ.setdefault("WANDB_START_METHOD", "thread")  # joblib/loky workers and fork clash
    kwargs = dict(
        project=project,
        entity=entity,
        name=name,
        group=group,
        id=run_id,
        save_dir=str(run_dir),
        tags=tags or [],
        config=config,
        resume="allow",
        # Each run its own W&B run, also beside others in one process (a pack's members):
        # without it Lightning's logger reuses whichever run is active.
        reinit="create_new",
    )
    started = time.time()
    logger = _wandb_logger(mode=resolved, settings=_settings(init_timeout_s), **kwargs)
    try:
        run = logger.experiment  # starts the run now, not at the first log call
    except Exception as err:
        if resolved != "online":
            raise
        reason = " ".join(str(err).split())[:200]  # W&B's messages span lines; the warning won't
        log.warning("W&B online start failed (%s); logging offline instead", reason)
        _discard_failed_start(run_dir, run_id, started)
        logger = _wandb_logger(mode="offline", settings=_settings(init_timeout_s), **kwargs)
        run = logger.experiment
    run.define_metric("val/acc", summary="max")
    run.define_metric("val/acc_best", summary="max")
    run.define_metric("val/loss", summary="min")
    return logger


def _wandb_logger(**kwargs: Any) -> WandbLogger:
    logger = WandbLogger(**kwargs)
    # Lightning passes anonymous=None, which this wandb version warns about on every start
    # ("has no effect"); dropping the key changes nothing else.
    init = getattr(logger, "_wandb_init", {})
    if init.get("anonymous", "unset") is None:
        del init["anonymous"]
    return logger


def _discard_failed_start(run_dir: Path, run_id: str, since: float) -> None:
    """Forget an online start that failed, so the offline run can take the same id.

    The W&B service keeps a failed run's id registered ("run ID is in use") and leaves its
    folder behind; shutting the service down (the next start makes a new one) and removing
    the folder that this attempt created leaves one run, the offline one.
    """
    import wandb

    wandb.teardown()
    for folder in (run_dir / "wandb").glob(f"run-*-{run_id}"):
        if folder.is_dir() and folder.stat().st_mtime >= since - 1:
            shutil.rmtree(folder, ignore_errors=True)


def csv_logger(run_dir: Path) -> CSVLogger:
    """Lightning's CSV logger writing ``metrics.csv`` straight into the run folder."""
    return CSVLogger(save_dir=str(run_dir), name="", version="")


def finish_wandb(logger: Logger | None, exit_code: int, summary: dict[str, Any]) -> None:
    """Close the W&B run (a non-zero exit code marks it failed), writing summary values first."""
    if not isinstance(logger, WandbLogger):
        return
    run = getattr(logger, "_experiment", None)  # this logger's own run, never another's
    if run is not None:
        for key, value in summary.items():
            run.summary[key] = value
        run.finish(exit_code=exit_code)


def flat_config(cfg: Any, gain: float) -> dict[str, Any]:
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
