"""The bench's shared parts (actbench.bench.timing): alternation and the timer's Hydra node."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import get_class

from actbench.bench.epoch60k import EPOCH60K, SyntheticMNIST
from actbench.bench.timing import StepTimer, alternate, median_range, timer_overrides


def test_alternate_reverses_every_other_repetition():
    calls: list[str] = []
    variants = {name: (lambda name=name: calls.append(name) or name) for name in ("a", "b", "c")}
    results = alternate(variants, reps=3)
    assert calls == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert results == {"a": ["a"] * 3, "b": ["b"] * 3, "c": ["c"] * 3}


def test_median_range():
    assert median_range([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}


def test_hydra_targets_name_the_classes_where_they_live(tmp_path: Path):
    """The timer and the synthetic data reach runs as ``_target_`` strings: they must import."""
    overrides = dict(o.split("=", 1) for o in timer_overrides(tmp_path / "t.json", 1, 5, True))
    assert get_class(overrides["+callbacks.bench_timer._target_"]) is StepTimer
    assert overrides["+callbacks.bench_timer.end_step"] == "5"
    assert overrides["+callbacks.bench_timer.profile"] == "true"
    target = next(c for c in EPOCH60K[0] if c.startswith("data._target_="))
    assert get_class(target.split("=", 1)[1]) is SyntheticMNIST
    quick = target.replace("SyntheticMNIST", "SyntheticMNISTQuick").split("=", 1)[1]
    assert get_class(quick).samples == 2_000
