"""``python -m actbench.report``: the ``actbench-report`` command."""

import sys

from actbench.report.cli import main

sys.exit(main())
