"""From a grid to its records: run the grid through the sweep entry point, then collect its
finished runs into ``docs/experiments/records/NAME/``.

Records are the minimum a document needs: each run's summary and resolved config as written,
and its metrics trimmed to the columns the analysis reads.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from actbench import records
from actbench.experiments.base import MANIFEST, RUNS, ExperimentError, values_match
from actbench.experiments.registry import get_experiment
from actbench.records import RunRecord


def grid_points(spec: dict[str, Any]) -> int:
    """How many configurations the sweep spec's grid holds."""
    n = 1
    for param in spec["parameters"].values():
        n *= len(param["values"]) if "values" in param else 1
    return n


def run_sweep(name: str, scale: str, jobs: int, extra: list[str]) -> int:
    """The experiment's grid through the real sweep entry point (``python -m actbench.sweep``)."""
    exp = get_experiment(name)
    with tempfile.TemporaryDirectory(prefix="actbench-exp-") as tmp:
        if scale == "full":
            path = exp.sweep_file
        else:
            # Same file, parameters replaced; its stem names the sweep folder, so the small
            # variant's runs never mix with the full grid's.
            path = Path(tmp) / f"{exp.stem(scale)}.yaml"
            path.write_text(yaml.safe_dump(exp.spec(scale), sort_keys=False))
        command = [sys.executable, "-m", "actbench.sweep", str(path), "--jobs", str(jobs), *extra]
        print("actbench-experiments:", " ".join(command[1:]), flush=True)
        return subprocess.run(command).returncode


def in_grid(run: RunRecord, spec: dict[str, Any]) -> bool:
    """Whether a recorded run is a point of the grid (a stale run of an older grid is not)."""
    overrides = run.overrides
    for key, param in spec["parameters"].items():
        values = param["values"] if "values" in param else [param["value"]]
        actual = run.param(key)
        if actual is None and None in values:  # a key the grid sets to null (the default)
            continue
        if actual is None or isinstance(actual, dict):  # a group choice (data=digits) or preset
            given = overrides.get(key)
            if given is None:
                return False
            if key in ("data", "model", "activation", "optimizer") and isinstance(actual, dict):
                if not any(actual.get("name") == v for v in values):
                    return False
            elif given not in {str(v) for v in values}:
                return False
        elif not any(values_match(actual, v) for v in values):
            return False
    return True


def trim_metrics(src: Path, dst: Path, keys: Sequence[str]) -> int:
    """Copy ``step`` and ``keys`` of ``src`` to ``dst``, rows holding one of them; rows kept."""
    with open(src, newline="") as f:
        reader = csv.DictReader(f)
        present = [k for k in keys if k in (reader.fieldnames or [])]
        rows = [
            [row["step"], *(row[k] for k in present)]
            for row in reader
            if row.get("step") and any(row.get(k) not in (None, "") for k in present)
        ]
    records.write_metrics_rows(dst, ["step", *present], rows)
    return len(rows)


def collect(name: str, scale: str, multirun: Path, docs: Path) -> Path:
    """Copy the grid's finished runs (trimmed) into ``docs/records/NAME/`` with a manifest."""
    exp = get_experiment(name)
    spec = exp.spec(scale)
    source = multirun / exp.stem(scale)
    if not source.is_dir():
        raise ExperimentError(
            f"no sweep folder {source}; run `actbench-experiments run {name}"
            f"{'' if scale == 'full' else ' --scale ' + scale}` first"
        )
    dest = docs / "records" / name
    # Staged beside the records and swapped in at the end: a failed collect keeps the old ones.
    stage = docs / "records" / f".{name}.collecting"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / RUNS).mkdir(parents=True)
    kept = skipped = unfinished = 0
    for folder in records.run_folders(source):
        run = records.read_run(folder)
        if run is None or not run.finished:  # an unreadable summary is no finished record
            unfinished += 1
            continue
        if not in_grid(run, spec):
            skipped += 1
            continue
        out = stage / RUNS / folder.name
        out.mkdir()
        for file in (records.SUMMARY, records.CONFIG):
            if (folder / file).is_file():
                shutil.copy2(folder / file, out / file)
        if (folder / records.METRICS).is_file():
            trim_metrics(folder / records.METRICS, out / records.METRICS, exp.csv_keys)
        kept += 1
    if kept == 0:
        shutil.rmtree(stage)
        raise ExperimentError(f"{source} holds no finished run of the grid; nothing collected")
    manifest = {
        "experiment": name,
        "scale": scale,
        "sweep": f"{exp.stem(scale)}.yaml",
        "points": grid_points(spec),
        "parameters": spec["parameters"],
    }
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    stage.rename(dest)
    print(
        f"actbench-experiments: collected {kept} runs of {name} ({scale}) into {dest}"
        + (f"; left out {skipped} outside the grid" if skipped else "")
        + (f"; {unfinished} unfinished" if unfinished else "")
    )
    return dest
