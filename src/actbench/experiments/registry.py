"""The experiments by name, in the order the commands list and render them."""

from __future__ import annotations

from actbench.experiments.base import Experiment, ExperimentError
from actbench.experiments.dying import Dying
from actbench.experiments.edge_of_stability import EdgeOfStability
from actbench.experiments.gelu_paper import GeluPaper

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (GeluPaper(), Dying(), EdgeOfStability())}


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; an :class:`ExperimentError` naming the valid ones if none."""
    if name not in EXPERIMENTS:
        raise ExperimentError(f"experiment {name!r} is unknown; valid: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]
