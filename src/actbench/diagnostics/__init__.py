"""Lightning callbacks that show *why* activations train differently.

All of them measure on a cadence (log-spaced by default, or every k steps), on fixed probes, in
eval mode under ``isolate_rng``, so a run trains bit-identically with them on or off.
"""

from actbench.diagnostics.base import Diagnostic, log_spaced_steps
from actbench.diagnostics.curvature import CurvatureMonitor
from actbench.diagnostics.dead_neurons import DeadNeuronMonitor
from actbench.diagnostics.grad_norms import GradientNormMonitor
from actbench.diagnostics.train_loss import TrainSetLoss

__all__ = [
    "CurvatureMonitor",
    "DeadNeuronMonitor",
    "Diagnostic",
    "GradientNormMonitor",
    "TrainSetLoss",
    "log_spaced_steps",
]
