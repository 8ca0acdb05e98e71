"""The statistics of the report, each rule in one function: t intervals, the paired p-value (with
its rule for constant differences), Holm-Bonferroni, the could-be-best set, the pairwise
differences and their compact letter display, the unstable rule, and the power of the design.

The decisions work on a matrix of one-sided p-values, ``worse[..., i, j]`` = p for "i scores
lower than j", with any leading batch shape: the report passes one unit's (m, m) matrix, and the
tests pass thousands of simulated sweeps at once through the same functions.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.80
# Paired differences whose range is below this are constant: accuracies are multiples of
# 1/test size, so "equal" differences differ only by floating-point rounding.
CONSTANT_TOL = 1e-12
# How the p-value of a pair was obtained.
T_TEST, SIGN_RULE, NO_DIFFERENCE, UNTESTABLE = "t", "all seeds agree", "no difference", "untestable"
POWER_METHOD = "paired t-test, exact noncentral t"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Mean and the half-width of its two-sided t confidence interval (NaN half-width at n < 2)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    if x.size < 2:
        return float(x.mean()), math.nan
    t = stats.t.ppf(0.5 + confidence / 2, x.size - 1)
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


# ----------------------------------------------------------------------------- the p-value


def p_lower(d: np.ndarray) -> np.ndarray:
    """One-sided p-value for "the mean of ``d`` is below 0", over the last axis (the seeds).

    A paired t-test, except where the t statistic does not exist: differences that are all
    zero are no difference (p = 1); constant non-zero differences (every seed agrees, by the
    same amount) get the exact sign test, p = 0.5^n in the direction they agree and 1 in the
    other; under two seeds there is no test (NaN).
    """
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    if n < 2:
        return np.full(d.shape[:-1], math.nan)
    mean = d.mean(-1)
    constant = np.ptp(d, axis=-1) <= CONSTANT_TOL * np.maximum(1.0, np.abs(mean))
    sd = d.std(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / math.sqrt(n))
    p = stats.t.cdf(np.where(constant, 0.0, t), n - 1)
    agree = np.where(mean < -CONSTANT_TOL, 0.5**n, 1.0)
    return np.where(constant, agree, p)


def pair_rule(d: np.ndarray) -> str:
    """Which rule :func:`p_lower` applies to one pair's differences (for the README)."""
    d = np.asarray(d, dtype=float)
    if d.size < 2:
        return UNTESTABLE
    mean = float(d.mean())
    if np.ptp(d) <= CONSTANT_TOL * max(1.0, abs(mean)):
        return NO_DIFFERENCE if abs(mean) <= CONSTANT_TOL else SIGN_RULE
    return T_TEST


@dataclass(frozen=True)
class PairedTest:
    diff: float  # mean of a - b over the shared seeds
    p: float  # two-sided; NaN with fewer than two pairs
    n: int  # number of pairs
    rule: str = T_TEST  # T_TEST, SIGN_RULE, NO_DIFFERENCE or UNTESTABLE


def shared_differences(a: Mapping[Any, float], b: Mapping[Any, float]) -> np.ndarray:
    """a - b over the keys (seeds) both have a finite value for, in key order."""
    keys = sorted(k for k in set(a) & set(b) if math.isfinite(a[k]) and math.isfinite(b[k]))
    return np.asarray([a[k] - b[k] for k in keys], dtype=float)


def paired_t_test(a: Mapping[Any, float], b: Mapping[Any, float]) -> PairedTest:
    """Two-sided paired test of a vs b over the seeds both have (see :func:`p_lower`)."""
    d = shared_differences(a, b)
    if d.size == 0:
        return PairedTest(math.nan, math.nan, 0, UNTESTABLE)
    p = float(np.minimum(1.0, 2 * np.minimum(p_lower(d), p_lower(-d))))  # NaN stays NaN
    return PairedTest(float(d.mean()), p, int(d.size), pair_rule(d))


# ----------------------------------------------------------------------------- the decisions


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values over the last axis (step-down, monotone, capped at 1);
    NaNs stay NaN and do not count towards the family size."""
    p = np.asarray(pvalues, dtype=float)
    finite = np.isfinite(p)
    k = finite.sum(-1, keepdims=True)
    filled = np.where(finite, p, np.inf)
    order = np.argsort(filled, axis=-1, kind="stable")
    ranked = np.take_along_axis(filled, order, -1)
    steps = np.arange(p.shape[-1])
    safe = np.where(np.isfinite(ranked), ranked, 0.0)  # the NaNs, sorted last, scale nothing
    scaled = np.minimum(1.0, (k - steps) * safe)
    adjusted = np.maximum.accumulate(scaled, axis=-1)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, -1)
    return np.where(finite, out, math.nan)


def worse_matrix(x: np.ndarray) -> np.ndarray:
    """One-sided p-values ``[..., i, j]`` for "i scores lower than j" from complete scores
    ``x[..., activation, seed]`` (every activation has every seed); NaN on the diagonal."""
    x = np.asarray(x, dtype=float)
    w = p_lower(x[..., :, None, :] - x[..., None, :, :])
    m = x.shape[-2]
    w[..., np.arange(m), np.arange(m)] = math.nan
    return w


def shown_worse(worse: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``[..., i, j]``: i is shown worse than j, by its one-sided test Holm-corrected within i's
    own m - 1 comparisons (a row of ``worse``)."""
    adjusted = holm(worse)
    return np.isfinite(adjusted) & (adjusted < alpha)


def could_be_best(
    worse: np.ndarray, unstable: np.ndarray | None = None, alpha: float = ALPHA
) -> np.ndarray:
    """``[..., i]``: i could be the best: it is shown worse than no other activation, and it is
    not unstable. Holm within each activation's comparisons bounds the chance that the truly best
    activation is left out by alpha."""
    out = ~shown_worse(worse, alpha).any(-1)
    if unstable is not None:
        out &= ~np.asarray(unstable, dtype=bool)
    return out


def pairwise_different(worse: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``[..., i, j]`` (symmetric): i and j differ by a two-sided paired test, Holm-corrected
    over all pairs of the unit (the family-wise error of the whole letter display is alpha)."""
    worse = np.asarray(worse, dtype=float)
    m = worse.shape[-1]
    two_sided = np.minimum(1.0, 2 * np.fmin(worse, np.swapaxes(worse, -1, -2)))
    two_sided = np.where(np.isnan(worse) | np.isnan(np.swapaxes(worse, -1, -2)), np.nan, two_sided)
    iu, ju = np.triu_indices(m, 1)
    adjusted = holm(two_sided[..., iu, ju])
    out = np.zeros(worse.shape, dtype=bool)
    significant = np.isfinite(adjusted) & (adjusted < alpha)
    out[..., iu, ju] = significant
    out[..., ju, iu] = significant
    return out


def is_unstable(diverged: int, runs: int) -> bool:
    """THE divergence rule: an activation that diverged on at least half its finished runs is
    unstable (it is listed after every stable one and is never in the could-be-best set)."""
    return runs > 0 and diverged > 0 and 2 * diverged >= runs


# ----------------------------------------------------------------------------- the letters


def letter_groups(different: np.ndarray, order: Sequence[int]) -> list[tuple[str, list[int]]]:
    """The letters of a compact letter display of a symmetric "differ" matrix (Piepho's
    insert-absorb), each with its members in ``order`` (the display order): two activations
    share a letter exactly when they are not shown different, and ``a`` is the group of the
    first activation."""
    m = len(order)
    if m == 0:
        return []
    position = {a: k for k, a in enumerate(order)}
    columns: list[frozenset[int]] = [frozenset(range(m))]
    for i, j in itertools.combinations(order, 2):
        if not different[i, j]:
            continue
        split: list[frozenset[int]] = []
        for col in columns:
            split += [col - {i}, col - {j}] if i in col and j in col else [col]
        unique = set(split)
        columns = [c for c in unique if c and not any(c < other for other in unique)]
    members = sorted(
        (sorted(c, key=position.__getitem__) for c in columns),
        key=lambda c: [position[a] for a in c],
    )
    names = list(string.ascii_lowercase + string.ascii_uppercase)
    if len(members) > len(names):  # never met with a handful of activations; still readable
        names = [f"[{k + 1}]" for k in range(len(members))]
    return list(zip(names, members, strict=False))


def compact_letters(different: np.ndarray, order: Sequence[int]) -> list[str]:
    """Each activation's letters (indexed like ``different``), from :func:`letter_groups`."""
    groups = letter_groups(different, order)
    return ["".join(name for name, members in groups if a in members) for a in range(len(order))]


def non_monotone_letters(
    different: np.ndarray, order: Sequence[int]
) -> list[tuple[str, list[int], list[int]]]:
    """(letter, its members, the activations it skips) for each letter whose activations are not
    adjacent in the display order: a paired test can separate two neighbours by mean, with a
    small spread of their differences, yet not two activations further apart."""
    position = {a: k for k, a in enumerate(order)}
    notes = []
    for name, members in letter_groups(different, order):
        span = range(position[members[0]], position[members[-1]] + 1)
        skipped = [order[k] for k in span if order[k] not in members]
        if skipped:
            notes.append((name, members, skipped))
    return notes


# ----------------------------------------------------------------------------- the ranking


@dataclass
class RankRow:
    activation: str
    scores: dict[Any, float]  # seed -> score as ranked (a diverged run counts as chance)
    mean: float
    std: float
    half_width: float
    position: int  # 1 = first row: stable activations by mean, then unstable ones by mean
    diverged: int = 0  # ranked runs that diverged
    unstable: bool = False
    could_be_best: bool = True
    worse_than: list[str] = field(default_factory=list)  # shown worse than these
    letters: str = "a"
    rules: dict[str, str] = field(default_factory=dict)  # other -> pair rule, where not a t-test

    @property
    def n(self) -> int:
        return len(self.scores)


@dataclass
class Ranking:
    rows: list[RankRow]
    letter_notes: list[tuple[str, list[str], list[str]]]  # (letter, members, skipped)
    different: dict[tuple[str, str], bool]

    def row(self, activation: str) -> RankRow:
        return next(r for r in self.rows if r.activation == activation)


def order_key(mean: float, unstable: bool, name: str) -> tuple[bool, float, str]:
    """THE display order: stable activations first, each block by mean (highest first), then
    by name; a lower mean is never above a higher one within a block."""
    return (unstable, -mean if math.isfinite(mean) else math.inf, name)


def pvalue_matrix(scores: Mapping[str, Mapping[Any, float]], acts: Sequence[str]) -> np.ndarray:
    """The one-sided ``worse`` matrix of a unit, each pair over the seeds both have."""
    m = len(acts)
    worse = np.full((m, m), math.nan)
    for i, j in itertools.permutations(range(m), 2):
        d = shared_differences(scores[acts[i]], scores[acts[j]])
        worse[i, j] = float(p_lower(d)) if d.size else math.nan
    return worse


def rank_activations(
    scores: Mapping[str, Mapping[Any, float]],
    diverged: Mapping[str, Collection[Any]] | None = None,
    alpha: float = ALPHA,
) -> list[RankRow]:
    """The rows of :func:`ranking` (kept for callers that need only the rows)."""
    return ranking(scores, diverged, alpha).rows


def ranking(
    scores: Mapping[str, Mapping[Any, float]],
    diverged: Mapping[str, Collection[Any]] | None = None,
    alpha: float = ALPHA,
) -> Ranking:
    """Rows in :func:`order_key` order, each with its could-be-best flag and letters.

    ``scores`` are activation -> seed -> score, a diverged run already scored (the report
    scores it as chance accuracy); ``diverged`` names those seeds, for :func:`is_unstable`.
    """
    diverged = diverged or {}
    means = {a: _nanmean(scores[a].values()) for a in scores}
    n_diverged = {a: len(set(diverged.get(a, ())) & set(scores[a])) for a in scores}
    unstable = {a: is_unstable(n_diverged[a], len(scores[a])) for a in scores}
    acts = sorted(scores, key=lambda a: order_key(means[a], unstable[a], a))
    m = len(acts)
    worse = pvalue_matrix(scores, acts)
    worse_flags = shown_worse(worse, alpha)
    best = could_be_best(worse, np.array([unstable[a] for a in acts], dtype=bool), alpha)
    differ = pairwise_different(worse, alpha)
    letters = compact_letters(differ, list(range(m))) if m else []
    rows = []
    for i, a in enumerate(acts):
        values = list(scores[a].values())
        mean, half = t_interval(values)
        rules = {}
        for j, b in enumerate(acts):
            if j != i:
                rule = pair_rule(shared_differences(scores[a], scores[b]))
                if rule != T_TEST:
                    rules[b] = rule
        rows.append(
            RankRow(
                activation=a,
                scores=dict(scores[a]),
                mean=mean,
                std=float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
                half_width=half,
                position=i + 1,
                diverged=n_diverged[a],
                unstable=unstable[a],
                could_be_best=bool(best[i]),
                worse_than=[acts[j] for j in range(m) if worse_flags[i, j]],
                letters=letters[i],
                rules=rules,
            )
        )
    notes = [
        (name, [acts[k] for k in members], [acts[k] for k in skipped])
        for name, members, skipped in non_monotone_letters(differ, list(range(m)))
    ]
    different = {
        (acts[i], acts[j]): bool(differ[i, j]) for i, j in itertools.permutations(range(m), 2)
    }
    return Ranking(rows=rows, letter_notes=notes, different=different)


def baseline_family(
    scores: Mapping[str, Mapping[Any, float]], baseline: str
) -> dict[str, tuple[PairedTest, float]]:
    """Each other activation vs ``baseline``: (paired test, Holm-adjusted p within this family)."""
    if baseline not in scores:
        return {}
    others = [a for a in scores if a != baseline]
    tests = [paired_t_test(scores[a], scores[baseline]) for a in others]
    adjusted = holm([t.p for t in tests])
    return {a: (t, float(p)) for a, t, p in zip(others, tests, adjusted, strict=True)}


def _nanmean(values: Iterable[float]) -> float:
    x = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(x)) if x else -math.inf


# ----------------------------------------------------------------------------- power


def paired_power(delta: float, sd: float, n: int, level: float, sided: int = 1) -> float:
    """Power of the paired t-test at ``level`` to detect a true mean difference ``delta`` with
    paired-difference SD ``sd`` over ``n`` seeds (exact, by the noncentral t distribution)."""
    if n < 2 or not sd > 0:
        return math.nan
    df, nc = n - 1, delta * math.sqrt(n) / sd
    if sided == 1:
        return float(stats.nct.sf(stats.t.ppf(1 - level, df), df, nc))
    crit = stats.t.ppf(1 - level / 2, df)
    # The far tail: below 1e-300 scipy may return NaN where the value is 0 in floating point.
    far = float(stats.nct.cdf(-crit, df, abs(nc)))
    return float(stats.nct.sf(crit, df, abs(nc))) + (far if math.isfinite(far) else 0.0)


def min_detectable(sd: float, n: int, level: float, sided: int = 1, power: float = POWER) -> float:
    """The smallest true difference the paired t-test at ``level`` detects with ``power``."""
    if n < 2 or not sd > 0 or not math.isfinite(sd):
        return math.nan
    hi = sd
    while paired_power(hi, sd, n, level, sided) < power:
        hi *= 2
    gap = lambda d: paired_power(d, sd, n, level, sided) - power  # noqa: E731
    return float(optimize.brentq(gap, 0.0, hi, xtol=1e-12 * sd))


def seeds_needed(
    delta: float, sd: float, level: float, sided: int = 1, power: float = POWER, cap: int = 10**6
) -> int | None:
    """The fewest seeds with which the paired t-test at ``level`` detects ``delta`` with
    ``power`` (None beyond ``cap`` or without a spread to size it on)."""
    if not sd > 0 or not math.isfinite(sd) or not delta > 0:
        return None
    lo, hi = 2, 2
    while paired_power(delta, sd, hi, level, sided) < power:
        lo, hi = hi, hi * 2
        if hi > cap:
            return None
    while lo < hi:  # the smallest n in [lo, hi] with enough power (power grows with n)
        mid = (lo + hi) // 2
        if paired_power(delta, sd, mid, level, sided) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi


@dataclass(frozen=True)
class Power:
    """What a unit's design can detect."""

    pooled_sd: float  # pooled SD of the paired differences (score units)
    df: int  # its degrees of freedom (sum over pairs of shared seeds - 1)
    pairs: int
    n: int  # seeds per comparison (the median over pairs)
    m: int  # activations
    alpha: float
    level_best: float  # one-sided level of the could-be-best test: alpha / (m - 1)
    level_pairwise: float  # two-sided level of a letter: alpha / (m (m - 1) / 2)
    mde_best: float  # smallest difference to the best excluded with POWER
    mde_pairwise: float  # smallest difference given different letters with POWER (a bound)
    seeds_1pt_best: int | None  # seeds a 1-point (0.01) difference would need
    seeds_1pt_pairwise: int | None
    method: str = POWER_METHOD
    power: float = POWER


def pooled_paired_sd(scores: Mapping[str, Mapping[Any, float]]) -> tuple[float, int, int, int]:
    """(pooled SD, its df, pairs pooled, median seeds per pair) of the paired differences over
    all pairs of activations: sum over pairs of (n - 1) s^2, divided by the sum of (n - 1)."""
    ss, df, ns = 0.0, 0, []
    for a, b in itertools.combinations(sorted(scores), 2):
        d = shared_differences(scores[a], scores[b])
        if d.size >= 2:
            ss += float(np.sum((d - d.mean()) ** 2))
            df += d.size - 1
            ns.append(d.size)
    sd = math.sqrt(ss / df) if df else math.nan
    return sd, df, len(ns), int(np.median(ns)) if ns else 0


def unit_power(
    scores: Mapping[str, Mapping[Any, float]],
    m: int | None = None,
    alpha: float = ALPHA,
    one_point: float = 0.01,
) -> Power:
    """The power figures of a unit from its ``scores`` (completed runs only: the spread of
    training, not of divergence); ``m`` is the number of activations ranked (default: all)."""
    sd, df, pairs, n = pooled_paired_sd(scores)
    m = len(scores) if m is None else m
    k = max(1, m - 1)
    level_best, level_pairwise = alpha / k, alpha / max(1, m * (m - 1) // 2)
    return Power(
        pooled_sd=sd,
        df=df,
        pairs=pairs,
        n=n,
        m=m,
        alpha=alpha,
        level_best=level_best,
        level_pairwise=level_pairwise,
        mde_best=min_detectable(sd, n, level_best, sided=1),
        mde_pairwise=min_detectable(sd, n, level_pairwise, sided=2),
        seeds_1pt_best=seeds_needed(one_point, sd, level_best, sided=1),
        seeds_1pt_pairwise=seeds_needed(one_point, sd, level_pairwise, sided=2),
    )
