"""Reproduction experiments: published claims, protocols run offline, verdicts decided in advance.

Each experiment is a preset (``conf/experiment/<name>.yaml``), a grid (``sweeps/exp_<name>.yaml``)
and, in a module of this package, the rule that turns its run records into a verdict. The rules
are constants and code written before any result was seen; the document states them and applies
them mechanically.

- :mod:`.base`: the :class:`~.base.Experiment` base class, its Outcome, the fixed formats;
- :mod:`.gelu_paper`, :mod:`.dying`, :mod:`.edge_of_stability`: one experiment each;
- :mod:`.registry`: the experiments by name;
- :mod:`.collect`: run a grid and collect its finished runs into the records;
- :mod:`.document`: compose, render and check the documents (a pure function of the records);
- :mod:`.cli`: the ``actbench-experiments`` command.
"""

from __future__ import annotations

from actbench.experiments.cli import main

__all__ = ["main"]
