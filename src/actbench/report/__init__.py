"""``make report``: a sweep's run records -> statistics, tables and figures in ``reports/<sweep>/``.

A sweep writes one run record per configuration under ``multirun/<sweep>/`` (see
:mod:`actbench.records`). The report reads those records, never the training code, so it works
on a sweep that is still running: runs that are ``running``, ``failed`` or ``diverged`` are
counted and listed, and only completed runs enter the statistics.

Protocol. Activations are compared within a unit (model x dataset x any other swept setting).
In a two-stage sweep, ``tune`` runs pick one learning rate per (unit, activation) by the mean
validation score over tuning seeds; the sweeper makes that choice and records it in
``selection.json``, which the report reads (and recomputes by the same rule only where the file
is missing). Only ``confirm`` runs (fresh seeds) are ranked; a sweep without stages ranks all
its runs. Test accuracies are compared with paired t-tests (paired by seed: same seed, same
batches and init stream), Holm-Bonferroni corrected within each family.

The rooms: :mod:`~actbench.report.stats` (intervals, paired tests, Holm, ranks),
:mod:`~actbench.report.analysis` (units, the LR table, the choice, what is ranked),
:mod:`~actbench.report.curves` (training curves over seeds), :mod:`~actbench.report.figures`,
:mod:`~actbench.report.tables` (``summary.csv``), :mod:`~actbench.report.readme`
(``README.md``), :mod:`~actbench.report.wandb_log` (the W&B report run) and
:mod:`~actbench.report.cli` (``build_report``, the ``actbench-report`` command).
"""

from actbench.report.cli import build_report, main

__all__ = ["build_report", "main"]
