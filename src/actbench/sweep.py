"""``make sweep``: a W&B-format sweep file expanded into one Hydra multirun (joblib launcher).

The grid itself is Hydra's: each parameter becomes a comma-separated override, Hydra's basic
sweeper takes the product and the joblib launcher runs the jobs in parallel worker processes.
The sweep folder is named after the sweep file, so running the same sweep again finds each
job's record and skips the completed ones instead of training them twice.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

LOCAL_METHODS = ("grid",)


class SweepError(ValueError):
    """A sweep file that cannot run locally (the message is a single line)."""


def load_sweep(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise SweepError(f"sweep file {str(path)!r} cannot be read: {err.strerror}") from err
    if not isinstance(spec, dict) or "parameters" not in spec:
        raise SweepError(f"sweep file {str(path)!r} has no 'parameters' mapping (W&B sweep format)")
    return spec


def grid_overrides(spec: dict[str, Any]) -> list[str]:
    """Hydra overrides for the grid: ``key=v1,v2`` per swept parameter, ``key=v`` per fixed one."""
    method = spec.get("method", "grid")
    if method not in LOCAL_METHODS:
        raise SweepError(
            f"sweep method {method!r} cannot run locally; valid: {', '.join(LOCAL_METHODS)} "
            "(use BACKEND=wandb for W&B's own random/bayes search)"
        )
    overrides = []
    for key, param in spec["parameters"].items():
        if isinstance(param, dict) and "values" in param:
            values = param["values"]
        elif isinstance(param, dict) and "value" in param:
            values = [param["value"]]
        else:
            raise SweepError(
                f"sweep parameter {key!r}={param!r} is not a grid; valid: {{values: [...]}} "
                "or {value: x}"
            )
        overrides.append(f"{key}={','.join(_hydra_value(v) for v in values)}")
    return overrides


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def check_first_point(overrides: list[str]) -> None:
    """Compose and validate the grid's first point, so a bad parameter fails before any run."""
    from hydra import compose, initialize_config_dir

    from actbench.config import register_configs, validate

    register_configs()
    first = [o.split(",")[0] if "=" in o else o for o in overrides]
    conf_dir = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        validate(compose("config", overrides=["run_dir=.", *first]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actbench-sweep", description="Run a W&B-format sweep file locally via Hydra multirun."
    )
    parser.add_argument("sweep", type=Path, help="sweep file, e.g. sweeps/default.yaml")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers")
    parser.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_intermixed_args(argv)
    try:
        spec = load_sweep(args.sweep)
        overrides = grid_overrides(spec) + list(args.overrides)
        check_first_point(overrides)
    except Exception as err:
        from actbench.config import one_line_error

        print(f"actbench-sweep: error: {one_line_error(err)}", file=sys.stderr)
        return 2
    jobs = max(1, args.jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)  # split the cores between workers
    command = [
        sys.executable, "-m", "actbench.train", "--multirun",
        "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}",
        "hydra.launcher.verbose=10",  # joblib's own progress: done/total, elapsed, remaining
        f"hydra.sweep.dir=multirun/{args.sweep.stem}",
        f"torch_threads={threads}", "trainer.enable_progress_bar=false",
        *overrides,
    ]  # fmt: skip
    print("actbench-sweep:", " ".join(command[1:]))
    if args.dry_run:
        return 0
    env = {**os.environ, "WANDB_START_METHOD": "thread"}  # loky workers and wandb's fork clash
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
