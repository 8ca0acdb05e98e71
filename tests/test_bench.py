"""The benchmark code path runs once end to end (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

from actbench import bench


def test_bench_writes_report_and_numbers(tmp_path: Path, data_root: Path):
    out = tmp_path / "bench"
    overrides = ["experiment=smoke", "trainer.max_steps=12", f"data.root={data_root}"]
    assert bench.main(["--out", str(out), "--reps", "1", "--hvp-examples", "128", *overrides]) == 0
    result = json.loads((out / "bench.json").read_text())
    times = result["diagnostics"]["times_s"]
    assert set(times) == {"off", "on", "no_curvature"} and all(len(v) == 1 for v in times.values())
    assert all(t > 0 for v in times.values() for t in v)
    assert result["hvp"]["ratio"] > 0 and result["hvp"]["parameters"] > 1000
    text = (out / "README.md").read_text()
    assert "Diagnostics share of wall time" in text and "Hessian-vector product" in text
