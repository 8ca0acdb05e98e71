"""The two-stage tuning protocol: tune one parameter per group on validation, keep its choice
inside the grid (bracketing), then confirm the choice on fresh seeds.

The choice itself is the project's one rule, :func:`actbench.records.select_per_group`; this
module decides which tuning runs exist (the grid, extended outward while a choice sits on its
edge) and which confirmation runs follow. Pure functions of job overrides and records: the
sweeper plugin calls them; no torch, no Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actbench.records import Choice, override_key, select_per_group, selection_group


@dataclass(frozen=True)
class Protocol:
    """Two-stage protocol: tune ``select`` on validation, confirm the best on fresh seeds."""

    select: str
    metric: str
    goal: str
    seeds: tuple[int, ...]
    extend: int = 0  # values the tuning stage may add outward per side of the grid


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
    """The values of ``select`` in the sweep file's grid, in order of appearance."""
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
        for seed in proto.seeds
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
