"""Activation atlas: every registered activation's shape, measured numerically, and the seed
article's claims audited against the measurements.

``measure`` (sigmoid match, Monte Carlo, born dead, :func:`~actbench.atlas.measure.compute_atlas`),
``claims`` (the audit), ``readme`` and ``figures`` (the report), ``cli`` (``actbench-atlas``).
The per-activation shape lives in :mod:`actbench.activation_shape`.
"""

from actbench.atlas.cli import main

__all__ = ["main"]
