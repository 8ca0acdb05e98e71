"""``python -m actbench.bench``: the memory row starts its curvature child this way."""

import sys

from actbench.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
