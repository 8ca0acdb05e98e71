"""Accuracy against cost of the curvature callback's solver settings, from which its defaults
were chosen: ``python -m actbench.bench.curvature_accuracy [--cases ...] [--out FILE]``.

For each case (the default 3×256 MLP on MNIST-1D; a 2×32 MLP on digits), activation, loss and
Adam step in {0, 1, 6, 34} (LR 1e-2, the data's batch size, betas of the default optimizer):

- the reference: the top eigenvalue of the loss Hessian on the callback's probe (the first 512
  training examples) and Adam's preconditioned sharpness λ_max(P⁻¹H), by Lanczos in float64
  to a relative Ritz residual of 1e-8 (up to 300 products);
- the estimates: Lanczos in float32, as the callback runs it, from ``--starts`` random vectors,
  each run for the largest ``max_iter`` with its Ritz values and residuals recorded after
  every product, so every (tol, max_iter) setting is replayed on the same runs. A setting's
  estimate is *bad* when it is flagged converged yet more than 1 % from the reference;
- on the small case, the deflated Hutchinson trace against the exact trace (n products):
  its relative s.e. and z-score per sample count.

Random cold starts are the hard case: in a run each estimate is warm-started from the last
one's eigenvector. Prints a table per setting and writes everything to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actbench import hessian
from actbench.bench.timing import build, compose
from actbench.diagnostics.curvature import adam_inv_sqrt_preconditioner
from actbench.module import classification_loss

CASES = {
    "mlp_mnist1d": [],  # the defaults: 3×256 MLP, MNIST-1D
    "mlp_digits_2x32": ["data=digits", "model.depth=2", "model.width=32"],
}
STEPS = (0, 1, 6, 34)
TOLS = (1e-2, 3e-3, 1e-3, 3e-4)
MAX_ITERS = (8, 12, 16, 24, 32, 48)
TRACE_SAMPLES = (4, 8, 16, 32)


def _reference(hvp: hessian.HVP, n: int) -> tuple[float, bool]:
    res = hessian.lanczos_extremes(
        hvp, n, dtype=torch.float64, tol=1e-8, max_iter=300, converge="top", seed=12345
    )
    return res.top, res.top_converged


def _replay(histories: list[list[tuple]], truth: float) -> list[dict[str, Any]]:
    """Every (tol, max_iter) setting replayed on the recorded runs."""
    rows = []
    for tol in TOLS:
        for max_iter in MAX_ITERS:
            errors, flags, hvps = [], [], []
            for hist in histories:
                k = next(
                    (i for i, h in enumerate(hist[:max_iter]) if h[2] <= tol * abs(h[0])),
                    None,
                )
                converged = k is not None
                k = k if converged else min(max_iter, len(hist)) - 1
                errors.append((hist[k][0] - truth) / abs(truth))
                flags.append(converged)
                hvps.append(k + 1)
            err, ok = np.asarray(errors), np.asarray(flags)
            rows.append({
                "tol": tol,
                "max_iter": max_iter,
                "bad": int(np.sum(ok & (np.abs(err) > 0.01))),
                "unflagged_worst": float(np.max(np.abs(err[ok]))) if ok.any() else 0.0,
                "flagged": int(np.sum(~ok)),
                "error_q": np.quantile(err, [0.0, 0.05, 0.5, 0.95, 1.0]).tolist(),
                "hvps_median": float(np.median(hvps)),
                "hvps_max": int(np.max(hvps)),
            })  # fmt: skip
    return rows


def _estimates(hvp: hessian.HVP, n: int, starts: int) -> list[list[tuple]]:
    histories = []
    for seed in range(starts):
        hist: list[tuple] = []
        hessian.lanczos_extremes(
            hvp, n, tol=0.0, max_iter=max(MAX_ITERS), seed=1000 + seed, converge="top",
            history=hist,
        )  # fmt: skip
        histories.append(hist)
    return histories


def _trace_check(hvp64: hessian.HVP, hvp: hessian.HVP, n: int) -> dict[str, Any]:
    """Deflated Hutchinson (as the callback runs it) against the exact trace: Σ eᵢᵀHeᵢ."""
    exact = 0.0
    eye = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        eye[i] = 1.0
        exact += float(hvp64(eye)[i])
        eye[i] = 0.0
    out = {"exact": exact}
    for kind in ("plain", "deflated"):
        for samples in TRACE_SAMPLES:
            zs, rel = [], []
            for seed in range(20):
                lz = hessian.lanczos_extremes(hvp, n, tol=1e-3, max_iter=16, seed=seed,
                                              converge="top")  # fmt: skip
                est, se = hessian.hutchinson_trace(
                    hvp, n, samples=samples, seed=seed, deflate=lz if kind == "deflated" else None
                )
                zs.append((est - exact) / se)
                rel.append(se / abs(est))
            out[f"{kind}_{samples}"] = {
                "z_abs_max": float(np.max(np.abs(zs))),
                "z_within_3": float(np.mean(np.abs(zs) <= 3)),
                "rel_se_median": float(np.median(rel)),
                "rel_se_max": float(np.max(rel)),
            }
    return out


def measure_case(case: str, activation: str, loss: str, starts: int) -> list[dict[str, Any]]:
    cfg = compose([*CASES[case], f"activation={activation}", f"loss={loss}", "run_dir=."])
    datamodule, model = build(cfg, "cpu")
    x, y = datamodule.splits["train"]
    px, py = x[:512], y[:512]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    batch = int(cfg.data.batch_size)
    order = torch.randperm(len(y), generator=gen)
    out, done = [], 0
    for step in STEPS:
        model.train()
        while done < step:
            idx = order[(done * batch) % len(y) :][:batch]
            optimizer.zero_grad()
            classification_loss(loss, model(x[idx]), y[idx]).backward()
            optimizer.step()
            done += 1
        model.eval()
        m64 = copy.deepcopy(model).double()
        params = [p for p in model.parameters() if p.requires_grad]

        def loss_fn(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return classification_loss(loss, o, t)

        hvp, n = hessian.model_hvp(model, loss_fn, [(px, py)])
        hvp64, _ = hessian.model_hvp(m64, loss_fn, [(px.double(), py)])
        ops = {"top": (hvp, hvp64)}
        inv = adam_inv_sqrt_preconditioner(optimizer, params)
        if inv is not None:
            ops["precond"] = (
                hessian.preconditioned(hvp, inv),
                hessian.preconditioned(hvp64, inv.double()),
            )
        for what, (op, op64) in ops.items():
            t0 = time.perf_counter()
            truth, ref_ok = _reference(op64, n)
            rows = _replay(_estimates(op, n, starts), truth)
            out.append({
                "case": case, "activation": activation, "loss": loss, "step": step,
                "what": what, "reference": truth, "reference_converged": ref_ok,
                "parameters": n, "seconds": time.perf_counter() - t0, "settings": rows,
            })  # fmt: skip
            print(f"{case} {activation} {loss} step {step} {what}: ref {truth:.5g}", flush=True)
        if case == "mlp_digits_2x32" and step in (0, 34):
            out.append({"case": case, "activation": activation, "loss": loss, "step": step,
                        "what": "trace", "trace": _trace_check(hvp64, hvp, n)})  # fmt: skip
    return out


def summarise(results: list[dict[str, Any]]) -> list[str]:
    """Per (what, tol, max_iter): bad estimates, flagged share, worst unflagged, HVPs."""
    lines = ["what tol max_iter: bad / estimates, flagged, worst unflagged error, median HVPs"]
    by: dict[tuple, list] = {}
    for r in results:
        for s in r.get("settings", []):
            by.setdefault((r["what"], s["tol"], s["max_iter"]), []).append(s)
    for (what, tol, mi), rows in sorted(by.items()):
        lines.append(
            f"{what:8s} {tol:7.0e} {mi:3d}: bad {sum(s['bad'] for s in rows)} "
            f"(cases {len(rows)}), flagged {sum(s['flagged'] for s in rows)}, worst unflagged "
            f"{max(s['unflagged_worst'] for s in rows):.4f}, HVPs median "
            f"{np.median([s['hvps_median'] for s in rows]):.1f} max "
            f"{max(s['hvps_max'] for s in rows)}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--activations", default="relu,tanh,gelu,silu,mish")
    parser.add_argument("--losses", default="ce")
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="curvature_accuracy.json")
    args = parser.parse_args(argv)
    for case in args.cases.split(","):
        if case not in CASES:
            print(f"--cases: {case!r} is not a case; valid: {', '.join(CASES)}", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    results = []
    for case in args.cases.split(","):
        for act in args.activations.split(","):
            for loss in args.losses.split(","):
                results.extend(measure_case(case, act, loss, args.starts))
                Path(args.out).write_text(json.dumps({"machine": platform.processor() or
                    platform.machine(), "threads": args.threads, "results": results}))  # fmt: skip
    print("\n".join(summarise(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
