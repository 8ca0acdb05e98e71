"""``hvp``: one Hessian-vector product against one forward+backward over the same data, and
one full sharpness estimate as the curvature callback makes it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from actbench.bench.report import fmt_range, meets
from actbench.bench.timing import Context, alternate, build, compose, median_range

TARGET_RATIO = 2.5  # HVP ÷ forward+backward, at most


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
        node.update(probe_size=128, lanczos_max_iter=4, precond_max_iter=4, trace_samples=2)
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

    hvps: list[float] = []

    def estimate() -> None:
        # Cold, as at a cadence point far from the last: a warm start at the same weights would
        # stop the top-converging Lanczos after a product or two. With the trace: the dearest
        # point of the cadence.
        monitor._v0 = monitor._v0_pre = None
        hvps.append(monitor.compute(model, optimizer, with_trace=True)[0]["curv/hvps"])

    first = timed(estimate)  # includes the atlas lookup
    sharp = [timed(estimate) for _ in range(reps)]
    fb, hv = statistics.median(times["forward_backward"]), statistics.median(times["hvp"])
    return {
        "config": list(ctx.overrides),
        "device": ctx.device,
        "examples": len(y),
        "parameters": n,
        "forward_backward_ms": {
            k: 1e3 * v for k, v in median_range(times["forward_backward"]).items()
        },
        "hvp_ms": {k: 1e3 * v for k, v in median_range(times["hvp"]).items()},
        "ratio": hv / fb,
        "target_ratio": TARGET_RATIO,
        "sharpness": {
            "probe_size": len(py),
            "lanczos_max_iter": monitor.lanczos_max_iter,
            "precond_max_iter": monitor.precond_max_iter,
            "lanczos_tol": monitor.lanczos_tol,
            "trace_samples": monitor.trace_samples,
            "hvps": statistics.median(hvps),
            "first_s": first,
            "seconds": median_range(sharp),
        },
    }


def render_hvp(d: dict[str, Any], device: str) -> list[str]:
    s = d["sharpness"]
    return [
        f"## One Hessian-vector product vs one forward+backward ({device})",
        "",
        f"{d['examples']} examples, {d['parameters']} parameters "
        f"(`{' '.join(d['config']) or 'default GELU MLP'}`): forward+backward "
        f"{fmt_range(d['forward_backward_ms'], digits=1)} ms, HVP "
        f"{fmt_range(d['hvp_ms'], digits=1)} ms, "
        f"ratio **{d['ratio']:.2f}×** ({meets(d['ratio'] <= d['target_ratio'])} the "
        f"{d['target_ratio']}× target).",
        "",
        f"One full curvature estimate as the callback makes it, started cold and with the trace "
        f"(probe {s['probe_size']}, Lanczos to a relative Ritz residual of {s['lanczos_tol']:g} "
        f"in ≤ {s['lanczos_max_iter']} products for the spectrum and "
        f"≤ {s.get('precond_max_iter', s['lanczos_max_iter'])} for Adam's preconditioned "
        f"sharpness, {s['trace_samples']} deflated Hutchinson samples): "
        f"{fmt_range(s['seconds'], digits=2)} s, {s.get('hvps', float('nan')):.0f} HVPs "
        f"(first one {s['first_s']:.2f} s, with the atlas lookup).",
    ]
