"""How the report's README writes numbers, lists and tables (one spelling everywhere)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def pct(x: float | None, digits: int = 1) -> str:
    """A fraction as percent (or percentage points), "—" where missing."""
    return f"{100 * x:.{digits}f}" if x is not None and math.isfinite(x) else "—"


def signed_pct(x: float | None, digits: int = 2) -> str:
    return f"{100 * x:+.{digits}f}" if x is not None and math.isfinite(x) else "—"


def num(x: float | None, fmt: str = ".3g") -> str:
    return format(x, fmt) if x is not None and math.isfinite(x) else "—"


def p_text(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def lr_text(lr: float | None) -> str:
    return f"{lr:g}" if lr is not None else "—"


def join(values: Iterable[Any]) -> str:
    """Distinct values, sorted, comma-separated ("—" when none)."""
    items = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
    return ", ".join(str(v) for v in items) if items else "—"


def names(acts: Iterable[str]) -> str:
    """Activation names in code spans, in the order given."""
    return ", ".join(f"`{a}`" for a in acts) or "—"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines
