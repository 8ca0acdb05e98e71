"""``python -m actbench.experiments``: the ``actbench-experiments`` command."""

import sys

from actbench.experiments.cli import main

sys.exit(main())
