"""What a sweep will cost, printed before it starts: each kind of run timed briefly on this
machine, then multiplied out over the runs still to do.

A kind is what sets a run's cost: model, data, batch size, step budget and the diagnostics'
probes. For each, a few optimizer steps of the real model (built as every run builds it) and
two Hessian-vector products on the curvature probe are timed at the workers' thread count.
A run's projected seconds are::

    steps × step_s × STEP_OVERHEAD + hvps × hvp_s + START_S

with ``hvps`` what the curvature callback does at its cadence (:func:`hvps_per_run`). The
constants come from ``make bench`` on the 2-core development VM (2026-12-02); the projection
is a forecast, and the sweep's progress line replaces it with measured times as runs finish.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

# A run's step ÷ the bare optimizer step: validation, logging, callbacks and Lightning's loop
# (make bench, 2026-12-02: a member-step of a pack 1.01-1.05× the plain loop's; an unpacked
# run's 1.5× before fused Adam).
STEP_OVERHEAD = {True: 1.1, False: 1.5}  # packed?
# Start-up per run: an unpacked run is its own process (start-up row: ~5 s); a pack's
# members share one (profiled: ~0.4 s each for W&B's offline run start, plus building).
START_S = {True: 0.5, False: 4.5}
# The curvature callback's products per estimate (Lanczos for the top and, after step 0,
# Adam's preconditioned sharpness), and the trace's samples once: 8-17 per estimate plus 32 at
# the end on the default MLP (curv/hvps, 2026-12-02).
HVPS_PER_POINT = 12


@dataclass(frozen=True)
class KindCost:
    step_s: float  # one bare optimizer step
    hvp_s: float  # one Hessian-vector product on the curvature probe (0 without curvature)


def hvps_per_run(cfg: DictConfig) -> int:
    """Products the curvature callback takes over a run at its cadence (0 when it is off)."""
    curvature = (cfg.get("callbacks") or {}).get("curvature")
    if not curvature:
        return 0
    from actbench.diagnostics.base import cadence

    steps = int(cfg.trainer.max_steps)
    points = cadence(steps, int(curvature.get("points", 10)), curvature.get("every_n_steps"))
    return HVPS_PER_POINT * len(points | {steps}) + int(curvature.get("trace_samples", 0))


def kind_key(cfg: DictConfig) -> tuple[Any, ...]:
    """What a run's cost depends on (the activation barely moves it)."""
    curvature = (cfg.get("callbacks") or {}).get("curvature") or {}
    model = OmegaConf.to_container(cfg.model, resolve=False)
    return (
        repr(model),
        str(cfg.data.get("name", cfg.data.get("_target_"))),
        int(cfg.data.batch_size),
        int(curvature.get("probe_size", 0) or 0),
    )


def time_kind(cfg: DictConfig, threads: int) -> KindCost:
    """A few optimizer steps and two HVPs of the run's real model, at ``threads`` threads."""
    import contextlib

    import torch
    from hydra.utils import instantiate

    from actbench import hessian
    from actbench.config import validate
    from actbench.module import build_classifier, classification_loss

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        typed = validate(cfg)
        datamodule = instantiate(cfg.data, seed=typed.seed)
        datamodule.prepare_data()
        datamodule.setup("fit")
        module = build_classifier(cfg, typed, datamodule)
        model = module.model
        x, y = datamodule.splits["train"]
        batch = int(cfg.data.batch_size)
        # The run's own optimizer (kind, settings, fused kernel), as its Classifier builds it.
        built = module.configure_optimizers()
        optimizer = built["optimizer"] if isinstance(built, dict) else built
        model.train()

        def step() -> None:
            loss = classification_loss(module.loss_kind, model(x[:batch]), y[:batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(3):
            step()
        start, steps = time.perf_counter(), 0
        while steps < 5 or time.perf_counter() - start < 0.5:
            step()
            steps += 1
        step_s = (time.perf_counter() - start) / steps
        hvp_s = 0.0
        probe = int(((cfg.get("callbacks") or {}).get("curvature") or {}).get("probe_size", 0))
        if probe and hvps_per_run(cfg):
            model.eval()
            attention = getattr(model, "math_attention", None)
            with attention() if attention else contextlib.nullcontext():
                loss_fn = lambda logits, t: classification_loss(module.loss_kind, logits, t)  # noqa: E731
                hvp, n = hessian.model_hvp(model, loss_fn, [(x[:probe], y[:probe])])
                v = torch.randn(n)
                hvp(v)
                start = time.perf_counter()
                hvp(v)
                hvp(v)
                hvp_s = (time.perf_counter() - start) / 2
        return KindCost(step_s, hvp_s)
    finally:
        torch.set_num_threads(before)


def run_seconds(cfg: DictConfig, cost: KindCost) -> float:
    """A run's projected wall time from its kind's timing (see the module docstring)."""
    packed = str(cfg.get("pack", "off")) != "off"
    steps = int(cfg.trainer.max_steps)
    return (
        steps * cost.step_s * STEP_OVERHEAD[packed]
        + hvps_per_run(cfg) * cost.hvp_s
        + (START_S[packed])
    )


@dataclass
class Projection:
    """Projected seconds per run, by kind label, and the kinds' costs."""

    seconds: list[float]
    labels: list[str]
    per_kind: dict[str, float]
    untimed: list[str]  # kinds that could not be timed here (their runs will fail or differ)

    def total(self, workers: int) -> float:
        return sum(self.seconds) / max(workers, 1)


def project(runs: Iterable[tuple[list[str], DictConfig, str]], threads: int) -> Projection:
    """Each run's projected seconds; ``runs``: each run's overrides, its composed config (read
    at once: the sweeper reuses the objects) and a label for its kind. Each kind is timed
    once, in a config composed from its first run's overrides; call inside Hydra."""
    costs: dict[tuple[Any, ...], KindCost | None] = {}
    seconds, labels, per_kind, untimed = [], [], {}, []
    for job, cfg, label in runs:
        key = kind_key(cfg)
        if key not in costs:
            # The run's task config composed afresh, as its job composes it (inside Hydra).
            from hydra import compose

            try:
                task = compose(config_name="config", overrides=[*job, "run_dir=."])
                costs[key] = time_kind(task, threads)
            except Exception as err:
                from actbench.config import is_user_error

                if not is_user_error(err):
                    raise  # a bug, not a run that will fail by name later
                costs[key] = None  # e.g. data files that are not there
        if costs[key] is None:
            if label not in untimed:
                untimed.append(label)
            continue
        seconds.append(run_seconds(cfg, costs[key]))
        labels.append(label)
        per_kind.setdefault(label, seconds[-1])
    return Projection(seconds, labels, per_kind, untimed)
