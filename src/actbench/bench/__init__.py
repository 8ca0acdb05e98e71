"""``make bench`` (``actbench-bench``): what actbench costs, measured side by side.

One module per row (:mod:`.steps` with :mod:`.epoch60k`, :mod:`.diagnostics`, :mod:`.hvp`,
:mod:`.startup`, :mod:`.sweep_row`, :mod:`.memory`), each measuring its row and rendering its
section; the parts they share in :mod:`.timing`; the report files in :mod:`.report`; the command
line and the list of rows in :mod:`.cli`.
"""

from actbench.bench.cli import main

__all__ = ["main"]
