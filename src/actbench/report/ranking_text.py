"""The README's ranking of a unit, and the rules it states: the order, the could-be-best set,
the letters, constant differences, divergence, collapse, devices, the power of the design and
the two intervals of each difference to the first row. Each rule is applied in one function
(:mod:`~actbench.report.stats`, :mod:`~actbench.report.analysis`,
:mod:`~actbench.report.bootstrap`); here it is only written down."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from actbench.records import RunRecord
from actbench.report.analysis import (
    BASELINES,
    COLLAPSE_FACTOR,
    COLLAPSE_KEYS,
    RANK_METRIC,
    STATUS_ORDER,
    Unit,
    status_counts,
)
from actbench.report.bootstrap import REPLICATES, SEEDS_ONLY
from actbench.report.markdown import lr_text, names, num, p_text, pct, signed_pct, table
from actbench.report.stats import (
    ALPHA,
    CONFIDENCE,
    NO_DIFFERENCE,
    POWER,
    POWER_METHOD,
    SIGN_RULE,
    UNTESTABLE,
)

STATISTICS_LINES = [
    f"- Score: `{RANK_METRIC}`, accuracy on the held-out test split with the final weights (one "
    "evaluation after the last step). Mean ± sample standard deviation over seeds; "
    f"{CONFIDENCE:.0%} CI = mean ± t(0.975, n−1)·s/√n (not clipped to [0, 100] %; with 2 seeds "
    "t = 12.7, so such intervals are very wide).",
    "- Divergence is a result, never left out (rule fixed before any run): a ranked run that "
    "diverged scores chance accuracy (1 / number of classes) in its mean and in every "
    "comparison, and its divergence rate k/n is shown. An activation that diverged on at least "
    "half its finished seeds is **unstable**: it is listed after every stable one and is never "
    "in the could-be-best set. Failed and running runs are no result: counted and listed below.",
    "- Order: stable activations by mean score, then unstable ones by mean score; within each "
    "block a lower mean is never above a higher one. `#` is this order, not a claim that the "
    "differences are real: that is what the next two columns say.",
    "- Pairing: a seed fixes the data order and the initialisation stream for every activation, "
    "so differences are paired by seed over the seeds both activations have a score for.",
    "- Could be best: an activation is out of the set when a one-sided paired t-test shows it "
    "worse than some other activation, Holm-corrected within its own m − 1 comparisons at "
    f"α = {ALPHA}. The set contains the truly best activation with probability at least "
    f"{1 - ALPHA:.0%}; it does not bound the chance that *some* activation as good as the best "
    "is left out (with no true effect at all, m = 5 and 5 seeds, that happened in about 19 % "
    "of simulated sweeps, against 4 % for any one activation). The set need not be the top "
    "rows: a precise activation can be shown worse than the first row while a noisier one "
    "below it cannot.",
    "- Letters (compact letter display): two activations share a letter exactly when a "
    "two-sided paired t-test does not separate them, Holm-corrected over all m(m − 1)/2 pairs "
    f"of the unit at α = {ALPHA} (so the chance of any false separation in the whole display is "
    "at most α). Where a letter is not monotone in the means (it skips an activation ranked "
    "between two that share it), a note says so.",
    "- Constant differences (the t statistic does not exist): a difference of exactly zero on "
    "every seed is no difference (p = 1); the same non-zero difference on every seed is judged "
    f"by the exact sign test, '{SIGN_RULE}': one-sided p = 0.5^n (two-sided 2·0.5^n; 0.031 and "
    "0.062 with 5 seeds); under two shared seeds a pair is untestable and is not shown "
    "different. Differences within 1e-12 of each other count as equal (rounding).",
    "- Against `relu` and against `gelu`: two-sided paired tests, Holm within each family "
    "(m − 1 comparisons each).",
    f"- Power: the pooled SD of the paired differences (over all pairs; completed runs only, so "
    f"it measures training noise, not divergence), α, and the smallest true difference found "
    f"with {POWER:.0%} power at the seeds run: for exclusion from the could-be-best set "
    "(one-sided at α/(m − 1), Holm's first step: the level the test of a lone worse activation "
    "meets), and for a separation in the letters (two-sided at α/(m(m − 1)/2); Holm's later "
    "steps are more lenient, so this power is at least that); and the seeds a 1-point "
    f"difference would need for each. Method: {POWER_METHOD}.",
    "- Δ vs the first row: the mean paired difference with its t interval over seeds, beside a "
    f"paired bootstrap over seeds and test examples together ({REPLICATES} replicates, "
    "percentile interval; each replicate draws seeds and test examples with replacement, the "
    "same examples for both activations), from each run's `test_correct.npz`. The t interval "
    "ignores that the test set is a sample too; the bootstrap's seed part, which can only "
    "reuse the n seeds run, is narrower than the t interval with few seeds: read both. Where a "
    "run has no such file, the bootstrap resamples seeds only (marked †).",
    f"- Collapsed: a completed run whose final {' or '.join(f'`{k}`' for k in COLLAPSE_KEYS)} is "
    f"above both {COLLAPSE_FACTOR:g}× the minimum of its curve and its first logged value (it "
    "learned, then lost it, with a finite loss). Flagged here and in `summary.csv`; its score "
    "counts as it is.",
    "- Devices: a unit whose ranked runs came from more than one kind of device is flagged: a "
    "seed pairs data and initialisation on every device, but other hardware draws other random "
    "streams (dropout) and rounds differently, so such a pair compares hardware as well.",
]


def runs_phrase(row_runs: Sequence[RunRecord]) -> str:
    counts = status_counts(row_runs)
    order = dict.fromkeys((*STATUS_ORDER, *sorted(counts)))
    return ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)) or "—"


def _interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "—"
    return f"[{signed_pct(low)}, {signed_pct(high)}]"


def _best_cell(unit: Unit, activation: str) -> str:
    row = unit.ranking.row(activation)
    if row.could_be_best:
        return "**yes**"
    if row.unstable:
        return "no: unstable"
    return "no: worse than " + names(row.worse_than)


def _bracket_cell(bracketed: bool | None, reason: str | None) -> str:
    if bracketed is None:
        return "—"
    return "yes" if bracketed else "**no**" + (f": {reason}" if reason else "")


def ranking_table(unit: Unit) -> list[str]:
    ranked = unit.ranked_runs
    best = unit.rows[0].activation
    header = ["#", "activation", "test acc % (mean ± std)", "95 % CI", "n", "diverged"]
    header += ["could be best", "letters", f"Δ vs `{best}` pp (t 95 % CI)", "bootstrap 95 %"]
    header += [f"Δ vs {b} pp (Holm p)" for b in BASELINES if unit.vs.get(b)]
    header += ["LR", "bracketed", "runs"]
    rows = []
    for row in unit.rows:
        runs = [r for r in ranked if r.activation == row.activation]
        ci = (
            f"[{pct(row.mean - row.half_width)}, {pct(row.mean + row.half_width)}]"
            if math.isfinite(row.half_width)
            else "—"
        )
        delta = unit.deltas.get(row.activation)
        if delta is None:
            diff, boot = "—", "—"
        else:
            diff = f"{signed_pct(delta.diff)} {_interval(delta.t_low, delta.t_high)}"
            boot = _interval(delta.boot_low, delta.boot_high)
            boot += " †" if delta.boot == SEEDS_ONLY and boot != "—" else ""
        cells = [
            row.position,
            f"`{row.activation}`" + (" (unstable)" if row.unstable else ""),
            f"{pct(row.mean, 2)} ± {pct(row.std, 2)}",
            ci,
            row.n,
            f"{row.diverged}/{row.n}",
            _best_cell(unit, row.activation),
            f"`{row.letters}`",
            diff,
            boot,
        ]
        for b in BASELINES:
            if not unit.vs.get(b):
                continue
            test = unit.vs[b].get(row.activation)
            ok = test is not None and math.isfinite(test[0].diff)
            cells.append(f"{signed_pct(test[0].diff)} ({p_text(test[1])})" if ok else "—")
        collapsed = sum(r.folder in unit.collapsed for r in runs)
        cells += [
            lr_text(unit.ranked_lr(row.activation)),
            _bracket_cell(*unit.brackets.get(row.activation, (None, None))),
            runs_phrase(runs) + (f" ({collapsed} collapsed)" if collapsed else ""),
        ]
        rows.append(cells)
    return table(header, rows)


def _statements(unit: Unit) -> list[str]:
    rk, m = unit.ranking, len(unit.rows)
    top = [r.activation for r in unit.rows if r.could_be_best]
    lines = [
        f"**Could be best** (not shown worse than any other: one-sided paired tests, Holm within "
        f"each activation's {max(0, m - 1)} comparisons, α = {ALPHA}): {names(top)}. "
        f"Ranked on `{RANK_METRIC}`; Δ in percentage points, paired by seed.",
    ]
    prefix = [r.activation for r in unit.rows[: len(top)]]
    if top and prefix != top:
        lines.append(
            "The set is not the top rows: "
            + "; ".join(
                f"`{r.activation}` is shown worse than {names(r.worse_than)}"
                for r in unit.rows[: len(top)]
                if not r.could_be_best and r.worse_than
            )
            + ", while activations below it are too noisy to be shown worse."
            if any(not r.could_be_best and r.worse_than for r in unit.rows[: len(top)])
            else "The set is not the top rows (an unstable activation is above it)."
        )
    pairs = m * (m - 1) // 2
    letters = (
        f"**Letters**: activations that share a letter are not shown different (two-sided "
        f"paired tests, Holm over all {pairs} pairs, α = {ALPHA})."
    )
    for name, members, skipped in rk.letter_notes:
        letters += (
            f" Letter `{name}` is not monotone in the means: it joins {names(members)} but "
            f"skips {names(skipped)}."
        )
    lines.append(letters)
    rules: dict[str, list[str]] = {}
    for row in unit.rows:
        for other, rule in row.rules.items():
            pair = " vs ".join(sorted((row.activation, other)))
            if pair not in rules.setdefault(rule, []):
                rules[rule].append(pair)
    said = {SIGN_RULE: f"{SIGN_RULE} (sign test, p = 0.5^n)", NO_DIFFERENCE: "no difference "
            "on every seed", UNTESTABLE: "untestable (under two shared seeds)"}  # fmt: skip
    for rule, pairs_of in rules.items():
        lines.append(f"Constant differences, {said.get(rule, rule)}: {', '.join(pairs_of)}.")
    diverged = [r for r in unit.rows if r.diverged]
    if diverged:
        lines.append(
            "**Diverged** (each such run scores chance, "
            f"{pct(unit.chance)} %): "
            + ", ".join(
                f"`{r.activation}` {r.diverged}/{r.n}" + (" (unstable)" if r.unstable else "")
                for r in diverged
            )
            + "."
        )
    return [line for text in lines for line in (text, "")]


def _power_lines(unit: Unit) -> list[str]:
    p = unit.power
    if p is None or not math.isfinite(p.pooled_sd):
        return [
            "**Power**: not assessable (no pair of activations shares two completed seeds).",
            "",
        ]

    def seeds(k: int | None) -> str:
        return str(k) if k is not None else "more than a million"

    return [
        f"**Power** ({POWER_METHOD}): pooled paired-difference SD {pct(p.pooled_sd, 2)} pp "
        f"({p.pairs} pairs, {p.df} df), α = {p.alpha}, {p.n} seeds per comparison. Smallest "
        f"difference found with {p.power:.0%} power: **{pct(p.mde_best, 1)} pp** below the best "
        f"for exclusion from the could-be-best set (one-sided at α/{max(1, p.m - 1)} = "
        f"{num(p.level_best)}), {pct(p.mde_pairwise, 1)} pp for a separation in the letters "
        f"(two-sided at α/{max(1, p.m * (p.m - 1) // 2)} = {num(p.level_pairwise)}). A 1-point "
        f"difference would need {seeds(p.seeds_1pt_best)} seeds (could be best) or "
        f"{seeds(p.seeds_1pt_pairwise)} (letters).",
        "",
    ]


def _device_lines(unit: Unit) -> list[str]:
    if not unit.mixed_devices:
        return []
    by_kind: dict[str, list[str]] = {}
    for act, kinds in unit.devices.items():
        for kind, count in kinds.items():
            by_kind.setdefault(kind, []).append(f"`{act}` {count}")
    return [
        f"> **Mixed hardware**: the ranked runs came from {len(by_kind)} kinds of device ("
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(by_kind.items()))
        + "). Pairs across kinds compare hardware as well as activations (other random streams "
        "and rounding): rerun them on one kind before trusting those differences.",
        "",
    ]


def _collapsed_lines(unit: Unit) -> list[str]:
    flagged = [r for r in unit.ranked_runs if r.folder in unit.collapsed]
    if not flagged:
        return []
    return [
        "**Collapsed** ranked runs (counted as they are): "
        + "; ".join(
            f"`{r.activation}` seed {r.seed} ({unit.collapsed[r.folder]})"
            for r in sorted(flagged, key=lambda r: (r.activation, r.seed or 0))
        )
        + ".",
        "",
    ]


def ranking_section(unit: Unit, figures: Mapping[str, Path]) -> list[str]:
    lines = ["### Ranking", ""]
    if not unit.rows:
        return [*lines, "No completed run to rank yet.", ""]
    lines += _device_lines(unit)
    lines += [*ranking_table(unit), ""]
    unranked = sorted({r.activation for r in unit.ranked_runs} - {r.activation for r in unit.rows})
    if unranked:
        lines += [f"Not ranked (no finished run yet): {', '.join(unranked)}.", ""]
    lines += _statements(unit)
    lines += _power_lines(unit)
    lines += _collapsed_lines(unit)
    if "ranking" in figures:
        lines += [f"![ranking]({figures['ranking'].name})", ""]
    return lines


def collapsed_elsewhere(units: Sequence[Unit]) -> int:
    """Collapsed runs outside the rankings (tuning runs), for the summary line."""
    ranked = {r.folder for u in units for r in u.ranked_runs}
    return sum(1 for u in units for f in u.collapsed if f not in ranked)
