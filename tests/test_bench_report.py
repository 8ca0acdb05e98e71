"""The bench's report files (actbench.bench.report): format and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

from actbench.bench.report import fmt_range, meets, write


def test_fmt_range_and_verdict():
    assert fmt_range({"median": 1.5, "min": 1.25, "max": 2.0}) == "1.50 (1.25–2.00)"
    assert fmt_range({"median": 0.5, "min": 0.25, "max": 1.0}, scale=1e3, digits=0) == (
        "500 (250–1000)"
    )
    assert (meets(True), meets(False)) == ("meets", "misses")


def test_write_renders_each_row_and_leaves_no_partial_files(tmp_path: Path):
    result = {
        "machine": {
            "cpu": "x86_64",
            "cores": 2,
            "torch": "2",
            "lightning": "2",
            "torch_threads": 1,
            "cuda": None,
            "load_average": [0.5, 0.25, 0.0],
            "date": "2025-01-01 00:00",
        },
        "options": {"reps": 1, "quick": True, "rows": ["hvp"], "devices": ["cpu"]},
        "overrides": [],
        "results": {"cpu": {"hvp": {"row": "hvp", "ratio": 2.0}}},
    }
    out = tmp_path / "bench"
    text = write(out, result, {"hvp": lambda d, device: [f"## HVP ({device}): {d['ratio']}"]})
    assert (out / "README.md").read_text() == text
    assert text.startswith("# actbench benchmarks\n")
    assert "load average at start 0.50, 0.25, 0.00" in text
    assert "**--quick: tiny runs" in text and text.endswith("\n\n## HVP (cpu): 2.0\n")
    # bench.json as it always was: indented by two, one trailing newline.
    assert (out / "bench.json").read_text() == json.dumps(result, indent=2) + "\n"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "bench.json"]
