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

from actbench import records, tuning
from actbench import sweep as sweeps
from actbench.run_lock import RunLock

log = logging.getLogger(__name__)


@dataclass
class ActbenchSweeperConf:
    _target_: str = "hydra_plugins.actbench_sweeper.actbench_sweeper.ActbenchSweeper"
    name: str = "sweep"  # the sweep's name: its folder, W&B group prefix and report folder
    select: Optional[str] = None  # noqa: UP045  two-stage: the parameter tuned (None: one stage)
    metric: str = records.SELECT_METRIC
    goal: str = "maximize"
    extend: int = 0  # values the tuning stage may add outward per side of the grid
    confirm_seeds: Optional[list[int]] = None  # noqa: UP045 (OmegaConf needs typing forms)
    report: bool = True  # write reports/<name>/ after each stage
    # The sweep file's actbench.reduce, as JSON (actbench.tuning.Reduction): reduced protocols
    # for parts of the grid.
    reduce: str = "[]"


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
        extend: int = 0,
        reduce: str = "[]",
    ) -> None:
        self.name = name
        self.reductions = tuning.reductions_from_json(reduce)
        self.protocol = (
            tuning.Protocol(
                select, metric, goal, tuple(confirm_seeds), extend, reductions=self.reductions
            )
            if select and confirm_seeds
            else None
        )
        self.report = report
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None
        self.job_index = 0
        self.failures: list[str] = []
        self.stage_dirs: dict[str, list[Path]] = {}
        self.tune_accelerator: str | None = None  # the confirmation stage runs on this kind

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        # The local launcher lists every job's overrides at INFO (a pack's whole member list
        # among them) before each stage; the sweeper's own stage and progress lines say what
        # runs, so only its warnings and errors are shown.
        logging.getLogger("hydra_plugins.hydra_joblib_launcher").setLevel(logging.WARNING)

    # -- where a job's record lives ---------------------------------------------------------

    def _run_dirs(self, jobs: list[list[str]]) -> list[Path]:
        """Each job's output folder, exactly as the launcher will make it: the job's config
        composed as Hydra's launchers compose it (:meth:`_job_config`) and its
        ``hydra.sweep.subdir`` resolved, which names the folder by the resolved configuration
        (:func:`actbench.config.run_dirname`). Also notes, for the skip decision, each
        folder's run_id and its name under the earlier naming (``self.identities``)."""
        from actbench.config import legacy_run_dirname, run_id
        from actbench.packing.keys import pack_key

        saved = HydraConfig.instance().cfg
        dirs: list[Path] = []
        self.identities: dict[Path, tuple[str, str]] = {}
        self.pack_keys: dict[Path, str] = {}  # which runs may share a pack, and the setting
        # Composed configs are kept for later stages (their jobs share the group choices).
        cache: dict[Any, DictConfig] = self.__dict__.setdefault("_job_configs", {})
        try:
            for job in jobs:
                cfg = self._job_config(job, cache)
                # What ${hydra:...} in the patterns reads; set_config would copy the node.
                HydraConfig.instance().cfg = cfg
                folder = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
                legacy = legacy_run_dirname(cfg.hydra.job.override_dirname)
                self.identities[folder] = (run_id(cfg), legacy)
                self.pack_keys[folder] = f"{cfg.get('pack', 'off')}:{pack_key(cfg)}"
                dirs.append(folder)
        finally:
            if saved is not None:
                HydraConfig.instance().cfg = saved
        return dirs

    def _job_config(self, job: list[str], cache: dict[Any, DictConfig]) -> DictConfig:
        """The job's config as ``config_loader.load_sweep_config`` (what launchers call) makes
        it, composed once per set of group choices: Hydra composes from the config-group
        overrides and then assigns the value overrides, in order, so a composed base with the
        job's values assigned is the same config. Jobs that assign the same keys (a grid) share
        one copy of the base, each assigning its values over the last job's. On the 2-core
        development VM, composing each job took ~0.27 s (73 s for the default sweep's 270
        jobs); this took 7 s (18 compositions, then ~8 ms a job)."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from hydra.core.override_parser.types import OverrideType

        assert self.config is not None and self.hydra_context is not None
        loader = self.hydra_context.config_loader
        parsed = OverridesParser.create().parse_overrides(list(job))
        repo = getattr(loader, "repository", None)
        if repo is None:  # another loader: compose the whole job
            return loader.load_sweep_config(self.config, list(job))
        values = [
            o
            for o in parsed
            if not o.is_hydra_override()
            and (isinstance(o.value(), dict) or not repo.group_exists(o.key_or_group))
        ]
        chosen = [o for o in parsed if o not in values]
        if len({o.key_or_group for o in chosen}) == len(chosen) and all(
            o.type == OverrideType.CHANGE for o in chosen
        ):  # one choice per group: their order means nothing to Hydra (later stages reorder)
            chosen.sort(key=lambda o: o.key_or_group)
        groups = tuple(o.input_line for o in chosen)
        if groups not in cache:
            cache[groups] = loader.load_sweep_config(self.config, list(groups))
        # Plain assignments over the same keys leave no trace of the values before them
        # (adds, deletes and dict merges do: those get a fresh copy).
        plain = all(
            o.type == OverrideType.CHANGE and not isinstance(o.value(), dict) for o in values
        )
        shared = (groups, tuple(o.key_or_group for o in values)) if plain else None
        if shared is None or shared not in cache:
            cfg = copy.deepcopy(cache[groups])
            OmegaConf.copy_cache(from_config=self.config, to_config=cfg)
            if shared is not None:
                cache[shared] = cfg
        cfg = cache[shared] if shared is not None else cfg
        with read_write(cfg):
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        app = [o for o in parsed if not o.is_hydra_override()]
        naming = cfg.hydra.job.config.override_dirname
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in app]
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=app,
                kv_sep=naming.kv_sep,
                item_sep=naming.item_sep,
                exclude_keys=naming.exclude_keys,
            )
        return cfg

    def _finished(self, jobs: list[list[str]], dirs: list[Path]) -> list[bool]:
        """The skip decision: a job is done when its folder holds a finished record of its own
        configuration (:func:`actbench.records.is_result_of`, the rule the training entry
        point applies too) and it does not ask ``rerun=true``. A folder of the earlier naming
        that holds the job's record is moved to the job's folder first, not trained again."""
        done, moved = [], 0
        for job, folder in zip(jobs, dirs, strict=True):
            rid, legacy = self.identities[folder]
            summary = records.read_summary(folder)
            if summary is None and _adopt_legacy(folder, folder.parent / legacy, rid):
                moved += 1
                summary = records.read_summary(folder)
            done.append(records.is_result_of(summary, rid) and "rerun=true" not in job)
        if moved:
            print(f"sweep {self.name}: {moved} run folder(s) named the earlier way (from the "
                  "override string) moved to their configuration's name", flush=True)  # fmt: skip
        return done

    @staticmethod
    def _other_code_note(dirs: list[Path], done: list[bool]) -> str:
        """`` (3 finished records from other code versions: abc1234, ...)``, or ''."""
        # The summaries alone (no config.yaml to parse): the commit is in the summary.
        finished = [
            records.RunRecord(d, records.read_summary(d) or {}, {})
            for d, ok in zip(dirs, done, strict=True)
            if ok
        ]
        other = records.from_other_code(finished)
        if not other:
            return ""
        names = records.short_commits(other)
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        return f" ({len(other)} finished records from other code versions: {shown})"

    # -- one stage --------------------------------------------------------------------------

    def _run_stage(
        self, stage: str | None, jobs: list[list[str]], to_come: list[str] | None = None
    ) -> list[Path]:
        """Run the jobs not yet finished; ``to_come``: the kinds of the next stage's runs, for
        the time-left estimate."""
        assert self.config is not None and self.launcher is not None
        if stage is not None:
            jobs = [[*job, f"sweep.stage={stage}"] for job in jobs]
        dirs = self._run_dirs(jobs)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        self.stage_dirs[stage or "all"] = dirs
        records.write_grid(
            sweep_dir, self.stage_dirs, reduced=[r.describe() for r in self.reductions]
        )
        done = self._finished(jobs, dirs)
        todo = [job for job, finished in zip(jobs, done, strict=True) if not finished]
        manifest = {
            "name": self.name,
            "stage": stage,
            "sweep_dir": str(sweep_dir.resolve()),
            "runs": [str(d.relative_to(sweep_dir)) for d in dirs],
            "kinds": [sweeps.run_kind(job) for job in jobs],
            "started": time.time(),
            "workers": int(OmegaConf.select(self.config, "hydra.launcher.n_jobs") or 1),
            "to_come": list(to_come or []),
            "next_stage": "confirm" if to_come else None,
        }
        records.atomic_write_json(sweep_dir / sweeps.MANIFEST, manifest, indent=1)
        label = f"{self.name} [{stage}]" if stage else self.name
        print(
            f"sweep {label}: {len(jobs)} runs, {len(jobs) - len(todo)} already finished, "
            f"{len(todo)} to run{self._other_code_note(dirs, done)}",
            flush=True,
        )
        if todo:
            todo_dirs = [d for d, finished in zip(dirs, done, strict=True) if not finished]
            launched = self._packed(todo, [self.pack_keys[d] for d in todo_dirs], manifest)
            results = self.launcher.launch(launched, initial_job_idx=self.job_index)
            self.job_index += len(launched)
            self._note_failures(results, tuning.varying([tuple(job) for job in jobs]))
        return dirs

    def _packed(self, todo: list[list[str]], keys: list[str], manifest: dict) -> list[list[str]]:
        """The jobs to launch: with ``pack`` on, one job per pack of runs that may share one
        (:func:`actbench.packing.keys.form_packs`), else one per run."""
        from actbench.packing.keys import form_packs, pack_job

        packs: list[list[int]] = []
        for setting in dict.fromkeys(k.split(":", 1)[0] for k in keys):
            chosen = [i for i, k in enumerate(keys) if k.split(":", 1)[0] == setting]
            grouped = form_packs([keys[i] for i in chosen], setting, manifest["workers"])
            packs += [[chosen[j] for j in pack] for pack in grouped]
        if len(packs) < len(todo):
            sizes = sorted((len(p) for p in packs), reverse=True)
            print(f"sweep {manifest['name']}: {len(todo)} runs in {len(packs)} packs "
                  f"(sizes {', '.join(map(str, sizes[:8]))}{', ...' * (len(sizes) > 8)})",
                  flush=True)  # fmt: skip
        return [pack_job([todo[i] for i in pack]) for pack in packs]

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
        jobs = tuning.reduce_jobs(jobs, self.reductions)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.failures = []
        self.stage_dirs = {}  # this invocation's grid replaces an earlier one
        self._print_projection(jobs)

        if self.protocol is None:
            self._run_stage(None, jobs)
        else:
            chosen = self._tune(jobs, sweep_dir)
            self._write_report(final=False)  # partial: the tuning stage alone
            confirm = tuning.confirm_jobs(chosen, self.protocol)
            self._run_stage("confirm", tuning.pin_accelerator(confirm, self.tune_accelerator))
        self._write_report(final=True)
        if self.failures:
            raise sweeps.SweepFailed(
                f"{len(self.failures)} run(s) of sweep {self.name} failed, in "
                f"{self.config.hydra.sweep.dir}: "
                + "; ".join(self.failures)
                + " (rerun the same command to retry them; finished runs are kept)"
            )
        return []

    def _print_projection(self, jobs: list[list[str]]) -> None:
        """The sweep's projected time before its first run (:mod:`actbench.projection`): the
        runs not yet finished and, in two stages, the confirmation runs to follow (each at
        the cost of its group's tuning runs)."""
        from actbench.projection import project

        assert self.config is not None
        done = self._finished(jobs, self._run_dirs(jobs))
        todo = [job for job, finished in zip(jobs, done, strict=True) if not finished]
        if not todo:
            return
        confirm: list[list[str]] = []
        if self.protocol is not None:
            first: dict[tuple[str, ...], list[str]] = {}
            for job in jobs:
                first.setdefault(records.selection_group(job, self.protocol.select), job)
            confirm = [job for g, job in first.items() for _ in self.protocol.seeds_for(g)]
        cache: dict[Any, DictConfig] = self.__dict__.setdefault("_job_configs", {})
        saved = HydraConfig.instance().cfg
        started = time.perf_counter()
        try:

            def configs():
                for job in todo + confirm:
                    cfg = self._job_config(job, cache)
                    HydraConfig.instance().cfg = cfg  # what ${hydra:...} in the config reads
                    yield job, cfg, sweeps.run_kind(job)

            threads = int(OmegaConf.select(self.config, "torch_threads") or 1)
            projection = project(configs(), threads)
        finally:
            if saved is not None:
                HydraConfig.instance().cfg = saved
        workers = int(OmegaConf.select(self.config, "hydra.launcher.n_jobs") or 1)
        kinds = "; ".join(f"{k} ~{v:.0f} s" for k, v in projection.per_kind.items())
        stages = f"{len(todo)} runs" + (f" + {len(confirm)} confirmation runs" if confirm else "")
        if projection.untimed:
            kinds += f"; not timed, not counted: {', '.join(projection.untimed)}"
        bound = "≥" if projection.untimed else "~"
        total = sweeps.duration(projection.total(workers))
        print(f"sweep {self.name}: projected {bound}{total} on "
              f"{workers} worker(s) for {stages} (a run: {kinds}; timed on this machine in "
              f"{time.perf_counter() - started:.0f} s"
              + ("; outward LR extensions not counted" if confirm else "") + ")",
              flush=True)  # fmt: skip

    def _tune(self, jobs: list[list[str]], sweep_dir: Path) -> dict[tuple[str, ...], Any]:
        """The tuning stage, extended outward while a group's choice sits on an edge of the
        grid (up to the file's ``extend`` values per side); writes ``selection.json``."""
        proto = self.protocol
        assert proto is not None
        # Each group's own grid of the tuned value (a reduction may narrow it for some groups).
        grids: dict[tuple[str, ...], list[str]] = {}
        for job in jobs:
            grids.setdefault(records.selection_group(job, proto.select), []).append(job)
        grid = {g: tuning.grid_values(js, proto.select) for g, js in grids.items()}
        tune_jobs = list(jobs)
        while True:
            groups = {records.selection_group(job, proto.select) for job in tune_jobs}
            confirm = [sweeps.run_kind(list(g)) for g in sorted(groups) for _ in proto.seeds_for(g)]
            dirs = self._run_stage("tune", tune_jobs, to_come=confirm)
            summaries = [records.read_summary(d) for d in dirs]
            chosen = tuning.select_best(tune_jobs, summaries, proto)
            self.tune_accelerator = tuning.confirm_accelerator(summaries)
            brackets = {g: tuning.bracket(c, grid[g], proto.extend) for g, c in chosen.items()}
            more = [j for j in tuning.extension_jobs(jobs, brackets, proto) if j not in tune_jobs]
            if not more:
                break
            edges = sum(bool(b.extend) for b in brackets.values())
            print(f"sweep {self.name}: {edges} choice(s) on an edge of the grid; trying "
                  f"{len(more)} more tuning run(s) outward", flush=True)  # fmt: skip
            tune_jobs += more
        records.write_selection(
            sweep_dir, proto.select, proto.metric, proto.goal, chosen,
            {g: {"bracketed": b.bracketed, "reason": b.reason} for g, b in brackets.items()},
        )  # fmt: skip
        varying = tuning.varying(list(chosen))
        for group, pick in chosen.items():
            shown = " ".join(o for o in group if o in varying) or "all runs"
            br = brackets[group]
            edge = "bracketed" if br.bracketed else f"unbracketed: {br.reason}"
            print(f"sweep {self.name}: {shown} -> {proto.select}={pick.value} "
                  f"(mean {proto.metric} {pick.score:.4f}; {edge})")  # fmt: skip
        return chosen

    def _write_report(self, final: bool) -> None:
        if not self.report:
            return
        assert self.config is not None
        try:
            from actbench.report.cli import build_report

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


def _adopt_legacy(folder: Path, legacy: Path, run_id: str) -> bool:
    """:func:`actbench.records.adopt_legacy` under the folder's lock when the folder exists
    (a process training it keeps it as it is)."""
    lock = RunLock(folder) if folder.is_dir() else None
    if lock is not None and not lock.acquire():
        return False
    try:
        return records.adopt_legacy(folder, legacy, run_id)
    finally:
        if lock is not None:
            lock.release()
