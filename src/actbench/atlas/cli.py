"""Activation atlas: every registered activation's shape, measured numerically, and the seed
article's claims audited against the measurements.

Console entry point ``actbench-atlas`` (``make atlas``): computes the atlas and writes
``README.md``, ``atlas.json`` and the PNG figures into ``--out`` (each file atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from actbench import records
from actbench.atlas.figures import make_figures
from actbench.atlas.measure import (
    DEAD_DEPTHS,
    DEAD_WIDTHS,
    DEFAULT_TRIALS,
    MC_SAMPLES,
    compute_atlas,
)
from actbench.atlas.readme import render_readme


def _jsonable(obj: Any) -> Any:
    """Non-finite floats as strings ("inf", "-inf", "nan"), which strict JSON cannot hold."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def _int_list(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 2,3,5; got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``actbench-atlas``: compute, write README.md, atlas.json, figures."""
    parser = argparse.ArgumentParser(prog="actbench-atlas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/atlas"), help="output folder")
    parser.add_argument(
        "--trials", type=int, default=DEFAULT_TRIALS, help="born-dead nets per cell"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for Monte Carlo and born dead")
    parser.add_argument(
        "--mc-samples", type=int, default=MC_SAMPLES, help="Monte Carlo samples per point"
    )
    parser.add_argument(
        "--widths", type=_int_list, default=DEAD_WIDTHS, help="born-dead widths, e.g. 2,3,4,5,10"
    )
    parser.add_argument(
        "--depths", type=_int_list, default=DEAD_DEPTHS, help="born-dead depths, e.g. 5,10,20,50"
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.mc_samples < 2:
        parser.error("--trials must be >= 1 and --mc-samples >= 2")
    t0 = time.perf_counter()
    atlas = compute_atlas(
        trials=args.trials,
        seed=args.seed,
        mc_samples=args.mc_samples,
        widths=args.widths,
        depths=args.depths,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    figures = [] if args.no_figures else make_figures(atlas, args.out)
    runtime = time.perf_counter() - t0
    atlas["settings"]["total_seconds"] = runtime
    # Not records.atomic_write_json: atlas.json keeps its own layout (indent 1, strict JSON).
    records.atomic_write_text(
        args.out / "atlas.json", json.dumps(_jsonable(atlas), indent=1) + "\n"
    )
    records.atomic_write_text(args.out / "README.md", render_readme(atlas, figures, runtime))
    print(f"actbench-atlas: wrote {args.out / 'README.md'}, {args.out / 'atlas.json'}")
    for f in figures:
        print(f"actbench-atlas: wrote {f}")
    failed = [c for c in atlas["claims"] if c["verdict"].startswith("does not hold")]
    print(
        f"actbench-atlas: {len(atlas['claims'])} claims checked, {len(failed)} do not hold "
        f"({runtime:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
