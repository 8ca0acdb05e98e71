"""How measured numbers and intervals are written in text.

An activation's profile carries short descriptions of what was measured, and the claims audit
and the atlas README quote the same numbers; writing them all with these two functions keeps one
value reading the same everywhere (6 significant digits, "inf", "0", "-" for missing).
"""

from __future__ import annotations

import math


def num(v: float | None, digits: int = 6) -> str:
    """``v`` to ``digits`` significant digits; "-" for None, "inf" / "-inf", "0" for any zero."""
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    return f"{v:.{digits}g}"


def interval_text(a: float, b: float, open_left: bool = False, open_right: bool = False) -> str:
    """ "[a, b]" with an infinite end open ("(-inf, 0]"); ``open_*`` opens a finite end too."""
    left = "(-inf" if a == -math.inf else ("(" if open_left else "[") + num(a)
    right = "inf)" if b == math.inf else num(b) + (")" if open_right else "]")
    return f"{left}, {right}"
