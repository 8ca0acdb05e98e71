"""What every experiment shares: the Experiment base class and its Outcome, the paths and
names of the records, and the fixed formats the documents are written in (documents are
compared byte for byte, so every number goes through one of these).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from actbench import records
from actbench.records import RunRecord

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs" / "experiments"
SWEEPS = REPO / "sweeps"
SCALES = ("full", "small")
MANIFEST = "manifest.json"
RUNS = "runs"
FINISHED = records.FINISHED  # a diverged run is a result (too large a step), not a gap


class ExperimentError(ValueError):
    """Unusable input for an experiment command (the message is a single line)."""


# --- formatting -------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    """The median of the finite values (None when there is none)."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(kept)) if kept else None


def fmt(value: float | None, spec: str = ".4g") -> str:
    """Fixed formatting; a missing value is an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal."""
    return "—" if value is None else f"{100 * value:.1f} %"


def percentage_points(value: float | None) -> str:
    """A difference of two shares, in percentage points."""
    return "—" if value is None else f"{100 * value:+.1f} pt"


def lr_text(value: float) -> str:
    """A learning rate as written in the grid (1e-3, 3e-4, 0.08)."""
    if value >= 0.01:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e-{int(exponent[1:])}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def values_match(actual: Any, expected: Any) -> bool:
    """Equal, with floats compared to within rounding (a config may store 1e-3 as 0.001)."""
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

    def analyse(self, runs: list[RunRecord], scale: str) -> Outcome:
        raise NotImplementedError

    def figure(self, runs: list[RunRecord], path: Path) -> None:
        raise NotImplementedError

    def protocol_deviations(self, runs: list[RunRecord], scale: str) -> list[str]:
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


# --- shared by the analyses and figures -------------------------------------------------------


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (imported late: only rendering needs it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    # No software/date metadata: the same records give the same bytes on one matplotlib version.
    with records.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, metadata={"Software": None}, bbox_inches="tight")
    pyplot().close(fig)


def group_by(runs: list[RunRecord], *keys: str) -> dict[tuple[Any, ...], list[RunRecord]]:
    """Runs keyed by their config values at ``keys`` (dotted), in the order first met."""
    out: dict[tuple[Any, ...], list[RunRecord]] = defaultdict(list)
    for r in runs:
        out[tuple(r.param(k) for k in keys)].append(r)
    return dict(out)


def status_counts(runs: list[RunRecord]) -> str:
    """``"3 completed, 1 diverged"``: statuses in alphabetical order."""
    counts: dict[str, int] = defaultdict(int)
    for r in runs:
        counts[r.status] += 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
