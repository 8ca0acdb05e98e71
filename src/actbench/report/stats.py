"""The statistics of the report: t intervals, paired t-tests by seed, Holm-Bonferroni, and the
ranking of activations within a unit that they give."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Mean and the half-width of its two-sided t confidence interval (NaN half-width at n < 2)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    if x.size < 2:
        return float(x.mean()), math.nan
    t = stats.t.ppf(0.5 + confidence / 2, x.size - 1)
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


@dataclass(frozen=True)
class PairedTest:
    diff: float  # mean of a - b over the shared seeds
    p: float  # two-sided; NaN with fewer than two pairs
    n: int  # number of pairs


def paired_t_test(a: Mapping[Any, float], b: Mapping[Any, float]) -> PairedTest:
    """Two-sided paired t-test of a vs b over the keys (seeds) both have a finite value for."""
    keys = sorted(k for k in set(a) & set(b) if math.isfinite(a[k]) and math.isfinite(b[k]))
    d = np.asarray([a[k] - b[k] for k in keys], dtype=float)
    if d.size == 0:
        return PairedTest(math.nan, math.nan, 0)
    if d.size < 2:
        return PairedTest(float(d.mean()), math.nan, 1)
    if np.ptp(d) == 0:  # zero variance: no t statistic; equal seeds are no evidence either way
        return PairedTest(float(d.mean()), 1.0 if d[0] == 0 else math.nan, int(d.size))
    p = stats.ttest_rel([a[k] for k in keys], [b[k] for k in keys]).pvalue
    return PairedTest(float(d.mean()), float(p), int(d.size))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaNs stay NaN
    and do not count towards the family size."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * p[i]))
        out[i] = running
    return out


@dataclass
class RankRow:
    activation: str
    scores: dict[Any, float]  # seed -> score
    mean: float
    std: float
    half_width: float
    rank: int
    better_than: list[str]
    tied_with: list[str]

    @property
    def n(self) -> int:
        return len(self.scores)


def rank_activations(
    scores: Mapping[str, Mapping[Any, float]], alpha: float = ALPHA
) -> list[RankRow]:
    """Rows in order of mean score; rank = 1 + the number of activations significantly better.

    Every pair is compared with a paired t-test, Holm-corrected over all pairs of the unit; a pair
    that is not significant (or cannot be tested: under two shared seeds) is a tie, so activations
    that nothing beats significantly share rank 1.
    """
    acts = sorted(scores, key=lambda a: (-_nanmean(scores[a].values()), a))
    pairs = list(itertools.combinations(acts, 2))
    tests = [paired_t_test(scores[a], scores[b]) for a, b in pairs]
    adjusted = holm([t.p for t in tests])
    beaten_by: dict[str, set[str]] = defaultdict(set)
    tied: dict[str, set[str]] = defaultdict(set)
    for (a, b), test, p in zip(pairs, tests, adjusted, strict=True):
        if math.isfinite(p) and p < alpha and test.diff != 0:
            winner, loser = (a, b) if test.diff > 0 else (b, a)
            beaten_by[loser].add(winner)
        else:
            tied[a].add(b)
            tied[b].add(a)
    rows = []
    for a in acts:
        values = list(scores[a].values())
        mean, half = t_interval(values)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        better = sorted(b for b in acts if a in beaten_by[b])
        rows.append(
            RankRow(
                activation=a,
                scores=dict(scores[a]),
                mean=mean,
                std=std,
                half_width=half,
                rank=1 + len(beaten_by[a]),
                better_than=better,
                tied_with=[b for b in acts if b in tied[a]],
            )
        )
    return rows


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
