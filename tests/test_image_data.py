"""Image datasets read by torchvision's real classes from small files written here in the real
on-disk formats (MNIST IDX, CIFAR-10 python batches); errors; on-device augmentation."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from actbench.data import (
    DataError,
    DataModule,
    IndexBatches,
    random_crop_flip,
    torchvision_files,
)
from conftest import run_train

N_TRAIN, N_TEST = 120, 40  # every class present in both splits
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format: 0, 0, type 0x08 (uint8), ndim; big-endian uint32 dims; the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return images, labels.astype(np.uint8)


def write_mnist(root: Path, cls_name: str = "MNIST", seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images, labels = _images(rng, n, (28, 28))
        write_idx(root / cls_name / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / cls_name / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = images
        arrays[f"{prefix}_labels"] = labels
    return arrays


def write_cifar10(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Python-2-style pickles of dicts with a (n, 3072) uint8 'data' (R, G, B planes) and
    'labels', as in cifar-10-python.tar.gz, plus batches.meta with the label names."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = N_TRAIN // 5 if name != "test_batch" else N_TEST
        images, labels = _images(rng, n, (3 * 32 * 32,))
        entry = {"batch_label": name, "labels": labels.tolist(), "data": images}
        entry["filenames"] = [f"{name}_{i}.png" for i in range(n)]
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        arrays[name] = images
    meta = {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": N_TRAIN // 5}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return arrays


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch):
    """Any download attempt fails the test: nothing is fetched unless data.download=true."""

    def refuse(self):
        raise AssertionError("download attempted")

    for cls in (tvd.MNIST, tvd.CIFAR10):
        monkeypatch.setattr(cls, "download", refuse)


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize(
    ("name", "cls_name"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
)
def test_mnist_formats_load_through_the_torchvision_class(
    name, cls_name, tmp_path, no_download, monkeypatch
):
    arrays = write_mnist(tmp_path, cls_name)
    calls = []
    real_load = tvd.MNIST._load_data
    monkeypatch.setattr(tvd.MNIST, "_load_data", lambda self: calls.append(self) or real_load(self))
    dm = DataModule(name, root=str(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    assert {type(ds).__name__ for ds in calls} == {cls_name} and len(calls) == 2  # train, test
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    sizes = dm.stats["sizes"]
    assert sizes == {"train": N_TRAIN - 12, "val": 12, "test": N_TEST}
    x_test, y_test = dm.splits["test"]
    assert y_test.tolist() == arrays["t10k_labels"].tolist()  # the test split keeps file order
    # Standard normalisation: pixels to [0, 1], then one mean and std per channel (train split).
    stand = dm.stats["standardisation"]
    assert stand["per"] == "channel" and len(stand["mean"]) == 1
    raw_test = torch.as_tensor(arrays["t10k"], dtype=torch.float32)[:, None] / 255
    expected = (raw_test - stand["mean"][0]) / stand["std"][0]
    torch.testing.assert_close(x_test, expected)
    x_train = dm.splits["train"][0]
    assert abs(float(x_train.mean())) < 1e-5 and abs(float(x_train.std()) - 1) < 1e-3
    # The record's fingerprint is deterministic and follows the split seed.
    again = DataModule(name, root=str(tmp_path))
    again.setup("fit")
    other = DataModule(name, root=str(tmp_path), split_seed=1)
    other.setup("fit")
    assert again.stats["fingerprint"] == dm.stats["fingerprint"] != other.stats["fingerprint"]
    json.dumps(dm.stats)  # the record stores it as JSON


def test_cifar10_batches_load_when_the_md5_check_is_disabled(tmp_path, no_download):
    arrays = write_cifar10(tmp_path)
    # The class checks each file's md5 against the official release: these files fail it.
    with pytest.raises(DataError) as err:
        DataModule("cifar10", root=str(tmp_path)).setup("fit")
    message = _one_line(err)
    assert "data_batch_1 is corrupted or not in the expected format (md5 differs" in message
    assert "data.verify_checksums=false" in message
    # The explicit option: torchvision's own check with md5=None (file existence only).
    dm = DataModule("cifar10", root=str(tmp_path), verify_checksums=False)
    dm.setup("fit")
    assert dm.input_shape == (3, 32, 32) and dm.stats["sizes"]["test"] == N_TEST
    mean, std = (torch.tensor(dm.stats["standardisation"][k]) for k in ("mean", "std"))
    assert mean.shape == (3,)
    # Row layout of a batch: 1024 red, 1024 green, 1024 blue values, each row-major.
    raw = torch.as_tensor(arrays["test_batch"], dtype=torch.float32).reshape(-1, 3, 32, 32) / 255
    expected = (raw - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    torch.testing.assert_close(dm.splits["test"][0], expected)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_files_are_one_error_naming_folder_and_files(name, tmp_path, no_download):
    with pytest.raises(DataError) as err:
        DataModule(name, root=str(tmp_path)).prepare_data()
    message = _one_line(err)
    folder = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw"}.get(
        name, "cifar-10-batches-py"
    )
    assert f"files not found in {tmp_path / folder}" in message
    assert all(f in message for f in torchvision_files(name))
    assert "data.download=true" in message


def test_download_only_when_asked(tmp_path, monkeypatch):
    fetched = []

    def fake_download(self):  # stands in for the network: writes the files the class expects
        fetched.append(type(self).__name__)
        write_mnist(Path(self.root))

    monkeypatch.setattr(tvd.MNIST, "download", fake_download)
    with pytest.raises(DataError):
        DataModule("mnist", root=str(tmp_path)).prepare_data()
    assert fetched == []
    dm = DataModule("mnist", root=str(tmp_path), download=True)
    dm.setup("fit")
    assert fetched == ["MNIST"] and dm.stats["sizes"]["test"] == N_TEST


def test_corrupted_files_give_a_clear_error(tmp_path, no_download):
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])  # truncated
    with pytest.raises(DataError) as err:
        DataModule("mnist", root=str(tmp_path)).prepare_data()
    message = _one_line(err)
    assert f"{images} is corrupted or not in the expected format" in message
    assert "not an IDX file" in message

    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError) as err:
        DataModule("cifar10", root=str(tmp_path), verify_checksums=False).prepare_data()
    message = _one_line(err)
    assert f"{batch} is corrupted" in message and "not a CIFAR-10 python batch" in message


def test_labels_that_do_not_match_the_images_are_an_error(tmp_path, no_download):
    write_mnist(tmp_path)
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(7, np.uint8))
    with pytest.raises(DataError) as err:
        DataModule("mnist", root=str(tmp_path)).prepare_data()
    assert "hold 40 images of shape (1, 28, 28) and 7 labels" in _one_line(err)


# --- augmentation ------------------------------------------------------------------------------


def test_random_crop_flip_takes_a_crop_of_the_padded_image():
    x = torch.randn(16, 2, 6, 6)
    fill = torch.tensor([-1.5, 2.5])
    gen = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, gen, padding=2, flip=True, fill=fill)
    assert out.shape == x.shape
    padded = fill.view(1, 2, 1, 1).expand(16, 2, 10, 10).clone()
    padded[:, :, 2:8, 2:8] = x
    flipped = 0
    for i in range(16):
        crops = [padded[i, :, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        plain = any(torch.equal(out[i], crop) for crop in crops)
        mirrored = any(torch.equal(out[i], crop.flip(-1)) for crop in crops)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 0 < flipped < 16
    again = random_crop_flip(x, torch.Generator().manual_seed(0), 2, True, fill)
    assert torch.equal(out, again)
    # No padding, no flip: the identity.
    assert torch.equal(random_crop_flip(x, gen, 0, False, fill), x)


def test_augmentation_is_seeded_per_run_and_applies_to_training_batches_only(tmp_path):
    write_cifar10(tmp_path)

    def batches(seed: int, split: str = "train", augment: bool = True):
        dm = DataModule("cifar10", root=str(tmp_path), verify_checksums=False, augment=augment,
                        batch_size=32, seed=seed)  # fmt: skip
        dm.setup("fit")
        loader = getattr(dm, f"{split}_dataloader")()
        return dm, [x for x, _ in loader], [x for x, _ in loader]  # two epochs

    dm, epoch0, epoch1 = batches(seed=0)
    assert dm.stats["augment"] == {"crop_padding": 4, "flip": True}
    _, plain0, _ = batches(seed=0, augment=False)
    assert all(a.shape == p.shape for a, p in zip(epoch0, plain0, strict=True))
    assert not torch.equal(epoch0[0], plain0[0])
    _, again0, again1 = batches(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(epoch0 + epoch1, again0 + again1, strict=True))
    _, other0, _ = batches(seed=1)
    assert not torch.equal(other0[0], epoch0[0])
    _, val_aug, _ = batches(seed=0, split="val")
    _, val_plain, _ = batches(seed=0, split="val", augment=False)
    assert all(torch.equal(a, b) for a, b in zip(val_aug, val_plain, strict=True))
    with pytest.raises(DataError, match=r"data\.augment=true applies to"):
        DataModule("digits", augment=True)


def test_index_batches_transform_is_optional():
    x, y = torch.arange(20.0).reshape(10, 2), torch.arange(10)
    seen = []

    def transform(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        seen.append(gen.initial_seed())
        return -batch

    out = [b for b, _ in IndexBatches(x, y, 4, shuffle=False, transform=transform)]
    assert torch.equal(torch.cat(out), -x) and len(set(seen)) == 1


def test_vit_trains_on_cifar10_files_end_to_end(tmp_path):
    write_cifar10(tmp_path / "data")
    run_dir = tmp_path / "run"
    result = run_train(
        "model=vit", "data=cifar10", f"data.root={tmp_path / 'data'}",
        "data.verify_checksums=false", "data.augment=true", "data.batch_size=32",
        "model.depth=1", "model.dim=16", "trainer.max_steps=6", "logger=none", "callbacks=none",
        "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 6
    assert summary["data"]["input_shape"] == [3, 32, 32]
    assert summary["data"]["standardisation"]["per"] == "channel"
    assert summary["data"]["augment"] == {"crop_padding": 4, "flip": True}


def test_schema_tables_agree_with_the_loaders():
    """The schema checks combinations before loading; its tables must describe the loaders."""
    from actbench import config, data

    assert set(config.DATASETS) == set(data.LOADERS) == set(config.DATASET_SHAPES)
    assert set(config.AUGMENTABLE) == set(data.AUGMENTATIONS)
    for name, (_, _, shape) in data.TORCHVISION.items():
        assert config.DATASET_SHAPES[name] == shape
    digits = DataModule("digits")
    digits.setup("fit")
    assert digits.input_shape == config.DATASET_SHAPES["digits"]  # 8×8 images, one channel
