"""actbench's Hydra sweeper (``hydra/sweeper=actbench``): Hydra's grid, made resumable and fair.

Hydra expands the grid and any launcher (joblib, submitit) runs the jobs; this sweeper decides
*which* jobs to hand over. It skips runs whose record says completed or diverged, hands over the
rest (interrupted runs resume from their checkpoint inside the training entry point), writes the
manifest the per-job progress line reads, runs the two-stage protocol (tune on validation, then
the best value on fresh seeds), writes the report, and ends with an error naming failed runs.
The pure logic lives in :mod:`actbench.sweep`; this file is the Hydra glue.
"""

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from actbench import records
from actbench import sweep as sweeps

log = logging.getLogger(__name__)


@dataclass
class ActbenchSweeperConf:
    _target_: str = "hydra_plugins.actbench_sweeper.actbench_sweeper.ActbenchSweeper"
    name: str = "sweep"  # the sweep's name: its folder, W&B group prefix and report folder
    select: Optional[str] = None  # noqa: UP045  two-stage: the parameter tuned (None: one stage)
    metric: str = "val/acc_best"
    goal: str = "maximize"
    confirm_seeds: Optional[list[int]] = None  # noqa: UP045 (OmegaConf needs typing forms)
    report: bool = True  # write reports/<name>/ after each stage


ConfigStore.instance().store(
    group="hydra/sweeper", name="actbench", node=ActbenchSweeperConf, provider="actbench"
)


class ActbenchSweeper(Sweeper):
    def __init__(
        self,
        name: str,
        select: str | None,
        metric: str,
        goal: str,
        confirm_seeds: list[int] | None,
        report: bool,
    ) -> None:
        self.name = name
        self.protocol = (
            sweeps.Protocol(select, metric, goal, tuple(confirm_seeds))
            if select and confirm_seeds
            else None
        )
        self.report = report
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None
        self.job_index = 0
        self.failures: list[str] = []

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- where a job's record lives ---------------------------------------------------------

    def _run_dirs(self, jobs: list[list[str]]) -> list[Path]:
        """Each job's output folder, computed the way Hydra will: the sweep subdir pattern
        evaluated with the job's override_dirname (no config composition per job)."""
        from hydra._internal.config_loader_impl import get_overrides_dirname

        assert self.config is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        cfg = copy.deepcopy(self.config)
        naming = cfg.hydra.job.config.override_dirname
        saved = HydraConfig.instance().cfg
        dirs = []
        try:
            for job in jobs:
                app = [o for o in parser.parse_overrides(job) if not o.is_hydra_override()]
                dirname = get_overrides_dirname(
                    overrides=app,
                    exclude_keys=list(naming.exclude_keys),
                    item_sep=naming.item_sep,
                    kv_sep=naming.kv_sep,
                )
                with read_write(cfg.hydra), open_dict(cfg.hydra):
                    cfg.hydra.job.override_dirname = dirname
                HydraConfig.instance().set_config(cfg)
                dirs.append(Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir))
        finally:
            if saved is not None:
                HydraConfig.instance().cfg = saved
        return dirs

    # -- one stage --------------------------------------------------------------------------

    def _run_stage(self, stage: str | None, jobs: list[list[str]]) -> list[Path]:
        assert self.config is not None and self.launcher is not None
        if stage is not None:
            jobs = [[*job, f"sweep.stage={stage}"] for job in jobs]
        dirs = self._run_dirs(jobs)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        statuses = [records.status(d) for d in dirs]
        todo = [
            job
            for job, s in zip(jobs, statuses, strict=True)
            if s not in records.FINISHED or "rerun=true" in job  # rerun=true: train them again
        ]
        manifest = {
            "name": self.name,
            "stage": stage,
            "sweep_dir": str(sweep_dir.resolve()),
            "runs": [str(d.relative_to(sweep_dir)) for d in dirs],
            "started": time.time(),
            # Runs not handed to the launcher: the time-left estimate counts the others only.
            "finished_before": len(jobs) - len(todo),
        }
        records.atomic_write_json(sweep_dir / sweeps.MANIFEST, manifest, indent=1)
        label = f"{self.name} [{stage}]" if stage else self.name
        print(
            f"sweep {label}: {len(jobs)} runs, {len(jobs) - len(todo)} already finished, "
            f"{len(todo)} to run",
            flush=True,
        )
        if todo:
            results = self.launcher.launch(todo, initial_job_idx=self.job_index)
            self.job_index += len(todo)
            self._note_failures(results, sweeps.varying([tuple(job) for job in jobs]))
        return dirs

    def _note_failures(self, results: Any, swept: set[str]) -> None:
        """Name each failed run by its swept values (what a reader recognises) and folder."""
        from actbench.config import one_line_error

        for ret in results:
            if isinstance(ret, JobReturn) and ret.status == JobStatus.FAILED:
                err = ret._return_value  # the exception; reading .return_value would raise it
                name = " ".join(o for o in ret.overrides if o in swept) or "the run"
                where = Path(ret.hydra_cfg.hydra.runtime.output_dir).name if ret.hydra_cfg else "?"
                self.failures.append(f"{name} [{where}]: {one_line_error(err)[:160]}")

    # -- the sweep --------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> Any:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        assert self.config is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.failures = []

        if self.protocol is None:
            self._run_stage(None, jobs)
        else:
            tune_dirs = self._run_stage("tune", jobs)
            summaries = [records.read_summary(d) for d in tune_dirs]
            chosen = sweeps.select_best(jobs, summaries, self.protocol)
            proto = self.protocol
            records.write_selection(sweep_dir, proto.select, proto.metric, proto.goal, chosen)
            varying = sweeps.varying(list(chosen))
            for group, pick in chosen.items():
                shown = " ".join(o for o in group if o in varying) or "all runs"
                print(f"sweep {self.name}: {shown} -> {self.protocol.select}={pick.value} "
                      f"(mean {self.protocol.metric} {pick.score:.4f})")  # fmt: skip
            self._write_report(final=False)  # partial: the tuning stage alone
            self._run_stage("confirm", sweeps.confirm_jobs(chosen, self.protocol))
        self._write_report(final=True)
        if self.failures:
            raise sweeps.SweepFailed(
                f"{len(self.failures)} run(s) of sweep {self.name} failed, in "
                f"{self.config.hydra.sweep.dir}: "
                + "; ".join(self.failures)
                + " (rerun the same command to retry them; finished runs are kept)"
            )
        return []

    def _write_report(self, final: bool) -> None:
        if not self.report:
            return
        assert self.config is not None
        try:
            from actbench.report import build_report

            out = build_report(
                Path(self.config.hydra.sweep.dir),
                Path("reports") / self.name,
                sweep_name=self.name,
                # The finished report also goes to one W&B run of the sweep, as the runs did.
                log_wandb=final and bool(OmegaConf.select(self.config, "logger.wandb")),
            )
            print(f"sweep {self.name}: report -> {out}", flush=True)
        except Exception as err:  # the runs are the product; a report problem must not hide them
            log.warning("sweep %s: report not written: %s", self.name, err)
