"""Datamodules (deterministic splits, no network) and the MLP with every activation."""

from __future__ import annotations

import math
import random
import socket
from functools import partial

import numpy as np
import pytest
import torch

from actbench import activations
from actbench.data import DataModule, IndexBatches
from actbench.models.mlp import MLP


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", ["mnist1d", "digits"])
def test_datamodule_splits_are_deterministic_and_offline(name, data_root, no_network):
    kwargs = {"num_samples": 1000} if name == "mnist1d" else {}
    a = DataModule(name, root=str(data_root), **kwargs)
    b = DataModule(name, root=str(data_root), **kwargs)
    for dm in (a, b):
        dm.prepare_data()
        dm.setup("fit")
    assert a.stats["fingerprint"] == b.stats["fingerprint"]
    for split in ("train", "val", "test"):
        torch.testing.assert_close(a.splits[split][0], b.splits[split][0])
    sizes = a.stats["sizes"]
    assert sizes["val"] == round((sizes["train"] + sizes["val"]) * 0.1)
    assert a.num_classes == 10
    x_train = a.splits["train"][0]
    # Standardised with training statistics: per-feature mean 0, std 1 (constant pixels stay 0).
    assert x_train.mean(0).abs().max() < 1e-4
    stds = x_train.std(0)
    assert torch.all((stds - 1).abs() < 1e-3) or torch.all(
        (stds < 1e-6) | ((stds - 1).abs() < 1e-3)
    )
    # A different split seed gives a different split.
    c = DataModule(name, root=str(data_root), split_seed=1, **kwargs)
    c.setup("fit")
    assert c.stats["fingerprint"] != a.stats["fingerprint"]


def test_mnist1d_generation_leaves_global_rng_alone(data_root, tmp_path):
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    DataModule("mnist1d", root=str(tmp_path), num_samples=500).prepare_data()  # generates
    assert np.random.rand() == expected_np and random.random() == expected_py
    assert list((tmp_path / "mnist1d").glob("*.npz")), "generated data is cached"


def test_index_batches_reproducible_order_and_disjoint_shards():
    x, y = torch.arange(100.0).unsqueeze(1), torch.arange(100)
    first = [b[1].tolist() for b in IndexBatches(x, y, 16, shuffle=True, seed=3)]
    again = [b[1].tolist() for b in IndexBatches(x, y, 16, shuffle=True, seed=3)]
    other = [b[1].tolist() for b in IndexBatches(x, y, 16, shuffle=True, seed=4)]
    assert first == again and first != other
    assert sorted(i for batch in first for i in batch) == list(range(100))
    shards = [
        [
            i
            for b in IndexBatches(x, y, 16, True, seed=3, rank=r, world_size=2)
            for i in b[1].tolist()
        ]
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 50
    assert not set(shards[0]) & set(shards[1])


def test_full_batch_mode_is_one_batch_of_the_training_split(data_root):
    dm = DataModule("digits", root=str(data_root), full_batch=True)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and len(batches[0][1]) == dm.stats["sizes"]["train"]


@pytest.mark.parametrize("name", activations.names())
def test_mlp_with_every_activation_trains_a_step(name):
    torch.manual_seed(0)
    model = MLP((40,), 10, partial(activations.build, name=name), depth=3, width=32)
    assert list(model.activation_layers()) == ["hidden.0.act", "hidden.1.act", "hidden.2.act"]
    x, y = torch.randn(64, 40), torch.randint(0, 10, (64,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.init_gain == pytest.approx(activations.init_gain(name))


def test_mlp_init_schemes():
    act = partial(activations.build, name="relu")
    torch.manual_seed(0)
    unit = MLP((64,), 10, act, depth=2, width=512, init="unit_norm")
    norms = unit.hidden[0].linear.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert torch.all(unit.hidden[0].linear.bias == 0)
    gelu = MLP((512,), 10, partial(activations.build, name="gelu"), depth=1, width=512)
    w_std = gelu.hidden[0].linear.weight.std().item()
    assert w_std == pytest.approx(activations.init_gain("gelu") / math.sqrt(512), rel=0.02)
    for norm in ("batch", "layer"):
        model = MLP((8,), 3, act, depth=2, width=16, norm=norm, dropout=0.1)
        assert model(torch.randn(4, 8)).shape == (4, 3)
    with pytest.raises(ValueError, match="valid"):
        MLP((8,), 3, act, norm="group")


def test_same_seed_same_init_stream_across_activations():
    """Common random numbers: weights differ only by the activation's gain."""
    torch.manual_seed(7)
    relu = MLP((20,), 10, partial(activations.build, name="relu"), depth=2, width=32)
    torch.manual_seed(7)
    gelu = MLP((20,), 10, partial(activations.build, name="gelu"), depth=2, width=32)
    ratio = activations.init_gain("gelu") / activations.init_gain("relu")
    w_relu, w_gelu = relu.hidden[0].linear.weight, gelu.hidden[0].linear.weight
    torch.testing.assert_close(w_gelu, w_relu * ratio)
