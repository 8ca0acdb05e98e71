"""The benchmark code path runs once end to end through the command line (no timing
assertions); the shared parts are tested in test_bench_timing.py and test_bench_report.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actbench import bench
from actbench.bench.cli import ROWS


def test_bench_writes_report_and_numbers(tmp_path: Path, data_root: Path):
    out = tmp_path / "bench"
    args = ["--quick", "--reps", "1", "--threads", "1", "--device", "cpu", "--out", str(out)]
    assert bench.main([*args, f"data.root={data_root}"]) == 0
    result = json.loads((out / "bench.json").read_text())
    assert result["options"]["quick"] and result["options"]["devices"] == ["cpu"]
    rows = result["results"]["cpu"]
    # Every row except the GPU-only 60k epoch, which runs on the CPU only when named in --only.
    assert set(rows) == set(ROWS) - {"epoch60k"}

    for name in ("mlp_steps", "vit_steps"):
        steps = rows[name]
        assert set(steps["ms_per_step"]) == {"actbench", "lightning", "reference"}
        assert steps["lightning_ratio"] > 0
        assert all(v["median"] > 0 for v in steps["ms_per_step"].values())
        assert steps["ratio"] > 0 and len(steps["ratio_per_rep"]) == 1
        assert steps["window"][1] > steps["window"][0] >= 1  # start-up excluded
        assert set(steps["split_ms_per_step"]) >= {"in_batch_s", "epoch_end_s", "validation_s"}
    assert rows["mlp_steps"]["epoch_ends_in_window"] >= 1  # digits: an epoch is ~11 steps

    diagnostics = rows["diagnostics"]
    times = diagnostics["times_s"]
    assert set(times) == {"off", "on"} and all(len(v) == 1 for v in times.values())
    # Each callback's own clock, from the "on" run's record.
    assert set(diagnostics["measuring_s"]) == {
        "DeadNeuronMonitor",
        "GradientNormMonitor",
        "CurvatureMonitor",
    }
    assert diagnostics["measuring_s"]["CurvatureMonitor"] > 0
    assert 0 < diagnostics["share_own_clock"] < 1
    assert rows["hvp"]["ratio"] > 0 and rows["hvp"]["parameters"] > 1000
    assert rows["hvp"]["sharpness"]["seconds"]["median"] > 0

    startup = rows["startup"]
    assert set(startup["seconds"]) == {"default", "bare"}  # --quick leaves out the import probe
    phases = startup["phases"]["bare"]  # the hooks come in order, all after the process start
    assert 0 < phases["created"] <= phases["fit_start"] <= phases["train_start"]
    assert phases["train_start"] <= phases["first_optimizer_step"] <= phases["first_step_end"]

    sweep = rows["sweep"]
    assert sweep["runs"] >= 1 and sweep["speedup"] > 0 and len(sweep["seconds"]) == 2

    memory = rows["memory"]["mlp"]
    assert memory["training_run"]["rss_mib"] > 0
    curvature = memory["curvature_estimate"]
    assert curvature["rss_peak_mib"] >= curvature["rss_before_mib"] > 0

    text = (out / "README.md").read_text()
    for heading in (
        "Training throughput: MLP",
        "Training throughput: ViT",
        "Diagnostics share",
        "Hessian-vector product",
        "Start-up",
        "Sweep throughput",
        "Peak memory",
    ):
        assert heading in text
    assert "--quick" in text  # quick figures say they are not measurements


def test_bench_rejects_unknown_row(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as err:
        bench.main(["--only", "mlp_steps,nope"])
    assert err.value.code == 2
    assert "nope" in capsys.readouterr().err
