"""Lightning callbacks that show *why* activations train differently.

All three measure on a log-spaced cadence, on fixed probes, in eval mode under ``isolate_rng``, so
a run trains bit-identically with them on or off.
"""

from actbench.diagnostics.base import Diagnostic, log_spaced_steps
from actbench.diagnostics.curvature import CurvatureMonitor
from actbench.diagnostics.dead_neurons import DeadNeuronMonitor
from actbench.diagnostics.grad_norms import GradientNormMonitor

__all__ = [
    "CurvatureMonitor",
    "DeadNeuronMonitor",
    "Diagnostic",
    "GradientNormMonitor",
    "log_spaced_steps",
]
