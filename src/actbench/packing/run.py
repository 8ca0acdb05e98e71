"""Train a pack: open every member's run, build them from their own seeds on shared data, fit
them with one Trainer, test them, and close each member's record and W&B run.

:func:`train_pack` is to a pack what :func:`actbench.train.train` is to one run: members that
already finished are skipped (their records returned), the others resume from their saved
states, and each ends with the record its unpacked run would have, plus ``pack`` (its pack and
what its wall time and memory mean).
"""

from __future__ import annotations

import contextlib
from typing import Any

from omegaconf import DictConfig

from actbench.config import ConfigError, digest
from actbench.packing import state as pack_state
from actbench.packing.keys import (
    MEMBER_KEYS,
    SHARED_PRESENTATION_KEYS,
    member_jobs,
    pack_key,
    shared_presentation,
)
from actbench.packing.member import Member


def check_packable(cfgs: list[DictConfig]) -> None:
    """One line naming what differs when the configurations cannot share a pack."""
    if not cfgs:
        raise ConfigError("a pack needs at least one configuration")
    keys = [pack_key(c) for c in cfgs]
    if len(set(keys)) > 1:
        from actbench.config import identity_diff

        other = next(c for c, k in zip(cfgs, keys, strict=True) if k != keys[0])
        differ = [k for k in identity_diff(cfgs[0], other) if not k.startswith(MEMBER_KEYS)]
        mine, theirs = shared_presentation(cfgs[0]), shared_presentation(other)
        differ += [k for k in SHARED_PRESENTATION_KEYS if mine[k] != theirs[k]]
        raise ConfigError(
            f"these runs cannot share a pack: they differ in {', '.join(differ)} "
            f"(members may differ only in {', '.join(MEMBER_KEYS)})"
        )


def train_pack(cfgs: list[DictConfig], overrides: list[list[str]] | None = None) -> list[dict]:
    """Train the runs ``cfgs`` (resolved configurations with their ``run_dir``) as one pack;
    return each run's summary record, in order."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from actbench.config import validate, validate_trainer
    from actbench.lifecycle import RunLifecycle
    from actbench.module import skip_nvml_check_without_cuda

    skip_nvml_check_without_cuda()
    check_packable(cfgs)
    overrides = overrides or [[] for _ in cfgs]
    typed = [validate(c) for c in cfgs]
    validate_trainer(typed[0].trainer)
    results: list[dict[str, Any] | None] = [None] * len(cfgs)
    members: list[tuple[int, Member]] = []
    for i, (cfg, t, ov) in enumerate(zip(cfgs, typed, overrides, strict=True)):
        run = RunLifecycle.open(cfg, t, ov)
        if run.earlier_result is not None:
            print(run.already_finished_line())
            results[i] = run.earlier_result
            continue
        pack_state.settle(run.run_dir)
        members.append((i, Member(cfg, t, run)))
    if not members:
        return results  # type: ignore[return-value]

    first = members[0][1]
    if first.typed.torch_threads:
        torch.set_num_threads(first.typed.torch_threads)
    torch.set_float32_matmul_precision(first.typed.matmul_precision)
    pl.seed_everything(first.typed.seed, workers=True, verbose=False)
    with contextlib.ExitStack() as failing:  # a data error is every member's failure
        for _, m in members:
            failing.enter_context(m.run.setting_up())
        datamodule = instantiate(first.cfg.data, seed=first.typed.seed)
        datamodule.prepare_data()
        datamodule.setup("fit")
    for _, m in members:
        m.build(datamodule)
        saved = pack_state.load(m.run.run_dir, m.run.run_id)
        if saved is not None:
            pack_state.restore(m, saved)
    # Members resume together only from one step: those saved at other steps (a member moved
    # between packs) train as packs of their own, one after the other.
    by_start: dict[int, list[Member]] = {}
    for _, m in members:
        by_start.setdefault(m.step if m.diverged_at is None else -1, []).append(m)
    for group in by_start.values():
        _fit(group, datamodule)
    for i, m in members:
        results[i] = m.run.summary
    return results  # type: ignore[return-value]


def _fit(members: list[Member], datamodule: Any) -> None:
    """Fit and test one pack of built members that all start from the same step."""
    import sys

    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import TQDMProgressBar

    from actbench.diagnostics.base import instantiate_callbacks
    from actbench.divergence import DivergenceMonitor
    from actbench.packing.module import PackedClassifier
    from actbench.tracking import flat_config

    first = members[0]
    live = [m for m in members if m.diverged_at is None]
    start = live[0].step if live else first.max_steps
    pack_id = digest(sorted(m.run.run_id for m in members))
    for m in members:
        m.run.begin(m.model.init_gain, datamodule.stats)
        m.run.pack = {"id": pack_id, "size": len(members)}
        m.loggers = m.run.loggers(flat_config(m.typed, m.model.init_gain))
        # The pack saves its members itself (packing.state): no checkpoint callback.
        m.callbacks = instantiate_callbacks(
            m.cfg, datamodule.stats["sizes"], warn=m is first, skip=("checkpoint",)
        )
        if m.restored is not None:
            for callback, saved in zip(m.callbacks, m.restored["callbacks"], strict=False):
                callback.load_state_dict(saved)
        m.callbacks.append(DivergenceMonitor())
        if m.diverged_at is not None:  # diverged before the kill: its record says so
            m.run.summary.update(status="diverged", diverged_at_step=m.diverged_at)

    module = PackedClassifier(members, first.typed.trainer.gradient_clip_val)
    checkpoint = first.cfg.callbacks.get("checkpoint")
    min_interval = float(checkpoint.get("min_interval_s", 0.0)) if checkpoint else 0.0
    module.on_epoch_end_saved = pack_state.Saver(members, pack_id, min_interval)
    progress_bar = first.typed.trainer.enable_progress_bar and sys.stdout.isatty()
    trainer = instantiate(
        first.cfg.trainer,
        max_steps=first.max_steps - start,
        gradient_clip_val=None,  # per member, in the module: Lightning's would clip the pack
        logger=False,
        enable_checkpointing=False,
        callbacks=[TQDMProgressBar(refresh_rate=10)] if progress_bar else [],
        enable_progress_bar=progress_bar,
        default_root_dir=str(first.run.run_dir),
    )
    for m in members:
        m.attach(trainer)
    with contextlib.ExitStack() as runs:
        for m in members:
            runs.enter_context(m.run.training(m.trainer_view, m.callbacks))
        if start < first.max_steps:
            trainer.fit(module)
        for m in members:
            m.run.pack["member_step_ms"] = module.member_step_ms()
        trainer.test(module, verbose=False)
        for m in members:
            for logger in m.loggers:  # Lightning flushes only its Trainer's own loggers
                logger.save()
            if m.diverged_at is not None:
                continue
            metrics = {**m.restored_metrics, **m.metrics}
            for callback in m.callbacks:
                metrics.update(getattr(callback, "last", {}))
            m.run.complete(metrics)
    for m in members:
        print(m.run.outcome_line())


def train_job(cfg: DictConfig) -> list[dict]:
    """The sweeper's job for a pack (``pack_members`` set): each member's configuration
    composed from its own overrides as its own job would be, in the sweep's folder, then
    :func:`train_pack`."""
    from pathlib import Path

    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    from actbench.config import run_dirname

    job = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    jobs = member_jobs(job, cfg.pack_members)
    sweep_dir = Path(cfg.run_dir).parent  # the job's folder is its first member's
    cfgs = []
    for job in jobs:
        member = compose(config_name="config", overrides=[*job, f"run_dir={sweep_dir}"])
        member.run_dir = str(sweep_dir / run_dirname(member))
        cfgs.append(member)
    return train_pack(cfgs, jobs)
