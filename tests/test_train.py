"""End to end through the entry point: W&B offline folder and run record both hold the metrics."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_train

WANDB = Path(sys.executable).parent / "wandb"


def test_end_to_end_run_writes_wandb_offline_and_record(tmp_path: Path, data_root: Path):
    run_dir = tmp_path / "run"
    overrides = ["experiment=smoke", "logger=wandb", f"hydra.run.dir={run_dir}",
                 f"data.root={data_root}", "trainer.max_steps=40",
                 "trainer.log_every_n_steps=10"]  # fmt: skip
    result = run_train(*overrides)
    assert result.returncode == 0, result.stderr[-2000:]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["steps"] == 40
    metrics = summary["metrics"]
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "test/loss",
                "test/acc"):  # fmt: skip
        assert key in metrics, key
    assert 0.5 < metrics["test/acc"] <= 1.0
    assert metrics["val/acc_best"] >= metrics["val/acc"] - 1e-9
    repro = summary["reproducibility"]
    assert repro["versions"]["torch"] and repro["torch_threads"] >= 1
    assert repro["git"]["commit"] is None or len(repro["git"]["commit"]) == 40
    assert summary["data"]["fingerprint"] and summary["activation"]["init_gain"] > 1.5
    assert summary["peak_memory"]["rss_mib"] > 0
    assert (run_dir / "last.ckpt").exists() and (run_dir / "config.yaml").exists()

    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val_acc = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert len(val_acc) >= 2 and max(val_acc) == metrics["val/acc_best"]
    # Training curves reach the loggers on their cadence (every log_every_n_steps steps).
    cadence = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["log_every_n_steps"]
    logged = [int(r["step"]) for r in rows if r.get("train/loss")]
    assert logged == [9, 19, 29, 39] == list(range(cadence - 1, 40, cadence)), logged

    # The W&B offline run, read back with W&B's own inspector.
    wandb_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1
    inspected = subprocess.run(
        [str(WANDB), "leet", "inspect", "--summary", "--json", str(wandb_runs[0])],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    info = json.loads(inspected.stdout)
    assert info["state"] == "finished" and info["run_id"] == summary["wandb_id"]
    assert abs(float(info["summary"]["test/acc"]) - metrics["test/acc"]) < 1e-6
    config = info["config"]
    assert config["activation"] == "gelu" and config["dataset"] == "digits"
    assert config["seed"] == 0 and "cfg" in config

    # The same command again finds the completed run and does not train it twice.
    again = run_train(*overrides)
    assert again.returncode == 0 and "already completed" in again.stdout
    assert json.loads((run_dir / "summary.json").read_text()) == summary

    # rerun=true trains again and keeps the previous attempt's outputs.
    shutil.rmtree(run_dir / "wandb")
    rerun = run_train(*overrides, "rerun=true", "logger=none")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    previous = list((run_dir / "previous").glob("*/summary.json"))
    assert len(previous) == 1 and json.loads(previous[0].read_text())["status"] == "completed"


def test_compile_wraps_only_the_step_model(monkeypatch):
    """compile=true: the training and evaluation steps call the compiled model; parameters,
    checkpoints and the diagnostics' self.model stay the plain model (HVPs never compile)."""
    import torch

    from actbench.module import Classifier

    compiled_calls = []

    class Spy(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            compiled_calls.append(len(x))
            return self.inner(x)

    monkeypatch.setattr(torch, "compile", Spy)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    plain = Classifier(model, 3, {"name": "sgd", "lr": 0.1})
    compiled = Classifier(model, 3, {"name": "sgd", "lr": 0.1}, compile_model=True)
    assert list(compiled.state_dict()) == list(plain.state_dict())
    assert len(list(compiled.parameters())) == len(list(plain.parameters())) == 2
    assert compiled.model is model
    batch = (torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))
    loss = compiled.training_step(batch, 0)
    assert compiled_calls == [5] and loss.requires_grad
    plain.training_step(batch, 0)
    assert compiled_calls == [5]  # the plain module never calls the compiled one


@pytest.mark.slow
def test_compiled_run_trains_and_records(tmp_path: Path, data_root: Path):
    run_dir = tmp_path / "compiled"
    result = run_train("experiment=smoke", "compile=true", "trainer.max_steps=30",
                       f"hydra.run.dir={run_dir}", f"data.root={data_root}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((run_dir / "summary.json").read_text())
    assert record["status"] == "completed" and record["metrics"]["test/acc"] > 0.5


def test_a_default_run_prints_its_result_line_and_nothing_else(tmp_path: Path, data_root: Path):
    # As a user runs it: W&B not silenced, default warning filters, output to a pipe (no bar).
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_SILENT", "PYTHONWARNINGS")}
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "actbench.train", "trainer.max_steps=5",
         f"hydra.run.dir={run_dir}", f"data.root={data_root}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # no Python warning, no W&B or Lightning chatter
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("actbench: completed gelu mlp on mnist1d: test/acc=")
    # Every log record also goes to Hydra's file log: none at WARNING or above.
    logged = (run_dir / "train.log").read_text()
    assert not any(f"[{level}]" in logged for level in ("WARNING", "ERROR", "CRITICAL")), logged
