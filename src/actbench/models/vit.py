"""A small pre-norm Vision Transformer whose MLP nonlinearity is a factory from the registry.

Inputs are cut into non-overlapping patches: 2-D ``p×p`` patches of ``(C, H, W)`` images, or 1-D
length-``p`` segments of ``(L,)`` / ``(C, L)`` sequences (MNIST-1D), so both model families run on
every dataset. Attention has two interchangeable paths: PyTorch's fused
``scaled_dot_product_attention`` (the default, fast for training) and an explicit
``softmax(QKᵀ/√d)·V`` in plain ops. The fused kernels have no double backward on CPU or GPU, so
curvature code (Hessian-vector products) switches to the math path with :func:`math_attention`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from actbench import activations

BACKENDS = ("sdpa", "math")
POOLS = ("cls", "mean")


def _normal_linear(layer: nn.Linear, gain: float) -> None:
    """W ~ N(0, gain²/fan_in), zero bias: the same rule the MLP's ``activation`` init uses."""
    with torch.no_grad():
        layer.weight.normal_(0.0, gain / math.sqrt(layer.weight.shape[1]))
        if layer.bias is not None:
            layer.bias.zero_()


class Attention(nn.Module):
    """Multi-head self-attention with a switchable backend (``"sdpa"`` or ``"math"``)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model.dim={dim} is not divisible by model.heads={heads}")
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.backend = "sdpa"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        if self.backend == "math":
            # Plain ops only, so autograd can differentiate the backward pass again.
            weights = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim), dim=-1)
            out = F.dropout(weights, p) @ v
        elif self.backend == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            raise ValueError(f"attention backend {self.backend!r} is not one of {BACKENDS}")
        return self.proj(out.transpose(1, 2).reshape(b, t, d))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, backend={self.backend!r}"


class FeedForward(nn.Module):
    """``fc1 → act → dropout → fc2``; ``act`` is the activation under test."""

    def __init__(self, dim: int, hidden: int, act: nn.Module, dropout: float, gain: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        # fc1 sees a LayerNorm output (unit variance), so gain 1 gives unit-variance
        # pre-activations; fc2 sees f(z), so the activation's gain keeps the branch at unit scale.
        _normal_linear(self.fc1, 1.0)
        _normal_linear(self.fc2, gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(
        self, dim: int, heads: int, hidden: int, act: nn.Module, dropout: float, gain: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, hidden, act, dropout, gain)
        self.drop = nn.Dropout(dropout)
        _normal_linear(self.attn.qkv, 1.0)
        _normal_linear(self.attn.proj, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


def patch_grid(input_shape: tuple[int, ...], patch_size: int) -> tuple[int, tuple[int, ...]]:
    """``(channels, spatial dims)`` of an input shape, checking that ``patch_size`` tiles it.

    ``(L,)`` is a one-channel sequence, ``(C, L)`` a C-channel sequence, ``(C, H, W)`` an image.
    """
    if len(input_shape) == 1:
        channels, spatial = 1, tuple(input_shape)
    elif len(input_shape) in (2, 3):
        channels, spatial = input_shape[0], tuple(input_shape[1:])
    else:
        raise ValueError(f"input_shape={input_shape} is not (L,), (C, L) or (C, H, W)")
    for size in spatial:
        if size % patch_size:
            valid = [p for p in range(1, size + 1) if size % p == 0]
            raise ValueError(
                f"model.patch_size={patch_size} does not divide the input size {size}; "
                f"valid: {', '.join(map(str, valid))}"
            )
    return channels, spatial


def patchify(x: torch.Tensor, patch_size: int, spatial_dims: int) -> torch.Tensor:
    """Non-overlapping patches as tokens: ``(B, [C,] *spatial) → (B, num_patches, C·p^d)``.

    1-D: token i is the segment ``x[..., i·p:(i+1)·p]`` of every channel; 2-D: tokens run over
    the patch grid in row-major order, each flattened channel-first (``C, p, p``), like a
    stride-p convolution's receptive fields.
    """
    p = patch_size
    b = x.shape[0]
    if spatial_dims == 1:
        x = x.reshape(b, -1, x.shape[-1])  # (B, C, L); a bare (B, L) gets one channel
        c, length = x.shape[1], x.shape[2]
        return x.reshape(b, c, length // p, p).permute(0, 2, 1, 3).reshape(b, length // p, c * p)
    c, h, w = x.shape[1:]
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


class ViT(nn.Module):
    """Patch embedding → learned positions → ``depth`` pre-norm blocks → LN → pool → linear head.

    ``activation`` is a zero-argument factory (one module per block's MLP). ``image_size`` and
    ``channels`` default to the data's; when given they must match it. ``pool="cls"`` reads a
    class token, ``"mean"`` averages the patch tokens. Weights are N(0, 1/fan_in) except each
    MLP's output layer, which uses the activation's variance-preserving gain; with the same seed
    every activation draws the same random numbers (common random numbers, as for the MLP).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        activation: Callable[[], nn.Module],
        image_size: int | None = None,
        channels: int | None = None,
        patch_size: int = 4,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        pool: str = "mean",
        name: str = "vit",
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"model.pool={pool!r} is not a pooling; valid: {', '.join(POOLS)}")
        in_channels, spatial = patch_grid(tuple(input_shape), patch_size)
        if image_size is not None and any(s != image_size for s in spatial):
            raise ValueError(f"model.image_size={image_size} does not match the input {spatial}")
        if channels is not None and channels != in_channels:
            raise ValueError(f"model.channels={channels} does not match the input's {in_channels}")
        self.input_shape = tuple(input_shape)
        self.patch_size, self.spatial_dims, self.pool = patch_size, len(spatial), pool
        self.num_patches = math.prod(s // patch_size for s in spatial)
        self.activation_name, self.init_gain = activations.factory_gain(activation)

        self.embed = nn.Linear(in_channels * patch_size**self.spatial_dims, dim)
        _normal_linear(self.embed, 1.0)
        n_tokens = self.num_patches + (pool == "cls")
        self.pos = nn.Parameter(torch.randn(1, n_tokens, dim) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02) if pool == "cls" else None
        self.drop = nn.Dropout(dropout)
        hidden = max(1, round(dim * mlp_ratio))
        self.blocks = nn.ModuleList(
            Block(dim, heads, hidden, activation(), dropout, self.init_gain) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        _normal_linear(self.head, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(patchify(x, self.patch_size, self.spatial_dims))
        if self.cls is not None:
            tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = self.drop(tokens + self.pos)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        pooled = tokens[:, 0] if self.cls is not None else tokens.mean(dim=1)
        return self.head(pooled)

    def activation_layers(self) -> dict[str, nn.Module]:
        """Activation modules by layer name, e.g. ``{"blocks.0.mlp.act": GELU(), ...}``.

        Each module's output is ``(batch, tokens, hidden)``: a unit is one hidden channel (the
        last dimension) taken over batch × tokens, as an MLP unit is taken over the batch.
        """
        return {f"blocks.{i}.mlp.act": block.mlp.act for i, block in enumerate(self.blocks)}

    def math_attention(self) -> contextlib.AbstractContextManager[nn.Module]:
        """Context in which attention runs on the math path (what curvature code looks for)."""
        return math_attention(self)

    @property
    def attention_backend(self) -> str:
        """``"sdpa"`` (fused, default) or ``"math"`` (twice differentiable)."""
        return self.blocks[0].attn.backend if len(self.blocks) else "sdpa"

    @attention_backend.setter
    def attention_backend(self, backend: str) -> None:
        set_attention_backend(self, backend)


def set_attention_backend(model: nn.Module, backend: str) -> None:
    """Switch every attention layer inside ``model`` (any wrapper) to ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r} is not one of {', '.join(BACKENDS)}")
    for module in model.modules():
        if isinstance(module, Attention):
            module.backend = backend


@contextlib.contextmanager
def math_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model``'s attention on the math path inside the block, then restore each layer.

    For double backward (Hessian-vector products); a no-op for models without attention, so
    curvature code can wrap any model family in it.
    """
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    saved = [m.backend for m in layers]
    try:
        for m in layers:
            m.backend = "math"
        yield model
    finally:
        for m, backend in zip(layers, saved, strict=True):
            m.backend = backend
