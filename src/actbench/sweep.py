"""``make sweep``: a W&B-format sweep file run by one of three backends.

- ``local`` (default): the grid becomes one Hydra multirun with the joblib launcher; the project's
  Hydra sweeper (``hydra_plugins/actbench_sweeper``) skips finished runs, resumes interrupted ones,
  runs the two-stage learning-rate protocol and names failed runs at the end.
- ``slurm``: the same multirun through Hydra's submitit launcher
  (``conf/hydra/launcher/slurm.yaml``).
- ``wandb``: ``wandb sweep`` on the file's W&B part, then ``wandb agent``.

A sweep file is W&B's format (method, metric, parameters, command) plus an optional ``actbench``
block that W&B never sees::

    actbench:
      confirm:                  # two-stage protocol: stage 1 ("tune") is the grid above
        select: optimizer.lr    # the parameter tuned per everything else in the grid
        metric: val/acc         # scored on validation, after the last step (as test/acc is)
        goal: maximize
        extend: 2               # a choice on an edge: try up to 2 more values outward per side
        seeds: [0, 1, 2, 3, 4]  # stage 2 ("confirm"): best value on fresh seeds, test set read once

This module holds the pure parts (parsing, selection, progress); the sweeper plugin calls them.
It imports neither torch nor Lightning, so sweep start-up stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from actbench import records
from actbench.records import (
    FINISHED,
    GOALS,
    SELECT_METRIC,
    parse_overrides,
    run_folders,
    status,
)
from actbench.tuning import Protocol, Reduction, reductions_to_json

try:  # the progress line is a Hydra callback; Hydra is always installed with actbench
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[assignment,misc]

LOCAL_METHODS = ("grid",)
BACKENDS = ("local", "slurm", "wandb")
MANIFEST = "progress.json"


class SweepError(ValueError):
    """A sweep file that cannot run (the message is a single line)."""


class SweepFailed(RuntimeError):
    """Some runs of a sweep failed; the message names them (one line)."""


# --- sweep files ----------------------------------------------------------------------------


def load_sweep(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        valid = ", ".join(sorted(p.name for p in Path("sweeps").glob("*.yaml"))) or "none found"
        raise SweepError(
            f"sweep file {str(path)!r} cannot be read: {err.strerror}; sweeps/ has: {valid}"
        ) from err
    if not isinstance(spec, dict) or not isinstance(spec.get("parameters"), dict):
        raise SweepError(f"sweep file {str(path)!r} has no 'parameters' mapping (W&B sweep format)")
    return spec


def _values(key: str, param: Any) -> list[Any]:
    if isinstance(param, dict) and "values" in param:
        return list(param["values"])
    if isinstance(param, dict) and "value" in param:
        return [param["value"]]
    raise SweepError(
        f"sweep parameter {key!r}={param!r} is not a grid; valid: {{values: [...]}} or {{value: x}}"
    )


def grid_overrides(spec: dict[str, Any]) -> list[str]:
    """Hydra overrides for the grid: ``key=v1,v2`` per swept parameter, ``key=v`` per fixed one."""
    method = spec.get("method", "grid")
    if method not in LOCAL_METHODS:
        raise SweepError(
            f"sweep method {method!r} cannot run locally; valid: {', '.join(LOCAL_METHODS)} "
            "(use BACKEND=wandb for W&B's own random/bayes search)"
        )
    return [
        f"{key}={','.join(hydra_value(v) for v in _values(key, param))}"
        for key, param in spec["parameters"].items()
    ]


def hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def protocol(spec: dict[str, Any]) -> Protocol | None:
    """The two-stage block of a sweep file, checked against its grid; None for one stage."""
    block = (spec.get("actbench") or {}).get("confirm")
    if block is None:
        return None
    params = spec["parameters"]
    select = block.get("select", "optimizer.lr")
    if select not in params or len(_values(select, params[select])) < 2:
        swept = [k for k, p in params.items() if len(_values(k, p)) > 1]
        raise SweepError(
            f"actbench.confirm.select={select!r} is not a swept parameter of the grid; "
            f"valid: {', '.join(swept) or 'none (sweep at least two values)'}"
        )
    goal = block.get("goal", "maximize")
    if goal not in GOALS:
        raise SweepError(
            f"actbench.confirm.goal={goal!r} is not allowed; valid: {', '.join(GOALS)}"
        )
    seeds = tuple(int(s) for s in block.get("seeds") or ())
    tune_seeds = {int(s) for s in _values("seed", params["seed"])} if "seed" in params else {0}
    if not seeds or tune_seeds & set(seeds):
        raise SweepError(
            f"actbench.confirm.seeds={list(seeds)} must be non-empty and fresh; valid: seeds "
            f"other than the tuning seeds {sorted(tune_seeds)}"
        )
    extend = block.get("extend", 0)
    if not isinstance(extend, int) or isinstance(extend, bool) or extend < 0:
        raise SweepError(f"actbench.confirm.extend={extend!r}; valid: an integer >= 0")
    reduced = reductions(spec)
    for rule in reduced:
        own = dict(rule.values).get("seed")
        tuned = {int(s) for s in own} if own is not None else tune_seeds
        confirm = rule.confirm_seeds if rule.confirm_seeds is not None else seeds
        if not confirm or tuned & set(confirm):
            raise SweepError(
                f"actbench.reduce confirmation seeds {list(confirm)} for "
                f"{' '.join(f'{k}={v}' for k, v in rule.when)} must be non-empty and fresh; "
                f"valid: seeds other than its tuning seeds {sorted(tuned)}"
            )
    metric = block.get("metric", SELECT_METRIC)
    return Protocol(select, metric, goal, seeds, extend, reductions=reduced)


def reductions(spec: dict[str, Any]) -> tuple[Reduction, ...]:
    """The file's ``actbench.reduce``: reduced protocols for parts of the grid, e.g.::

        reduce:
          - when: {model: vit}          # the runs it applies to (values of the grid)
            parameters:                 # the values they take instead (W&B's form)
              trainer.max_steps: {value: 500}
              optimizer.lr: {values: [0.001, 0.003, 0.01]}
            confirm_seeds: [0, 1, 2]    # optional: their own confirmation seeds
            why: fits a 30-minute CPU sweep   # stated in the report

    Each key must be a parameter of the grid, so every run has a value for it."""
    rules = (spec.get("actbench") or {}).get("reduce") or []
    params = spec["parameters"]
    if not isinstance(rules, list):
        raise SweepError(f"actbench.reduce={rules!r} is not a list of {{when, parameters}}")
    out = []
    for i, rule in enumerate(rules):
        where = f"actbench.reduce[{i}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("when"), dict):
            raise SweepError(f"{where} has no 'when' mapping; valid keys: when, parameters, "
                             "confirm_seeds, why")  # fmt: skip
        unknown = sorted(set(rule) - {"when", "parameters", "confirm_seeds", "why"})
        if unknown:
            raise SweepError(f"{where}.{unknown[0]} is not a reduction key; valid: when, "
                             "parameters, confirm_seeds, why")  # fmt: skip
        when = []
        for key, value in rule["when"].items():
            grid = [hydra_value(v) for v in _values(key, params[key])] if key in params else []
            if hydra_value(value) not in grid:
                raise SweepError(f"{where}.when {key}={value!r} is not in the grid; valid: "
                                 + (", ".join(f"{key}={v}" for v in grid) if grid else
                                    ", ".join(params)))  # fmt: skip
            when.append((key, hydra_value(value)))
        values = []
        for key, param in (rule.get("parameters") or {}).items():
            if key not in params or key in rule["when"]:
                valid = ", ".join(k for k in params if k not in rule["when"])
                raise SweepError(f"{where}.parameters.{key} is not a swept or fixed parameter "
                                 f"of the grid outside 'when'; valid: {valid}")  # fmt: skip
            values.append((key, tuple(hydra_value(v) for v in _values(key, param))))
        seeds = rule.get("confirm_seeds")
        if seeds is not None and not (spec.get("actbench") or {}).get("confirm"):
            raise SweepError(f"{where}.confirm_seeds needs a two-stage file (actbench.confirm)")
        out.append(Reduction(
            tuple(when), tuple(values), None if seeds is None else tuple(int(x) for x in seeds),
            str(rule.get("why") or ""),
        ))  # fmt: skip
    return tuple(out)


def reduced_overrides(spec: dict[str, Any]) -> list[str]:
    """``key=v1,v2`` for each reduced parameter's values, so :func:`check_points` composes
    them too."""
    return [f"{k}={','.join(v)}" for rule in reductions(spec) for k, v in rule.values]


def wandb_spec(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The part of a sweep file W&B understands; two-stage files run their tuning stage there."""
    out = {k: v for k, v in spec.items() if k != "actbench"}
    out["parameters"] = {**spec["parameters"], "sweep.name": {"value": name}}
    if protocol(spec) is not None:
        out["parameters"]["sweep.stage"] = {"value": "tune"}
    out.setdefault("program", "actbench-train")
    return out


def check_points(overrides: list[str]) -> None:
    """Compose and validate every value of every swept parameter (not the whole product), so a
    typo anywhere in the grid fails before any run starts."""
    from hydra import compose, initialize_config_dir

    from actbench.config import register_configs, validate

    register_configs()
    # Hydra's own settings (launcher, sweep dir) are not part of the task config.
    overrides = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    first = [o.split(",")[0] for o in overrides]
    variants = [first]
    for i, override in enumerate(overrides):
        key, _, values = override.partition("=")
        for value in values.split(",")[1:]:
            variants.append([*first[:i], f"{key}={value}", *first[i + 1 :]])
    conf_dir = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        for variant in variants:
            validate(compose("config", overrides=["run_dir=.", *variant]))


# --- selection, progress -----------------------------------------------------------


def duration(seconds: float) -> str:
    """``1h05m``, ``6m38s``: how the sweep's lines print a duration."""
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


# What makes runs cost alike: the time-left estimate is per kind, from finished runs of that kind.
KIND_KEYS = ("model", "data", "trainer.max_steps")


def run_kind(overrides: list[str]) -> str:
    """``model=vit data=mnist1d trainer.max_steps=2000``: the overrides that set a run's cost
    (the defaults where not overridden)."""
    given = parse_overrides(overrides)
    return " ".join(f"{k}={given[k]}" for k in KIND_KEYS if k in given) or "defaults"


def time_left(
    pending: list[str], seconds_by_kind: dict[str, list[float]], workers: int
) -> tuple[float, list[str]]:
    """Seconds the ``pending`` runs (their kinds) need on ``workers`` parallel workers, each
    at the median wall time of finished runs of its kind, and the kinds with no finished run
    yet (not counted: the estimate is then a lower bound)."""
    median = {k: statistics.median(v) for k, v in seconds_by_kind.items() if v}
    unknown = sorted({k for k in pending if k not in median})
    return sum(median[k] for k in pending if k in median) / max(1, workers), unknown


def progress_line(manifest: dict[str, Any], now: float | None = None) -> str:
    """``sweep default [tune]: 72/180 done (0 diverged, 0 failed) · 6m38s elapsed · ≥1h35m
    left (+90 confirm runs; no finished run yet: model=vit)`` - read from the records, so
    parallel workers agree."""
    now = time.time() if now is None else now
    root = Path(manifest["sweep_dir"])
    runs = manifest["runs"]
    kinds = manifest.get("kinds") or ["defaults"] * len(runs)
    statuses = [status(root / d) for d in runs]
    done = sum(s in FINISHED for s in statuses)
    failed = statuses.count("failed")
    diverged = statuses.count("diverged")
    seconds_by_kind: dict[str, list[float]] = {}
    # After every job: summaries only (a RunRecord would also parse each run's config.yaml).
    for folder in run_folders(root):
        rec = records.read_summary(folder) or {}
        seconds = rec.get("wall_time_s")
        if rec.get("status") in FINISHED and isinstance(seconds, (int, float)):
            seconds_by_kind.setdefault(run_kind(rec.get("overrides") or []), []).append(seconds)
    to_come = list(manifest.get("to_come") or [])
    pending = [k for k, s in zip(kinds, statuses, strict=True) if s not in (*FINISHED, "failed")]
    left, unknown = time_left(pending + to_come, seconds_by_kind, manifest.get("workers", 1))
    notes = [f"+{len(to_come)} {manifest.get('next_stage', 'later')} runs"] if to_come else []
    if unknown:
        notes.append(f"no finished run yet: {', '.join(unknown)}")
    stage = f" [{manifest['stage']}]" if manifest.get("stage") else ""
    return (
        f"sweep {manifest['name']}{stage}: {done}/{len(runs)} done ({diverged} diverged, "
        f"{failed} failed) · {duration(now - manifest['started'])} elapsed · "
        f"{'≥' if unknown else '~'}{duration(left)} left"
        + (f" ({'; '.join(notes)})" if notes else "")
    )


class SweepProgress(Callback):
    """Hydra callback: after each job of a sweep, one line with runs done/total, failed,
    diverged and time left (read from the records, so parallel workers agree)."""

    def on_job_end(self, config: Any, job_return: Any = None, **kwargs: Any) -> None:
        try:
            manifest = json.loads((Path(config.hydra.sweep.dir) / MANIFEST).read_text())
        except (OSError, ValueError, AttributeError):
            return  # a single run, or a multirun not started by the actbench sweeper
        print(progress_line(manifest), flush=True)


# --- command line ---------------------------------------------------------------------------


def usable_cores() -> int:
    """The cores this process may run on (a container's or job's share, not the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _hydra_command(args: argparse.Namespace, spec: dict[str, Any], extra: list[str]) -> list[str]:
    proto = protocol(spec)
    name = args.sweep.stem
    jobs = max(1, args.jobs)
    threads = max(1, usable_cores() // jobs)  # split the cores between workers
    launcher = (
        ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
        if args.backend == "local"
        else ["hydra/launcher=slurm"]
    )
    sweeper = ["hydra/sweeper=actbench", f"hydra.sweeper.name={name}"]
    sweeper.append(f"hydra.sweeper.report={str(not args.no_report).lower()}")
    reduced = reductions(spec)
    if reduced:
        encoded = reductions_to_json(reduced)
        if "'" in encoded:
            raise SweepError(f"actbench.reduce cannot hold a single quote: {encoded[:120]}")
        sweeper.append(f"hydra.sweeper.reduce='{encoded}'")
    if proto is not None:
        sweeper += [
            f"hydra.sweeper.select={proto.select}",
            f"hydra.sweeper.metric={proto.metric}",
            f"hydra.sweeper.goal={proto.goal}",
            f"hydra.sweeper.extend={proto.extend}",
            f"hydra.sweeper.confirm_seeds=[{','.join(map(str, proto.seeds))}]",
        ]
    return [
        sys.executable, "-m", "actbench.train", "--multirun",
        *launcher, *sweeper,
        f"hydra.sweep.dir={args.runs_root}/{name}",
        *([f"torch_threads={threads}"] if args.backend == "local" else []),
        "trainer.enable_progress_bar=false",  # the sweep prints its own progress line
        f"sweep.name={name}",
        *grid_overrides(spec), *extra,
    ]  # fmt: skip


def _wandb_commands(args: argparse.Namespace) -> tuple[Path, list[str]]:
    name = args.sweep.stem
    path = Path(args.runs_root) / name / "wandb_sweep.yaml"
    create = ["wandb", "sweep", str(path)]
    if args.project:
        create += ["--project", args.project]
    if args.entity:
        create += ["--entity", args.entity]
    return path, create


def _run_wandb(args: argparse.Namespace, spec: dict[str, Any]) -> int:
    from actbench.tracking import has_wandb_api_key

    path, create = _wandb_commands(args)
    print("actbench-sweep:", " ".join(create), "&& wandb agent <entity/project/sweep_id>")
    if args.dry_run:
        return 0
    if not has_wandb_api_key():
        print(
            "actbench-sweep: error: BACKEND=wandb needs a W&B account and network; valid: run "
            "`wandb login` (or set WANDB_API_KEY), or use BACKEND=local",
            file=sys.stderr,
        )
        return 2
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(wandb_spec(spec, args.sweep.stem), sort_keys=False))
    made = subprocess.run(create, capture_output=True, text=True)
    sys.stderr.write(made.stderr)
    found = re.search(r"wandb agent (\S+)", made.stdout + made.stderr)
    if made.returncode != 0 or not found:
        print("actbench-sweep: error: `wandb sweep` did not create a sweep", file=sys.stderr)
        return made.returncode or 1
    print(f"actbench-sweep: other machines join with: wandb agent {found.group(1)}")
    if protocol(spec) is not None:
        print(
            "actbench-sweep: W&B runs the tuning stage; its confirmation stage needs every "
            "record in one place, so run it with BACKEND=local or slurm"
        )
    env = {**os.environ, "WANDB_START_METHOD": "thread"}
    return subprocess.run(["wandb", "agent", found.group(1)], env=env).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actbench-sweep",
        description="Run a W&B-format sweep file: locally (Hydra multirun, joblib), on SLURM "
        "(submitit) or on W&B agents. Rerunning a sweep skips finished runs and resumes others.",
    )
    parser.add_argument("sweep", type=Path, help="sweep file, e.g. sweeps/default.yaml")
    parser.add_argument("--backend", default="local", help=f"one of {', '.join(BACKENDS)}")
    parser.add_argument(
        "--jobs", type=int, default=usable_cores(), help="parallel workers (default: the cores)"
    )
    parser.add_argument("--runs-root", default="multirun", help="sweeps write runs/<sweep name>/")
    parser.add_argument("--no-report", action="store_true", help="skip the report at the end")
    parser.add_argument("--project", default=None, help="W&B project (BACKEND=wandb)")
    parser.add_argument("--entity", default=None, help="W&B entity (BACKEND=wandb)")
    parser.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_intermixed_args(argv)
    try:
        if args.backend not in BACKENDS:
            raise SweepError(f"backend {args.backend!r} is unknown; valid: {', '.join(BACKENDS)}")
        spec = load_sweep(args.sweep)
        if args.backend == "wandb":
            protocol(spec)  # a broken two-stage block fails here too
            if reductions(spec):
                raise SweepError(
                    f"{args.sweep} reduces part of its grid (actbench.reduce), which a W&B grid "
                    "cannot express; valid: BACKEND=local or slurm, or a file without it "
                    "(e.g. sweeps/gpu.yaml)"
                )
            return _run_wandb(args, spec)
        command = _hydra_command(args, spec, list(args.overrides))
        check_points(grid_overrides(spec) + reduced_overrides(spec) + list(args.overrides))
    except Exception as err:
        from actbench.config import is_user_error, one_line_error

        if not isinstance(err, SweepError) and not is_user_error(err):
            raise  # a bug, not bad input: keep the traceback
        print(f"actbench-sweep: error: {one_line_error(err)}", file=sys.stderr)
        return 2
    print("actbench-sweep:", " ".join(command[1:]))
    if args.dry_run:
        return 0
    env = {**os.environ, "WANDB_START_METHOD": "thread"}  # loky workers and wandb's fork clash
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
