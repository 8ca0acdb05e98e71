"""The report's ``README.md``: what was measured, how, the ranking of each comparison unit with
its learning-rate choice, diagnostics and figures, and every run that did not complete."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from actbench import records
from actbench.records import RunRecord
from actbench.report.analysis import (
    CSV_METRICS,
    DEAD_KEYS,
    LR_KEY,
    RECOMPUTED,
    STATUS_ORDER,
    Unit,
    status_counts,
)
from actbench.report.markdown import join as _join
from actbench.report.markdown import lr_text as _lr
from actbench.report.markdown import num as _num
from actbench.report.markdown import pct as _pct
from actbench.report.markdown import table as _table
from actbench.report.ranking_text import STATISTICS_LINES, collapsed_elsewhere, ranking_section
from actbench.report.tables import STAGE_ORDER


def _mean_of(runs: Sequence[RunRecord], get: Any) -> float:
    vals = [v for v in (get(r) for r in runs) if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def status_phrase(counts: Mapping[str, int]) -> str:
    names = [*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))]
    return ", ".join(
        f"{counts.get(s, 0)} {s}" for s in names if counts.get(s, 0) or s in STATUS_ORDER
    )


def _model_phrase(runs: Sequence[RunRecord]) -> str:
    descs = set()
    for r in runs:
        model = r.config.get("model") or {}
        params = [
            f"{k}={v}"
            for k, v in model.items()
            if k not in ("_target_", "_partial_", "name") and not isinstance(v, (dict, list))
        ]
        descs.add(f"`{r.model}`" + (f" ({', '.join(params)})" if params else ""))
    return "; ".join(sorted(descs))


def _data_phrase(runs: Sequence[RunRecord]) -> str:
    parts = []
    sizes = {
        " / ".join(f"{k} {v}" for k, v in r.summary_value("data.sizes").items())
        for r in runs
        if isinstance(r.summary_value("data.sizes"), dict)
    }
    parts += [f"{s} examples" for s in sorted(sizes)]
    split = _join(r.param("data.split_seed") for r in runs)
    fingerprints = {r.summary_value("data.fingerprint") for r in runs} - {None}
    fp = (
        f"fingerprint {next(iter(fingerprints))}"
        if len(fingerprints) == 1
        else f"**{len(fingerprints)} different data fingerprints**: {_join(fingerprints)}"
        if fingerprints
        else "no fingerprint recorded"
    )
    augment = _join(r.param("data.augment") for r in runs)
    return f"`{runs[0].dataset}`: " + "; ".join(
        [*parts, f"split seed {split}", f"augment {augment}", fp]
    )


def _training_phrase(runs: Sequence[RunRecord]) -> str:
    budget = _join(r.max_steps for r in runs)
    trained = Counter(r.steps for r in runs if r.status == "completed" and r.steps is not None)
    trained_txt = ", ".join(f"{s} ({n} runs)" for s, n in sorted(trained.items())) or "—"
    opt = _join(
        "{} (weight decay {}, schedule {})".format(
            *(r.param(f"optimizer.{k}") for k in ("name", "weight_decay", "schedule"))
        )
        for r in runs
        if r.param("optimizer.name")
    )
    batch = _join(r.param("data.batch_size") for r in runs)
    loss = _join(r.config.get("loss") for r in runs)
    return (
        f"budget {budget} optimizer steps (steps trained by completed runs: {trained_txt}); "
        f"optimizer {opt}; batch size {batch}; loss {loss}"
    )


def _environment_lines(runs: Sequence[RunRecord]) -> list[str]:
    devices = Counter(
        "{} ({}, {} torch threads)".format(
            *(
                r.summary_value(f"reproducibility.{k}")
                for k in ("device", "device_name", "torch_threads")
            )
        )
        for r in runs
        if r.summary_value("reproducibility.device")
    )
    commits = Counter(
        f"{str(r.summary_value('reproducibility.git.commit'))[:10]}"
        + (" (dirty)" if r.summary_value("reproducibility.git.dirty") else "")
        for r in runs
        if r.summary_value("reproducibility.git.commit")
    )
    versions = next(
        (r.summary_value("reproducibility.versions") for r in runs if r.status == "completed"),
        None,
    )
    total = sum(r.wall_time_s or 0.0 for r in runs)
    lines = [
        "- Hardware: " + (", ".join(f"{d}: {n} runs" for d, n in devices.items()) or "—") + ".",
        "- Code: git " + (", ".join(f"{c}: {n} runs" for c, n in commits.items()) or "—") + ".",
    ]
    if versions:
        lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    lines.append(f"- Compute: {total / 60:.1f} min of recorded run wall time in total.")
    return lines


def _unit_section(unit: Unit, figures: Mapping[str, Path], loss_key: str) -> list[str]:
    lines = [f"## {unit.label}", ""]
    ranked = unit.ranked_runs
    seeds_ranked = _join(r.seed for r in ranked)
    lines += [
        f"- Model: {_model_phrase(unit.runs)}.",
        f"- Data: {_data_phrase(unit.runs)}.",
        f"- Training: {_training_phrase(unit.runs)}.",
    ]
    if unit.staged:
        lines.append(
            f"- Two stages: {len(unit.tune_runs)} tuning runs (seeds "
            f"{_join(r.seed for r in unit.tune_runs)}; learning rates "
            f"{_join(_lr(r.lr) for r in unit.tune_runs)}) chose "
            + ("one LR" if unit.select == LR_KEY else f"one `{unit.select}` value")
            + f" per activation on `{unit.select_metric}`; "
            + (
                f"{len(ranked)} confirmation runs (seeds {seeds_ranked}) are ranked."
                if ranked
                else "no confirmation run yet."
            )
        )
    else:
        lines.append(f"- Single stage: {len(ranked)} runs ranked, seeds {seeds_ranked}.")
    lines.append("")

    lines += ranking_section(unit, figures)
    lines += _lr_section(unit, figures)
    lines += _diagnostics_section(unit)
    lines += ["### Training dynamics", ""]
    if not unit.completed:
        return [*lines, "No completed ranked run yet.", ""]
    captions = {
        "loss": f"`{loss_key}`"
        + ("" if loss_key == "train/loss" else " (no `train/loss` in these records' metrics.csv)"),
        "dead": "dead, dormant and frozen unit fractions",
        "grad_norm": "global gradient norm",
        "sharpness": "sharpness (`curv/top_eig`)",
    }
    for key, caption in captions.items():
        if key in figures:
            lines += [f"![{caption}]({figures[key].name})", ""]
        else:
            lines += [f"No {caption} in the completed runs' metrics.csv.", ""]
    return lines


def _lr_section(unit: Unit, figures: Mapping[str, Path]) -> list[str]:
    lines = ["### Learning rate", ""]
    all_lrs = sorted({lr for cells in unit.lrs.values() for lr in cells})
    if not unit.staged and len(all_lrs) <= 1:
        return [
            *lines,
            f"Every run used optimizer.lr = {_join(_lr(r.lr) for r in unit.runs)}; this sweep "
            "tunes no learning rate, so the ranking holds at that learning rate only.",
            "",
        ]
    if not unit.staged:
        lines += [
            "Single-stage sweep with several LRs: each activation is ranked at the LR with the "
            f"best mean `{unit.select_metric}`, chosen on the same seeds it is then tested on, "
            "which flatters every activation a little (no held-out seeds).",
            "",
        ]
    header = ["activation", "chosen LR", *(_lr(lr) for lr in all_lrs)]
    rows = []
    for act, cells in unit.lrs.items():
        chosen = unit.chosen_lr.get(act)
        row = [f"`{act}`", _lr(chosen)]
        for lr in all_lrs:
            cell = cells.get(lr)
            if cell is None or not (cell.scores or cell.n_diverged):
                row.append("—")
                continue
            text = f"{_pct(cell.mean)} (n={len(cell.scores)}"
            text += f", {cell.n_diverged} diverged)" if cell.n_diverged else ")"
            row.append(f"**{text}**" if lr == chosen else text)
        rows.append(row)
    lines += [
        f"Mean `{unit.select_metric}` (%) per learning rate over tuning seeds; bold: chosen "
        "(an LR that diverged on any tuning seed is never chosen). Whether each choice is "
        "bracketed (a tried value on both sides) is the ranking's `bracketed` column.",
        "",
        *_table(header, rows),
        "",
    ]
    if unit.staged:
        mismatched = sorted(
            {
                f"`{r.activation}` ran at {_lr(r.lr)}, "
                f"chosen {_lr(unit.chosen_lr.get(r.activation))}"
                for r in unit.ranked_runs
                if r.lr != unit.chosen_lr.get(r.activation)
            }
        )
        if mismatched:
            lines += ["Confirmation runs not at the chosen LR: " + "; ".join(mismatched) + ".", ""]
    if "lr_sensitivity" in figures:
        lines += [f"![LR sensitivity]({figures['lr_sensitivity'].name})", ""]
    return lines


def _diagnostics_section(unit: Unit) -> list[str]:
    lines = ["### Final diagnostics and cost", ""]
    done = unit.completed
    if not done:
        return [*lines, "No completed run yet.", ""]
    has_gpu = any(r.peak_gpu_mib is not None for r in done)
    header = [
        "activation", "dead/hard %", "dormant τ=0.1 %", "dormant τ=0.025 %", "frozen %",
        "sharpness (curv/top_eig)", "curv/trace", "grad/global_norm", "wall time s",
        "peak RSS MiB", *(["peak GPU MiB"] if has_gpu else []),
    ]  # fmt: skip
    rows = []
    for row in unit.rows:
        runs = [r for r in done if r.activation == row.activation]
        m = {k: _mean_of(runs, lambda r, k=k: r.metrics.get(k)) for k in CSV_METRICS}
        cells = [
            f"`{row.activation}`",
            *(_pct(m[k], 2) for k in DEAD_KEYS),
            _num(m["curv/top_eig"]),
            _num(m["curv/trace"]),
            _num(m["grad/global_norm"]),
            _num(_mean_of(runs, lambda r: r.wall_time_s), ".1f"),
            _num(_mean_of(runs, lambda r: r.peak_rss_mib), ".0f"),
        ]
        if has_gpu:
            cells.append(_num(_mean_of(runs, lambda r: r.peak_gpu_mib), ".0f"))
        rows.append(cells)
    lines += [
        "Means over completed ranked runs at the end of training. Wall time is fit + test with "
        "diagnostics, as recorded (parallel workers shared the machine). Peak RSS is the worker "
        "process's peak (`ru_maxrss`), which includes the interpreter, the data and any earlier "
        "job the same worker ran.",
        "",
        *_table(header, rows),
        "",
    ]
    return lines


METHOD_LINES = [
    "## How the numbers were computed",
    "",
    *STATISTICS_LINES,
    "- Learning rate (two-stage sweeps): the sweeper's choice, as it recorded it in "
    f"`{records.SELECTION}` (the metric it names, the values tried and whether the choice is "
    "bracketed): the LR with the highest mean score over the tuning seeds per activation (an LR "
    "that diverged on any tuning seed is never chosen; an activation with a failed or unfinished "
    "tuning run gets no choice until it is rerun; ties go to the smaller LR); only confirmation "
    "runs on fresh seeds are ranked, so the selection does not bias the test.",
    "- Curves: mean over completed seeds at each logged step, band from the minimum to the maximum "
    "over seeds. Colours are fixed per activation across every figure.",
    "",
]


def write_readme(
    sweep: str,
    sweep_dir: Path,
    runs: list[RunRecord],
    units: list[Unit],
    figures: Mapping[tuple[str, str, str], tuple[dict[str, Path], str]],
    path: Path,
    earlier_grid: Sequence[RunRecord] = (),
) -> Path:
    """The README; ``earlier_grid`` are the records left by an earlier grid (named, not used)."""
    counts = status_counts(runs)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Report: sweep `{sweep}`",
        "",
        f"Generated {now} by `actbench-report` from {len(runs)} run records in `{sweep_dir}` "
        f"({status_phrase(counts)}). Per-run numbers: [summary.csv](summary.csv); the ranking "
        "of every unit, machine-readable: [ranking.csv](ranking.csv).",
        "",
    ]
    if earlier_grid:
        lines += [
            f"> **{len(earlier_grid)} run record{'s' if len(earlier_grid) != 1 else ''} from an "
            "earlier grid**: in the sweep folder "
            f"but not in its `{records.GRID}`, so nothing here uses them: "
            + ", ".join(f"`{r.folder.name}`" for r in earlier_grid[:10])
            + (f" and {len(earlier_grid) - 10} more" if len(earlier_grid) > 10 else "")
            + ".",
            "",
        ]
    mixed = [u.label for u in units if u.mixed_devices]
    if mixed:
        lines += [
            "> **Mixed hardware** in " + ", ".join(mixed) + ": ranked runs of one comparison "
            "came from more than one kind of device (see each unit's ranking).",
            "",
        ]
    unfinished = counts.get("running", 0)
    if unfinished:
        lines += [
            f"> **Incomplete sweep**: {unfinished} of {len(runs)} runs are still running "
            "(or were interrupted); the statistics below use the runs finished so far.",
            "",
        ]
    lines += ["## What was measured", ""]
    lines += [
        f"- {len(units)} comparison unit(s): " + ", ".join(u.label for u in units) + ".",
        "- Activations: " + _join(r.activation for r in runs) + ".",
        "- Protocol: "
        + (
            "two stages (tune LR on validation, confirm on fresh seeds)."
            if any(u.staged for u in units)
            else "single stage (every run is ranked; no separate tuning stage)."
        ),
        *(
            f"- Reduced protocol (the sweep file's `actbench.reduce`), {line}."
            for line in records.grid_reductions(sweep_dir)
        ),
        *(
            [
                f"- LR choice: `{records.SELECTION}` is missing from the sweep folder, so the "
                "choice was recomputed from the tuning records by the sweeper's rule."
            ]
            if any(u.staged and u.selection_source == RECOMPUTED for u in units)
            else []
        ),
        *_environment_lines(runs),
        *(
            [f"- Collapsed runs outside the rankings (tuning): {collapsed_elsewhere(units)}."]
            if collapsed_elsewhere(units)
            else []
        ),
        "",
    ]
    stage_header = ["unit", "stage", *STATUS_ORDER, "total"]
    stage_rows = []
    for u in units:
        for stage in sorted({r.stage for r in u.runs}, key=lambda s: STAGE_ORDER.get(s, 3)):
            c = status_counts(r for r in u.runs if r.stage == stage)
            stage_rows.append(
                [u.label, stage or "single", *(c.get(s, 0) for s in STATUS_ORDER), sum(c.values())]
            )
    lines += ["Run status counts:", "", *_table(stage_header, stage_rows), ""]
    lines += METHOD_LINES
    for u in units:
        figs, loss_key = figures[u.key]
        lines += _unit_section(u, figs, loss_key)
    others = [r for r in runs if r.status != "completed"]
    lines += ["## Runs not completed", ""]
    if others:
        rows = [
            [
                r.status, r.stage or "single", f"`{r.activation}`", r.seed, _lr(r.lr),
                r.diverged_at_step if r.diverged_at_step is not None else "—",
                str(r.summary.get("error") or "—").replace("|", "/")[:120],
                f"`{r.folder.name}`",
            ]
            for r in sorted(others, key=lambda r: (r.status, r.activation, r.seed or 0))
        ]  # fmt: skip
        lines += _table(
            ["status", "stage", "activation", "seed", "LR", "diverged at step", "error", "folder"],
            rows,
        )
    else:
        lines.append("None: every run completed.")
    lines.append("")
    return records.atomic_write_text(path, "\n".join(lines))
