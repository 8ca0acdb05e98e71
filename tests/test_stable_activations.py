"""Every registered activation's second derivative is finite wherever its forward is; the stable
Mish keeps ``nn.Mish``'s forward and gradient bit for bit (run ids keep their meaning)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from actbench import activations, hessian
from actbench.activation_modules import Mish, StochasticGELU, mish_second_derivative
from actbench.diagnostics.curvature import second_derivative
from actbench.models.mlp import MLP
from actbench.module import classification_loss

# Pre-activations from 1e-2 to 1e4 in magnitude, both signs, and 0.
WIDE = torch.cat([-torch.logspace(-2, 4, 400), torch.zeros(1), torch.logspace(-2, 4, 400)])
# Past PyTorch's Mish overflow (exp(z) is inf beyond ~88.7 in float32, ~709.8 in float64).
LARGE = torch.tensor([100.0, 105.0, 146.0, 300.0, 1e3, 1e4])


def _old_mish() -> nn.Module:
    return nn.Mish()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", activations.names())
def test_every_activation_has_a_finite_second_derivative_up_to_1e4(name, dtype):
    act = activations.build(name).to(dtype).eval()
    z = WIDE.to(dtype)
    with torch.no_grad():
        assert torch.isfinite(act(z)).all()
    f2 = second_derivative(act, z)
    bad = z[~torch.isfinite(f2)]
    assert bad.numel() == 0, f"{name} f'' non-finite at {bad.tolist()[:5]}"


def test_pytorch_mish_still_overflows_so_the_replacement_is_needed():
    # If a later PyTorch fixes its formula this fails, and the custom Mish can be retired.
    assert not torch.isfinite(second_derivative(_old_mish(), LARGE)).all()
    assert activations.build("mish").__class__ is Mish


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mish_forward_and_gradient_are_bit_identical_to_nn_mish(dtype):
    gen = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(4000, generator=gen) * 30, WIDE, LARGE]).to(dtype)
    grad_out = torch.randn(len(z), generator=gen).to(dtype)
    results = []
    for act in (_old_mish(), activations.build("mish")):
        zg = z.clone().requires_grad_(True)
        out = act(zg)
        out.backward(grad_out)  # training's backward: no graph kept
        results.append((out.detach(), zg.grad))
    (f_old, g_old), (f_new, g_new) = results
    assert torch.equal(f_old, f_new)
    assert torch.equal(g_old, g_new)


def test_mish_second_derivative_matches_float64_finite_differences_and_is_finite_past_100():
    z = torch.cat([torch.linspace(-30.0, 30.0, 1201, dtype=torch.float64), LARGE.double()])
    ones = torch.ones_like(z)
    eps = 1e-6
    # Central differences of PyTorch's own Mish′ kernel, in float64 (exact to ~1e-9 here).
    fd = (
        torch.ops.aten.mish_backward(ones, z + eps) - torch.ops.aten.mish_backward(ones, z - eps)
    ) / (2 * eps)
    torch.testing.assert_close(mish_second_derivative(z), fd, rtol=0, atol=1e-8)
    # Through autograd, in float32, as an HVP sees it: finite everywhere, within float32 rounding.
    f2 = second_derivative(activations.build("mish"), z.float())
    assert torch.isfinite(f2).all()
    torch.testing.assert_close(f2.double(), fd, rtol=0, atol=1e-6)
    assert (f2[-len(LARGE) :] == 0).all()  # true values ~e^{-2z}: below float32's range


def test_mish_third_derivative_is_the_old_one_where_that_is_finite():
    z = torch.linspace(-8.0, 8.0, 33, dtype=torch.float64)
    thirds = []
    for act in (_old_mish(), activations.build("mish")):
        zg = z.clone().requires_grad_(True)
        (d1,) = torch.autograd.grad(act(zg).sum(), zg, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), zg, create_graph=True)
        (d3,) = torch.autograd.grad(d2.sum(), zg)
        thirds.append((d2.detach(), d3))
    torch.testing.assert_close(thirds[0][0], thirds[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(thirds[0][1], thirds[1][1], rtol=1e-10, atol=1e-10)


def test_mish_supports_torch_func_reverse_transforms():
    z = torch.randn(6, dtype=torch.float64) * 4
    hess = torch.func.jacrev(torch.func.jacrev(lambda t: Mish()(t).sum()))(z)
    torch.testing.assert_close(torch.diag(hess), mish_second_derivative(z))
    torch.testing.assert_close(hess, torch.diag(torch.diag(hess)))


def test_hvp_through_a_mish_mlp_with_preactivations_past_100_is_finite():
    torch.manual_seed(0)
    model = MLP((10,), 3, partial(activations.build, name="mish"), depth=2, width=16)
    x, y = torch.randn(64, 10) * 60, torch.randint(0, 3, (64,))
    seen = []
    model.hidden[0].act.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    hvp, n = hessian.model_hvp(model, partial(classification_loss, "ce"), [(x, y)])
    assert seen[0].max() > 100, "the probe must drive units past PyTorch's overflow"
    v = torch.randn(n)
    assert torch.isfinite(hvp(v)).all() and hvp(v).abs().sum() > 0
    # The same model with nn.Mish: the product PyTorch gives is NaN (what the fix is for).
    for block in model.hidden:
        block.act = _old_mish()
    old_hvp, _ = hessian.model_hvp(model, partial(classification_loss, "ce"), [(x, y)])
    assert not torch.isfinite(old_hvp(v)).all()


def test_modules_whose_training_forward_differs_say_so():
    assert StochasticGELU.train_eval_differ is True
    for name in activations.names():
        act = activations.build(name)
        x = torch.randn(2000, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.manual_seed(0)
            train_out = act.train()(x)
            eval_out = act.eval()(x)
        differs = not torch.equal(train_out, eval_out)
        assert getattr(act, "train_eval_differ", False) == differs, name
