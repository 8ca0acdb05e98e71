"""The ranks of a one-node data-parallel run: rank 0 starts the others as the same job in the
same folder (:class:`RankProcesses`); rank 0 alone writes the record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from actbench.divergence import Diverged

# Set only in the environment of the processes a rank 0 starts; holds what they take from it.
RANK_ENV = "ACTBENCH_DDP_RANK_OF"
_DIST_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_by_rank_zero() -> dict[str, Any] | None:
    """In a rank > 0 started by :class:`RankProcesses`: rank 0's run folder and checkpoint."""
    raw = os.environ.get(RANK_ENV)
    if not raw or os.environ.get("LOCAL_RANK", "0") == "0":
        return None
    return json.loads(raw)


def extra_ranks(trainer: pl.Trainer) -> int:
    """How many processes Lightning would start by re-running the command (0: none)."""
    # Lightning's subprocess launcher is the one that re-runs sys.argv; the class is private,
    # but it is the only thing that says which kind of launch is coming.
    from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher

    strategy = trainer.strategy
    if not isinstance(getattr(strategy, "launcher", None), _SubprocessScriptLauncher):
        return 0
    if strategy.cluster_environment.creates_processes_externally or trainer.num_nodes > 1:
        return 0  # torchrun, SLURM tasks, or other nodes: their launcher starts the ranks
    return max(0, strategy.num_processes - 1)


def _hydra_quote(value: str) -> str:
    """A Hydra override value that stays one string (run folders hold '=' and ',')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class RankProcesses:
    """Ranks 1..n-1 of a one-node DDP run, started by rank 0 as fresh ``actbench.train`` runs.

    Lightning's own launcher re-runs ``sys.argv``, which under Hydra goes wrong in the cases a
    benchmark meets: in a multirun the command is the whole sweep, from a joblib or submitit
    worker it is the worker's module, and the folder it passes is ``hydra.run.dir`` rather than
    the job's. Here every rank gets the job's own overrides and rank 0's run folder and
    checkpoint; ``LOCAL_RANK`` in rank 0's environment then tells Lightning the processes are
    started externally (its documented torchrun-style mode), so it starts none itself. Each
    rank's log and stderr (tracebacks included) go to ``<run_dir>/train_rank<r>.log``.

    A rank that dies would leave the others blocked in a collective for the process group's
    timeout (30 min); a watcher reports it through ``on_failure`` and kills every rank instead,
    as Lightning's own launcher does. The processes are waited for (or killed) on exit, and
    ``failure`` holds the first rank that failed and its exit code.
    """

    def __init__(
        self,
        count: int,
        overrides: list[str],
        run_dir: Path,
        ckpt_path: str | None,
        cwd: str | None = None,
        on_failure: Callable[[int, int], None] | None = None,
        wait_s: float = 120.0,
    ) -> None:
        self.count, self.overrides, self.run_dir = count, list(overrides), Path(run_dir)
        self.ckpt_path, self.cwd, self.on_failure, self.wait_s = ckpt_path, cwd, on_failure, wait_s
        self.procs: list[subprocess.Popen] = []
        self.failure: tuple[int, int] | None = None
        self._logs: list[Any] = []
        self._saved: dict[str, str | None] = {}
        self._watching = False

    def log_path(self, rank: int) -> Path:
        return self.run_dir / f"train_rank{rank}.log"

    def command(self, rank: int) -> list[str]:
        return [
            sys.executable, "-m", "actbench.train", *self.overrides,
            f"hydra.run.dir={_hydra_quote(str(self.run_dir))}",
            "hydra.output_subdir=null",  # rank 0 alone writes .hydra/
            f"hydra.job.name=train_rank{rank}",  # Hydra's log file: train_rank<r>.log
        ]  # fmt: skip

    def __enter__(self) -> RankProcesses:
        from lightning_fabric.plugins.environments.lightning import find_free_network_port

        self._saved = {k: os.environ.get(k) for k in _DIST_ENV}
        os.environ.update(
            LOCAL_RANK="0",
            NODE_RANK="0",
            WORLD_SIZE=str(self.count + 1),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(find_free_network_port()),
        )
        info = json.dumps({"run_dir": str(self.run_dir), "ckpt_path": self.ckpt_path})
        for rank in range(1, self.count + 1):
            env = {**os.environ, "LOCAL_RANK": str(rank), RANK_ENV: info}
            log = open(self.log_path(rank), "ab")
            self._logs.append(log)
            # stdout only repeats what Hydra's file handler writes to the same log.
            self.procs.append(
                subprocess.Popen(
                    self.command(rank), env=env, cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=log
                )
            )
        self._watching = True
        threading.Thread(target=self._watch, name="actbench-rank-watcher", daemon=True).start()
        return self

    def _first_failure(self) -> tuple[int, int] | None:
        for rank, proc in enumerate(self.procs, start=1):
            code = proc.poll()
            if code:
                return rank, code
        return None

    def _watch(self) -> None:
        while self._watching:
            failure = self._first_failure()
            if failure and self._watching:
                self.failure = failure
                if self.on_failure is not None:
                    self.on_failure(*failure)
                self._kill()
                os.kill(os.getpid(), signal.SIGKILL)  # blocked in a collective: no way out
            time.sleep(0.5)

    def _kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # SIGTERM would wait for Python code that a collective never reaches
        for proc in self.procs:
            proc.wait()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._watching = False
        try:
            if exc_type is None or issubclass(exc_type, Diverged):
                # Every rank finished (or stopped at the same agreed step): let them exit.
                deadline = time.time() + self.wait_s
            else:
                # Rank 0 failed. When another rank died first (rank 0 then sees a closed
                # connection), it has exited or is about to: wait briefly to name it.
                deadline = time.time() + 2.0
            while time.time() < deadline and any(p.poll() is None for p in self.procs):
                if exc_type is not None and self._first_failure():
                    break
                time.sleep(0.05)
            self.failure = self.failure or self._first_failure()
            self._kill()
        finally:
            import torch.distributed as dist

            for log in self._logs:
                log.close()
            # A joblib or submitit worker runs the next job in this process: no stale group.
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
            for key, value in self._saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
