"""Bad input by category: one line naming the key, the value and what is allowed.

In process (compose + validate, the datamodule) where that is the code path, and through the
real entry point for what only the CLI does: the single stderr line, exit code 2, W&B agents'
spellings of values.
"""

from __future__ import annotations

import gzip
import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from actbench.config import ConfigError, one_line_error, register_configs, run_id, validate
from actbench.data import DataError, DataModule, torchvision_files
from actbench.diagnostics.base import instantiate_callbacks, probe_sizes
from conftest import CONF_DIR, run_train

register_configs()


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["run_dir=/tmp/actbench-compose", *overrides])


def _error(*overrides: str) -> str:
    """The one-line message for a configuration that composing or validating rejects."""
    with pytest.raises((ConfigError, HydraException, OmegaConfBaseException)) as info:
        validate(_compose(*overrides))
    message = one_line_error(info.value)
    assert "\n" not in message
    return message


CASES = {
    # unknown names: the group's options are listed
    "unknown activation": (["activation=foo"], ["activation=foo", "valid:", "gelu", "relu"]),
    "unknown dataset": (["data=foo"], ["data=foo", "valid:", "mnist1d", "digits", "cifar10"]),
    "unknown model": (["model=foo"], ["model=foo", "valid:", "mlp", "vit"]),
    "unknown choice": (["model.norm=group"], ["model.norm='group'", "valid: none, batch, layer"]),
    "unknown key": (["+optimizer.foo=1"], ["optimizer.foo", "unknown key", "lr", "momentum"]),
    # wrong types: the expected type and its range
    "int as text": (["trainer.max_steps=abc"], ["trainer.max_steps='abc'", "Integer >= 1"]),
    "float as text": (["optimizer.lr=abc"], ["optimizer.lr='abc'", "Float > 0"]),
    "fraction for an int": (["data.batch_size=1.5"], ["data.batch_size='1.5'", "Integer >= 1"]),
    "bool as text": (["trainer.deterministic=maybe"], ["'maybe'", "true or false"]),
    "null for a number": (["model.dropout=null"], ["model.dropout=None", "Float >= 0 and < 1"]),
    "null for a choice": (["model.norm=null"], ["model.norm=None", "one of: none, batch"]),
    # out of range
    "negative lr": (["optimizer.lr=-1"], ["optimizer.lr=-1.0", "out of range", "> 0"]),
    "dropout of 1": (["model.dropout=1"], ["model.dropout=1.0", ">= 0 and < 1"]),
    "zero epochs": (["trainer.max_epochs=0"], ["trainer.max_epochs=0", "-1", ">= 1"]),
    "empty probe": (
        ["callbacks.curvature.probe_size=0"],
        ["callbacks.curvature.probe_size=0", "integer >= 1"],
    ),
    # combinations that cannot run
    "momentum with adam": (
        ["optimizer=adam", "optimizer.momentum=0.9"],
        ["optimizer.momentum=0.9", "sgd only", "optimizer.name='adam'"],
    ),
    "num_samples off mnist1d": (
        ["data=digits", "data.num_samples=500"],
        ["data.num_samples=500", "mnist1d only", "data.name='digits'"],
    ),
    "augment digits": (["data=digits", "data.augment=true"], ["data.augment=true", "mnist"]),
    "patch vs image": (
        ["model=vit", "data=digits", "model.patch_size=3"],
        ["model.patch_size=3", "data.name='digits'", "valid: 1, 2, 4, 8"],
    ),
    "heads vs dim": (["model=vit", "model.heads=3"], ["model.heads=3", "model.dim=64", "valid:"]),
    "parameter of another activation": (
        ["activation=relu", "activation.beta=2"],
        ["beta", "relu"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_one_line_naming_key_value_and_allowed(case: str):
    overrides, fragments = CASES[case]
    message = _error(*overrides)
    for fragment in fragments:
        assert fragment in message, message


def test_wandb_agent_spellings_mean_the_same_config():
    # W&B agents quote values and write numbers in Python's spelling; the typed config (and
    # with it the run id) is the same as for the plain spelling.
    quoted = validate(_compose('optimizer.lr="1e-3"', 'seed="3"', 'trainer.max_steps="100"'))
    plain = validate(_compose("optimizer.lr=0.001", "seed=3", "trainer.max_steps=100"))
    assert quoted == plain
    assert type(quoted.seed) is int and type(quoted.optimizer.lr) is float
    assert quoted.optimizer.lr == 1e-3 and quoted.seed == 3
    assert run_id(_compose('optimizer.lr="1e-3"', 'seed="3"', 'trainer.max_steps="100"')) == run_id(
        _compose("optimizer.lr=1e-3", "seed=3", "trainer.max_steps=100")
    )


def test_a_probe_larger_than_its_split_is_the_whole_split_with_one_warning(
    caplog: pytest.LogCaptureFixture,
):
    cfg = _compose(
        "callbacks=default",
        f"callbacks.curvature.probe_size={10**6}",
        "callbacks.dead_neurons.probe_size=100",
    )
    sizes = {"train": 1293, "val": 144, "test": 360}
    with caplog.at_level(logging.WARNING, logger="actbench.train"):
        clamped = probe_sizes(cfg, sizes, warn=True)
    assert clamped == {"curvature": {"probe_size": 1293}}  # 100 <= 144 stays as asked
    (record,) = caplog.records
    assert "callbacks.curvature.probe_size=1000000" in record.getMessage()
    assert "train split (1293 examples)" in record.getMessage()
    assert "\n" not in record.getMessage()
    caplog.clear()
    assert probe_sizes(cfg, sizes, warn=False) == clamped and not caplog.records  # ranks > 0


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("callbacks.curvature.lanczos_converge=bad",
         "callbacks.curvature.lanczos_converge='bad'; valid: both, top"),
        ("callbacks.curvature.trace_every=0", "callbacks.curvature.trace_every=0 is out of range"),
        ("callbacks.dead_neurons.points=0", "callbacks.dead_neurons.points=0 is out of range"),
    ],
)  # fmt: skip
def test_a_callback_refusing_its_arguments_names_the_key_in_one_line(override: str, line: str):
    # Hydra's own message names only the class on its first line; the run needs the key.
    cfg = _compose("callbacks=default", override)
    with pytest.raises(ConfigError) as info:
        instantiate_callbacks(cfg, {"train": 1293, "val": 144, "test": 360}, warn=False)
    message = one_line_error(info.value)
    assert message.startswith(line) and "\n" not in message, message


def _write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format: 0, 0, type 0x08 (uint8), ndim; big-endian uint32 sizes; the bytes."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist(root: Path) -> Path:
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return folder


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch):
    import torchvision.datasets as tvd

    def refuse(self):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(tvd.MNIST, "download", refuse)


def test_missing_data_files_name_the_folder_and_the_files(tmp_path: Path, no_download):
    dm = DataModule("mnist", root=str(tmp_path / "empty"))
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "\n" not in message and "data.name='mnist'" in message
    assert str(tmp_path / "empty" / "MNIST" / "raw") in message
    assert all(f in message for f in torchvision_files("mnist"))
    assert "data.download=true" in message


@pytest.mark.parametrize("damage", ["truncated", "not an idx file", "gzip instead of raw"])
def test_corrupted_data_files_name_the_file(tmp_path: Path, no_download, damage: str):
    folder = _write_mnist(tmp_path)
    DataModule("mnist", root=str(tmp_path)).prepare_data()  # the intact files load
    images = folder / "train-images-idx3-ubyte"
    data = images.read_bytes()
    if damage == "truncated":
        images.write_bytes(data[: len(data) // 2])
    elif damage == "not an idx file":
        images.write_bytes(b"<html>404 Not Found</html>")
    else:
        images.write_bytes(gzip.compress(data))
    with pytest.raises(DataError) as info:
        DataModule("mnist", root=str(tmp_path)).prepare_data()
    message = str(info.value)
    assert "\n" not in message and str(images) in message
    assert "corrupted" in message and "data.download=true" in message


# Through the real entry point: exactly one line on stderr, exit code 2.
CLI_CASES = {
    "wrong type": (["trainer.max_steps=abc"], "trainer.max_steps='abc' has the wrong type"),
    # A W&B agent writes Python's None; it is read as null, then rejected like null.
    "agent None": (["model.dropout=None"], "model.dropout=None is not allowed; expected Float"),
    "missing files": (["data=mnist", "data.root={empty}"], "files not found in {empty}/MNIST/raw"),
    "unknown accelerator": (
        ["trainer.accelerator=quantum"],
        "trainer.accelerator='quantum' is not an accelerator; valid: auto, gpu, cpu, cuda, mps",
    ),
}


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("trainer.accelerator=quantum", ["'quantum'", "valid: auto, gpu, cpu, cuda, mps, tpu"]),
        ("trainer.strategy=ddp_magic", ["'ddp_magic'", "valid: auto, ddp,", "fsdp"]),
        ("trainer.devices=0", ["trainer.devices=0", "valid: auto, an integer >= 1"]),
        ("trainer.devices=two", ["trainer.devices='two'", "a list of device indices"]),
        ("trainer.precision=8-true", ["trainer.precision='8-true'", "valid:", "64-true"]),
    ],
)
def test_lightning_keys_name_the_value_and_lightnings_own_choices(override, fragments):
    from actbench.config import validate_trainer

    with pytest.raises(ConfigError) as info:
        validate_trainer(validate(_compose(override)).trainer)
    message = one_line_error(info.value)
    assert "\n" not in message and all(f in message for f in fragments), message


@pytest.mark.parametrize("devices", ["auto", "1", "-1", "[0,1]", "'0,1'", "2"])
def test_lightning_keys_accept_lightnings_spellings(devices):
    from actbench.config import validate_trainer

    validate_trainer(validate(_compose(f"trainer.devices={devices}")).trainer)


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input_is_one_stderr_line_and_exit_2(case: str, tmp_path: Path):
    overrides, expected = CLI_CASES[case]
    empty = tmp_path / "empty"
    overrides = [o.format(empty=empty) for o in overrides]
    result = run_train(*overrides, "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("actbench: error: "), result.stderr
    assert expected.format(empty=empty) in lines[0]
    record = tmp_path / "run" / "summary.json"
    if case == "missing files":  # found while setting up the run: recorded as a failed attempt
        failed = json.loads(record.read_text())
        assert failed["status"] == "failed" and expected.format(empty=empty) in failed["error"]
    else:  # bad configuration is refused before the run exists
        assert not record.exists()


def test_cli_probe_larger_than_the_data_warns_once_and_trains(tmp_path: Path, data_root: Path):
    result = run_train(
        "experiment=smoke", "trainer.max_steps=3", "torch_threads=1", f"data.root={data_root}",
        f"callbacks.curvature.probe_size={10**6}", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    output = (result.stdout + result.stderr).splitlines()
    warnings = [line for line in output if "probe_size=1000000" in line]
    assert len(warnings) == 1 and "the probe is the whole split" in warnings[0], output
    assert "actbench: completed" in result.stdout
