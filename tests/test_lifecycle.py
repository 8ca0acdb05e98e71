"""Run lifecycle: divergence is a result; a killed run resumes to the same numbers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actbench.records import read_metrics_rows, write_metrics_rows
from conftest import REPO, run_train


@pytest.mark.parametrize(
    ("min_interval_s", "val_every", "saves"), [(0.0, 1, 4), (3600.0, 1, 1), (3600.0, 3, 1)]
)
def test_checkpoint_time_gate_saves_rarely_but_always_at_the_end(
    tmp_path: Path, data_root: Path, min_interval_s: float, val_every: int, saves: int
):
    import pytorch_lightning as pl
    import torch

    from actbench.data import DataModule
    from actbench.lifecycle import Checkpoint
    from actbench.module import Classifier

    # digits: 1293 training examples in batches of 128 -> 11 steps an epoch; 40 steps end
    # inside the 4th epoch.
    dm = DataModule("digits", root=str(data_root), batch_size=128, seed=0)
    dm.setup("fit")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    module = Classifier(model, 10, {"name": "sgd", "lr": 0.1}, max_steps=40)
    checkpoint = Checkpoint(dirpath=tmp_path, filename="last", min_interval_s=min_interval_s)
    saved_at: list[int] = []
    original = checkpoint._save_checkpoint

    def note(trainer: pl.Trainer, filepath: str) -> None:
        saved_at.append(trainer.global_step)
        original(trainer, filepath)

    checkpoint._save_checkpoint = note  # type: ignore[method-assign]
    # Validation every 3rd epoch would move Lightning's own saves to validation ends.
    trainer = pl.Trainer(max_steps=40, accelerator="cpu", logger=False, callbacks=[checkpoint],
                         check_val_every_n_epoch=val_every, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    assert len(saved_at) == saves and saved_at[-1] == 40, saved_at
    assert (tmp_path / "last.ckpt").exists()
    with pytest.raises(ValueError, match="min_interval_s=-1"):
        Checkpoint(dirpath=tmp_path, min_interval_s=-1)


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
    header, rows = read_metrics_rows(path, 2)
    assert header == ["a", "step"] and rows == [["1", "0"], ["2", "1"]]
    write_metrics_rows(path, header, rows)
    assert path.read_text().splitlines() == ["a,step", "1,0", "2,1"]


# Runs the real entry point with a kill (or a crash) planted at one moment; the moment comes from
# ACTBENCH_TEST_KILL ("<where>:<n>"), so the same command can be planted differently each time.
PLANTED = """
import os, signal, sys

where, _, n = os.environ.get("ACTBENCH_TEST_KILL", "").partition(":")
calls = [0]


def due():
    calls[0] += 1
    return calls[0] == int(n or 1)


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if where == "checkpoint":  # while the n-th checkpoint is built, metrics.csv already flushed
    from actbench import lifecycle

    save = lifecycle.ResumableState.on_save_checkpoint

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        save(self, trainer, pl_module, checkpoint)
        if due():
            die()

    lifecycle.ResumableState.on_save_checkpoint = on_save_checkpoint
elif where == "checkpoint_write":  # half of the n-th last.ckpt's bytes on disk
    from fsspec.implementations.local import LocalFileOpener

    def write(self, data):
        if str(self.path).endswith("last.ckpt") and due():
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            os.fsync(self.f.fileno())
            die()
        return self.f.write(data)

    LocalFileOpener.write = write
elif where == "record":  # half of the final summary.json written
    import json

    dump = json.dump

    def partial_dump(obj, fp, **kwargs):
        if isinstance(obj, dict) and obj.get("status") == "completed":
            text = json.dumps(obj, **kwargs)
            fp.write(text[: len(text) // 2])
            fp.flush()
            os.fsync(fp.fileno())
            die()
        return dump(obj, fp, **kwargs)

    json.dump = partial_dump
elif where == "crash":  # an exception in the n-th training step
    from actbench.module import Classifier

    step = Classifier.training_step

    def training_step(self, batch, batch_idx):
        if due():
            raise RuntimeError("planted crash")
        return step(self, batch, batch_idx)

    Classifier.training_step = training_step

from actbench.train import main

main()
"""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def _command(script: Path, run_dir: Path, data_root: Path, *extra: str) -> list[str]:
    # 154 steps: 14 epochs of 11 steps on digits, a checkpoint at each epoch end.
    return [sys.executable, str(script), "experiment=smoke", "logger=wandb",
            "trainer.max_steps=154", "torch_threads=1", f"hydra.run.dir={run_dir}",
            f"data.root={data_root}", "callbacks.curvature.probe_size=128",
            "callbacks.checkpoint.min_interval_s=0", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = tmp_path_factory.mktemp("planted") / "planted_train.py"
    script.write_text(PLANTED)
    return script


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, data_root: Path, planted: Path) -> Path:
    """The uninterrupted run every killed one is compared with."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    done = subprocess.run(_command(planted, run_dir, data_root), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir


def _killed_at(where: str, command: list[str], run_dir: Path, delay: float = 0.0) -> None:
    """Run ``command`` until it dies at ``where`` (SIGKILL); check what a kill leaves behind."""
    if where == "delay":  # a random moment of training, killed from outside
        proc = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.time() + 300
        while not (run_dir / "summary.json").exists() and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        code = proc.wait()
    else:
        code = subprocess.run(command, cwd=REPO, env=_env(ACTBENCH_TEST_KILL=where),
                              capture_output=True, timeout=600).returncode  # fmt: skip
    assert code == -signal.SIGKILL, f"{where}: the run ended ({code}) before it was killed"
    # A record is always whole: the last complete write, never a fragment.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "running"
    if where.startswith("record"):  # the interrupted write is the temporary file's, not this
        assert list(run_dir.glob(".summary.json.*")), "the kill missed the record write"


def _kill_plan(seed: int, epoch_s: float) -> list[tuple[str, float]]:
    """Three kills at seeded moments, then the record write: one chain of attempts."""
    rng = random.Random(seed)
    # Early enough that every kill lands before the run's 14 checkpoints are all written.
    plan = [("delay", rng.uniform(0.0, 4 * epoch_s)),
            (f"checkpoint:{rng.randint(1, 3)}", 0.0),
            (f"checkpoint_write:{rng.randint(1, 3)}", 0.0)]  # fmt: skip
    rng.shuffle(plan)
    return [*plan, ("record", 0.0)]


# The second random plan only under make test-slow: each takes about a minute.
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_killed_at_random_moments_the_same_command_resumes_to_identical_results(
    seed: int, tmp_path: Path, data_root: Path, planted: Path, straight: Path
):
    a = json.loads((straight / "summary.json").read_text())
    epoch_s = a["wall_time_s"] / 14
    run_dir = tmp_path / "killed"
    command = _command(planted, run_dir, data_root)
    plan = _kill_plan(seed, epoch_s)
    for where, delay in plan:
        _killed_at(where, command, run_dir, delay)

    resumed = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                             timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    b = json.loads((run_dir / "summary.json").read_text())
    assert b["status"] == "completed" and b["steps"] == a["steps"] == 154, plan
    assert b["attempt"] >= 2  # at least one kill came after the first record was written
    assert b["metrics"] == a["metrics"], plan  # every metric, diagnostics included, bit for bit
    assert (run_dir / "metrics.csv").read_text() == (straight / "metrics.csv").read_text(), plan
    assert not list(run_dir.glob(".summary.json.*")), "stale partial records are cleared"
    # Every attempt logged into one W&B run id (resumed, not a new run each time).
    ids = {p.name.rsplit("-", 2)[-2] + "-" + p.name.rsplit("-", 1)[-1]
           for p in (run_dir / "wandb").glob("offline-run-*")}  # fmt: skip
    assert ids == {b["wandb_id"]}


def test_a_crash_is_a_failed_record_and_a_failed_wandb_run(tmp_path: Path, data_root: Path,
                                                          planted: Path):  # fmt: skip
    run_dir = tmp_path / "crash"
    command = [sys.executable, str(planted), "experiment=smoke", "logger=wandb",
               "callbacks=no_diagnostics", "trainer.max_steps=40", "torch_threads=1",
               f"hydra.run.dir={run_dir}", f"data.root={data_root}"]  # fmt: skip
    crashed = subprocess.run(command, cwd=REPO, env=_env(ACTBENCH_TEST_KILL="crash:15"),
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert crashed.returncode == 1 and "planted crash" in crashed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "planted crash" in summary["error"]
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    info = _inspect(offline)
    assert info["state"] == "failed" and info["exit_code"] == 1
    assert info["summary"]["status"] == "failed"


def _inspect(offline_run: Path) -> dict:
    """An offline W&B run read back with W&B's own inspector."""
    inspected = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary", "--json",
         str(offline_run)], capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(inspected.stdout)


def test_online_start_that_fails_falls_back_offline_with_one_warning(tmp_path: Path,
                                                                    data_root: Path):  # fmt: skip
    run_dir = tmp_path / "online"
    # An API key (so no login prompt) and a host that refuses connections: W&B cannot start.
    env = {"WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    result = run_train("experiment=smoke", "logger=wandb", "logger.mode=online",
                       "logger.init_timeout_s=3", "callbacks=no_diagnostics",
                       "trainer.max_steps=20", "torch_threads=1", f"hydra.run.dir={run_dir}",
                       f"data.root={data_root}", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    output = (result.stdout + result.stderr).splitlines()
    warnings = [line for line in output if "W&B online start failed" in line]
    assert len(warnings) == 1, output
    assert warnings[0].rstrip().endswith("logging offline instead")  # the whole warning, one line
    assert not [line for line in output if "Traceback" in line or "wandb: WARNING" in line]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    runs = [p for p in (run_dir / "wandb").iterdir() if p.is_dir() and not p.is_symlink()]
    assert [p.name.startswith("offline-run-") for p in runs] == [True]
    info = _inspect(runs[0])
    assert info["state"] == "finished" and info["run_id"] == summary["wandb_id"]
