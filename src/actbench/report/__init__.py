"""``make report``: a sweep's run records -> statistics, tables and figures in ``reports/<sweep>/``.

A sweep writes one run record per configuration under ``multirun/<sweep>/`` (see
:mod:`actbench.records`). The report reads those records, never the training code, so it works
on a sweep that is still running: runs that are ``running`` or ``failed`` are counted and
listed; completed runs enter the statistics with their test accuracy and diverged ones at
chance accuracy (a divergence is a result, never left out).

Protocol. Activations are compared within a unit (model x dataset x any other swept setting).
In a two-stage sweep, ``tune`` runs pick one learning rate per (unit, activation) by the mean
validation score over tuning seeds; the sweeper makes that choice and records it in
``selection.json``, which the report reads (and recomputes by the same rule only where the file
is missing). Only ``confirm`` runs (fresh seeds) are ranked; a sweep without stages ranks all
its runs. Rows are ordered by mean; paired tests by seed (same seed, same batches and init
stream) give the could-be-best set and the compact letter display, with the power of the
design stated beside them; differences to the first row also get a bootstrap over seeds and
test examples where the runs stored their per-example correctness.

The rooms: :mod:`~actbench.report.stats` (intervals, paired tests, Holm, the could-be-best set,
letters, the unstable rule, power), :mod:`~actbench.report.bootstrap` (differences to the first
row), :mod:`~actbench.report.analysis` (units, the LR table, the choice, what is ranked and
with what score, collapse, device kinds), :mod:`~actbench.report.curves` (training curves over
seeds), :mod:`~actbench.report.figures`, :mod:`~actbench.report.tables` (``summary.csv``,
``ranking.csv``), :mod:`~actbench.report.markdown` and :mod:`~actbench.report.ranking_text`
(how ``README.md`` writes numbers and the ranking), :mod:`~actbench.report.readme`
(``README.md``), :mod:`~actbench.report.wandb_log` (the W&B report run) and
:mod:`~actbench.report.cli` (``build_report``, the ``actbench-report`` command).
"""
