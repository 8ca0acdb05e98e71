"""Sweep files: W&B format -> Hydra multirun grid; bad files fail before anything runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from actbench import sweep
from conftest import REPO


def test_grid_overrides_from_wandb_format():
    spec = yaml.safe_load((REPO / "sweeps" / "default.yaml").read_text())
    overrides = sweep.grid_overrides(spec)
    assert "seed=0,1,2" in overrides and "trainer.max_steps=2000" in overrides
    assert any(o.startswith("activation=identity,tanh,relu") for o in overrides)
    assert "${args_no_hyphens}" in spec["command"]  # the same file drives `wandb sweep`


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"method": "bayes", "parameters": {"seed": {"values": [0]}}}, "cannot run locally"),
        ({"parameters": {"optimizer.lr": {"min": 1e-4, "max": 1e-2}}}, "is not a grid"),
    ],
)
def test_unrunnable_sweeps_are_rejected(spec, fragment):
    with pytest.raises(sweep.SweepError, match=fragment):
        sweep.grid_overrides(spec)


def test_parameter_the_configs_lack_fails_before_running(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"method": "grid", "parameters": {"optimizer.lrr": {"value": 1}}})
    )
    assert sweep.main([str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("actbench-sweep: error: optimizer.lrr: unknown key") and "\n" not in err


def test_local_sweep_runs_every_point_once_and_skips_completed(tmp_path: Path, data_root: Path):
    spec = {
        "method": "grid",
        "parameters": {
            "activation": {"values": ["relu", "gelu"]},
            "data": {"value": "digits"},
            "trainer.max_steps": {"value": 30},
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the sweep folder multirun/tiny is created here
    try:
        args = [str(path), "--jobs", "2", "logger=none", f"data.root={data_root}"]
        assert sweep.main(args) == 0
        records = sorted((tmp_path / "multirun" / "tiny").glob("*/summary.json"))
        assert len(records) == 2
        summaries = [json.loads(p.read_text()) for p in records]
        assert {s["activation"]["name"] for s in summaries} == {"relu", "gelu"}
        assert all(s["status"] == "completed" and s["steps"] == 30 for s in summaries)
        stamps = [p.stat().st_mtime_ns for p in records]
        assert sweep.main(args) == 0  # again: both found completed, nothing retrained
        assert [p.stat().st_mtime_ns for p in records] == stamps
    finally:
        os.chdir(cwd)
