"""The curvature solver's stopping rule, trace estimator and stability thresholds, on operators
whose answers are known: Lanczos must stop on what it reports, and the thresholds must match the
steps torch's optimizers actually take."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from actbench import hessian
from actbench.diagnostics import CurvatureMonitor
from actbench.diagnostics.curvature import adam_inv_sqrt_preconditioner


def _operator(eigenvalues: list[float], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    return (lambda v: a @ v), a


def test_model_hvp_is_the_derivative_of_the_gradient_dot_the_tangent_to_the_bit():
    # model_hvp passes the tangent as the gradient graph's cotangent; the textbook route
    # differentiates the scalar <g, v>. Same product, so no estimate moves with the rewrite.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    batches = [(x[:25], y[:25]), (x[25:], y[25:])]
    hvp, n = hessian.model_hvp(model, nn.functional.cross_entropy, batches)
    params = list(model.parameters())
    v = torch.randn(n)
    tangent = [
        t.view_as(p)
        for t, p in zip(torch.split(v, [p.numel() for p in params]), params, strict=True)
    ]
    want = torch.zeros(n)
    for xb, yb in batches:
        loss = nn.functional.cross_entropy(model(xb), yb) * (len(yb) / len(y))
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dot = sum((g * t).sum() for g, t in zip(grads, tangent, strict=True))
        want += hessian.flatten(torch.autograd.grad(dot, params))
    assert torch.equal(hvp(v), want)


def test_a_huge_negative_end_does_not_stop_the_top_early():
    # Adam's preconditioned spectrum at step 1: a small top beside a huge negative end. Judged
    # against the spectrum's scale (the old rule) the top "settled" after two products.
    eigenvalues = [-5000.0, *torch.linspace(-2.0, 2.0, 150).tolist(), 4.0, 5.0]
    hvp, _ = _operator(eigenvalues)
    n = len(eigenvalues)
    for seed in range(20):
        res = hessian.lanczos_extremes(
            hvp, n, dtype=torch.float64, tol=1e-2, max_iter=60, seed=seed, converge="top"
        )
        assert res.top_converged, (seed, res.top, res.hvps)
        assert res.top == pytest.approx(5.0, rel=1e-2), seed
        assert res.top_residual <= 1e-2
    # Too few products: the top is reported as it stands, but flagged.
    short = hessian.lanczos_extremes(
        hvp, n, dtype=torch.float64, tol=1e-2, max_iter=3, converge="top"
    )
    assert short.hvps == 3 and not short.top_converged and short.top_residual > 1e-2


def test_each_end_is_flagged_by_its_own_residual():
    # The top is isolated (fast), the bottom sits at the edge of a dense cluster (slow).
    eigenvalues = [10.0, *torch.linspace(-1.0, 1.0, 199).tolist()]
    hvp, _ = _operator(eigenvalues)
    n = len(eigenvalues)
    top_only = hessian.lanczos_extremes(hvp, n, dtype=torch.float64, tol=1e-3, converge="top")
    assert top_only.top_converged and not top_only.bottom_converged
    assert top_only.bottom > -1.0  # a Ritz value is an upper bound on the minimum
    both = hessian.lanczos_extremes(
        hvp, n, dtype=torch.float64, tol=1e-3, max_iter=n, converge="both"
    )
    assert both.top_converged and both.bottom_converged and both.hvps > top_only.hvps
    assert both.bottom == pytest.approx(-1.0, rel=1e-3)
    # Converged means within tol of an eigenvalue: here, the extremes themselves.
    assert both.top == pytest.approx(10.0, rel=1e-3)


def test_every_converged_top_from_random_starts_is_within_tolerance():
    # Two outliers 3 % apart and a bulk. A residual ≤ tol·|θ| puts θ near *an* eigenvalue: from
    # a start nearly orthogonal to the top eigenvector, Lanczos can settle on the second one
    # first (at tol 1e-2, 23 of 200 starts here end 3 % low). A residual tolerance ten times
    # below the accuracy wanted leaves no such start: every converged top is within 1 %.
    eigenvalues = [30.0, 29.0, 12.0, *torch.linspace(-3.0, 3.0, 300).tolist()]
    hvp, _ = _operator(eigenvalues, seed=1)
    misses = {}
    for tol in (1e-2, 1e-3):
        misses[tol] = 0
        for seed in range(50):
            res = hessian.lanczos_extremes(
                hvp,
                len(eigenvalues),
                dtype=torch.float64,
                tol=tol,
                max_iter=12,
                seed=seed,
                converge="top",
            )
            assert res.top <= 30.0 + 1e-6  # Ritz values never exceed the top eigenvalue
            misses[tol] += res.top_converged and abs(res.top - 30.0) > 0.01 * 30.0
    assert misses[1e-3] == 0 and misses[1e-2] > 0, misses


def test_a_non_finite_product_is_reported_not_measured():
    calls = [0]

    def hvp(v: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return torch.full_like(v, float("nan")) if calls[0] == 3 else v * 2.0 + v.roll(1)

    res = hessian.lanczos_extremes(hvp, 50, tol=1e-9, max_iter=10)
    assert not res.finite and math.isnan(res.top) and res.hvps == 3
    assert not res.top_converged and not res.bottom_converged


def test_deflated_trace_is_unbiased_and_far_tighter_than_plain_hutchinson():
    # A few large outliers over a small bulk: the spectrum of a classifier's Hessian.
    eigenvalues = [400.0, 250.0, 120.0, 60.0, *torch.linspace(-0.5, 1.5, 296).tolist()]
    hvp, _ = _operator(eigenvalues, seed=2)
    n, truth = len(eigenvalues), sum(eigenvalues)
    lanczos = hessian.lanczos_extremes(hvp, n, dtype=torch.float64, tol=1e-3, converge="top")
    zs, ses = [], {}
    for kind, deflate in (("plain", None), ("deflated", lanczos)):
        trace, se = hessian.hutchinson_trace(
            hvp, n, samples=16, dtype=torch.float64, seed=3, deflate=deflate
        )
        ses[kind] = se
        zs.append((trace - truth) / se)
    assert abs(zs[1]) < 3
    assert ses["deflated"] < ses["plain"] / 5, ses
    # Unbiased: over many seeds the deflated estimates average to the truth.
    many = [
        hessian.hutchinson_trace(hvp, n, samples=4, dtype=torch.float64, seed=s, deflate=lanczos)
        for s in range(200)
    ]
    mean = sum(t for t, _ in many) / len(many)
    spread = (sum((t - mean) ** 2 for t, _ in many) / (len(many) - 1)) ** 0.5
    assert abs(mean - truth) < 4 * spread / len(many) ** 0.5


# --- stability thresholds against the optimizers' own steps on a quadratic ---------------------


class _Linear(nn.Module):
    """A linear classifier: under the ½Σ squares loss, a quadratic in its parameters."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.head = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def activation_layers(self) -> dict[str, nn.Module]:
        return {}


class _Task(nn.Module):
    loss_kind = "mse"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.model = _Linear(4, 3).double()
        # Inputs of unequal scales: an ill-conditioned quadratic, where Adam's P matters.
        self.x = torch.randn(256, 4, generator=gen, dtype=torch.float64) * torch.tensor(
            [3.0, 1.0, 0.5, 0.2], dtype=torch.float64
        )
        self.y = torch.randint(0, 3, (256,), generator=gen)

    def loss(self) -> torch.Tensor:
        onehot = nn.functional.one_hot(self.y, 3).double()
        return 0.5 * (self.model(self.x) - onehot).pow(2).sum(-1).mean()


def _threshold(task: _Task, optimizer: torch.optim.Optimizer) -> float:
    """The learning rate at which the monitor's stability ratio would be exactly 1."""
    monitor = CurvatureMonitor(trace_samples=0, lanczos_tol=1e-8, lanczos_max_iter=15)
    monitor.chunks = [(task.x, task.y)]
    totals, _ = monitor.compute(task, optimizer)
    assert totals["curv/top_converged"] == 1.0
    assert totals.get("curv/precond_top_converged", 1.0) == 1.0
    return optimizer.param_groups[0]["lr"] / totals["curv/stability_ratio"]


def _grad_growth(task: _Task, optimizer: torch.optim.Optimizer, steps: int, freeze=None) -> float:
    """‖∇L‖ after ``steps`` optimizer steps ÷ before (the quadratic's minimum has ∇L = 0)."""

    def grad_norm() -> float:
        optimizer.zero_grad()
        task.loss().backward()
        return float(torch.cat([p.grad.reshape(-1) for p in task.model.parameters()]).norm())

    start = grad_norm()
    for _ in range(steps):
        if grad_norm() > 1e4 * start:  # diverged: stop before v's freezing loses precision
            break
        if freeze:
            freeze()
        optimizer.step()
    return grad_norm() / start


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_and_heavy_ball_thresholds_split_convergence_from_divergence(momentum: float):
    task = _Task()
    eta = _threshold(task, torch.optim.SGD(task.model.parameters(), lr=0.01, momentum=momentum))
    for factor, converges in ((0.97, True), (1.03, False)):
        run = copy.deepcopy(task)
        opt = torch.optim.SGD(run.model.parameters(), lr=factor * eta, momentum=momentum)
        growth = _grad_growth(run, opt, steps=1500)
        assert (growth < 1e-3) if converges else (growth > 1e3), (factor, growth)


@pytest.mark.parametrize("t", [1, 6, 40])
def test_adam_threshold_with_a_frozen_preconditioner_matches_torchs_step(t: int):
    # A real Adam state after t steps; then torch's own Adam update with v and the step count
    # held at their step-t values (the preconditioner frozen), so the iteration is linear.
    task = _Task(seed=1)
    adam = torch.optim.Adam(task.model.parameters(), lr=1e-2)
    _grad_growth(task, adam, steps=t)
    params = list(task.model.parameters())
    eta = _threshold(task, adam)
    inv_sqrt = adam_inv_sqrt_preconditioner(adam, params)
    beta1, beta2 = adam.param_groups[0]["betas"]
    assert inv_sqrt is not None and bool((inv_sqrt > 0).all())
    # The preconditioner without Adam's (1 − β₁ᵗ): its threshold is 1/(1 − β₁ᵗ) times higher.
    old_eta = eta / (1.0 - beta1**t)
    for factor, base, converges in ((0.97, eta, True), (1.03, eta, False), (0.97, old_eta, t > 30)):
        run = copy.deepcopy(task)
        opt = torch.optim.Adam(run.model.parameters(), lr=factor * base)
        source = {id(p): adam.state[p] for p in params}
        for p, q in zip(run.model.parameters(), params, strict=True):
            opt.state[p] = copy.deepcopy(source[id(q)])
        frozen = {p: opt.state[p]["exp_avg_sq"].clone() for p in run.model.parameters()}

        def freeze(opt=opt, frozen=frozen) -> None:
            for p, v in frozen.items():  # so that β₂·v + (1−β₂)·g² is v again, at step t
                state = opt.state[p]
                state["exp_avg_sq"].copy_((v - (1.0 - beta2) * p.grad.pow(2)) / beta2)
                state["step"].fill_(t - 1)

        growth = _grad_growth(run, opt, steps=1500, freeze=freeze)
        if base is old_eta and t < 30:  # the old rule calls this stable: it diverges
            assert growth > 1e3, growth
        else:
            assert (growth < 1e-3) if converges else (growth > 1e3), (factor, growth)
