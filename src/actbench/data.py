"""Datasets as tensors on the training device, batched by index.

Small datasets fit in memory, so each split lives as one tensor on the device and a batch is an
index slice: no DataLoader workers, no per-batch host-to-device copies. The split is fixed by
``split_seed`` and the batch order by the run seed alone, so every activation trained with the
same seed sees the same data in the same order.

MNIST, Fashion-MNIST and CIFAR-10 are read by torchvision's own dataset classes from the files
in ``root``; nothing is downloaded unless ``download=True``. Their augmentation (random crop,
flips) runs on the device, per training batch, from a generator seeded by the run seed.

Over 500 lines because the five datasets share one DataModule and their file checks live here.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from actbench import records


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
    with records.atomic_path(cache) as tmp:  # parallel jobs race to write the same cache
        np.savez(tmp, **arrays)
    return arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]


def load_digits(root: Path) -> tuple[np.ndarray, ...]:
    """scikit-learn's bundled 8×8 digits as 1×8×8 images; a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    x, y = sk_load_digits(return_X_y=True)
    x = x.reshape(-1, 1, 8, 8)  # row-major pixels: the same bytes as the flat vectors
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return x_tr, y_tr, x_te, y_te


# name -> (torchvision class name, folder under root, image shape (C, H, W)).
TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw", (1, 28, 28)),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw", (1, 28, 28)),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", (3, 32, 32)),
}
# Augmentation per dataset: (random-crop padding in pixels, horizontal flip). Digits are not
# here: they are standardised per pixel, so a shifted pixel would carry another pixel's scale.
AUGMENTATIONS = {"mnist": (2, False), "fashion_mnist": (2, True), "cifar10": (4, True)}


def _torchvision_class(name: str, verify_checksums: bool) -> type:
    import torchvision.datasets as tvd

    cls = getattr(tvd, TORCHVISION[name][0])
    if name == "cifar10" and not verify_checksums:
        # The class checks each file's md5 against the official release; md5=None makes
        # torchvision's check_integrity test existence only (data.verify_checksums=false).
        return type(
            "UncheckedCIFAR10",
            (cls,),
            {
                "train_list": [[f, None] for f, _ in cls.train_list],
                "test_list": [[f, None] for f, _ in cls.test_list],
                "meta": {**cls.meta, "md5": None},
            },
        )
    return cls


def torchvision_files(name: str) -> list[str]:
    """The files torchvision's class reads for ``name``, in its folder under ``root``."""
    cls = _torchvision_class(name, verify_checksums=True)
    if name == "cifar10":
        return [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]


def _describe(err: BaseException) -> str:
    """``Type: first line of the message`` (just the type when the message is empty)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _bad_file(name: str, folder: Path, verify_checksums: bool) -> tuple[str, str] | None:
    """After a failed load: the first expected file torchvision cannot read, and why."""
    import pickle

    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor
    from torchvision.datasets.utils import check_integrity

    cls = _torchvision_class(name, verify_checksums)
    for file in torchvision_files(name):
        path = folder / file
        try:
            if name == "cifar10":
                md5 = dict(cls.train_list + cls.test_list).get(file, cls.meta["md5"])
                if not check_integrity(str(path), md5):
                    return file, "md5 differs from the official release"
                with open(path, "rb") as f:
                    pickle.load(f, encoding="latin1")
            else:
                read_sn3_pascalvincent_tensor(str(path), strict=True)
        except Exception as err:
            what = "a CIFAR-10 python batch" if name == "cifar10" else "an IDX file of its size"
            return file, f"not {what}; {_describe(err)}"
    return None


def load_torchvision(
    name: str, root: Path, download: bool = False, verify_checksums: bool = True
) -> tuple[np.ndarray, ...]:
    """Train and test splits read by torchvision's class: uint8 ``(N, C, H, W)``, int64 labels.

    Missing files are an error naming the folder and the files expected, unless ``download``;
    a file the class cannot read (truncated, wrong format, md5 mismatch) is an error naming it.
    """
    _, sub, shape = TORCHVISION[name]
    folder = root / sub
    expected = torchvision_files(name)
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing and not download:
        which = "" if missing == expected else f" (missing {', '.join(missing)})"
        raise DataError(
            f"data.name={name!r}: files not found in {folder}: expected {', '.join(expected)}"
            f"{which}; set data.download=true to fetch them"
        )
    cls = _torchvision_class(name, verify_checksums)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=False)
    except Exception as err:
        bad = None if missing else _bad_file(name, folder, verify_checksums)
        if bad is None:
            action = "download" if missing else "read"
            raise DataError(
                f"data.name={name!r}: could not {action} the files in {folder}: {_describe(err)}"
            ) from err
        hint = ""
        if bad[1].startswith("md5"):
            hint = "; or set data.verify_checksums=false to use files of your own"
        raise DataError(
            f"data.name={name!r}: {folder / bad[0]} is corrupted or not in the expected "
            f"format ({bad[1]}); delete it and set data.download=true to fetch it again{hint}"
        ) from err
    arrays = []
    for split, ds in (("train", train), ("test", test)):
        x = np.asarray(ds.data, dtype=np.uint8)
        x = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x[:, None]  # CIFAR is stored HWC
        y = np.asarray(ds.targets, dtype=np.int64)
        if x.shape[1:] != shape or len(x) != len(y):
            raise DataError(
                f"data.name={name!r}: the {split} files in {folder} hold {len(x)} images of "
                f"shape {x.shape[1:]} and {len(y)} labels; expected {shape} images, one label each"
            )
        arrays += [x, y]
    return tuple(arrays)


def random_crop_flip(
    x: torch.Tensor, generator: torch.Generator, padding: int, flip: bool, fill: torch.Tensor
) -> torch.Tensor:
    """Per-sample random crop of the ``padding``-padded batch and optional horizontal flip.

    ``x`` is ``(B, C, H, W)`` on any device; ``fill`` holds each channel's padding value (the
    standardised value of a black pixel, as torchvision pads before normalising).
    """
    b, c, h, w = x.shape
    if padding > 0:
        padded = fill.to(x).view(1, c, 1, 1).expand(b, c, h + 2 * padding, w + 2 * padding)
        padded = padded.clone()
        padded[:, :, padding : padding + h, padding : padding + w] = x
        dev = x.device
        top = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator, device=dev)
        left = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator, device=dev)
        rows = (top + torch.arange(h, device=dev))[:, None, :, None]
        cols = (left + torch.arange(w, device=dev))[:, None, None, :]
        batch = torch.arange(b, device=dev)[:, None, None, None]
        channel = torch.arange(c, device=dev)[None, :, None, None]
        x = padded[batch, channel, rows, cols]
    if flip:
        mirror = torch.rand(b, generator=generator, device=x.device) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


LOADERS = {
    "mnist1d": load_mnist1d,
    "digits": load_digits,
    **{name: partial(load_torchvision, name) for name in TORCHVISION},
}


# --- batching -----------------------------------------------------------------------------------


class IndexBatches:
    """Batches (x[idx], y[idx]) of device tensors; a fresh seeded permutation per epoch.

    Under data parallelism each rank takes a disjoint shard of every epoch's order, so index
    batching does not bypass sharding. Training shards are equal-sized (the last
    ``len(x) % world_size`` examples of each epoch's permutation are left out, as with
    ``DistributedSampler(drop_last=True)``). With ``cover_all`` (evaluation) nothing is left out
    and nothing is repeated: shards differ by at most one example, and every rank still yields the
    same number of batches, since a rank that ran out early would leave the others waiting in a
    collective. The epoch metrics are sums over examples reduced across ranks, so uneven shards
    are weighted correctly.
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
        transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        cover_all: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} is out of range for world_size={world_size}")
        if cover_all and drop_last:
            raise ValueError("cover_all and drop_last exclude each other")
        self.x, self.y = x, y
        self.transform = transform  # random augmentation of each batch's inputs
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size, self.cover_all = rank, world_size, cover_all
        self.epoch = 0
        self.epoch_fn = epoch_fn  # the trainer's epoch, so a resumed run replays the same order
        n = len(x)
        if cover_all:
            self.per_rank = len(range(rank, n, world_size))  # strided: ranks < n % W get one more
            fewest = n // world_size
            if fewest == 0:
                raise ValueError(f"{n} examples cannot be shared by {world_size} processes")
            # Batch count from the smallest shard, so no rank gets an empty batch; a larger shard's
            # last batch then holds one example more than batch_size.
            self._num_batches = -(-fewest // batch_size)
        else:
            self.per_rank = n // world_size
            if drop_last:
                self._num_batches = self.per_rank // batch_size
            else:
                self._num_batches = -(-self.per_rank // batch_size)

    def __len__(self) -> int:
        return self._num_batches

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's sample order for ``epoch`` (on the CPU; deterministic in seed and epoch)."""
        n = len(self.x)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            if not self.cover_all:
                order = order[: self.per_rank * self.world_size]
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else self.epoch
        order = self.indices(epoch).to(self.x.device)
        self.epoch = epoch + 1
        gen = None
        if self.transform is not None:
            # Its own stream, on the data's device: seeded by run seed, epoch and rank, so a
            # resumed run replays the same augmentations and ranks draw different ones.
            gen = torch.Generator(device=self.x.device)
            gen.manual_seed((self.seed * 1_000_003 + epoch) * 1_009 + self.rank + 7_919)
        last = len(self) - 1
        for i in range(len(self)):
            # With cover_all the last batch takes whatever of the shard is left (at most one
            # example over batch_size); otherwise slicing stops at batch_size as usual.
            end = len(order) if self.cover_all and i == last else (i + 1) * self.batch_size
            idx = order[i * self.batch_size : end]
            x = self.x[idx]
            yield (self.transform(x, gen) if gen is not None else x), self.y[idx]


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
        download: bool = False,
        augment: bool = False,
        verify_checksums: bool = True,
    ) -> None:
        super().__init__()
        if name not in LOADERS:
            raise DataError(f"data.name={name!r} is not a dataset; valid: {', '.join(LOADERS)}")
        if augment and name not in AUGMENTATIONS:
            raise DataError(
                f"data.augment=true applies to {', '.join(AUGMENTATIONS)} only; "
                f"data.name={name!r} has no augmentation"
            )
        self.name, self.root = name, Path(root)
        self.batch_size, self.full_batch = batch_size, full_batch
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.num_samples, self.eval_batch_size, self.seed = num_samples, eval_batch_size, seed
        self.download, self.augment, self.verify_checksums = download, augment, verify_checksums
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.stats: dict[str, Any] = {}
        self._fill: torch.Tensor | None = None  # per-channel padding value for augmentation
        self._loaded: tuple[np.ndarray, ...] | None = None

    def prepare_data(self) -> None:
        # Generates and caches mnist1d once, before any split is made; image files are read
        # (and downloaded, when allowed) here and kept until setup() so they are read once.
        if not self.splits:
            self._loaded = self._load()

    def _load(self) -> tuple[np.ndarray, ...]:
        if self._loaded is not None:
            return self._loaded
        if self.name == "mnist1d":
            return load_mnist1d(self.root, self.num_samples or 5000)
        if self.name in TORCHVISION:
            return load_torchvision(
                self.name, self.root, self.download, verify_checksums=self.verify_checksums
            )
        return LOADERS[self.name](self.root)

    def setup(self, stage: str | None = None) -> None:
        device = self.device
        if self.splits:  # already loaded: only follow the trainer to its device
            if self.splits["train"][0].device != device:
                self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}
            return
        x_all, y_all, x_test, y_test = self._load()
        self._loaded = None  # the tensors below replace the arrays
        n = len(x_all)
        n_val = max(1, round(n * self.val_fraction))
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
        x_all = torch.as_tensor(x_all, dtype=torch.float32)
        x_test = torch.as_tensor(x_test, dtype=torch.float32)
        y_all, y_test = torch.as_tensor(y_all).long(), torch.as_tensor(y_test).long()
        per_channel = self.name in TORCHVISION
        if per_channel:  # 8-bit pixels to [0, 1], so the recorded statistics read as usual
            x_all.div_(255.0)
            x_test.div_(255.0)
        x_train = x_all[train_idx]
        if per_channel:
            # The standard image normalisation: one mean and std per channel (training split).
            mean, std = x_train.mean((0, 2, 3)), x_train.std((0, 2, 3))
        else:
            # Standardise per feature with training-split statistics; constant features keep
            # scale 1.
            mean, std = x_train.mean(0), x_train.std(0)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        shape = (*mean.shape, 1, 1) if per_channel else mean.shape
        raw = {
            "train": (x_train, y_all[train_idx]),
            "val": (x_all[val_idx], y_all[val_idx]),
            "test": (x_test, y_test),
        }
        self.splits = {
            k: (x.sub(mean.view(shape)).div_(std.view(shape)).to(device), y.to(device))
            for k, (x, y) in raw.items()
        }
        self._fill = -mean / std if per_channel else None  # a black pixel, standardised
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
                "per": "channel" if per_channel else "feature",
                **({"mean": mean.tolist(), "std": std.tolist()} if per_channel else {}),
            },
            "augment": dict(zip(("crop_padding", "flip"), AUGMENTATIONS[self.name], strict=True))
            if self.augment
            else None,
        }

    @staticmethod
    def _fingerprint(*tensors: torch.Tensor) -> str:
        """Hash of the split indices and the data itself: equal iff two runs saw the same splits."""
        h = hashlib.sha1()
        for t in tensors:
            h.update(memoryview(t.contiguous().numpy()).cast("B"))  # no copy of large images
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
                transform=self._augmentation() if self.augment else None,
            )
        if len(y) < world:
            raise DataError(
                f"the {split} split of data.name={self.name!r} has {len(y)} examples, fewer than "
                f"the {world} training processes; use fewer devices"
            )
        # Evaluation covers every example exactly once, however the split divides by the ranks.
        return IndexBatches(
            x, y, self.eval_batch_size, shuffle=False, rank=rank, world_size=world, cover_all=True
        )

    def _augmentation(self) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
        padding, flip = AUGMENTATIONS[self.name]
        assert self._fill is not None, "setup() computes the padding value first"
        return partial(random_crop_flip, padding=padding, flip=flip, fill=self._fill)

    def train_dataloader(self) -> IndexBatches:
        return self._batches("train", train=True)

    def val_dataloader(self) -> IndexBatches:
        return self._batches("val", train=False)

    def test_dataloader(self) -> IndexBatches:
        return self._batches("test", train=False)
