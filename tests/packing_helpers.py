"""Helpers for tests/test_packing.py: compose runs as their own jobs would be composed, train
them packed (:func:`actbench.packing.run.train_pack`) or one by one (:func:`actbench.train.train`),
read back their parameters and records, stop a pack part-way as a crash would, and the commands
of a pack in its own process and of a packed sweep."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from actbench import records
from actbench.config import register_configs, run_dirname
from conftest import CONF_DIR

TESTS = Path(__file__).resolve().parent

register_configs()

# Short runs at one thread, no W&B. 1293 digits training examples in batches of 128: 11 steps
# an epoch.
BASE = ("data=digits", "logger=none", "torch_threads=1", "trainer.enable_progress_bar=false")
STEPS_PER_EPOCH = 11


@functools.cache
def _composed(overrides: tuple[str, ...]) -> DictConfig:
    # Composing costs ~0.5 s; the tests compose the same members for several packs.
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        # run_dir is set by the caller: the folder's name is the configuration's.
        return compose("config", overrides=[*BASE, *overrides, "run_dir=/nonexistent"])


def compose_runs(root: Path, members: list[list[str]], *shared: str) -> list[DictConfig]:
    """Each member's configuration, in its own folder under ``root`` named as a sweep names
    it (:func:`actbench.config.run_dirname`)."""
    cfgs = []
    for member in members:
        cfg = copy.deepcopy(_composed((*shared, *member)))
        cfg.run_dir = str(root / run_dirname(cfg))
        cfgs.append(cfg)
    return cfgs


def train_packed(root: Path, members: list[list[str]], *shared: str) -> list[Path]:
    """Train ``members`` as one pack under ``root``; their folders, in order."""
    from actbench.packing.run import train_pack

    cfgs = compose_runs(root, members, *shared)
    train_pack(cfgs)  # no overrides recorded, as for train() outside Hydra
    return [Path(c.run_dir) for c in cfgs]


def train_unpacked(root: Path, members: list[list[str]], *shared: str) -> list[Path]:
    """Train each of ``members`` as its own run under ``root``; their folders, in order."""
    from actbench.train import train

    cfgs = compose_runs(root, members, *shared)
    for cfg in cfgs:
        train(cfg)
    return [Path(c.run_dir) for c in cfgs]


def _model_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("model.")}


def packed_params(run_dir: Path) -> dict[str, torch.Tensor]:
    """A packed member's final parameters (its pack state, saved at the end of training)."""
    state = torch.load(run_dir / records.PACK_STATE, map_location="cpu", weights_only=False)
    return _model_only(state["classifier"])


def unpacked_params(run_dir: Path) -> dict[str, torch.Tensor]:
    """An unpacked run's final parameters (its last.ckpt, saved at the end of training)."""
    ckpt = torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=False)
    return _model_only(ckpt["state_dict"])


def relative_errors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> dict:
    """‖Δ‖/‖θ‖ per tensor (the issue's measure)."""
    assert got.keys() == want.keys() and want
    return {
        k: float((got[k].double() - want[k].double()).norm() / want[k].double().norm())
        for k in want
    }


def assert_bitwise_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys() and want
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"tensors that differ: {differ}"


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / records.SUMMARY).read_text())


def saved_step(run_dir: Path) -> int:
    state = torch.load(run_dir / records.PACK_STATE, map_location="cpu", weights_only=False)
    return int(state["global_step"])


class Interrupted(Exception):
    """Stands for a crash at a chosen moment of a pack's training."""


@contextlib.contextmanager
def crash_after_save_at(step: int) -> Iterator[None]:
    """Packs trained inside the block stop with :class:`Interrupted` just after the first save
    of their members' states at pack step ``step`` or later, as if the process had died there."""
    from actbench.packing import state as pack_state

    real = pack_state.Saver.__call__

    def saving_then_crashing(self: Any, module: Any) -> None:
        before = self.last
        real(self, module)
        if self.last != before and module.trainer.global_step >= step:  # it saved
            raise Interrupted(f"stopped after the save at step {module.trainer.global_step}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pack_state.Saver, "__call__", saving_then_crashing)
        yield


@contextlib.contextmanager
def crash_inside_save(phase: str, save: int, size: int) -> Iterator[None]:
    """Packs of ``size`` trained inside the block stop with :class:`Interrupted` in the middle
    of their ``save``-th save of members' states: once the first member's state is written
    under its pending name (``phase="writing"``) or committed (``"committing"``), and before
    the next member's is."""
    from actbench.packing import state as pack_state

    calls = [0]
    crash_at = (save - 1) * size + 2  # the second member's write or commit of that save

    def counted(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == crash_at:
                raise Interrupted(f"stopped while {phase} save {save}")
            return real(*args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as patch:
        if phase == "writing":
            patch.setattr(pack_state.torch, "save", counted(torch.save))
        elif phase == "committing":
            patch.setattr(pack_state.records, "promote", counted(records.promote))
        else:
            raise ValueError(f"phase={phase!r}; valid: writing, committing")
        yield


# --- other processes --------------------------------------------------------------------------

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DRIVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from packing_helpers import train_packed
train_packed(Path(sys.argv[1]), json.loads(sys.argv[2]), *json.loads(sys.argv[3]))
"""


def driver_command(
    where: Path, root: Path, members: list[list[str]], *shared: str
) -> tuple[list[str], dict[str, str]]:
    """The command (and environment) that trains ``members`` as a pack under ``root`` in a
    process of its own (its script written into ``where``)."""
    driver = where / "driver.py"
    driver.write_text(DRIVER.format(tests=str(TESTS)))
    cmd = [sys.executable, str(driver), str(root), json.dumps(members), json.dumps(shared)]
    return cmd, ONE_THREAD


def sweep_command(
    spec: dict, where: Path, data_root: Path, *extra: str
) -> tuple[list[str], dict[str, str]]:
    """The command (and environment) of a packed local sweep of ``spec`` (its ``name`` the
    sweep's), its file written into ``where`` and its runs under ``where/multirun``."""
    import yaml

    path = where / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if k != "name"}))
    cmd = [sys.executable, "-m", "actbench.sweep", str(path), "--jobs", "1", "--no-report",
           "--runs-root", str(where / "multirun"), "logger=none", "callbacks=no_diagnostics",
           f"data.root={data_root}", "torch_threads=1", "pack=auto", *extra]  # fmt: skip
    return cmd, ONE_THREAD


def written_since(paths: Any, start_ns: int) -> bool:
    """Whether any of ``paths`` was written after ``start_ns`` (``time.time_ns()``)."""
    for path in paths:
        try:
            if path.stat().st_mtime_ns > start_ns:
                return True
        except FileNotFoundError:  # not written yet, or just renamed
            continue
    return False


def record_and_curves(run_dir: Path) -> tuple[dict[str, Any], str, bytes]:
    """What a run's results are: its record (less cost and attempt), metrics.csv, and
    per-example test correctness."""
    keep = {"status", "run_id", "steps", "metrics", "diverged_at_step", "seeds"}
    return (
        {k: v for k, v in summary(run_dir).items() if k in keep},
        (run_dir / records.METRICS).read_text(),
        (run_dir / records.TEST_CORRECT).read_bytes(),
    )
