"""The ViT: every activation trains a step, patching, attention paths, Hessian-vector products."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir

from actbench import activations
from actbench.config import ConfigError, register_configs, validate
from actbench.models.vit import ViT, math_attention, patchify
from conftest import CONF_DIR, run_train

register_configs()


def _act(name: str = "gelu"):
    return partial(activations.build, name=name)


def _small(shape=(40,), act="gelu", **kwargs) -> ViT:
    kwargs = {"patch_size": 4, "dim": 16, "depth": 2, "heads": 2, "dropout": 0.0, **kwargs}
    return ViT(shape, 10, _act(act), **kwargs)


@pytest.mark.parametrize("name", activations.names())
def test_vit_with_every_activation_trains_a_step(name):
    torch.manual_seed(0)
    model = _small((1, 8, 8), name, dropout=0.1)  # train mode: dropout on both paths
    assert list(model.activation_layers()) == ["blocks.0.mlp.act", "blocks.1.mlp.act"]
    assert model.init_gain == pytest.approx(activations.init_gain(name))
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(("shape", "pool"), [((40,), "mean"), ((2, 12), "cls"), ((3, 8, 8), "cls")])
def test_vit_shapes_and_activation_outputs_are_batch_by_tokens_by_channels(shape, pool):
    model = _small(shape, pool=pool, mlp_ratio=3.0)
    seen = {}

    def record(name: str):
        def hook(module, inputs, output) -> None:
            seen[name] = output.shape

        return hook

    for name, module in model.activation_layers().items():
        module.register_forward_hook(record(name))
    assert model(torch.randn(5, *shape)).shape == (5, 10)
    tokens = model.num_patches + (pool == "cls")
    assert set(seen.values()) == {torch.Size([5, tokens, 48])}


def test_patchify_1d_segments():
    x = torch.arange(2 * 12.0).reshape(2, 12)
    tokens = patchify(x, 4, spatial_dims=1)
    assert tokens.shape == (2, 3, 4)
    torch.testing.assert_close(tokens[1, 2], x[1, 8:12])
    # Several channels: each token is the same segment of every channel, channel-first.
    xc = torch.arange(2 * 3 * 10.0).reshape(2, 3, 10)
    tokens = patchify(xc, 5, spatial_dims=1)
    assert tokens.shape == (2, 2, 15)
    torch.testing.assert_close(tokens[0, 1], xc[0, :, 5:10].reshape(-1))


def test_patchify_2d_is_row_major_over_the_patch_grid():
    x = torch.randn(2, 3, 8, 12)
    tokens = patchify(x, 4, spatial_dims=2)
    assert tokens.shape == (2, 2 * 3, 3 * 16)
    for row in range(2):
        for col in range(3):
            patch = x[1, :, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4]
            torch.testing.assert_close(tokens[1, row * 3 + col], patch.reshape(-1))
    # Equal to a stride-p convolution's receptive fields (the usual patch embedding).
    weight = torch.randn(7, 3, 4, 4)
    conv = torch.nn.functional.conv2d(x, weight, stride=4).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens @ weight.reshape(7, -1).T, conv, rtol=1e-4, atol=1e-4)


def test_patch_size_must_tile_the_input():
    with pytest.raises(ValueError, match="valid: 1, 2, 4, 5, 8, 10, 20, 40"):
        _small((40,), patch_size=3)
    with pytest.raises(ValueError, match="does not match"):
        _small((1, 8, 8), image_size=28)
    with pytest.raises(ValueError, match="not divisible"):
        _small((40,), dim=10, heads=3)


def test_math_and_sdpa_attention_agree_and_the_context_restores_the_default():
    torch.manual_seed(0)
    model = _small((1, 8, 8), patch_size=2).eval()
    x = torch.randn(8, 1, 8, 8)
    assert model.attention_backend == "sdpa"
    fast = model(x)
    wrapper = torch.nn.Sequential(model)  # the switch reaches models inside any wrapper
    with math_attention(wrapper):
        assert model.attention_backend == "math"
        slow = model(x)
    assert model.attention_backend == "sdpa"
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    model.attention_backend = "math"
    assert all(b.attn.backend == "math" for b in model.blocks)
    with pytest.raises(ValueError, match="sdpa, math"):
        model.attention_backend = "flash"


@pytest.mark.parametrize(("act", "shape"), [("gelu", (40,)), ("tanh", (1, 8, 8))])
def test_hessian_vector_product_on_the_math_path_matches_finite_differences(act, shape):
    torch.manual_seed(0)
    model = _small(shape, act, pool="cls").double()
    x, y = torch.randn(16, *shape, dtype=torch.float64), torch.randint(0, 10, (16,))
    params = [p for p in model.parameters() if p.requires_grad]
    v = [torch.randn_like(p) for p in params]

    def grad(create_graph: bool = False):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        return torch.autograd.grad(loss, params, create_graph=create_graph)

    with math_attention(model):
        g = grad(create_graph=True)
        hvp = torch.autograd.grad(g, params, grad_outputs=v)
        # Central differences err by O(eps²) times the third derivative; LayerNorm of the small
        # class token is sharply curved, so eps is small (float64 keeps rounding far below).
        eps = 1e-6
        with torch.no_grad():
            for p, d in zip(params, v, strict=True):
                p.add_(eps * d)
        g_plus = grad()
        with torch.no_grad():
            for p, d in zip(params, v, strict=True):
                p.sub_(2 * eps * d)
        g_minus = grad()
    fd = [(a - b) / (2 * eps) for a, b in zip(g_plus, g_minus, strict=True)]
    flat_hvp, flat_fd = torch.cat([h.flatten() for h in hvp]), torch.cat([f.flatten() for f in fd])
    assert flat_hvp.norm() > 1.0
    assert (flat_hvp - flat_fd).norm() / flat_hvp.norm() < 1e-6


def test_same_seed_same_init_stream_across_activations():
    """Common random numbers: only the MLP output layers differ, by the ratio of the gains."""
    torch.manual_seed(7)
    relu = _small((40,), "relu")
    torch.manual_seed(7)
    gelu = _small((40,), "gelu")
    ratio = activations.init_gain("gelu") / activations.init_gain("relu")
    for (name, p_relu), p_gelu in zip(relu.named_parameters(), gelu.parameters(), strict=True):
        scale = ratio if name.endswith("mlp.fc2.weight") else 1.0
        torch.testing.assert_close(p_gelu, p_relu * scale, msg=name)


# --- the schema --------------------------------------------------------------------------------


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["run_dir=/tmp/actbench-compose", *overrides])


@pytest.mark.parametrize("data", ["mnist1d", "digits", "mnist", "fashion_mnist", "cifar10"])
def test_vit_composes_with_every_dataset(data):
    typed = validate(_compose("model=vit", f"data={data}"))
    assert typed.model.name == "vit" and typed.model.patch_size == 4


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model.patch_size=3"], "model.patch_size=3 does not divide data.name='mnist1d' sequences "
         "of length 40; valid: 1, 2, 4, 5, 8, 10, 20, 40"),
        (["data=mnist", "model.patch_size=8"], "images of size 28×28; valid: 1, 2, 4, 7, 14, 28"),
        (["data=cifar10", "model.image_size=28"], "model.image_size=28 does not match"),
        (["data=cifar10", "model.channels=1"], "model.channels=1 does not match"),
        (["model.heads=3"], "model.heads=3 does not divide model.dim=64"),
        (["model.pool=max"], "model.pool='max' is not allowed; valid: cls, mean"),
        (["data.augment=true"], "data.augment=true applies to mnist, fashion_mnist, cifar10 only"),
    ],
)  # fmt: skip
def test_impossible_vit_configurations_are_rejected_with_one_line(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        validate(_compose("model=vit", *overrides))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_cli_unknown_vit_key_lists_the_vit_schema():
    result = run_train("model=vit", "model.patches=4", "logger=none")
    assert result.returncode == 2
    assert "model.patches: unknown key; valid keys: name, image_size, channels, patch_size" in (
        result.stderr
    )


def test_model_method_switches_to_math_attention_for_curvature_code():
    model = _small((40,))
    with model.math_attention() as inside:
        assert inside is model and model.attention_backend == "math"
    assert model.attention_backend == "sdpa" and model.activation_name == "gelu"
