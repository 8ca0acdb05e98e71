"""``mlp_steps``, ``vit_steps`` (and ``epoch60k``): ms per optimizer step and steps/s of
actbench's full training path against a plain PyTorch loop and a bare Lightning ``Trainer``.

actbench's path is the real ``train()`` with its DataModule, Classifier, Trainer, checkpoint,
divergence and resume callbacks and the CSV log, diagnostics off; :func:`reference_loop` is a
plain PyTorch loop over the same model, data tensors, optimizer, batch size and thread count; the
bare Trainer runs the same module (Lightning's own loop). Start-up is excluded: the time runs
from the end of optimizer step N0 to the end of step N1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch

from actbench.bench.epoch60k import EPOCH60K
from actbench.bench.report import fmt_range, meets
from actbench.bench.timing import (
    Context,
    StepTimer,
    alternate,
    build,
    compose,
    median_range,
    quiet,
    timer_overrides,
)

# actbench steps/s ÷ reference steps/s, at least (None: no target).
TARGET_RATIOS: dict[str, float | None] = {"mlp_steps": 0.8, "vit_steps": 0.95, "epoch60k": None}
# What "diagnostics off, as configured" means for a training-throughput row: the checkpoint
# callback stays (it is part of every real run), W&B is off (the CSV log always runs).
TRAIN_PATH = ["callbacks=no_diagnostics", "logger=none", "trainer.enable_progress_bar=false"]
# name -> (row's config, warm-up steps N0, timed steps N1 − N0, the same for --quick)
STEP_ROWS: dict[str, tuple[list[str], int, int, int, int]] = {
    # The reference setting: GELU MLP 64→256→256→256→10 on digits, batch 128.
    "mlp_steps": (["data=digits", "model=mlp", "activation=gelu"], 60, 600, 3, 12),
    # The default ViT (conf/model/vit.yaml) on MNIST-1D, batch 128.
    "vit_steps": (["data=mnist1d", "model=vit", "activation=gelu"], 10, 100, 2, 4),
    # 60 000 synthetic MNIST-shaped samples resident on the device.
    "epoch60k": EPOCH60K,
}


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
        "ms_per_step": {k: median_range(v) for k, v in ms.items()},
        "steps_per_s": {k: median_range([1e3 / t for t in v]) for k, v in ms.items()},
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
        "target_ratio": TARGET_RATIOS.get(row),
        "batch_size": data_cfg.batch_size,
        "train_examples": runs["reference"][0]["examples"],
    }
    if row == "epoch60k":  # ms per step over a window of one whole epoch, end included
        per_epoch = -(-result["train_examples"] // result["batch_size"])
        result["steps_per_epoch"] = per_epoch
        result["epoch_s"] = {
            k: median_range([t * per_epoch / 1e3 for t in v]) for k, v in ms.items()
        }
    if ctx.profile:
        result["profile"] = actbench_path(profile=True)["profile"]
    return result


def render_steps(d: dict[str, Any], device: str) -> list[str]:
    title = {"mlp_steps": "MLP", "vit_steps": "ViT", "epoch60k": "60k-sample MLP epoch"}
    row = d["row"]
    ms, sps = d["ms_per_step"], d["steps_per_s"]
    target = d["target_ratio"]
    verdict = "" if target is None else f" ({meets(d['ratio'] >= target)} the ≥ {target} target)"
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
        f"{fmt_range(ms['actbench'])} | {fmt_range(sps['actbench'], digits=0)} |",
        *(
            [
                f"| Lightning alone (same module and data; bare Trainer, no validation) | "
                f"{fmt_range(ms['lightning'])} | {fmt_range(sps['lightning'], digits=0)} |"
            ]
            if "lightning" in ms
            else []
        ),
        f"| reference (plain PyTorch loop) | {fmt_range(ms['reference'])} | "
        f"{fmt_range(sps['reference'], digits=0)} |",
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
            f"{fmt_range(e['actbench'])} s, reference {fmt_range(e['reference'])} s; data "
            f"resident on the device, synthetic uniform-noise {d['train_examples']} × 784 tensors.",
        ]
    if d.get("profile"):
        out += ["", "```", d["profile"], "```"]
    return out
