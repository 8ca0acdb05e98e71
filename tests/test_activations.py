"""Every activation against its closed form; gradients, double backward, init gains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import expit, ndtr

from actbench import activations

X = np.linspace(-6, 6, 241)
PHI = np.exp(-0.5 * X**2) / math.sqrt(2 * math.pi)

CLOSED_FORMS = {
    "identity": X,
    "tanh": np.tanh(X),
    "relu": np.maximum(X, 0),
    "leaky_relu": np.where(X > 0, X, 0.01 * X),
    "elu": np.where(X > 0, X, np.expm1(X)),
    "softplus": np.log1p(np.exp(X)),
    "gelu": X * ndtr(X),
    "gelu_tanh": 0.5 * X * (1 + np.tanh(math.sqrt(2 / math.pi) * (X + 0.044715 * X**3))),
    "gelu_sigmoid": X * expit(1.702 * X),
    "silu": X * expit(X),
    "swish": X * expit(X),
    "mish": X * np.tanh(np.log1p(np.exp(X))),
    "noisy_relu": X * ndtr(X) + PHI,
    "stochastic_gelu": X * ndtr(X),  # eval mode: the expectation
}


def test_every_registered_activation_has_a_closed_form_here():
    assert set(CLOSED_FORMS) == set(activations.names())


@pytest.mark.parametrize("name", activations.names())
def test_matches_closed_form(name: str):
    module = activations.build(name).double().eval()
    got = module(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(got, CLOSED_FORMS[name], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", activations.names())
def test_gradient_and_double_backward(name: str):
    module = activations.build(name).double().eval()
    # Avoid the kink at 0 of the piecewise-linear ones, where finite differences are undefined.
    x = torch.tensor([-2.3, -0.7, 0.4, 1.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))
    assert torch.autograd.gradgradcheck(module, (x,))


def test_parametrised_activations_use_their_parameters():
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    swish = activations.build("swish", beta=2.0).double()
    torch.testing.assert_close(swish(x), x * torch.sigmoid(2.0 * x))
    noisy = activations.build("noisy_relu", sigma=0.5).double()
    u = x / 0.5
    expected = x * torch.special.ndtr(u) + 0.5 * torch.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
    torch.testing.assert_close(noisy(x), expected)
    leaky = activations.build("leaky_relu", negative_slope=0.2).double()
    torch.testing.assert_close(leaky(-x.abs()), -0.2 * x.abs())


def test_learnable_swish_beta_is_a_parameter_per_module():
    a, b = activations.build("swish", learnable=True), activations.build("swish", learnable=True)
    assert [n for n, _ in a.named_parameters()] == ["beta"]
    assert a.beta is not b.beta
    a(torch.randn(5)).sum().backward()
    assert a.beta.grad is not None and a.beta.grad != 0


def test_stochastic_gelu_training_mode_is_the_random_gate_with_mean_gelu():
    torch.manual_seed(0)
    module = activations.build("stochastic_gelu").train()
    x = torch.full((200_000,), 0.3)
    out = module(x)
    assert torch.all((out == 0) | (out == x))
    gelu = 0.3 * float(ndtr(0.3))
    std_err = 0.3 * math.sqrt(ndtr(0.3) * (1 - ndtr(0.3)) / len(x))
    assert abs(out.mean().item() - gelu) < 4 * std_err
    # Its gradient is the mask itself: 0 or 1, never the smooth GELU slope.
    x = torch.randn(1000, requires_grad=True)
    module(x).sum().backward()
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("gleu", {}, "valid: identity"),
        ("relu", {"beta": 1.5}, "not a parameter of relu"),
        ("swish", {"beta": -1.0}, "must be > 0"),
        ("noisy_relu", {"sigma": 0.0}, "must be > 0"),
        ("leaky_relu", {"negative_slope": 1.5}, "must be in [0, 1)"),
    ],
)
def test_bad_activation_input_is_one_clear_line(name, params, fragment):
    with pytest.raises(activations.ActivationError) as info:
        activations.build(name, **params)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_init_gain_is_numerical_and_matches_known_cases():
    assert activations.init_gain("relu") == pytest.approx(math.sqrt(2), rel=1e-6)
    assert activations.init_gain("identity") == pytest.approx(1.0, rel=1e-9)
    # leaky: E[f²] = (1 + a²)/2
    a = 0.2
    expected = math.sqrt(2 / (1 + a * a))
    assert activations.init_gain("leaky_relu", negative_slope=a) == pytest.approx(expected, 1e-6)
    # The stochastic gate preserves E[x²·m] = E[x²Φ(x)] = 1/2, like ReLU.
    assert activations.init_gain("stochastic_gelu") == pytest.approx(math.sqrt(2), rel=1e-6)


@pytest.mark.parametrize("name", activations.names())
def test_init_gain_preserves_second_moment_through_a_deep_net(name: str):
    torch.manual_seed(0)
    gain = activations.init_gain(name)
    module = activations.build(name).eval()
    if name == "stochastic_gelu":
        module.train()  # the gain is for the training-mode map
    # q = 1 is a fixed point of the variance map; for the GELU/SiLU family it is mildly
    # repelling (slope ≈ 1.15), so finite-width noise grows with depth: wide nets, a few draws.
    width, depth, draws = 2048, 10, 3
    q = 0.0
    for _ in range(draws):
        z = torch.randn(256, width)  # unit second moment going in
        with torch.no_grad():
            for _ in range(depth):
                w = torch.randn(width, width) * gain / math.sqrt(width)
                z = module(z) @ w.T
        q += z.pow(2).mean().item() / draws
    assert q == pytest.approx(1.0, rel=0.10), f"{name}: E[z²] went 1 -> {q:.3f} in {depth} layers"
