"""The difference of each activation to the first row: a t interval over seeds, and a paired
bootstrap over seeds and test examples together.

The t interval sees only the spread between seeds. The test set is a sample too (1000 examples
have a binomial s.e. of about 1.5 points at 65 %), so where every run of a pair stored its
per-example correctness (``test_correct.npz``), the bootstrap resamples seeds and test examples
at once, and the same resampled examples for both activations (they were tested on the same
examples: the pairing is kept). Where a run lacks the file it resamples seeds only, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from actbench.report.stats import CONFIDENCE, shared_differences

REPLICATES = 2000
SEED = 0  # a fixed stream: the same records give the same report
SEEDS_AND_EXAMPLES = "seeds × test examples"
SEEDS_ONLY = "seeds only"
_CHUNK_CELLS = 4_000_000  # replicates x examples per step: bounded memory on big test sets


@dataclass(frozen=True)
class Delta:
    """a - b over their shared seeds (accuracy units), with both intervals."""

    diff: float
    t_low: float
    t_high: float
    boot_low: float
    boot_high: float
    boot: str  # SEEDS_AND_EXAMPLES, SEEDS_ONLY, or "" (no interval)
    n: int  # shared seeds
    examples: int  # test examples resampled (0: seeds only)


def paired_bootstrap(
    d: np.ndarray, replicates: int = REPLICATES, confidence: float = CONFIDENCE, seed: int = SEED
) -> tuple[float, float]:
    """Percentile interval of the mean of ``d[seed, example]`` (a - b per seed and example)
    when seeds and examples are resampled together: each replicate draws n seeds and N
    examples with replacement and averages the n x N cells they pick."""
    d = np.asarray(d, dtype=float)
    n, size = d.shape
    rng = np.random.default_rng(seed)
    out = np.empty(replicates)
    step = max(1, _CHUNK_CELLS // max(1, size))
    for start in range(0, replicates, step):
        b = min(step, replicates - start)
        seed_counts = rng.multinomial(n, np.full(n, 1.0 / n), size=b)  # (b, n)
        per_example = seed_counts @ d  # (b, N): sums over the drawn seeds
        if size > 1:
            picks = rng.integers(0, size, size=(b, size))
            per_example = np.take_along_axis(per_example, picks, axis=1)
        out[start : start + b] = per_example.sum(axis=1) / (n * size)
    tail = (1 - confidence) / 2
    low, high = np.quantile(out, [tail, 1 - tail])
    return float(low), float(high)


def delta_vs(
    a: Mapping[Any, float],
    b: Mapping[Any, float],
    a_examples: Mapping[Any, np.ndarray | float | None],
    b_examples: Mapping[Any, np.ndarray | float | None],
) -> Delta:
    """a - b: the mean over shared seeds, its t interval, and the bootstrap interval (over
    seeds and test examples where every shared seed of both has its per-example vector, a
    float standing for a diverged run's constant chance score; else over seeds only)."""
    d = shared_differences(a, b)
    n = int(d.size)
    if n == 0:
        return Delta(math.nan, math.nan, math.nan, math.nan, math.nan, "", 0, 0)
    mean = float(d.mean())
    if n > 1:
        t = scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)
        half = float(t * d.std(ddof=1) / math.sqrt(n))
    else:
        half = math.nan
    seeds = sorted(s for s in set(a) & set(b) if math.isfinite(a[s]) and math.isfinite(b[s]))
    rows = [(a_examples.get(s), b_examples.get(s)) for s in seeds]
    sizes = {v.size for pair in rows for v in pair if isinstance(v, np.ndarray)}
    if all(v is not None for pair in rows for v in pair) and len(sizes) == 1:
        size = sizes.pop()
        cells = np.stack([np.broadcast_to(x, size) - np.broadcast_to(y, size) for x, y in rows])
        low, high = paired_bootstrap(cells)
        kind, examples = SEEDS_AND_EXAMPLES, size
    else:
        low, high = paired_bootstrap(d[:, None])
        kind, examples = SEEDS_ONLY, 0
    return Delta(mean, mean - half, mean + half, low, high, kind, n, examples)
