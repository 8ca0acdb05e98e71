"""Reproduction experiments: published claims, protocols run offline, verdicts decided in advance.

Each experiment is a preset (``conf/experiment/<name>.yaml``), a grid (``sweeps/exp_<name>.yaml``)
and, here, the rule that turns its run records into a verdict. The rules are constants and code
written before any result was seen; the document states them and applies them mechanically.

    actbench-experiments run NAME [--scale small] [--jobs N] [overrides]  (via actbench-sweep)
    actbench-experiments collect NAME [--scale small]  # multirun/exp_NAME/ -> docs/.../records/
    actbench-experiments render [NAME ...]   # records -> docs/experiments/NAME.md and NAME.png
    actbench-experiments check               # exit 1 if a document differs from its records
    actbench-experiments                     # no command: render every experiment

Records are the minimum a document needs: each run's ``summary.json`` and ``config.yaml`` and its
``metrics.csv`` trimmed to the columns the analysis reads. Documents are a pure function of the
records (fixed float formats, no clock), so ``check`` can regenerate and compare them byte for
byte; figures are regenerated too but not compared (their bytes depend on matplotlib's version).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "experiments"
SWEEPS = REPO / "sweeps"
SCALES = ("full", "small")
MANIFEST = "manifest.json"
RUNS = "runs"
FINISHED = ("completed", "diverged")  # a diverged run is a result (too large a step), not a gap


class ExperimentError(ValueError):
    """Unusable input for an experiment command (the message is a single line)."""


# --- run records ------------------------------------------------------------------------------


@dataclass
class Run:
    """One run as the records hold it: summary, resolved config and the kept metric curves."""

    folder: str
    summary: dict[str, Any]
    config: dict[str, Any]
    curves: dict[str, list[tuple[int, float]]]

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def param(self, dotted: str) -> Any:
        """A value of the resolved config by dotted key (None where absent)."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def metric(self, key: str) -> float | None:
        """The final value of ``key``: the summary's, else the last point of its curve."""
        value = self.summary.get("metrics", {}).get(key)
        if value is None and self.curves.get(key):
            value = self.curves[key][-1][1]
        return None if value is None or not math.isfinite(float(value)) else float(value)

    def curve(self, key: str) -> list[tuple[int, float]]:
        return self.curves.get(key, [])


def read_curves(path: Path, keys: Iterable[str]) -> dict[str, list[tuple[int, float]]]:
    """``{key: [(step, value), ...]}`` from a Lightning ``metrics.csv`` (last value per step)."""
    wanted = set(keys)
    points: dict[str, dict[int, float]] = defaultdict(dict)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("step"):
                continue
            step = int(float(row["step"]))
            for key in wanted:
                cell = row.get(key)
                if cell not in (None, ""):
                    points[key][step] = float(cell)  # a resumed run may log a step twice
    return {k: sorted(v.items()) for k, v in points.items()}


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
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", *present])
    writer.writerows(rows)
    dst.write_text(buf.getvalue())
    return len(rows)


def load_runs(records: Path, keys: Iterable[str]) -> list[Run]:
    """Every run under ``records/runs/``, sorted by folder name (a stable order)."""
    keys = list(keys)
    runs = []
    for folder in sorted((records / RUNS).iterdir()):
        summary_path = folder / "summary.json"
        if not summary_path.is_file():
            continue
        metrics_path = folder / "metrics.csv"
        runs.append(
            Run(
                folder=folder.name,
                summary=json.loads(summary_path.read_text()),
                config=yaml.safe_load((folder / "config.yaml").read_text()) or {},
                curves=read_curves(metrics_path, keys) if metrics_path.is_file() else {},
            )
        )
    return runs


# --- formatting -------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(kept)) if kept else None


def fmt(value: float | None, spec: str = ".4g") -> str:
    """Fixed formatting; a missing value is an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _points(value: float | None) -> str:
    """A difference of two shares, in percentage points."""
    return "—" if value is None else f"{100 * value:+.1f} pt"


def lr_text(value: float) -> str:
    """A learning rate as written in the grid (1e-3, 3e-4, 0.08)."""
    if value >= 0.01:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e-{int(exponent[1:])}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def values_match(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        try:
            return math.isclose(float(actual), float(expected), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return actual == expected


# --- experiments ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What an experiment's rule made of its records."""

    verdict: str  # the verdict paragraph (markdown)
    result: str  # tables and text between the rule and the verdict (markdown)


class Experiment:
    """Base: texts for the document, the grid's small variant, protocol checks, analysis, figure."""

    name: str = ""
    title: str = ""
    source: str = ""  # the paper
    claim: str = ""
    protocol: str = ""  # markdown bullets
    differences: str = ""  # markdown bullets: how the transfer departs from the paper
    # Sweep parameters replaced for the small scale (a seconds-long check of the pipeline).
    small: ClassVar[dict[str, Any]] = {}
    # Config keys every run must have at these values (any scale), and at full scale only.
    invariants: ClassVar[dict[str, Any]] = {}
    full_invariants: ClassVar[dict[str, Any]] = {}
    csv_keys: tuple[str, ...] = ()

    @property
    def sweep_file(self) -> Path:
        return SWEEPS / f"exp_{self.name}.yaml"

    def spec(self, scale: str) -> dict[str, Any]:
        """The sweep spec at ``scale``: the committed file, or its small variant."""
        spec = yaml.safe_load(self.sweep_file.read_text())
        if scale == "small":
            params = dict(spec["parameters"])
            for key, value in self.small.items():
                params[key] = {"values": value} if isinstance(value, list) else {"value": value}
            spec["parameters"] = params
        return spec

    def stem(self, scale: str) -> str:
        return f"exp_{self.name}" if scale == "full" else f"exp_{self.name}_{scale}"

    def rule(self) -> str:
        raise NotImplementedError

    def analyse(self, runs: list[Run], scale: str) -> Outcome:
        raise NotImplementedError

    def figure(self, runs: list[Run], path: Path) -> None:
        raise NotImplementedError

    def protocol_deviations(self, runs: list[Run], scale: str) -> list[str]:
        """Runs whose config breaks the protocol (a preset that could not set a key, say)."""
        expected = dict(self.invariants)
        if scale == "full":
            expected.update(self.full_invariants)
        found = []
        for key, value in expected.items():
            bad = sorted(
                {repr(r.param(key)) for r in runs if not values_match(r.param(key), value)}
            )
            if bad:
                found.append(f"`{key}` should be {value!r}; found {', '.join(bad)}")
        return found


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    # No software/date metadata: the same records give the same bytes on one matplotlib version.
    fig.savefig(path, dpi=100, metadata={"Software": None}, bbox_inches="tight")
    _plt().close(fig)


def _groups(runs: list[Run], *keys: str) -> dict[tuple[Any, ...], list[Run]]:
    out: dict[tuple[Any, ...], list[Run]] = defaultdict(list)
    for r in runs:
        out[tuple(r.param(k) for k in keys)].append(r)
    return dict(out)


def _status_counts(runs: list[Run]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for r in runs:
        counts[r.status] += 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


# ---- 1. Hendrycks & Gimpel's fully connected MNIST classifier ---------------------------------


class GeluPaper(Experiment):
    name = "gelu_paper"
    title = "GELU has the lowest training loss (Hendrycks & Gimpel 2016, fully connected net)"
    source = (
        "D. Hendrycks and K. Gimpel, *Gaussian Error Linear Units (GELUs)*, arXiv:1606.08415 "
        "(2016), MNIST classification; code: hendrycks/GELUs."
    )
    claim = (
        "A fully connected classifier with 8 hidden layers of 128 units, trained with Adam, "
        "reaches a lower median training log loss with GELU than with the other nonlinearities "
        "compared, both without dropout and with dropout 0.5 (the paper shows this as curves, "
        "with no table)."
    )
    protocol = "\n".join(
        [
            "- MLP with 8 hidden layers × 128 units, no normalisation; each unit's incoming "
            "weight vector drawn Gaussian and scaled to unit L2 norm, biases zero "
            "(`model.init=unit_norm`).",
            "- Activations: `gelu_tanh` (the tanh approximation the paper used throughout), exact "
            "`gelu` beside it, `relu`, `elu`, `silu`.",
            "- Adam (β = 0.9, 0.999), batch 128, 50 epochs of the training split = 1450 steps, the "
            "same for every activation; learning rate ∈ {1e-3, 1e-4, 1e-5}; dropout 0 or 0.5 after "
            "every hidden activation; cross-entropy; 5 seeds per configuration (150 runs).",
            "- The learning rate is chosen per (activation, dropout) on the validation split; the "
            "training loss is the log loss over the whole training split in eval mode (dropout "
            "off), measured once per epoch (`actbench.diagnostics.TrainSetLoss`).",
            "- Preset `conf/experiment/gelu_paper.yaml`, grid `sweeps/exp_gelu_paper.yaml`.",
        ]
    )
    differences = "\n".join(
        [
            "- **Data: MNIST-1D instead of MNIST** (40-dimensional sequences, 3600 training / 400 "
            "validation / 1000 test examples, generated locally; the paper: 784-pixel images, "
            "55k / 5k). This is a protocol transfer, not a reproduction: the claim is tested on "
            "other data with the paper's architecture and training recipe.",
            "- 50 epochs of a 3600-example split are 1450 steps, far fewer updates than 50 MNIST "
            "epochs (about 21 500).",
            "- The paper does not say which validation statistic chose the learning rate; here it "
            "is the median over seeds of the final validation log loss (the quantity the paper "
            "plots for validation).",
            "- The paper compares curves; the rule below compares the final (epoch 50) training "
            "loss. Exact GELU and SiLU are added beside the paper's GELU, ReLU and ELU.",
        ]
    )
    small: ClassVar[dict[str, Any]] = {
        "data": "digits",
        "activation": ["gelu_tanh", "relu"],
        "optimizer.lr": [0.001, 0.0001],
        "seed": [0],
        "trainer.max_steps": 22,
        "callbacks.train_loss.every_n_steps": 11,
    }
    invariants: ClassVar[dict[str, Any]] = {
        "model.name": "mlp",
        "model.depth": 8,
        "model.width": 128,
        "model.init": "unit_norm",
        "model.norm": "none",
        "optimizer.name": "adam",
        "optimizer.beta1": 0.9,
        "optimizer.beta2": 0.999,
        "optimizer.weight_decay": 0.0,
        "optimizer.schedule": "none",
        "data.batch_size": 128,
        "data.full_batch": False,
        "loss": "ce",
    }
    full_invariants: ClassVar[dict[str, Any]] = {"data.name": "mnist1d", "trainer.max_steps": 1450}
    csv_keys = ("train_eval/loss", "train_eval/acc", "val/loss", "val/acc")

    # The rule, fixed before any run: which activation makes the claim, against which others,
    # how the learning rate is chosen and what is compared.
    CLAIMANT = "gelu_tanh"
    COMPETITORS = ("relu", "elu", "silu")
    ALSO_SHOWN = ("gelu",)
    SELECT_ON = "val/loss"  # median over seeds of the final value; lowest wins
    COMPARE = "train_eval/loss"  # median over seeds of the final value; lowest wins
    DROPOUTS = (0.0, 0.5)

    def rule(self) -> str:
        return "\n".join(
            [
                "Written in `src/actbench/experiments.py` (`GeluPaper`) before any run:",
                "",
                f"1. For each (activation, dropout), the learning rate is the one whose median "
                f"over seeds of the final `{self.SELECT_ON}` (validation log loss after the last "
                "epoch) is lowest. A seed that diverged counts as an infinite loss.",
                f"2. At that learning rate, the activation's score is the median over seeds of "
                f"the final `{self.COMPARE}` (log loss over the whole training split, eval mode).",
                f"3. For each dropout rate, the claim holds iff `{self.CLAIMANT}`'s score is "
                f"strictly lower than that of every one of {', '.join(self.COMPETITORS)}. Exact "
                f"`gelu` is reported beside it and is not a competitor (it is the same function "
                "to within 0.001).",
                "4. **The claim holds** iff it holds at both dropout rates; it does not hold if it "
                "fails at either.",
            ]
        )

    def _cells(self, runs: list[Run]) -> dict[tuple[str, float, float], list[Run]]:
        return _groups(runs, "activation.name", "model.dropout", "optimizer.lr")

    def _score(self, group: list[Run], key: str, diverged_is_inf: bool) -> float | None:
        values = []
        for r in group:
            if r.ok:
                values.append(r.metric(key))
            elif r.status == "diverged" and diverged_is_inf:
                values.append(math.inf)
        kept = [v for v in values if v is not None]
        return float(statistics.median(kept)) if kept else None

    def select(self, runs: list[Run]) -> dict[tuple[str, float], float]:
        """(activation, dropout) -> the learning rate with the lowest median validation loss."""
        best: dict[tuple[str, float], tuple[float, float]] = {}
        for (act, dropout, lr), group in sorted(self._cells(runs).items()):
            score = self._score(group, self.SELECT_ON, diverged_is_inf=True)
            if score is None:
                continue
            key = (act, dropout)
            # Ties go to the smaller learning rate (sorted order visits it first).
            if key not in best or score < best[key][0]:
                best[key] = (score, lr)
        return {k: lr for k, (_, lr) in best.items()}

    def decide(self, runs: list[Run]) -> dict[float, tuple[str, dict[str, float | None]]]:
        """dropout -> (``holds`` | ``fails`` | ``no data``, {activation: score})."""
        chosen = self.select(runs)
        cells = self._cells(runs)
        out = {}
        for dropout in sorted({d for _, d in chosen}):
            scores = {
                act: self._score(cells[(act, dropout, lr)], self.COMPARE, diverged_is_inf=False)
                for (act, d), lr in chosen.items()
                if d == dropout
            }
            mine = scores.get(self.CLAIMANT)
            rivals = [scores[a] for a in self.COMPETITORS if scores.get(a) is not None]
            if mine is None or not rivals:
                out[dropout] = ("no data", scores)
            else:
                out[dropout] = ("holds" if all(mine < v for v in rivals) else "fails", scores)
        return out

    def analyse(self, runs: list[Run], scale: str) -> Outcome:
        chosen = self.select(runs)
        cells = self._cells(runs)
        decided = self.decide(runs)
        order = [self.CLAIMANT, *self.ALSO_SHOWN, *self.COMPETITORS]
        acts = [a for a in order if any(k[0] == a for k in chosen)]
        rows = []
        for dropout in sorted(decided):
            scores = decided[dropout][1]
            ranked = sorted((v, a) for a, v in scores.items() if v is not None)
            rank = {a: i + 1 for i, (_, a) in enumerate(ranked)}
            for act in acts:
                if (act, dropout) not in chosen:
                    continue
                lr = chosen[(act, dropout)]
                group = cells[(act, dropout, lr)]
                losses = [r.metric(self.COMPARE) for r in group if r.ok]
                losses = [v for v in losses if v is not None]
                spread = f"{fmt(min(losses))} – {fmt(max(losses))}" if losses else "—"
                rows.append(
                    [
                        f"{dropout:g}",
                        f"`{act}`",
                        lr_text(lr),
                        fmt(scores.get(act)),
                        spread,
                        str(rank.get(act, "—")),
                        fmt(self._score(group, self.SELECT_ON, diverged_is_inf=True)),
                        pct(self._score(group, "test/acc", diverged_is_inf=False)),
                        f"{sum(r.ok for r in group)}/{len(group)}",
                    ]
                )
        selected = table(
            [
                "dropout",
                "activation",
                "chosen lr",
                "median train loss",
                "min – max over seeds",
                "rank",
                "median val loss",
                "median test acc",
                "runs completed",
            ],
            rows,
        )
        # Every learning rate, to show whether the verdict hangs on the selection step.
        grid_rows = []
        lrs = sorted({k[2] for k in cells}, reverse=True)
        for dropout in sorted({k[1] for k in cells}):
            for lr in lrs:
                values = {
                    a: self._score(cells[(a, dropout, lr)], self.COMPARE, diverged_is_inf=False)
                    for a in acts
                    if (a, dropout, lr) in cells
                }
                present = [v for v in values.values() if v is not None]
                low = min(present) if present else None
                grid_rows.append(
                    [f"{dropout:g}", lr_text(lr)]
                    + [
                        ("**" + fmt(values.get(a)) + "**")
                        if values.get(a) is not None and values.get(a) == low
                        else fmt(values.get(a))
                        for a in acts
                    ]
                )
        every_lr = table(["dropout", "lr", *(f"`{a}`" for a in acts)], grid_rows)
        result = "\n\n".join(
            [
                "![Median training and validation log loss per epoch at the chosen learning "
                f"rates]({self.name}.png)",
                "Solid: median training log loss over the whole training split in eval mode; "
                "faint: median validation log loss; each activation at its chosen learning rate.",
                "### At the chosen learning rates",
                selected,
                "### Median final training loss at every learning rate (lowest in bold)",
                "Not part of the rule: it shows whether the verdict depends on the selection.",
                every_lr,
            ]
        )
        return Outcome(self._verdict(decided), result)

    def _verdict(self, decided: dict[float, tuple[str, dict[str, float | None]]]) -> str:
        lines = []
        for dropout in self.DROPOUTS:
            if dropout not in decided:
                lines.append(f"- Dropout {dropout:g}: no runs.")
                continue
            outcome, scores = decided[dropout]
            mine = scores.get(self.CLAIMANT)
            rivals = {a: scores[a] for a in self.COMPETITORS if scores.get(a) is not None}
            best_rival = min(rivals.items(), key=lambda kv: kv[1]) if rivals else None
            if outcome == "no data":
                lines.append(f"- Dropout {dropout:g}: not enough runs to compare.")
            else:
                word = "lower" if outcome == "holds" else "not lower"
                lines.append(
                    f"- Dropout {dropout:g}: **{outcome}**: `{self.CLAIMANT}` {fmt(mine)} is "
                    f"{word} than the best competitor, `{best_rival[0]}` {fmt(best_rival[1])}."
                )
            exact = scores.get("gelu")
            if exact is not None and rivals:
                beats = all(exact < v for v in rivals.values())
                lines.append(
                    f"  With exact `gelu` ({fmt(exact)}) in its place the comparison would "
                    f"{'also hold' if beats else 'not hold'}."
                )
        outcomes = [decided[d][0] for d in self.DROPOUTS if d in decided]
        if len(outcomes) == len(self.DROPOUTS) and all(o == "holds" for o in outcomes):
            head = "**The claim holds** on this protocol transfer (both dropout rates)."
        elif any(o == "fails" for o in outcomes):
            head = "**The claim does not hold** on this protocol transfer."
        else:
            head = "**No verdict**: the records do not cover both dropout rates."
        return head + "\n\n" + "\n".join(lines)

    def figure(self, runs: list[Run], path: Path) -> None:
        plt = _plt()
        chosen = self.select(runs)
        cells = self._cells(runs)
        dropouts = sorted({d for _, d in chosen}) or [0.0]
        fig, axes = plt.subplots(
            1, len(dropouts), figsize=(5.2 * len(dropouts), 3.8), squeeze=False
        )
        order = [self.CLAIMANT, *self.ALSO_SHOWN, *self.COMPETITORS]
        colors = dict(zip(order, ["C3", "C1", "C0", "C2", "C4"], strict=True))
        for ax, dropout in zip(axes[0], dropouts, strict=True):
            for act in order:
                if (act, dropout) not in chosen:
                    continue
                lr = chosen[(act, dropout)]
                group = [r for r in cells[(act, dropout, lr)] if r.ok]
                epoch = _steps_per_epoch(group[0]) if group else 1
                for key, style in ((self.COMPARE, "-"), ("val/loss", ":")):
                    steps, med = _median_curve(group, key)
                    if steps:
                        ax.plot(
                            [s / epoch for s in steps],
                            med,
                            style,
                            color=colors[act],
                            alpha=1.0 if style == "-" else 0.45,
                            label=f"{act} (lr {lr_text(lr)})" if style == "-" else None,
                        )
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_title(f"dropout {dropout:g}")
            ax.legend(fontsize=8)
        axes[0][0].set_ylabel("log loss (median over seeds)")
        fig.tight_layout()
        _save(fig, path)


def _steps_per_epoch(run: Run) -> int:
    train = run.summary.get("data", {}).get("sizes", {}).get("train")
    batch = run.param("data.batch_size")
    if run.param("data.full_batch") or not train or not batch:
        return 1
    return -(-int(train) // int(batch))


def _median_curve(group: list[Run], key: str) -> tuple[list[int], list[float]]:
    """Steps logged by every run of ``group`` and the median value there."""
    curves = [dict(r.curve(key)) for r in group if r.curve(key)]
    if not curves:
        return [], []
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    return steps, [float(statistics.median(c[s] for c in curves)) for s in steps]


# ---- 2. dying units against the learning rate ------------------------------------------------


class Dying(Experiment):
    name = "dying"
    title = "At which learning rates do units die, and do they come back?"
    source = (
        "A question rather than a published claim. Background: L. Lu, Y. Shin, Y. Su and "
        "G. E. Karniadakis, *Dying ReLU and Initialization: Theory and Numerical Examples*, "
        "arXiv:1903.06733 (2019) (deep narrow ReLU nets can be born dead); the dormant-unit "
        "score of G. Sokar et al., *The Dormant Neuron Phenomenon in Deep Reinforcement "
        "Learning*, ICML 2023 (ReDo)."
    )
    claim = (
        "No claim is tested. The question: in a deep narrow MLP trained with Adam, from which "
        "learning rate on do units of each activation stop passing gradient, and do they "
        "recover before the end of training? Folklore says ReLU units die at large learning "
        "rates and smooth activations (ELU, GELU, SiLU) and leaky ReLU do not."
    )
    protocol = "\n".join(
        [
            "- MLP with 10 hidden layers × 32 units, no normalisation, the variance-preserving "
            "init of each activation (`model.init=activation`), on MNIST-1D.",
            "- Activations `relu`, `leaky_relu` (slope 0.01), `elu`, `gelu`, `silu`; Adam, batch "
            "128, 1500 steps (about 52 epochs); learning rate on a log grid 1e-4 … 1e-1 (7 "
            "values); 5 seeds each (175 runs).",
            "- Every 50 steps, on the 400 validation inputs in eval mode "
            "(`actbench.diagnostics.DeadNeuronMonitor`): `dead/hard` (output exactly 0 on every "
            "input), `dead/dormant_0.025` (ReDo score ≤ 0.025: mean |h| below 2.5 % of its "
            "layer's mean), `dead/frozen` (mean |f′(z)| ≤ 0.1 of its layer's mean: the unit "
            "passes back almost no gradient; defined for smooth activations too). Each is a share "
            "of all 320 hidden units.",
            "- Preset `conf/experiment/dying.yaml`, grid `sweeps/exp_dying.yaml`.",
        ]
    )
    differences = "\n".join(
        [
            "- Not a reproduction: Lu et al. study dying at initialisation as depth grows; this "
            "experiment varies the learning rate at fixed depth and follows the units during "
            "training. It is an actbench question, answered with a rule fixed in advance.",
        ]
    )
    small: ClassVar[dict[str, Any]] = {
        "data": "digits",
        "activation": ["relu", "gelu"],
        "optimizer.lr": [0.001, 0.1],
        "seed": [0],
        "trainer.max_steps": 40,
        "callbacks.dead_neurons.every_n_steps": 10,
    }
    invariants: ClassVar[dict[str, Any]] = {
        "model.name": "mlp",
        "model.depth": 10,
        "model.width": 32,
        "model.init": "activation",
        "model.norm": "none",
        "model.dropout": 0.0,
        "optimizer.name": "adam",
        "optimizer.schedule": "none",
        "data.batch_size": 128,
        "loss": "ce",
    }
    full_invariants: ClassVar[dict[str, Any]] = {"data.name": "mnist1d", "trainer.max_steps": 1500}
    csv_keys = ("dead/hard", "dead/dormant_0.025", "dead/dormant_0.1", "dead/frozen")

    ORDER = ("relu", "leaky_relu", "elu", "gelu", "silu")
    # The rule, fixed before any run.
    MEASURES = ("dead/frozen", "dead/hard", "dead/dormant_0.025")
    LOST = 0.10  # a (activation, lr) loses units when the median peak share is at least this
    RECOVERED = 0.5  # ...and recovers when the median final share is at most this x the peak
    MAJORITY_DIVERGED = 0.5  # a cell with more than half its seeds diverged is "diverged"

    def rule(self) -> str:
        return "\n".join(
            [
                "Written in `src/actbench/experiments.py` (`Dying`) before any run. For each "
                "measure (`dead/frozen` is the primary one: it asks whether a unit still passes "
                "gradient, for every activation) and each run:",
                "",
                "- *init* = the share at step 0 (born dead); *peak* = the largest share over the "
                "measurements after step 0; *final* = the share at the last step. *rise* = peak − "
                "init and *left* = final − init: what training added to the units dead at birth.",
                f"- A cell (activation, learning rate) **loses units** when the median over seeds "
                f"of the rise is ≥ {self.LOST * 100:.0f} percentage points of all hidden units; it "
                f"**recovers** when, in addition, the median left is ≤ {self.RECOVERED:g} × the "
                "median rise.",
                "- An activation's **onset** is the smallest learning rate of the grid at which "
                "its cell loses units.",
                f"- A cell where more than {self.MAJORITY_DIVERGED:.0%} of seeds diverged "
                "(non-finite loss) is reported as diverged; medians use completed runs only.",
            ]
        )

    @staticmethod
    def _peak_final(run: Run, key: str) -> tuple[float | None, float | None, float | None]:
        points = run.curve(key)
        if not points:
            return None, None, None
        init = points[0][1] if points[0][0] == 0 else None
        later = [v for s, v in points if s > 0]
        return init, (max(later) if later else None), points[-1][1]

    def cell_stats(self, group: list[Run]) -> dict[str, Any]:
        done = [r for r in group if r.ok]
        stats: dict[str, Any] = {
            "n": len(group),
            "completed": len(done),
            "diverged": sum(r.status == "diverged" for r in group),
            "test_acc": median(r.metric("test/acc") for r in done),
        }
        for key in self.MEASURES:
            triples = [t for t in (self._peak_final(r, key) for r in done) if None not in t]
            # Rises over the run's own start: units born dead are not lost to the learning rate.
            rise = median(peak - init for init, peak, _ in triples)
            left = median(final - init for init, _, final in triples)
            lost = rise is not None and rise >= self.LOST
            recovered = lost and left is not None and left <= self.RECOVERED * rise
            stats[key] = {
                "init": median(t[0] for t in triples),
                "peak": median(t[1] for t in triples),
                "final": median(t[2] for t in triples),
                "rise": rise,
                "left": left,
                "lost": lost,
                "recovered": recovered,
            }
        stats["is_diverged"] = stats["diverged"] > self.MAJORITY_DIVERGED * len(group)
        return stats

    def table_of_cells(self, runs: list[Run]) -> dict[tuple[str, float], dict[str, Any]]:
        return {
            k: self.cell_stats(g)
            for k, g in sorted(_groups(runs, "activation.name", "optimizer.lr").items())
        }

    def analyse(self, runs: list[Run], scale: str) -> Outcome:
        cells = self.table_of_cells(runs)
        order = [a for a in self.ORDER if any(k[0] == a for k in cells)]

        def state(s: dict[str, Any]) -> str:
            if not s["lost"]:
                return "kept"
            return "lost, recovered" if s["recovered"] else "**lost**"

        rows = []
        for act in order:
            for lr in sorted(lr for a, lr in cells if a == act):
                s = cells[(act, lr)]
                f, h, d = (s[m] for m in self.MEASURES)
                status = "diverged" if s["is_diverged"] else state(f)
                rows.append(
                    [
                        f"`{act}`",
                        lr_text(lr),
                        pct(f["init"]),
                        pct(f["peak"]),
                        pct(f["final"]),
                        f"{_points(f['rise'])} / {_points(f['left'])}",
                        status,
                        f"{pct(h['peak'])} / {pct(h['final'])}",
                        f"{pct(d['peak'])} / {pct(d['final'])}",
                        pct(s["test_acc"]),
                        f"{s['completed']}/{s['n']}"
                        + (f" ({s['diverged']} div.)" if s["diverged"] else ""),
                    ]
                )
        main = table(
            [
                "activation",
                "lr",
                "frozen at init",
                "frozen peak",
                "frozen final",
                "frozen rise / left",
                "frozen: rule",
                "hard peak / final",
                "dormant 0.025 peak / final",
                "median test acc",
                "runs completed",
            ],
            rows,
        )
        result = "\n\n".join(
            [
                f"![Dead-unit shares and test accuracy against the learning rate]({self.name}.png)",
                "Medians over seeds. Solid: peak share during training; dashed: share at the end.",
                "### Every cell",
                main,
            ]
        )
        return Outcome(self._answers(cells, order), result)

    def _answers(self, cells: dict[tuple[str, float], dict[str, Any]], order: list[str]) -> str:
        lines = []
        for act in order:
            lrs = sorted(lr for a, lr in cells if a == act)
            parts = []
            for key in self.MEASURES:
                lost = [
                    lr
                    for lr in lrs
                    if cells[(act, lr)][key]["lost"] and not cells[(act, lr)]["is_diverged"]
                ]
                if not lost:
                    parts.append(f"`{key}`: no learning rate of the grid loses units")
                    continue
                kept_after = [lr for lr in lost if not cells[(act, lr)][key]["recovered"]]
                recovered = [lr for lr in lost if cells[(act, lr)][key]["recovered"]]
                text = f"`{key}`: onset at lr {lr_text(lost[0])}"
                if recovered:
                    text += f"; recovers at {', '.join(lr_text(x) for x in recovered)}"
                if kept_after:
                    text += f"; stays lost at {', '.join(lr_text(x) for x in kept_after)}"
                parts.append(text)
            diverged = [lr for lr in lrs if cells[(act, lr)]["is_diverged"]]
            if diverged:
                parts.append(f"diverged at {', '.join(lr_text(x) for x in diverged)}")
            lines.append(f"- `{act}`: " + "; ".join(parts) + ".")
        head = (
            "**Answer** (a question, so no holds / fails): by the rule above, per activation, "
            "the smallest learning rate at which each measure loses units and whether the units "
            "come back by the end of training."
        )
        return head + "\n\n" + "\n".join(lines)

    def figure(self, runs: list[Run], path: Path) -> None:
        plt = _plt()
        cells = self.table_of_cells(runs)
        order = [a for a in self.ORDER if any(k[0] == a for k in cells)]
        colors = {"relu": "C0", "leaky_relu": "C9", "elu": "C2", "gelu": "C3", "silu": "C4"}
        fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
        panels = [*self.MEASURES, "test/acc"]
        for ax, key in zip(axes, panels, strict=True):
            for act in order:
                lrs = sorted(lr for a, lr in cells if a == act)
                if key == "test/acc":
                    ys = [cells[(act, lr)]["test_acc"] for lr in lrs]
                    ax.plot(
                        lrs,
                        [math.nan if y is None else y for y in ys],
                        "o-",
                        color=colors[act],
                        label=act,
                    )
                    continue
                for part, style in (("peak", "o-"), ("final", "x--")):
                    ys = [cells[(act, lr)][key][part] for lr in lrs]
                    ax.plot(
                        lrs,
                        [math.nan if y is None else y for y in ys],
                        style,
                        color=colors[act],
                        label=act if part == "peak" else None,
                    )
            ax.set_xscale("log")
            ax.set_xlabel("learning rate (Adam)")
            ax.set_title(key)
            if key != "test/acc":
                ax.set_ylabel("share of hidden units")
        axes[-1].set_ylabel("test accuracy")
        axes[-1].legend(fontsize=8)
        fig.tight_layout()
        _save(fig, path)


# ---- 3. edge of stability ----------------------------------------------------------------------


class EdgeOfStability(Experiment):
    name = "edge_of_stability"
    title = "Sharpness rises to 2/η and hovers there (Cohen et al. 2021)"
    source = (
        "J. M. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar, *Gradient Descent on Neural "
        "Networks Typically Occurs at the Edge of Stability*, ICLR 2021; code: "
        "locuslab/edge-of-stability."
    )
    claim = (
        "Under full-batch gradient descent with step size η, the sharpness (largest eigenvalue "
        "of the training-loss Hessian) rises during training (progressive sharpening) until it "
        "reaches 2/η, and then hovers just above 2/η instead of rising further, while the loss "
        "keeps decreasing non-monotonically."
    )
    protocol = "\n".join(
        [
            "- MLP with 2 hidden layers × 200 units, Xavier-normal init, zero biases; activations "
            "`relu`, `elu`, `softplus`, `gelu`, `tanh`.",
            "- Full-batch gradient descent (`optimizer=sgd`, momentum 0, `data.full_batch=true`) "
            "on a fixed subset: MNIST-1D generated with 3000 samples, whose training split holds "
            "2160 examples; 4000 steps; step size η ∈ {0.02, 0.04, 0.08, 0.16, 0.32}; seed 0 (25 "
            "runs).",
            "- Square loss ½·Σ over the 10 outputs of (f − onehot)², averaged over examples "
            "(`loss=mse`, the paper's convention; PyTorch's `MSELoss` is 2/C times it).",
            "- Sharpness every 50 steps: Lanczos (≤ 20 iterations, warm-started) on "
            "Hessian-vector products of the loss over the whole training split "
            "(`actbench.diagnostics.CurvatureMonitor` with `every_n_steps=50`); the ratio "
            "λ_max·η/2 is `curv/stability_ratio` (1 at the stability limit).",
            "- Preset `conf/experiment/edge_of_stability.yaml`, grid "
            "`sweeps/exp_edge_of_stability.yaml`.",
        ]
    )
    differences = "\n".join(
        [
            "- **Data: a 2160-example MNIST-1D subset instead of 5000 CIFAR-10 images**: a "
            "protocol transfer, not a reproduction.",
            "- Init: Xavier normal with zero biases (actbench has no PyTorch-default init, "
            "which the paper used); a fixed budget of 4000 steps instead of training to a loss "
            "threshold, so a small η may not reach 2/η within the budget.",
            "- The η grid is one doubling grid for every activation (the paper chose η per "
            "network); where 2/η is below an activation's sharpness at init, the run starts "
            "beyond the limit and does not test progressive sharpening.",
        ]
    )
    small: ClassVar[dict[str, Any]] = {
        "data.num_samples": 500,
        "activation": ["relu", "tanh"],
        "optimizer.lr": [0.04, 0.16],
        "trainer.max_steps": 60,
        "callbacks.curvature.every_n_steps": 10,
    }
    invariants: ClassVar[dict[str, Any]] = {
        "model.name": "mlp",
        "model.depth": 2,
        "model.width": 200,
        "model.init": "xavier",
        "model.norm": "none",
        "model.dropout": 0.0,
        "optimizer.name": "sgd",
        "optimizer.momentum": 0.0,
        "optimizer.weight_decay": 0.0,
        "optimizer.schedule": "none",
        "data.full_batch": True,
        "loss": "mse",
    }
    full_invariants: ClassVar[dict[str, Any]] = {
        "data.name": "mnist1d",
        "data.num_samples": 3000,
        "trainer.max_steps": 4000,
    }
    csv_keys = ("curv/top_eig", "curv/stability_ratio", "train_eval/loss", "train_eval/acc")

    # The rule, fixed before any run.
    REACH = 0.9  # 2/η is reached at the first measurement with λ_max ≥ 0.9·2/η
    TAIL = 0.25  # the plateau is judged on the last quarter of the steps...
    BAND = (0.9, 1.25)  # ...where the median of λ_max·η/2 must lie in this band
    MIN_POINTS = 3  # ...over at least this many measurements at or after the reaching step

    def rule(self) -> str:
        lo, hi = self.BAND
        return "\n".join(
            [
                "Written in `src/actbench/experiments.py` (`EdgeOfStability`) before any run. "
                "With r(t) = λ_max(t)·η/2 (1 at the stability limit 2/η), T the last step, for "
                "each run (activation, η):",
                "",
                f"- *reached* at t* = the first measured step with r ≥ {self.REACH:g} that "
                f"follows a measurement with r < {self.REACH:g}: a rise to the limit from below, "
                "whether sharpness starts below 2/η or first drops below it (a run that starts "
                "beyond the limit catapults: its sharpness falls, then may sharpen again).",
                f"- *tail* = the measurements at steps ≥ max(t*, {1 - self.TAIL:g}·T).",
                f"- **plateau**: reached, and the tail has ≥ {self.MIN_POINTS} measurements with "
                f"median r in [{lo:g}, {hi:g}]. **above**: median > {hi:g}. **fell back**: "
                f"median < {lo:g}. **reached late**: fewer than {self.MIN_POINTS} tail "
                f"measurements. **not reached**: no rise to r ≥ {self.REACH:g}. **never below "
                f"2/η**: r ≥ {self.REACH:g} at every measurement. **diverged**: non-finite loss.",
                "- A run *tests* the claim when it is a plateau (it *supports* the claim), above "
                "or fell back (it *contradicts* it); the other outcomes test nothing.",
                "- Per activation: **holds** when at least one run tests the claim and every "
                "testing run supports it; **fails** when a testing run contradicts it; "
                "**untested** otherwise. **The claim holds** overall when it holds for every "
                "activation; it **does not hold** when it fails for any; with none failing, some "
                "holding and some untested, it **holds where tested**.",
            ]
        )

    def classify(self, run: Run) -> dict[str, Any]:
        lr = float(run.param("optimizer.lr"))
        ratio = run.curve("curv/stability_ratio")
        out: dict[str, Any] = {
            "lr": lr,
            "limit": 2.0 / lr,
            "r0": ratio[0][1] if ratio and ratio[0][0] == 0 else None,
            "reached": None,
            "tail_median": None,
            "tail_points": 0,
            "loss": run.metric("train_eval/loss"),
            "max_r": max((v for _, v in ratio), default=None),
        }
        if run.status == "diverged":
            out["outcome"] = "diverged"
            out["diverged_at"] = run.summary.get("diverged_at_step")
        elif not ratio:
            out["outcome"] = "no data"
        else:
            last = int(run.summary.get("steps") or ratio[-1][0])
            below = next((i for i, (_, v) in enumerate(ratio) if v < self.REACH), None)
            # A rise to the limit from below: from the start, or after a drop (a run that starts
            # beyond 2/η catapults: its sharpness falls, then it can sharpen again).
            reached = None
            if below is not None:
                reached = next((s for s, v in ratio[below:] if v >= self.REACH), None)
            out["reached"] = reached
            if below is None:
                out["outcome"] = "never below 2/η"
            elif reached is None:
                out["outcome"] = "not reached"
            else:
                start = max(reached, (1 - self.TAIL) * last)
                tail = [v for s, v in ratio if s >= start]
                out["tail_points"] = len(tail)
                if len(tail) < self.MIN_POINTS:
                    out["outcome"] = "reached late"
                else:
                    med = float(statistics.median(tail))
                    out["tail_median"] = med
                    lo, hi = self.BAND
                    out["outcome"] = (
                        "plateau" if lo <= med <= hi else ("above" if med > hi else "fell back")
                    )
        out["tests"] = out["outcome"] in ("plateau", "above", "fell back")
        out["supports"] = out["outcome"] == "plateau"  # before the note below is appended
        if out["r0"] is not None and out["r0"] >= self.REACH and out["tests"]:
            out["outcome"] += " (after a drop from beyond 2/η)"
        return out

    def verdicts(self, runs: list[Run]) -> dict[str, str]:
        by_act: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in runs:
            by_act[r.param("activation.name")].append(self.classify(r))
        out = {}
        for act, items in sorted(by_act.items()):
            testing = [c for c in items if c["tests"]]
            if not all(c["supports"] for c in testing):
                out[act] = "fails"
            elif testing:
                out[act] = "holds"
            else:
                out[act] = "untested"
        return out

    ORDER = ("relu", "elu", "softplus", "gelu", "tanh")

    def _sorted(self, runs: list[Run]) -> list[Run]:
        def key(r: Run) -> tuple[int, float]:
            act = r.param("activation.name")
            rank = self.ORDER.index(act) if act in self.ORDER else len(self.ORDER)
            return rank, float(r.param("optimizer.lr"))

        return sorted(runs, key=key)

    def analyse(self, runs: list[Run], scale: str) -> Outcome:
        rows = []
        for r in self._sorted(runs):
            c = self.classify(r)
            outcome = c["outcome"]
            if outcome == "diverged" and c.get("diverged_at") is not None:
                outcome += f" (step {c['diverged_at']})"
            rows.append(
                [
                    f"`{r.param('activation.name')}`",
                    f"{c['lr']:g}",
                    f"{c['limit']:.3g}",
                    fmt(c["r0"], ".3f"),
                    "—" if c["reached"] is None else str(c["reached"]),
                    fmt(c["max_r"], ".3f"),
                    fmt(c["tail_median"], ".3f"),
                    outcome,
                    "yes" if c["tests"] else "no",
                    fmt(c["loss"], ".4f"),
                ]
            )
        main = table(
            [
                "activation",
                "η",
                "2/η",
                "r at step 0",
                "reached at step",
                "max r",
                "tail median r",
                "outcome",
                "tests the claim",
                "final train loss",
            ],
            rows,
        )
        result = "\n\n".join(
            [
                f"![Sharpness against 2/η during full-batch gradient descent]({self.name}.png)",
                "Top row: sharpness λ_max (solid) and 2/η (dashed, same colour) per step size; "
                "bottom row: the training loss. Log scales.",
                "### Every run",
                "r = λ_max·η/2; the tail is the last quarter of the steps from the reaching step "
                "on.",
                main,
            ]
        )
        verdicts = self.verdicts(runs)
        lines = [
            f"- `{a}`: **{v}**"
            for a, v in sorted(
                verdicts.items(),
                key=lambda kv: self.ORDER.index(kv[0]) if kv[0] in self.ORDER else 99,
            )
        ]
        values = set(verdicts.values())
        untested = [a for a, v in verdicts.items() if v == "untested"]
        if verdicts and values == {"holds"}:
            head = "**The claim holds** on this protocol transfer, for every activation."
        elif "fails" in values:
            failing = ", ".join(f"`{a}`" for a, v in verdicts.items() if v == "fails")
            head = f"**The claim does not hold** on this protocol transfer: it fails for {failing}."
        elif "holds" in values:
            head = (
                "**The claim holds where tested**: no run contradicts it; untested: "
                + ", ".join(f"`{a}`" for a in untested)
                + "."
            )
        else:
            head = "**No verdict**: no run tested the claim."
        return Outcome(head + "\n\n" + "\n".join(lines), result)

    def figure(self, runs: list[Run], path: Path) -> None:
        plt = _plt()
        acts = [a for a in self.ORDER if any(r.param("activation.name") == a for r in runs)]
        lrs = sorted({float(r.param("optimizer.lr")) for r in runs})
        colors = {lr: f"C{i}" for i, lr in enumerate(lrs)}
        fig, axes = plt.subplots(
            2, max(len(acts), 1), figsize=(3.6 * max(len(acts), 1), 6), squeeze=False
        )
        for col, act in enumerate(acts):
            top, bottom = axes[0][col], axes[1][col]
            for r in self._sorted([r for r in runs if r.param("activation.name") == act]):
                lr = float(r.param("optimizer.lr"))
                sharp = r.curve("curv/top_eig")
                if sharp:
                    top.plot(
                        [s for s, _ in sharp],
                        [v for _, v in sharp],
                        color=colors[lr],
                        lw=1,
                        label=f"η={lr:g}",
                    )
                top.axhline(2.0 / lr, color=colors[lr], ls="--", lw=0.8)
                loss = r.curve("train_eval/loss")
                if loss:
                    bottom.plot([s for s, _ in loss], [v for _, v in loss], color=colors[lr], lw=1)
            top.set_yscale("log")
            top.set_title(act)
            bottom.set_yscale("log")
            bottom.set_xlabel("step")
            if col == 0:
                top.set_ylabel("sharpness λ_max")
                bottom.set_ylabel("training loss")
                top.legend(fontsize=7)
        fig.tight_layout()
        _save(fig, path)


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (GeluPaper(), Dying(), EdgeOfStability())}


# --- the document -----------------------------------------------------------------------------


def _provenance(runs: list[Run]) -> str:
    commits = sorted(
        {
            f"{(r.summary.get('reproducibility') or {}).get('git', {}).get('commit', '?')[:10]}"
            + (
                "+dirty"
                if (r.summary.get("reproducibility") or {}).get("git", {}).get("dirty")
                else ""
            )
            for r in runs
        }
    )
    versions = sorted(
        {
            ", ".join(
                f"{k} {v}"
                for k, v in sorted(
                    ((r.summary.get("reproducibility") or {}).get("versions") or {}).items()
                )
                if k in ("torch", "pytorch-lightning", "mnist1d", "python")
            )
            for r in runs
        }
    )
    devices = sorted(
        {str((r.summary.get("reproducibility") or {}).get("device", "?")) for r in runs}
    )
    fingerprints = sorted(
        {str((r.summary.get("data") or {}).get("fingerprint", "?")) for r in runs}
    )
    walls = [float(r.summary["wall_time_s"]) for r in runs if r.summary.get("wall_time_s")]
    lines = [
        f"- Runs: {len(runs)} ({_status_counts(runs)}).",
        f"- Source commits: {', '.join(commits)}; devices: {', '.join(devices)}.",
        f"- Versions: {'; '.join(versions)}.",
        f"- Data fingerprints: {', '.join(fingerprints)}.",
    ]
    if walls:
        lines.append(
            f"- Recorded wall time per run: median {statistics.median(walls):.1f} s, total "
            f"{sum(walls) / 60:.1f} min (fit + test, one process each)."
        )
    return "\n".join(lines)


def _grid_text(parameters: dict[str, Any]) -> str:
    parts = []
    for key, param in parameters.items():
        values = param.get("values", [param.get("value")])
        parts.append(
            f"`{key}` ∈ {{{', '.join(str(v) for v in values)}}}"
            if len(values) > 1
            else f"`{key}={values[0]}`"
        )
    return "; ".join(parts)


def compose(exp: Experiment, manifest: dict[str, Any], runs: list[Run]) -> str:
    """The document's markdown: a pure function of the manifest and the runs."""
    scale = manifest["scale"]
    grid = _grid_text(manifest["parameters"])
    if scale == "full":
        banner = (
            f"**Scale: full** — the grid of `sweeps/exp_{exp.name}.yaml` ({manifest['points']} "
            f"configurations; {len(runs)} run records)."
        )
    else:
        banner = (
            f"**Scale: {scale} — a pipeline check, not evidence.** These records come from a "
            f"seconds-long variant of the grid ({grid}; {len(runs)} run records). The verdict "
            "below is what the rule makes of them and says nothing about the claim. Run the "
            "full grid and regenerate (see *Reproduce*)."
        )
    deviations = exp.protocol_deviations(runs, scale)
    outcome = exp.analyse(runs, scale)
    verdict = outcome.verdict
    if scale != "full":
        verdict = (
            f"*{scale.capitalize()} scale: what the rule makes of pipeline-check records, not a "
            "verdict on the claim.*\n\n" + verdict
        )
    if deviations:
        verdict = (
            "**Invalid: the records break the protocol** (see *Protocol checks*); the rule's "
            "output is shown for the record only.\n\n" + verdict
        )
    checks = "Every run's resolved config was checked against the protocol: " + (
        "all match."
        if not deviations
        else "deviations found:\n\n" + "\n".join(f"- {d}" for d in deviations)
    )
    sections = [
        f"# {exp.title}",
        f"<!-- Generated by `actbench-experiments render {exp.name}` from "
        f"records/{exp.name}/; do not edit by hand (`actbench-experiments check` compares). -->",
        banner,
        "## Claim",
        exp.claim + "\n\nSource: " + exp.source,
        "## Protocol",
        exp.protocol,
        "### How it differs from the paper",
        exp.differences,
        "## Rule, decided in advance",
        exp.rule(),
        "## Result",
        outcome.result,
        "### Protocol checks",
        checks,
        "## Verdict",
        verdict,
        "## Reproduce",
        "\n".join(
            [
                "```bash",
                f"actbench-experiments run {exp.name} --jobs 16      "
                f"# = actbench-sweep sweeps/exp_{exp.name}.yaml --jobs 16",
                f"actbench-experiments collect {exp.name}           "
                f"# multirun/exp_{exp.name}/ -> docs/experiments/records/{exp.name}/",
                f"actbench-experiments render {exp.name}            # this page and its figure",
                "```",
                "",
                f"The small variant: `actbench-experiments run {exp.name} --scale small --jobs 2`, "
                f"then `collect {exp.name} --scale small` (records at the small scale replace "
                "the full ones: the scale is printed at the top).",
            ]
        ),
        "## Records",
        f"Grid: {grid}.\n\n" + _provenance(runs),
    ]
    return "\n\n".join(sections).rstrip() + "\n"


# --- commands ---------------------------------------------------------------------------------


def _experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ExperimentError(f"experiment {name!r} is unknown; valid: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def _grid_points(spec: dict[str, Any]) -> int:
    n = 1
    for param in spec["parameters"].values():
        n *= len(param["values"]) if "values" in param else 1
    return n


def run_sweep(name: str, scale: str, jobs: int, extra: list[str]) -> int:
    """The experiment's grid through the real sweep entry point (``python -m actbench.sweep``)."""
    exp = _experiment(name)
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


def _in_grid(summary: dict[str, Any], config: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether a recorded run is a point of the grid (a stale run of an older grid is not)."""
    run = Run("", summary, config, {})
    overrides = dict(o.split("=", 1) for o in summary.get("overrides", []) if "=" in o)
    for key, param in spec["parameters"].items():
        values = param["values"] if "values" in param else [param["value"]]
        actual = run.param(key)
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


def collect(name: str, scale: str, multirun: Path, docs: Path) -> Path:
    """Copy the grid's finished runs (trimmed) into ``docs/records/NAME/`` with a manifest."""
    exp = _experiment(name)
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
    for folder in sorted(p for p in source.iterdir() if (p / "summary.json").is_file()):
        summary = json.loads((folder / "summary.json").read_text())
        config = (
            yaml.safe_load((folder / "config.yaml").read_text())
            if (folder / "config.yaml").is_file()
            else {}
        )
        if summary.get("status") not in FINISHED:
            unfinished += 1
            continue
        if not _in_grid(summary, config or {}, spec):
            skipped += 1
            continue
        out = stage / RUNS / folder.name
        out.mkdir()
        shutil.copy2(folder / "summary.json", out / "summary.json")
        shutil.copy2(folder / "config.yaml", out / "config.yaml")
        if (folder / "metrics.csv").is_file():
            trim_metrics(folder / "metrics.csv", out / "metrics.csv", exp.csv_keys)
        kept += 1
    if kept == 0:
        shutil.rmtree(stage)
        raise ExperimentError(f"{source} holds no finished run of the grid; nothing collected")
    manifest = {
        "experiment": name,
        "scale": scale,
        "sweep": f"{exp.stem(scale)}.yaml",
        "points": _grid_points(spec),
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


def render(name: str, docs: Path, out: Path | None = None, figure: bool = True) -> Path:
    """Write ``NAME.md`` (and ``NAME.png``) into ``out`` (default: ``docs``) from the records."""
    exp = _experiment(name)
    records = docs / "records" / name
    if not (records / MANIFEST).is_file():
        raise ExperimentError(
            f"no records for {name} in {records}; run and collect it first "
            f"(actbench-experiments run {name}; actbench-experiments collect {name})"
        )
    manifest = json.loads((records / MANIFEST).read_text())
    runs = load_runs(records, exp.csv_keys)
    if not runs:
        raise ExperimentError(f"{records / RUNS} holds no run records")
    out = out or docs
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.md"
    path.write_text(compose(exp, manifest, runs))
    if figure:
        exp.figure(runs, out / f"{name}.png")
    return path


def check(docs: Path, names: Sequence[str] | None = None) -> list[str]:
    """Problems found: documents that differ from what their records regenerate, or are missing."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="actbench-check-") as tmp:
        for name in names or list(EXPERIMENTS):
            committed = docs / f"{name}.md"
            try:
                fresh = render(name, docs, out=Path(tmp), figure=False)
            except ExperimentError as err:
                problems.append(f"{name}: {err}")
                continue
            if not committed.is_file():
                problems.append(
                    f"{name}: {committed} is missing; run actbench-experiments render {name}"
                )
            elif committed.read_bytes() != fresh.read_bytes():
                problems.append(
                    f"{name}: {committed} differs from what its records give; run "
                    f"actbench-experiments render {name}"
                )
            if not (docs / f"{name}.png").is_file():
                problems.append(f"{name}: figure {docs / (name + '.png')} is missing")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actbench-experiments",
        description="Reproduction experiments: run a grid, collect its records, render and check "
        "the documents in docs/experiments/. With no command: render every experiment.",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="documents folder (records/ in it)")
    parser.add_argument("--check", action="store_true", help="same as the check command")
    sub = parser.add_subparsers(dest="command")
    p_run = sub.add_parser("run", help="run the experiment's grid with actbench-sweep")
    p_run.add_argument("name", choices=list(EXPERIMENTS))
    p_run.add_argument("--scale", choices=SCALES, default="full")
    p_run.add_argument("--jobs", type=int, default=1, help="parallel workers")
    p_col = sub.add_parser("collect", help="copy a sweep's finished runs into the records")
    p_col.add_argument("name", choices=list(EXPERIMENTS))
    p_col.add_argument("--scale", choices=SCALES, default="full")
    p_col.add_argument("--multirun", type=Path, default=Path("multirun"), help="sweeps' root")
    p_ren = sub.add_parser("render", help="regenerate documents and figures from the records")
    p_ren.add_argument("names", nargs="*", help="experiments (default: all)")
    sub.add_parser("check", help="exit 1 if a document differs from what its records give")
    sub.add_parser("list", help="the experiments and their sweep files")
    # `run` passes what it does not know (Hydra overrides, sweep options) on to actbench-sweep.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.check or args.command == "check":
            problems = check(args.docs)
            for line in problems:
                print(f"actbench-experiments: {line}", file=sys.stderr)
            if not problems:
                print(f"actbench-experiments: {len(EXPERIMENTS)} documents match their records")
            return 1 if problems else 0
        if args.command == "run":
            return run_sweep(args.name, args.scale, max(1, args.jobs), extra)
        if args.command == "collect":
            collect(args.name, args.scale, args.multirun, args.docs)
            return 0
        if args.command == "list":
            for name, exp in EXPERIMENTS.items():
                print(f"{name}: {exp.title} (sweeps/{exp.sweep_file.name})")
            return 0
        for name in getattr(args, "names", None) or list(EXPERIMENTS):
            print(f"actbench-experiments: wrote {render(name, args.docs)}")
        return 0
    except ExperimentError as err:
        print(f"actbench-experiments: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
