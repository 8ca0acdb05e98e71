"""The two-stage tuning protocol: tune one parameter per group on validation, keep its choice
inside the grid (bracketing), then confirm the choice on fresh seeds.

The choice itself is the project's one rule, :func:`actbench.records.select_per_group`; this
module decides which tuning runs exist (the grid, extended outward while a choice sits on its
edge) and which confirmation runs follow. Pure functions of job overrides and records: the
sweeper plugin calls them; no torch, no Lightning.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from actbench.records import Choice, override_key, select_per_group, selection_group


@dataclass(frozen=True)
class Reduction:
    """A reduced protocol for the runs of a grid that match ``when`` (e.g. ``model=vit``): the
    values they take of some swept parameters (fewer steps, learning rates or tuning seeds)
    and, in a two-stage sweep, their own confirmation seeds. Stated in the sweep file
    (``actbench.reduce``) and, through ``grid.json``, in the report."""

    when: tuple[tuple[str, str], ...]  # (key, value) pairs a run matches, all of them
    values: tuple[tuple[str, tuple[str, ...]], ...]  # key -> the values matching runs take
    confirm_seeds: tuple[int, ...] | None = None
    why: str = ""

    def matches(self, overrides: Iterable[str]) -> bool:
        given = {override_key(o): o.split("=", 1)[1] for o in overrides if "=" in o}
        return all(given.get(k) == v for k, v in self.when)

    def describe(self) -> str:
        """``model=vit: trainer.max_steps 500; optimizer.lr 0.001, 0.003; confirmation seeds
        0, 1, 2 (why)``: one line for the report."""
        parts = [f"{k} {', '.join(v)}" for k, v in self.values]
        if self.confirm_seeds is not None:
            parts.append(f"confirmation seeds {', '.join(map(str, self.confirm_seeds))}")
        where = " ".join(f"{k}={v}" for k, v in self.when)
        return f"{where}: {'; '.join(parts)}" + (f" ({self.why})" if self.why else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "when": dict(self.when),
            "values": {k: list(v) for k, v in self.values},
            "confirm_seeds": None if self.confirm_seeds is None else list(self.confirm_seeds),
            "why": self.why,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reduction:
        seeds = data.get("confirm_seeds")
        return cls(
            tuple((str(k), str(v)) for k, v in data["when"].items()),
            tuple((str(k), tuple(map(str, v))) for k, v in data["values"].items()),
            None if seeds is None else tuple(int(x) for x in seeds),
            str(data.get("why") or ""),
        )


def reductions_to_json(reductions: Iterable[Reduction]) -> str:
    return json.dumps([r.to_dict() for r in reductions], separators=(",", ":"))


def reductions_from_json(text: str | None) -> tuple[Reduction, ...]:
    return tuple(Reduction.from_dict(d) for d in json.loads(text or "[]"))


def reduction_for(overrides: Iterable[str], reductions: Iterable[Reduction]) -> Reduction | None:
    """The first reduction a run (or a selection group) matches; None: the full protocol."""
    overrides = list(overrides)
    return next((r for r in reductions if r.matches(overrides)), None)


def reduce_jobs(jobs: list[list[str]], reductions: Iterable[Reduction]) -> list[list[str]]:
    """The grid with each reduction applied: a matching job's values of the reduced keys are
    replaced by the reduction's (each combination once, in place, order kept)."""
    reductions = list(reductions)
    out: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for job in jobs:
        rule = reduction_for(job, reductions)
        variants = [job]
        if rule is not None:
            keys = [k for k, _ in rule.values]
            variants = []
            for combo in itertools.product(*(v for _, v in rule.values)):
                chosen = dict(zip(keys, combo, strict=True))
                new = [f"{override_key(o)}={chosen.pop(override_key(o))}"
                       if override_key(o) in chosen else o for o in job]  # fmt: skip
                variants.append(new + [f"{k}={v}" for k, v in chosen.items()])
        for new in variants:
            if tuple(new) not in seen:
                seen.add(tuple(new))
                out.append(new)
    return out


@dataclass(frozen=True)
class Protocol:
    """Two-stage protocol: tune ``select`` on validation, confirm the best on fresh seeds."""

    select: str
    metric: str
    goal: str
    seeds: tuple[int, ...]
    extend: int = 0  # values the tuning stage may add outward per side of the grid
    reductions: tuple[Reduction, ...] = ()

    def seeds_for(self, group: Iterable[str]) -> tuple[int, ...]:
        """The confirmation seeds of a selection group: its reduction's, else the file's."""
        rule = reduction_for(group, self.reductions)
        return rule.confirm_seeds if rule and rule.confirm_seeds is not None else self.seeds


@dataclass(frozen=True)
class Bracket:
    """Whether a choice has a tried, finite-scoring neighbour on both sides; ``extend`` holds
    the outward values to try next, ``reason`` why it stays unbracketed."""

    bracketed: bool
    reason: str | None
    extend: tuple[str, ...] = ()


def select_best(
    jobs: list[list[str]], summaries: list[dict[str, Any] | None], proto: Protocol
) -> dict[tuple[str, ...], Choice]:
    """The tuning stage's choice per group, by the project's one rule
    (:func:`actbench.records.select_per_group`)."""
    return select_per_group(
        zip(jobs, summaries, strict=True), proto.select, proto.metric, proto.goal
    )


def log_step(values: list[str]) -> float | None:
    """The grid's own geometric step ((max/min)^(1/(n−1))), None unless its values are two or
    more distinct positive numbers."""
    try:
        numbers = sorted({float(v) for v in values})
    except ValueError:
        return None
    if len(numbers) < 2 or numbers[0] <= 0:
        return None
    return (numbers[-1] / numbers[0]) ** (1 / (len(numbers) - 1))


def outward(value: float) -> str:
    """A new grid value, written with two significant digits (``0.032``, ``9.5e-05``)."""
    return repr(float(f"{value:.2g}"))


def bracket(choice: Choice, grid: list[str], limit: int) -> Bracket:
    """Is ``choice`` interior? Each side needs a tried neighbour with a finite score. A side
    with no neighbour is extended by the grid's log step while fewer than ``limit`` values lie
    beyond the original ``grid`` on it; a neighbour that diverged cannot be stepped over."""
    step = log_step(grid)
    if step is None or any(_number(v) is None for v in choice.scores):
        return Bracket(False, "not a numeric log-spaced grid: cannot assess or extend")
    tried = sorted(choice.scores, key=float)
    chosen = float(choice.value)
    low, high = min(map(float, grid)), max(map(float, grid))
    reasons, extend = [], []
    for side, sign in (("lower", -1), ("upper", 1)):
        beyond = [v for v in tried if sign * (float(v) - chosen) > 0]
        if beyond:
            neighbour = min(beyond, key=lambda v: abs(float(v) - chosen))
            if choice.scores[neighbour] is None:
                reasons.append(f"the next {side} value {neighbour} diverged")
            continue
        added = sum(float(v) < low if sign < 0 else float(v) > high for v in tried)
        if added >= limit:
            reasons.append(f"on the {side} edge, extension limit {limit} reached")
        else:
            extend.append(outward(chosen * step**sign))
    if extend:
        return Bracket(False, "extending the grid", tuple(extend))
    return Bracket(not reasons, "; ".join(reasons) or None)


def extension_jobs(
    jobs: list[list[str]], brackets: dict[tuple[str, ...], Bracket], proto: Protocol
) -> list[list[str]]:
    """Tuning jobs for the outward values: each group's own tuning seeds at each new value."""
    seeds: dict[tuple[str, ...], list[str]] = {}
    for job in jobs:
        group = selection_group(job, proto.select)
        for o in job:
            if override_key(o) == "seed" and o not in seeds.setdefault(group, []):
                seeds[group].append(o)
    return [
        [*group, f"{proto.select}={value}", *([seed] if seed else [])]
        for group, br in brackets.items()
        for value in br.extend
        for seed in seeds.get(group) or [None]
    ]


def grid_values(jobs: list[list[str]], select: str) -> list[str]:
    """The values of ``select`` in ``jobs`` (the sweep file's grid, or one group's part of it,
    which a reduction may have narrowed), in order of appearance."""
    values: list[str] = []
    for job in jobs:
        for o in job:
            if override_key(o) == select and o.split("=", 1)[1] not in values:
                values.append(o.split("=", 1)[1])
    return values


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def varying(groups: list[tuple[str, ...]]) -> set[str]:
    """The overrides that differ between groups (the ones worth printing)."""
    seen: dict[str, set[str]] = {}
    for group in groups:
        for o in group:
            seen.setdefault(override_key(o), set()).add(o)
    return {o for values in seen.values() if len(values) > 1 for o in values}


def confirm_jobs(chosen: dict[tuple[str, ...], Choice], proto: Protocol) -> list[list[str]]:
    return [
        [*group, f"{proto.select}={pick.value}", f"seed={seed}"]
        for group, pick in chosen.items()
        for seed in proto.seeds_for(group)
    ]


# torch's device types -> Lightning's accelerator names.
ACCELERATORS = {"cpu": "cpu", "cuda": "gpu", "mps": "mps"}


def confirm_accelerator(summaries: list[dict[str, Any] | None]) -> str | None:
    """The accelerator the confirmation stage is pinned to: the device type most tuning runs
    trained on. Pairing by seed assumes one kind of arithmetic (another device draws other
    dropout streams), so a confirmation run must fail on the wrong kind of node rather than
    quietly train there. None when no tuning record says."""
    kinds: dict[str, int] = {}
    for summary in summaries:
        device = ((summary or {}).get("reproducibility") or {}).get("device")
        kind = ACCELERATORS.get(str(device).split(":", 1)[0]) if device else None
        if kind:
            kinds[kind] = kinds.get(kind, 0) + 1
    return max(kinds, key=lambda k: kinds[k]) if kinds else None


def pin_accelerator(jobs: list[list[str]], accelerator: str | None) -> list[list[str]]:
    """``trainer.accelerator=<accelerator>`` added to the jobs that do not set it themselves."""
    if accelerator is None:
        return jobs
    key = "trainer.accelerator"
    return [
        job if any(override_key(o) == key for o in job) else [*job, f"{key}={accelerator}"]
        for job in jobs
    ]
