"""``epoch60k``: epoch time of an MLP on 60 000 synthetic MNIST-shaped samples resident on the
device, a GPU figure (run on the CPU only when named in ``--only``). Measured like the other
throughput rows (:func:`actbench.bench.steps.steps_row`); this module holds its data."""

from __future__ import annotations

import numpy as np

from actbench.data import DataModule


class SyntheticMNIST(DataModule):
    """MNIST-shaped uniform-noise images through the real DataModule (split, standardise, device).

    66 667 examples, so the 10 % validation split leaves exactly 60 000 for training (469 batches
    of 128); only the loader differs from a real MNIST run. Nothing is read from disk.
    """

    samples = 66_667

    def _load(self) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (self.samples, 1, 28, 28), dtype=np.uint8)
        x_test = rng.integers(0, 256, (10_000, 1, 28, 28), dtype=np.uint8)
        y, y_test = rng.integers(0, 10, self.samples), rng.integers(0, 10, 10_000)
        return x, y, x_test, y_test


class SyntheticMNISTQuick(SyntheticMNIST):
    """The same path with 2 000 examples, for ``--quick``."""

    samples = 2_000


# The row's config, warm-up steps N0, timed steps N1 − N0, the same for --quick: one warm-up
# epoch, then exactly one epoch timed. --quick swaps in SyntheticMNISTQuick by name.
EPOCH60K: tuple[list[str], int, int, int, int] = (
    ["data=mnist", f"data._target_={SyntheticMNIST.__module__}.SyntheticMNIST", "model=mlp"],
    469,
    469,
    4,
    8,
)
