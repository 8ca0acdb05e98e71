"""Run lifecycle: divergence is a result; a killed run resumes to the same numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from actbench.lifecycle import read_metrics, write_metrics
from conftest import REPO, run_train


def test_divergence_is_a_result_with_its_step(tmp_path: Path, data_root: Path):
    run_dir = tmp_path / "div"
    overrides = ["experiment=smoke", "optimizer=sgd", "optimizer.lr=50", "trainer.max_steps=200",
                 f"hydra.run.dir={run_dir}", f"data.root={data_root}"]  # fmt: skip
    result = run_train(*overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert 0 <= summary["diverged_at_step"] < summary["steps"] <= 200
    assert "loss non-finite at step" in result.stdout
    again = run_train(*overrides)
    assert again.returncode == 0 and "already diverged" in again.stdout


def test_metrics_rows_are_kept_up_to_the_checkpoint(tmp_path: Path):
    path = tmp_path / "metrics.csv"
    path.write_text("a,step\n1,0\n2,1\n3,2\n")
    header, rows = read_metrics(path, 2)
    assert header == ["a", "step"] and rows == [["1", "0"], ["2", "1"]]
    write_metrics(path, header, rows)
    assert path.read_text().splitlines() == ["a,step", "1,0", "2,1"]


def _command(run_dir: Path, data_root: Path) -> list[str]:
    return [sys.executable, "-m", "actbench.train", "experiment=smoke", "logger=wandb",
            "trainer.max_steps=400", "torch_threads=1", f"hydra.run.dir={run_dir}",
            f"data.root={data_root}", "callbacks.curvature.probe_size=256"]  # fmt: skip


def test_sigkill_then_same_command_resumes_to_identical_results(tmp_path: Path, data_root: Path):
    env = {**os.environ}
    env.pop("HYDRA_FULL_ERROR", None)
    straight = tmp_path / "straight"
    done = subprocess.run(_command(straight, data_root), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(killed, data_root), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while not (killed / "last.ckpt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere inside a later epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = json.loads((killed / "summary.json").read_text())
    assert interrupted["status"] == "running", "the run finished before it could be killed"

    resumed = subprocess.run(_command(killed, data_root), cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((straight / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert b["status"] == "completed" and b["attempt"] == 2 and b["steps"] == a["steps"] == 400
    assert b["metrics"] == a["metrics"]  # every metric, diagnostics included, bit for bit
    assert (killed / "metrics.csv").read_text() == (straight / "metrics.csv").read_text()
    # The resumed W&B offline run is the same run (same id), not a second one.
    ids = {p.name.rsplit("-", 2)[-2] + "-" + p.name.rsplit("-", 1)[-1]
           for p in (killed / "wandb").glob("offline-run-*")}  # fmt: skip
    assert ids == {b["wandb_id"]}
