"""Datasets as tensors on the training device, batched by index.

Small datasets fit in memory, so each split lives as one tensor on the device and a batch is an
index slice: no DataLoader workers, no per-batch host-to-device copies. The split is fixed by
``split_seed`` and the batch order by the run seed alone, so every activation trained with the
same seed sees the same data in the same order.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


class DataError(ValueError):
    """Missing or unusable data (the message is a single line)."""


# --- loaders: name -> (x_train, y_train, x_test, y_test) as numpy arrays -----------------------


def _mnist1d_args(num_samples: int) -> dict[str, Any]:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args["num_samples"] = num_samples
    args.pop("url", None)  # never downloaded: generated locally
    return args


def load_mnist1d(root: Path, num_samples: int = 5000) -> tuple[np.ndarray, ...]:
    """Generate MNIST-1D with the package's ``make_dataset``; cached by a hash of its arguments.

    ``make_dataset`` reseeds numpy's global RNG; the caller's RNG state is restored afterwards.
    """
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    args = _mnist1d_args(num_samples)
    key = hashlib.sha1(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    cache = root / "mnist1d" / f"mnist1d_{key}.npz"
    if cache.exists():
        with np.load(cache) as f:
            return f["x"], f["y"], f["x_test"], f["y_test"]
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args, url="")))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")  # atomic: parallel jobs race
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
    return arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]


def load_digits(root: Path) -> tuple[np.ndarray, ...]:
    """scikit-learn's bundled 8×8 digits; a fixed stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    x, y = sk_load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return x_tr, y_tr, x_te, y_te


LOADERS = {"mnist1d": load_mnist1d, "digits": load_digits}


# --- batching -----------------------------------------------------------------------------------


class IndexBatches:
    """Batches (x[idx], y[idx]) of device tensors; a fresh seeded permutation per epoch.

    Under data parallelism each rank takes a disjoint, equal-sized shard of every epoch's
    permutation (like ``DistributedSampler``), so index batching does not bypass sharding.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.epoch_fn = epoch_fn  # the trainer's epoch, so a resumed run replays the same order
        self.per_rank = len(x) // world_size if world_size > 1 else len(x)

    def __len__(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return -(-self.per_rank // self.batch_size)

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's sample order for ``epoch`` (on the CPU; deterministic in seed and epoch)."""
        n = len(self.x)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            order = order[: self.per_rank * self.world_size][self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else self.epoch
        order = self.indices(epoch).to(self.x.device)
        self.epoch = epoch + 1
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]


class DataModule(pl.LightningDataModule):
    """Train/val/test splits of a small dataset held as standardised tensors on the device."""

    def __init__(
        self,
        name: str = "mnist1d",
        root: str = "data",
        batch_size: int = 128,
        full_batch: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        num_samples: int | None = None,
        eval_batch_size: int = 1024,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if name not in LOADERS:
            raise DataError(f"data.name={name!r} is not a dataset; valid: {', '.join(LOADERS)}")
        self.name, self.root = name, Path(root)
        self.batch_size, self.full_batch = batch_size, full_batch
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.num_samples, self.eval_batch_size, self.seed = num_samples, eval_batch_size, seed
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.stats: dict[str, Any] = {}

    def prepare_data(self) -> None:
        self._load()  # generates and caches mnist1d once, before any split is made

    def _load(self) -> tuple[np.ndarray, ...]:
        if self.name == "mnist1d":
            return load_mnist1d(self.root, self.num_samples or 5000)
        return LOADERS[self.name](self.root)

    def setup(self, stage: str | None = None) -> None:
        device = self.device
        if self.splits:  # already loaded: only follow the trainer to its device
            if self.splits["train"][0].device != device:
                self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}
            return
        x_all, y_all, x_test, y_test = self._load()
        n = len(x_all)
        n_val = max(1, round(n * self.val_fraction))
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
        x_all = torch.as_tensor(x_all, dtype=torch.float32)
        x_test = torch.as_tensor(x_test, dtype=torch.float32)
        y_all, y_test = torch.as_tensor(y_all).long(), torch.as_tensor(y_test).long()
        x_train = x_all[train_idx]
        # Standardise per feature with training-split statistics; constant features keep scale 1.
        mean, std = x_train.mean(0), x_train.std(0)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        raw = {
            "train": (x_train, y_all[train_idx]),
            "val": (x_all[val_idx], y_all[val_idx]),
            "test": (x_test, y_test),
        }
        self.splits = {
            k: (((x - mean) / std).to(device), y.to(device)) for k, (x, y) in raw.items()
        }
        self.stats = {
            "dataset": self.name,
            "sizes": {k: len(v[1]) for k, v in self.splits.items()},
            "input_shape": list(x_train.shape[1:]),
            "num_classes": int(y_all.max()) + 1,
            "fingerprint": self._fingerprint(train_idx, val_idx, x_all, y_all, x_test),
            "standardisation": {
                "mean_avg": float(mean.mean()),
                "std_avg": float(std.mean()),
                "sha1": hashlib.sha1(torch.cat([mean, std]).numpy().tobytes()).hexdigest()[:12],
            },
        }

    @staticmethod
    def _fingerprint(*tensors: torch.Tensor) -> str:
        """Hash of the split indices and the data itself: equal iff two runs saw the same splits."""
        h = hashlib.sha1()
        for t in tensors:
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.stats["input_shape"])

    @property
    def num_classes(self) -> int:
        return self.stats["num_classes"]

    def _batches(self, split: str, train: bool) -> IndexBatches:
        x, y = self.splits[split]
        trainer = getattr(self, "trainer", None)
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        if train:
            size = len(x) // world if self.full_batch else self.batch_size
            return IndexBatches(
                x,
                y,
                size,
                shuffle=not self.full_batch,
                seed=self.seed,
                rank=rank,
                world_size=world,
                epoch_fn=lambda: trainer.current_epoch if trainer else 0,
            )
        return IndexBatches(x, y, self.eval_batch_size, shuffle=False, rank=rank, world_size=world)

    def train_dataloader(self) -> IndexBatches:
        return self._batches("train", train=True)

    def val_dataloader(self) -> IndexBatches:
        return self._batches("val", train=False)

    def test_dataloader(self) -> IndexBatches:
        return self._batches("test", train=False)
