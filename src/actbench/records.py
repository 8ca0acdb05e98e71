"""The run record: one folder per run holding ``summary.json``, ``config.yaml`` and Lightning's
``metrics.csv``; and the one rule that chooses a tuned value from such records.

Everything that reads or writes a record goes through here: the training entry point writes
it, the sweeper reads statuses and writes ``selection.json``, the report, the experiments and
the bench read runs. No other module names ``summary.json``.

Every file the project writes in place is written atomically (:func:`atomic_path`): a
half-written summary must never be mistaken for a finished one, and a kill mid-write leaves
only a uniquely named temporary file beside the real one (:func:`clear_partial_writes`).

This module imports neither torch nor Lightning, so the sweep launcher stays fast.
Over 500 lines by design: the record's files, its model and the selection rule are one concept.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SUMMARY = "summary.json"
CONFIG = "config.yaml"
METRICS = "metrics.csv"
SELECTION = "selection.json"
TEST_CORRECT = "test_correct.npz"  # per-example test correctness, bit-packed
GRID = "grid.json"  # the run folders of the sweep's current grid, per stage
# A packed member's resumable state (actbench.packing.state), and the same state written but
# not yet committed by every member of its pack.
PACK_STATE = "pack_state.pt"
PACK_STATE_PENDING = "pack_state.pending.pt"
STATUSES = ("running", "completed", "diverged", "failed")
FINISHED = ("completed", "diverged")  # a rerun skips these: diverging is a result too
GOALS = ("maximize", "minimize")
# What a tuned value is chosen on by default: the same kind of quantity the ranking reads
# (accuracy after the last step, here on validation), never a maximum over a noisy curve.
SELECT_METRIC = "val/acc"


# --- atomic writes ----------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A unique temporary path beside ``path``; renamed onto ``path`` when the block succeeds,
    removed when it fails. Write whatever the block likes to it (text, a figure, a tensor).

    The temporary name starts with ``.<name>.`` so :func:`clear_partial_writes` can find the
    leftovers of a killed process, and keeps ``path``'s suffix so writers that infer the format
    from it (``savefig``) still do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are owner-only (0600); this one gets the umask's mode, as the
    # file written in place would. The pid and a random tag keep parallel writers apart.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    tmp.touch(exist_ok=False)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, fsync: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically (``fsync``: flush to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_json(path: Path, data: Any, indent: int = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically, flushed to disk (records outlive crashes)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=indent, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def promote(pending: Path, final: Path) -> None:
    """Rename a complete file onto its final name, atomically (the second phase of a
    write that must land in several folders together: see actbench.packing.state)."""
    os.replace(pending, final)


def clear_partial_writes(
    run_dir: Path,
    names: tuple[str, ...] = (SUMMARY, METRICS, TEST_CORRECT, PACK_STATE, PACK_STATE_PENDING),
) -> None:
    """Remove the temporary files of atomic writes that a killed process left half-written.

    They never replace the real file, so they are harmless, but they would pile up in the run
    folder with every kill. Only call this while no other process writes into ``run_dir``.
    """
    for name in names:
        for tmp in Path(run_dir).glob(f".{name}.*"):
            tmp.unlink(missing_ok=True)


# --- one run folder ---------------------------------------------------------------------------


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary, or None when there is none (never started, killed before its first
    record, or unreadable)."""
    try:
        data = json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    return atomic_write_json(Path(run_dir) / SUMMARY, summary)


def status(run_dir: Path) -> str | None:
    """The record's status, None when there is no record."""
    return (read_summary(run_dir) or {}).get("status")


def has_record(folder: Path) -> bool:
    return (Path(folder) / SUMMARY).is_file()


def read_config(run_dir: Path) -> dict[str, Any]:
    """The resolved ``config.yaml`` ({} when absent: it is written just after the first
    summary, so a run killed in between has none)."""
    try:
        data = yaml.safe_load((Path(run_dir) / CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def read_curves(path: Path, keys: Iterable[str]) -> dict[str, list[tuple[int, float]]]:
    """``{key: [(step, value), ...]}`` sorted by step from Lightning's wide ``metrics.csv``
    (empty cells skipped; a step logged twice, as a resumed run may, keeps its last value)."""
    wanted = list(keys)
    points: dict[str, dict[int, float]] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                step = _int(row.get("step") or None)
                if step is None:
                    continue
                for key in wanted:
                    value = _float(row.get(key) or None)
                    if value is not None:
                        points.setdefault(key, {})[step] = value
    except OSError:
        return {}
    return {k: sorted(v.items()) for k, v in points.items()}


def read_metrics_rows(path: Path, rows: int | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and the first ``rows`` data rows of ``metrics.csv`` (all rows when None)."""
    if not Path(path).exists():
        return [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        kept = list(reader)
    return header, kept if rows is None else kept[:rows]


def write_metrics_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """Rewrite ``metrics.csv`` atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def metrics_row_count(path: Path) -> int:
    """Data rows in a CSV file (0 when it does not exist)."""
    try:
        with open(path, newline="") as f:
            return max(0, sum(1 for _ in csv.reader(f)) - 1)
    except FileNotFoundError:
        return 0


# --- the record model -------------------------------------------------------------------------


@dataclass
class RunRecord:
    """One run folder read back: the summary and resolved config as stored, plus the fields
    every reader needs, each read in one way (summary first, then config, then overrides)."""

    folder: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    setting: str = ""  # the report's comparison unit: other swept overrides that vary

    @property
    def override_list(self) -> list[str]:
        return [str(o) for o in self.summary.get("overrides") or []]

    @property
    def overrides(self) -> dict[str, str]:
        return parse_overrides(self.override_list)

    @property
    def status(self) -> str:
        return str(self.summary.get("status") or "failed")

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def stage(self) -> str | None:
        return _first(_get(self.summary, "sweep.stage"), _get(self.config, "sweep.stage"))

    @property
    def model(self) -> str:
        return str(_first(_get(self.config, "model.name"), self.overrides.get("model"), "?"))

    @property
    def dataset(self) -> str:
        ov = self.overrides
        found = _first(_get(self.config, "data.name"), _get(self.summary, "data.dataset"))
        return str(_first(found, ov.get("data"), "?"))

    @property
    def activation_name(self) -> str:
        found = _first(_get(self.summary, "activation.name"), _get(self.config, "activation.name"))
        return str(_first(found, self.overrides.get("activation"), "?"))

    @property
    def activation(self) -> str:
        """The activation's name plus any ``activation.*`` overrides, e.g. ``swish(beta=2)``."""
        params = sorted(
            (k.split(".", 1)[1], v)
            for k, v in self.overrides.items()
            if k.startswith("activation.")
        )
        extra = f"({', '.join(f'{k}={v}' for k, v in params)})" if params else ""
        return self.activation_name + extra

    @property
    def lr(self) -> float | None:
        return _float(_first(_get(self.config, "optimizer.lr"), self.overrides.get("optimizer.lr")))

    @property
    def seed(self) -> int | None:
        found = _first(_get(self.summary, "seeds.seed"), self.config.get("seed"))
        return _int(_first(found, self.overrides.get("seed")))

    @property
    def metrics(self) -> dict[str, float]:
        return {
            k: float(v)
            for k, v in (self.summary.get("metrics") or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }

    @property
    def wall_time_s(self) -> float | None:
        return _float(self.summary.get("wall_time_s"))

    @property
    def steps(self) -> int | None:
        return _int(self.summary.get("steps"))

    @property
    def max_steps(self) -> int | None:
        found = _get(self.config, "trainer.max_steps")
        return _int(_first(found, self.overrides.get("trainer.max_steps")))

    @property
    def diverged_at_step(self) -> int | None:
        return _int(self.summary.get("diverged_at_step"))

    @property
    def peak_rss_mib(self) -> float | None:
        return _float((self.summary.get("peak_memory") or {}).get("rss_mib"))

    @property
    def peak_gpu_mib(self) -> float | None:
        return _float((self.summary.get("peak_memory") or {}).get("gpu_mib"))

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.folder.name)

    @property
    def unit(self) -> tuple[str, str, str]:
        return (self.model, self.dataset, self.setting)

    def param(self, dotted: str) -> Any:
        """A value of the resolved config by dotted key (None where absent)."""
        return _get(self.config, dotted)

    def summary_value(self, dotted: str) -> Any:
        """A value of the summary by dotted key (None where absent)."""
        return _get(self.summary, dotted)

    def metric(self, key: str) -> float | None:
        """The final value of ``key``: the summary's, else the last point of its curve; None
        when absent or not finite."""
        value = (self.summary.get("metrics") or {}).get(key)
        if value is None and self.curves.get(key):
            value = self.curves[key][-1][1]
        value = _float(value)
        return value if value is not None and math.isfinite(value) else None

    def curve(self, key: str) -> list[tuple[int, float]]:
        return self.curves.get(key, [])


def read_run(folder: Path, curve_keys: Iterable[str] = ()) -> RunRecord | None:
    """The record in ``folder`` (None when it holds no readable summary), with the curves of
    ``curve_keys`` read from its ``metrics.csv``."""
    folder = Path(folder)
    summary = read_summary(folder)
    if summary is None:
        return None
    keys = list(curve_keys)
    curves = read_curves(folder / METRICS, keys) if keys else {}
    return RunRecord(folder=folder, summary=summary, config=read_config(folder), curves=curves)


def run_folders(root: Path) -> list[Path]:
    """The folders directly under ``root`` that hold a record, sorted by name (a stable order;
    ``previous/`` attempts and hidden folders are not runs of the sweep)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and p.name != "previous" and not p.name.startswith(".") and has_record(p)
    )


def read_sweep(root: Path, curve_keys: Iterable[str] = ()) -> list[RunRecord]:
    """Every run record directly under ``root`` (a sweep folder, or collected records)."""
    keys = list(curve_keys)
    runs = (read_run(folder, keys) for folder in run_folders(root))
    return [r for r in runs if r is not None]


# --- the selection rule -----------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """The chosen value of a tuned parameter and the score of every value tried."""

    value: str
    score: float
    scores: dict[str, float | None]


def choose(
    scores: Mapping[str, Sequence[float]], goal: str = "maximize", statistic: str = "mean"
) -> Choice | None:
    """THE rule that picks a tuned value: the best ``statistic`` (mean or median) of its scores
    over tuning seeds, in the direction of ``goal``.

    Callers score a run that diverged (or ended with a non-finite metric) as the worst possible
    value (−inf when maximising, +inf when minimising): under the mean one such seed rules the
    value out, under the median it counts as the worst seed. Ties go to the smallest value when
    all values are numbers (the most conservative step size), else to the first given. None
    when no value has a finite score.
    """
    if goal not in GOALS:
        raise ValueError(f"goal={goal!r}; valid: {', '.join(GOALS)}")
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic={statistic!r}; valid: mean, median")
    sign = 1.0 if goal == "maximize" else -1.0
    summary: dict[str, float] = {}
    for value, values in scores.items():
        kept = sorted(sign * float(v) for v in values)
        if not kept:
            continue
        mid = len(kept) // 2
        median = kept[mid] if len(kept) % 2 else (kept[mid - 1] + kept[mid]) / 2
        total = median if statistic == "median" else math.fsum(kept) / len(kept)
        summary[value] = -math.inf if math.isnan(total) else total  # inf − inf: unusable
    finite = {v: s for v, s in summary.items() if math.isfinite(s)}
    if not finite:
        return None
    numeric = all(_float(v) is not None for v in finite)
    order = sorted(finite, key=lambda v: float(v)) if numeric else list(finite)
    best = max(order, key=lambda v: finite[v])  # max keeps the first of equals
    return Choice(
        value=best,
        score=sign * finite[best],
        scores={v: (sign * s if math.isfinite(s) else None) for v, s in summary.items()},
    )


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def selection_group(overrides: Iterable[str], select: str) -> tuple[str, ...]:
    """What a tuned value is chosen per: a run's overrides minus the tuned parameter, the seed,
    the stage and the accelerator the sweeper pins the confirmation stage to, in a canonical
    (sorted) order so the sweeper's jobs and the report's records name the same group."""
    left_out = (select, "seed", "sweep.stage", "trainer.accelerator")
    return tuple(sorted(o for o in overrides if override_key(o) not in left_out))


def select_per_group(
    trials: Iterable[tuple[Sequence[str], dict[str, Any] | None]],
    select: str,
    metric: str,
    goal: str = "maximize",
) -> dict[tuple[str, ...], Choice]:
    """The choice of ``select`` per group (see :func:`selection_group`) from tuning trials, each
    a run's overrides and its summary (None: no record yet), by :func:`choose`.

    A group with a failed, unfinished or missing trial gets no choice yet: choosing without it
    could pick another value once it finishes.
    """
    worst = -math.inf if goal == "maximize" else math.inf
    scores: dict[tuple[str, ...], dict[str, list[float]]] = {}
    incomplete: set[tuple[str, ...]] = set()
    for overrides, summary in trials:
        value = next((o.split("=", 1)[1] for o in overrides if override_key(o) == select), None)
        if value is None:
            continue  # not a trial of this parameter (it was not swept in this run)
        group = selection_group(overrides, select)
        per_value = scores.setdefault(group, {}).setdefault(value, [])
        if summary is None or summary.get("status") not in FINISHED:
            incomplete.add(group)
            continue
        score = _float((summary.get("metrics") or {}).get(metric))
        usable = summary["status"] == "completed" and score is not None and math.isfinite(score)
        per_value.append(score if usable else worst)
    chosen = {}
    for group, by_value in scores.items():
        if group in incomplete:
            continue  # its confirmation waits for the rerun that finishes its tuning
        pick = choose(by_value, goal)
        if pick is not None:
            chosen[group] = pick
    return chosen


def write_selection(
    sweep_dir: Path,
    select: str,
    metric: str,
    goal: str,
    chosen: Mapping[tuple[str, ...], Choice],
    brackets: Mapping[tuple[str, ...], Mapping[str, Any]] | None = None,
) -> Path:
    """``selection.json``: per group the values tried, their scores, the choice and (from the
    sweeper's bracketing) whether it is bracketed and why not."""
    brackets = brackets or {}
    groups = []
    for g, c in chosen.items():
        values = sorted(c.scores, key=lambda v: (_float(v) is None, _float(v) or 0.0, v))
        entry = {"group": list(g), "value": c.value, "score": c.score, "scores": c.scores}
        entry["values"] = values
        entry.update(brackets.get(g, {}))
        groups.append(entry)
    return atomic_write_json(
        Path(sweep_dir) / SELECTION,
        {"select": select, "metric": metric, "goal": goal, "groups": groups},
        indent=1,
    )


def read_selection(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweeper's ``selection.json`` with ``choices`` keyed by group, or None when absent."""
    try:
        data = json.loads((Path(sweep_dir) / SELECTION).read_text())
    except (OSError, ValueError):
        return None
    data["choices"] = {
        tuple(sorted(g["group"])): Choice(g["value"], g["score"], dict(g.get("scores", {})))
        for g in data.get("groups", [])
    }
    # Files written before bracketing have no such fields: None means "not assessed".
    data["brackets"] = {
        tuple(sorted(g["group"])): {"bracketed": g.get("bracketed"), "reason": g.get("reason")}
        for g in data.get("groups", [])
    }
    return data


def write_grid(
    sweep_dir: Path, stages: Mapping[str, Sequence[Path]], reduced: Sequence[str] = ()
) -> Path:
    """Which run folders the sweep's current grid holds, per stage (``all`` for one stage);
    written by the sweeper so readers can tell them from folders of an earlier grid.
    ``reduced``: the reduced protocols of parts of the grid, one line each, for the report."""
    root = Path(sweep_dir)
    data: dict[str, Any] = {
        "stages": {k: [str(Path(d).relative_to(root)) for d in v] for k, v in stages.items()}
    }
    if reduced:
        data["reduced"] = list(reduced)
    return atomic_write_json(root / GRID, data, indent=1)


# What a sweep's records are, for a reader: everything else in a run folder (checkpoints,
# pack states, W&B's offline files, Hydra's logs) is for resuming or for W&B.
RECORD_FILES = (SUMMARY, CONFIG, METRICS, TEST_CORRECT)


def export_records(sweep_dir: Path, dest: Path) -> int:
    """Copy the records of ``sweep_dir``'s current grid (every folder ``grid.json`` lists,
    or every run folder without one) into ``dest``: :data:`RECORD_FILES` per run, and the
    sweep's ``grid.json`` and ``selection.json``, so ``actbench-report DEST`` rebuilds the
    report. ``dest`` is replaced as a whole at the end (a failed copy keeps the old one).
    Returns the number of runs copied."""
    sweep_dir, dest = Path(sweep_dir), Path(dest)
    listed = grid_folders(sweep_dir)
    stage = dest.parent / f".{dest.name}.exporting"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    copied = 0
    for folder in run_folders(sweep_dir):
        if listed is not None and folder.name not in listed:
            continue
        out = stage / folder.name
        out.mkdir()
        for name in RECORD_FILES:
            if (folder / name).is_file():
                shutil.copy2(folder / name, out / name)
        copied += 1
    for name in (GRID, SELECTION):
        if (sweep_dir / name).is_file():
            shutil.copy2(sweep_dir / name, stage / name)
    if dest.exists():
        shutil.rmtree(dest)
    stage.rename(dest)
    return copied


def grid_reductions(sweep_dir: Path) -> list[str]:
    """The reduced protocols ``grid.json`` states (one line each); [] for none or no file."""
    try:
        data = json.loads((Path(sweep_dir) / GRID).read_text())
    except (OSError, ValueError):
        return []
    return [str(line) for line in data.get("reduced", [])]


def grid_folders(sweep_dir: Path) -> set[str] | None:
    """The folder names of the sweep's current grid (every stage), None when the sweep folder
    has no ``grid.json`` (a sweep run before it existed, or collected records)."""
    try:
        data = json.loads((Path(sweep_dir) / GRID).read_text())
    except (OSError, ValueError):
        return None
    return {name for names in data.get("stages", {}).values() for name in names}


# --- whose run a folder holds: the result rule, the old naming, code versions ------------------

LOCK = ".lock"  # a run folder's lock file (actbench.run_lock): never moved aside, never a result


def is_result_of(summary: Mapping[str, Any] | None, run_id: str) -> bool:
    """THE rule for "this run is done": ``summary`` is finished (completed or diverged) and was
    recorded for the configuration ``run_id``. The training entry point and the sweeper both
    ask it, so a record of another configuration is never reported finished."""
    return bool(summary) and summary.get("status") in FINISHED and summary.get("run_id") == run_id


def adopt_legacy(run_dir: Path, legacy_dir: Path, run_id: str) -> bool:
    """Move a run folder of an earlier naming onto ``run_dir`` when it holds a record of the
    same configuration (``run_id``) and ``run_dir`` holds none; True when it was moved.

    An absent or empty ``run_dir`` is replaced by one rename. Otherwise (Hydra already put
    ``.hydra/`` and ``train.log`` there) entry by entry, the record last, so a move cut short
    is finished by the next call; the old folder's copy of a name ``run_dir`` already has goes
    to ``previous/legacy-<old name>/``, so nothing is lost. Call it while holding ``run_dir``'s
    lock (:class:`actbench.run_lock.RunLock`), or while ``run_dir`` does not exist.
    """
    run_dir, legacy_dir = Path(run_dir), Path(legacy_dir)
    if not legacy_dir.is_dir() or legacy_dir.resolve() == run_dir.resolve():
        return False
    if has_record(run_dir) or (read_summary(legacy_dir) or {}).get("run_id") != run_id:
        return False
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        os.replace(legacy_dir, run_dir)  # a directory onto an empty one: one rename on POSIX
        return True
    aside = run_dir / "previous" / f"legacy-{legacy_dir.name}"
    for entry in sorted(legacy_dir.iterdir(), key=lambda p: p.name == SUMMARY):
        dest = run_dir / entry.name
        if dest.exists():
            aside.mkdir(parents=True, exist_ok=True)
            dest = aside / entry.name
        os.replace(entry, dest)
    legacy_dir.rmdir()
    return True


def source_commit() -> str | None:
    """The git commit of the source tree this code runs from (None outside a git checkout):
    what a record's ``reproducibility.git.commit`` is compared with."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def from_other_code(runs: Iterable[RunRecord], current: str | None = None) -> list[RunRecord]:
    """The records made by another version of the code than commit ``current`` (default: this
    checkout's, :func:`source_commit`): their ``reproducibility.git.commit`` differs or is
    missing (a record cut short before it was written has none). Empty when the current
    commit is unknown: there is nothing to compare with. Uncommitted changes are not seen."""
    current = current or source_commit()
    if current is None:
        return []
    return [r for r in runs if r.summary_value("reproducibility.git.commit") != current]


def short_commits(runs: Iterable[RunRecord]) -> list[str]:
    """The distinct commits of ``runs``, 7 characters each ("unknown" where none is recorded),
    in order of first appearance: how a line names code versions."""
    names: list[str] = []
    for r in runs:
        commit = r.summary_value("reproducibility.git.commit")
        name = str(commit)[:7] if commit else "unknown"
        if name not in names:
            names.append(name)
    return names


# --- per-example test correctness -------------------------------------------------------------


def write_test_correct(run_dir: Path, correct: Any) -> Path:
    """Whether the run classified each test example correctly, in the split's order: one bit
    per example (``np.packbits``) and the count, in ``test_correct.npz``."""
    import numpy as np  # here, not at the top: the sweep launcher imports this module

    bits = np.asarray(correct, dtype=bool).ravel()
    path = Path(run_dir) / TEST_CORRECT
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, bits=np.packbits(bits), n=np.int64(bits.size))
    return path


def read_test_correct(run_dir: Path) -> Any:
    """The run's per-example test correctness as a bool array, or None when it has no readable
    ``test_correct.npz`` (older runs, diverged runs, ranks that could not gather)."""
    import zipfile

    import numpy as np

    try:
        with np.load(Path(run_dir) / TEST_CORRECT) as data:
            n = int(data["n"])
            return np.unpackbits(data["bits"], count=n).astype(bool)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


# --- small readers ----------------------------------------------------------------------------


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["a.b=1", "+c=x"]`` -> ``{"a.b": "1", "c": "x"}``."""
    out = {}
    for item in items or ():
        if "=" in item:
            key, value = item.split("=", 1)
            out[key.lstrip("+~")] = value
    return out


def _get(mapping: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = mapping
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    f = _float(value)
    return int(f) if f is not None and math.isfinite(f) else None
