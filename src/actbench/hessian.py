"""Hessian spectra from HVPs: Lanczos extremes, Hutchinson trace, power iteration.

Pure functions over a flat-vector HVP operator, so they are testable on known matrices and reused
by the curvature callback and the benchmarks. An HVP is a double backward pass through a kept
gradient graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import nn

HVP = Callable[[torch.Tensor], torch.Tensor]


def flatten(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def model_hvp(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[HVP, int]:
    """HVP operator of the mean loss over ``batches`` w.r.t. the trainable parameters.

    The gradient graph is built once (``create_graph``) and kept, so each product is a single
    extra backward pass: Lanczos and Hutchinson call the operator dozens of times at the same
    weights, and this is about twice as fast as rebuilding it (``torch.func`` jvp-of-grad)
    every call. Chunks are weighted by size: the operator is that of the loss over all examples.
    Returns the operator (flat vector -> flat vector) and the parameter count.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]
    total = sum(len(y) for _, y in batches)
    grads = []
    for x, y in batches:
        loss = loss_fn(model(x), y) * (len(y) / total)
        grads.append(torch.autograd.grad(loss, params, create_graph=True))

    def hvp(vec: torch.Tensor) -> torch.Tensor:
        tangent = [t.view_as(p) for t, p in zip(torch.split(vec, sizes), params, strict=True)]
        out = torch.zeros_like(vec)
        for g in grads:
            dot = sum((gi * ti).sum() for gi, ti in zip(g, tangent, strict=True))
            hv = torch.autograd.grad(dot, params, retain_graph=True, allow_unused=True)
            out += flatten(
                torch.zeros_like(p) if h is None else h for h, p in zip(hv, params, strict=True)
            )
        return out

    return hvp, sum(sizes)


def lanczos_extremes(
    hvp: HVP,
    n: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    tol: float = 1e-3,
    max_iter: int = 60,
    v0: torch.Tensor | None = None,
    seed: int = 0,
    converge: str = "both",
) -> tuple[float, float, torch.Tensor]:
    """Largest and smallest algebraic eigenvalues by Lanczos with full reorthogonalisation.

    One Krylov space serves both ends of the spectrum. Stops when the extreme Ritz values named
    by ``converge`` (``both``, or ``top`` alone when the bottom is not wanted: the top end
    usually settles in a few iterations, the bottom one in many) move by less than ``tol``
    times the spectral scale (max |Ritz value|) between iterations, or after ``max_iter``.
    Returns (top, bottom, Ritz vector of top), the vector to warm-start the next call; with
    ``converge="top"`` the bottom is whatever Ritz value the iterations reached.
    """
    if converge not in ("both", "top"):
        raise ValueError(f"converge={converge!r}; valid: both, top")
    if v0 is None:
        v0 = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    q = v0.to(device=device, dtype=dtype)
    q = q / q.norm()
    basis, alphas, betas = [q], [], []
    prev: tuple[float, float] | None = None
    ritz_vals = ritz_vecs = None
    for j in range(min(max_iter, n)):
        w = hvp(basis[j])
        alpha = float(torch.dot(w, basis[j]))
        if not math.isfinite(alpha):  # non-finite weights or loss: nothing to measure
            return float("nan"), float("nan"), v0
        alphas.append(alpha)
        stacked = torch.stack(basis)
        w = w - stacked.T @ (stacked @ w)  # full reorthogonalisation (twice is enough)
        w = w - stacked.T @ (stacked @ w)
        ritz_vals, ritz_vecs = eigh_tridiagonal(np.array(alphas), np.array(betas))
        top, bottom = float(ritz_vals[-1]), float(ritz_vals[0])
        scale = max(abs(top), abs(bottom), 1e-12)
        if prev is not None:
            moved = abs(top - prev[0])
            if converge == "both":
                moved = max(moved, abs(bottom - prev[1]))
            if moved <= tol * scale:
                break
        prev = (top, bottom)
        beta = float(w.norm())
        if beta <= 1e-10 * scale:  # invariant subspace found: the Ritz values are exact
            break
        betas.append(beta)
        basis.append(w / beta)
    k = len(alphas)
    vec = torch.stack(basis[:k]).T @ torch.as_tensor(ritz_vecs[:, -1], dtype=dtype, device=device)
    return float(ritz_vals[-1]), float(ritz_vals[0]), vec


def hutchinson_trace(
    hvp: HVP,
    n: int,
    samples: int = 16,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[float, float]:
    """Hutchinson's trace estimate E[vᵀHv] with Rademacher v; returns (mean, standard error)."""
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(samples):
        v = (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).to(device=device, dtype=dtype)
        values.append(float(torch.dot(v, hvp(v))))
    arr = np.asarray(values)
    stderr = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else float("nan")
    return float(arr.mean()), stderr


def power_iteration(
    hvp: HVP,
    n: int,
    iters: int = 100,
    tol: float = 1e-3,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> float:
    """Plain power iteration (PyHessian-style): converges to the largest-*magnitude* eigenvalue.

    Kept to show why ``top_eig`` uses Lanczos: on an indefinite Hessian the two differ.
    """
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=gen).to(device=device, dtype=dtype)
    v /= v.norm()
    eig = 0.0
    for _ in range(iters):
        hv = hvp(v)
        new = float(torch.dot(v, hv))
        v = hv / (hv.norm() + 1e-12)
        if abs(new - eig) <= tol * (abs(eig) + 1e-12):
            return new
        eig = new
    return eig


def preconditioned(hvp: HVP, inv_sqrt_precond: torch.Tensor) -> HVP:
    """HVP of P^{-1/2} H P^{-1/2}: same spectrum as P⁻¹H, but symmetric (Lanczos applies)."""

    def op(v: torch.Tensor) -> torch.Tensor:
        return inv_sqrt_precond * hvp(inv_sqrt_precond * v)

    return op
