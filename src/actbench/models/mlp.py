"""Multi-layer perceptron whose activation is a factory from the registry."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from actbench import activations

INITS = ("activation", "kaiming", "xavier", "unit_norm")
NORMS = ("none", "batch", "layer")


def init_linear(layer: nn.Linear, scheme: str, gain: float) -> None:
    """Initialise weights in place; biases are zero for every scheme."""
    w = layer.weight
    with torch.no_grad():
        if scheme == "activation":
            w.normal_(0.0, gain / math.sqrt(w.shape[1]))
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(w, nonlinearity="relu")
        elif scheme == "xavier":
            nn.init.xavier_normal_(w)
        elif scheme == "unit_norm":
            # Hendrycks & Gimpel: each unit's incoming weight vector Gaussian, then unit L2 norm.
            w.normal_()
            w.div_(w.norm(dim=1, keepdim=True))
        else:
            raise ValueError(f"model.init={scheme!r} is not an init scheme; valid: {INITS}")
        if layer.bias is not None:
            layer.bias.zero_()


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units: Linear → [norm] → activation → [dropout].

    ``activation`` is a zero-argument factory (one module per layer). The default init draws
    W ~ N(0, g²/fan_in) with the activation's variance-preserving gain g.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        activation: Callable[[], nn.Module],
        depth: int = 3,
        width: int = 256,
        norm: str = "none",
        dropout: float = 0.0,
        init: str = "activation",
        name: str = "mlp",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"model.norm={norm!r} is not a norm; valid: {', '.join(NORMS)}")
        in_features = math.prod(input_shape)
        self.activation_name, self.init_gain = activations.factory_gain(activation)
        self.hidden = nn.ModuleList()
        for i in range(depth):
            linear = nn.Linear(in_features if i == 0 else width, width)
            init_linear(linear, init, self.init_gain)
            block = nn.Sequential()
            block.add_module("linear", linear)
            if norm == "batch":
                block.add_module("norm", nn.BatchNorm1d(width))
            elif norm == "layer":
                block.add_module("norm", nn.LayerNorm(width))
            block.add_module("act", activation())
            if dropout > 0:
                block.add_module("dropout", nn.Dropout(dropout))
            self.hidden.append(block)
        self.head = nn.Linear(width if depth else in_features, num_classes)
        init_linear(self.head, init, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for block in self.hidden:
            x = block(x)
        return self.head(x)

    def activation_layers(self) -> dict[str, nn.Module]:
        """Activation modules by layer name, e.g. ``{"hidden.0.act": GELU(), ...}``."""
        return {f"hidden.{i}.act": block.act for i, block in enumerate(self.hidden)}
