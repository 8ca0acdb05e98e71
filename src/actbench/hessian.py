"""Hessian spectra from HVPs: Lanczos extremes, (deflated) Hutchinson trace, power iteration.

Pure functions over a flat-vector HVP operator, so they are testable on known matrices and reused
by the curvature callback and the benchmarks. An HVP is a double backward pass through a kept
gradient graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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
            # The tangent as the gradient graph's cotangent: d⟨g, v⟩/dθ without building the
            # scalar ⟨g, v⟩ first (the same product to the bit, ~10 % cheaper on the default
            # MLP). A gradient that does not depend on the weights contributes nothing.
            live = [(gi, ti) for gi, ti in zip(g, tangent, strict=True) if gi.requires_grad]
            if not live:
                continue
            hv = torch.autograd.grad(
                [gi for gi, _ in live], params, grad_outputs=[ti for _, ti in live],
                retain_graph=True, allow_unused=True,
            )  # fmt: skip
            out += flatten(
                torch.zeros_like(p) if h is None else h for h, p in zip(hv, params, strict=True)
            )
        return out

    return hvp, sum(sizes)


@dataclass(frozen=True)
class LanczosResult:
    """What one Lanczos run found, and whether each reported end can be trusted.

    ``top_residual``/``bottom_residual`` are the Ritz residuals β_k·|s_k| relative to the Ritz
    value itself: |θ − λ| ≤ β_k·|s_k| for some eigenvalue λ, so a relative residual ≤ tol puts
    θ within tol of an eigenvalue (in practice far closer: the error is ~residual²/gap).
    ``basis`` (k × n, orthonormal) and ``alphas`` (diag of T = QᵀHQ) serve trace deflation.
    """

    top: float
    bottom: float
    top_converged: bool
    bottom_converged: bool
    top_residual: float
    bottom_residual: float
    hvps: int
    vector: torch.Tensor
    basis: torch.Tensor
    alphas: tuple[float, ...]

    @property
    def finite(self) -> bool:
        return math.isfinite(self.top) and math.isfinite(self.bottom)


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
    history: list[tuple[float, float, float, float]] | None = None,
) -> LanczosResult:
    """Largest and smallest algebraic eigenvalues by Lanczos with full reorthogonalisation.

    One Krylov space serves both ends of the spectrum. Stops once each end named by
    ``converge`` (``both``, or ``top`` alone: the top end usually settles in a few iterations,
    the bottom one in many) has a Ritz residual β_k·|s_k| ≤ ``tol``·|θ| for its own Ritz value
    θ, or after ``max_iter`` products. The test is relative to the end itself, not to the
    spectrum's scale: a top of 5 beside a bottom of −5000 must settle to 1 % of 5. Stopping on
    the Ritz values' movement instead (what this did before) stopped early wherever progress
    was slow. An end that did not pass its test is returned flagged unconverged.

    A residual ≤ tol·|θ| puts θ within tol of *an* eigenvalue. From a start nearly orthogonal
    to the top eigenvector, the largest Ritz value can settle on the second eigenvalue first;
    a residual tolerance well below the accuracy wanted (1e-3 for 1 %) makes that rare (see
    ``bench/curvature_accuracy.py`` for the measured rate on the project's models).

    A non-finite product (NaN or inf weights, loss or second derivative) ends the run with
    NaN ends and ``finite`` False: the caller counts it, there is nothing to measure.
    ``history``, when given, receives (top, bottom, top residual, bottom residual) after each
    product (absolute residuals): what a sweep over tol and ``max_iter`` replays.
    """
    if converge not in ("both", "top"):
        raise ValueError(f"converge={converge!r}; valid: both, top")
    if max_iter < 1:
        raise ValueError(f"max_iter={max_iter!r} is out of range; must be >= 1")
    if v0 is None or not bool(torch.isfinite(v0).all()) or float(v0.norm()) == 0.0:
        v0 = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    q = v0.to(device=device, dtype=dtype)
    q = q / q.norm()
    steps = min(max_iter, n)
    # The basis in one preallocated block: row j is the j-th Lanczos vector, and the first j + 1
    # rows are what w is reorthogonalised against (no restacking after every product).
    basis = torch.empty(steps, n, device=device, dtype=dtype)
    basis[0] = q
    alphas, betas = [], []
    for j in range(steps):
        w = hvp(basis[j])
        alpha = float(torch.dot(w, basis[j]))
        beta = float("nan")
        if math.isfinite(alpha):
            alphas.append(alpha)
            done = basis[: j + 1]
            w = w - done.T @ (done @ w)  # full reorthogonalisation (twice is enough)
            w = w - done.T @ (done @ w)
            beta = float(w.norm())
        if not math.isfinite(beta):  # non-finite weights, loss or f'': nothing to measure
            nan = float("nan")
            return LanczosResult(nan, nan, False, False, nan, nan, j + 1, v0, q[None], ())
        ritz_vals, ritz_vecs = eigh_tridiagonal(np.array(alphas), np.array(betas))
        top, bottom = float(ritz_vals[-1]), float(ritz_vals[0])
        res_top = beta * abs(float(ritz_vecs[-1, -1]))
        res_bottom = beta * abs(float(ritz_vecs[-1, 0]))
        if history is not None:
            history.append((top, bottom, res_top, res_bottom))
        # Invariant subspace (or the whole space): the Ritz values are exact.
        exact = beta <= 1e-10 * max(abs(top), abs(bottom), 1e-30) or len(alphas) == n
        top_ok = exact or res_top <= tol * abs(top)
        bottom_ok = exact or res_bottom <= tol * abs(bottom)
        if exact or (top_ok and (converge == "top" or bottom_ok)):
            break
        if j + 1 < steps:
            betas.append(beta)
            basis[j + 1] = w / beta
    k = len(alphas)
    stacked = basis[:k]
    vec = stacked.T @ torch.as_tensor(ritz_vecs[:, -1], dtype=dtype, device=device)
    return LanczosResult(
        top=top,
        bottom=bottom,
        top_converged=bool(top_ok),
        bottom_converged=bool(bottom_ok),
        top_residual=res_top / max(abs(top), 1e-30),
        bottom_residual=res_bottom / max(abs(bottom), 1e-30),
        hvps=k,
        vector=vec,
        basis=stacked,
        alphas=tuple(alphas),
    )


def hutchinson_trace(
    hvp: HVP,
    n: int,
    samples: int = 16,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    deflate: LanczosResult | None = None,
) -> tuple[float, float]:
    """Hutchinson's trace estimate E[zᵀHz] with Rademacher z; returns (mean, standard error).

    ``deflate``: a Lanczos run on the same operator whose orthonormal basis Q is taken out
    exactly, as Hutch++ does with its sketch (Meyer et al. 2021; here the Krylov basis is the
    sketch, as in Chen & Hallman 2023's Krylov-aware estimator):
    tr H = tr(QᵀHQ) + tr(P⊥HP⊥), P⊥ = I − QQᵀ, with tr(QᵀHQ) = Σ α (the Lanczos diagonal,
    no extra products) and only the remainder sampled. The outlying eigenvalues, which
    dominate the plain estimator's variance, sit in Q; the estimate stays unbiased because z
    is drawn independently of Q. The s.e. is that of the sampled remainder (Q is exact).
    """
    gen = torch.Generator().manual_seed(seed)
    q = None if deflate is None or not deflate.alphas else deflate.basis.to(device, dtype)
    exact = 0.0 if q is None else float(sum(deflate.alphas))

    def project(v: torch.Tensor) -> torch.Tensor:
        return v if q is None else v - q.T @ (q @ v)

    values = []
    for _ in range(samples):
        z = (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).to(device=device, dtype=dtype)
        z = project(z)
        values.append(float(torch.dot(z, project(hvp(z)))))
    arr = np.asarray(values)
    stderr = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else float("nan")
    return exact + float(arr.mean()), stderr


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
