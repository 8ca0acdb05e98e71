"""``make dashboard``: one self-contained HTML page per sweep, and the W&B workspace from code.

The page (``reports/<sweep>/dashboard.html``) opens from disk with no network: plotly's JS is
inlined once and a Content-Security-Policy forbids every request. It reads the run records
through :mod:`actbench.records` and takes every number it shows from the report's own analysis
(:mod:`actbench.report.analysis`, :mod:`actbench.report.stats`, :mod:`actbench.report.curves`), so
it agrees with ``README.md`` of the report and works on a partial sweep.

The rooms: :mod:`~actbench.dashboard.data` (what the page shows, gathered from records),
:mod:`~actbench.dashboard.plots` (plotly figures), :mod:`~actbench.dashboard.page` (the HTML,
``build_dashboard``), :mod:`~actbench.dashboard.workspace` (the W&B workspace spec, built and
saved with ``wandb-workspaces``) and :mod:`~actbench.dashboard.cli` (``actbench-dashboard``).

This file imports only :mod:`~actbench.dashboard.page`, so the report may call
``build_dashboard`` without importing the command line (which imports the report's).
"""

from actbench.dashboard.page import build_dashboard

__all__ = ["build_dashboard"]
