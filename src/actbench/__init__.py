"""actbench: a training-experiment benchmark suite for neural-network activation functions."""

__version__ = "0.1.0"
