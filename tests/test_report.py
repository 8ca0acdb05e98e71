"""The sweep report: statistics against hand computations, LR selection, incomplete sweeps, and
the files written from synthetic run folders (summary, config.yaml, metrics.csv)."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from actbench import records
from actbench.report import analysis, cli, curves, figures, stats, tables

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WANDB = Path(sys.executable).parent / "wandb"


def write_run(
    sweep_dir: Path,
    activation: str,
    seed: int,
    *,
    lr: float = 1e-3,
    stage: str | None = None,
    status: str = "completed",
    test_acc: float | None = 0.8,
    val_best: float | None = 0.8,
    val_acc: float | None = None,
    model: str = "mlp",
    data: str = "mnist1d",
    steps: int = 200,
    with_sweep_key: bool = True,
) -> Path:
    """A run folder as the training entry point writes it (tiny but complete); ``val_acc`` (the
    final validation accuracy, what the LR is chosen on) defaults to ``val_best``."""
    folder = sweep_dir / f"activation={activation},model={model},lr={lr},seed={seed},{stage}__x"
    folder.mkdir(parents=True)
    overrides = [f"activation={activation}", f"model={model}", f"data={data}", f"seed={seed}"]
    overrides.append(f"optimizer.lr={lr}")
    metrics = {}
    if status in ("completed", "diverged") and val_best is not None:
        metrics["val/acc_best"] = val_best
        metrics["val/acc"] = val_best if val_acc is None else val_acc
    if status == "completed":
        metrics.update(
            {
                "test/acc": test_acc,
                "test/loss": 1.0 - test_acc,
                "dead/hard": 0.02 if activation == "relu" else 0.0,
                "dead/dormant_0.1": 0.05,
                "dead/dormant_0.025": 0.01,
                "dead/frozen": 0.03,
                "curv/top_eig": 2.5,
                "grad/global_norm": 0.1,
            }
        )
    summary = {
        "status": status,
        "run_id": f"{activation}-{model}-{lr}-{seed}-{stage}",
        "overrides": overrides,
        "metrics": metrics,
        "diverged_at_step": 120 if status == "diverged" else None,
        "wall_time_s": None if status == "running" else 12.5,
        "activation": {"name": activation, "init_gain": 1.0},
        "seeds": {"seed": seed, "data_split_seed": 0},
        "data": {
            "dataset": data,
            "sizes": {"train": 3600, "val": 400, "test": 1000},
            "num_classes": 10,
        },
        "peak_memory": {"rss_mib": 900.0},
    }
    if status != "running":
        summary["steps"] = 120 if status == "diverged" else steps
    if status == "failed":
        summary["error"] = "RuntimeError: out of memory"
    if with_sweep_key:
        summary["sweep"] = {"name": sweep_dir.name, "stage": stage}
    records.write_summary(folder, summary)
    config = {
        "model": {"name": model, "depth": 3, "width": 256},
        "data": {"name": data, "batch_size": 128, "split_seed": 0},
        "activation": {"name": activation},
        "optimizer": {"name": "adam", "lr": lr, "weight_decay": 0.0, "schedule": "none"},
        "trainer": {"max_steps": steps},
        "seed": seed,
        "loss": "ce",
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if status == "completed":
        write_metrics_csv(folder / "metrics.csv", seed, steps)
    return folder


def write_metrics_csv(path: Path, seed: int, steps: int) -> None:
    """Lightning's wide CSV: one column per metric, mostly empty cells, several cadences."""
    cols = ["curv/top_eig", "dead/hard", "dead/dormant_0.1", "epoch", "grad/global_norm", "step"]
    cols += ["train/loss", "val/acc", "val/loss"]
    rows = []
    for step in (0, 1, 3, 10, 30, 100, steps - 1):  # diagnostics: log-spaced
        rows.append(
            {"step": step, "epoch": 0, "dead/hard": 0.01, "dead/dormant_0.1": 0.02,
             "grad/global_norm": 1.0 / (step + 1), "curv/top_eig": 10.0 / (step + 1)}
        )  # fmt: skip
    for step in range(0, steps, 50):
        rows.append({"step": step, "epoch": 0, "train/loss": 2.0 / (step + 1) + 0.01 * seed})
    for step in range(49, steps, 50):
        rows.append({"step": step, "epoch": 0, "val/loss": 1.5, "val/acc": 0.7})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)


# ----------------------------------------------------------------------------- statistics


def test_t_interval_half_width_matches_hand_values():
    # n = 3: s = 0.02, t(0.975, 2) = 4.302653
    mean, half = stats.t_interval([0.60, 0.62, 0.64])
    assert mean == pytest.approx(0.62)
    assert half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    # n = 5: s = sqrt(2.5), t(0.975, 4) = 2.776445
    mean, half = stats.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == pytest.approx(3.0)
    assert half == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    # one value: no interval
    assert math.isnan(stats.t_interval([0.5])[1])


def test_paired_t_test_matches_closed_form_and_pairs_by_seed():
    a = {2: 0.74, 0: 0.70, 1: 0.72}
    b = {0: 0.69, 1: 0.70, 2: 0.71, 3: 0.99}  # seed 3 has no partner and must be ignored
    test = stats.paired_t_test(a, b)
    # differences 0.01, 0.02, 0.03: t = mean / (s / sqrt n) = 2 sqrt(3); df = 2, where the
    # t CDF is closed-form, F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2).
    t = 0.02 / (0.01 / math.sqrt(3))
    assert test.n == 3
    assert test.diff == pytest.approx(0.02)
    assert test.p == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-6)
    assert test.p == pytest.approx(0.074180, abs=1e-6)
    # the opposite direction has the same p and the opposite sign
    assert stats.paired_t_test(b, a).diff == pytest.approx(-0.02)
    # under two shared seeds there is no test
    assert math.isnan(stats.paired_t_test({0: 0.5}, {0: 0.4}).p)


def test_holm_known_vectors():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    adjusted = stats.holm([0.01, math.nan, 0.04])  # NaN is not a member of the family
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.04)
    assert math.isnan(adjusted[1])


# ----------------------------------------------------------------------------- records


def test_lr_selection_picks_best_mean_and_penalises_divergence(tmp_path: Path):
    sweep = tmp_path / "s"
    for seed, (v1, v2, v3) in enumerate([(0.80, 0.85, 0.90), (0.82, 0.86, None)]):
        write_run(sweep, "relu", seed, lr=1e-3, stage="tune", val_best=v1)
        write_run(sweep, "relu", seed, lr=3e-3, stage="tune", val_best=v2)
        # 1e-2 has the best completed score but diverges on seed 1: unstable, never chosen
        write_run(
            sweep, "relu", seed, lr=1e-2, stage="tune", val_best=v3,
            status="completed" if v3 else "diverged",
        )  # fmt: skip
    for seed, (v1, v2) in enumerate([(0.70, 0.78), (0.72, 0.80)]):
        write_run(sweep, "gelu", seed, lr=1e-3, stage="tune", val_best=v1)
        write_run(sweep, "gelu", seed, lr=1e-2, stage="tune", val_best=v2)
    failed = write_run(sweep, "gelu", 0, lr=3e-2, stage="tune", status="failed")  # no score
    (unit,) = analysis.analyse(analysis.read_runs(sweep))
    assert unit.staged
    # the sweeper's rule: a group with a failed tuning trial gets no choice until it is rerun
    assert unit.chosen_lr == {"relu": 3e-3}
    assert unit.lrs["relu"][1e-2].scores == [0.90]
    assert unit.lrs["relu"][1e-2].n_diverged == 1
    assert 3e-2 not in unit.lrs["gelu"]
    assert unit.rows == []  # no confirmation runs yet: nothing ranked
    shutil.rmtree(failed)  # the rerun of the failed trial completes, below the best mean
    write_run(sweep, "gelu", 0, lr=3e-2, stage="tune", val_best=0.10)
    (unit,) = analysis.analyse(analysis.read_runs(sweep))
    assert unit.chosen_lr == {"relu": 3e-3, "gelu": 1e-2}

    # equal means: the smaller LR, in the shared rule and through the report
    assert records.choose({"0.003": [0.8], "0.001": [0.8]}).value == "0.001"
    tie = tmp_path / "tie"
    write_run(tie, "relu", 0, lr=3e-3, stage="tune", val_best=0.8)
    write_run(tie, "relu", 0, lr=1e-3, stage="tune", val_best=0.8)
    (unit,) = analysis.analyse(analysis.read_runs(tie))
    assert unit.chosen_lr == {"relu": 1e-3}


def test_statuses_are_counted_and_runs_split_into_units(tmp_path: Path):
    sweep = tmp_path / "s"
    write_run(sweep, "relu", 0)
    write_run(sweep, "relu", 1, status="diverged")
    write_run(sweep, "relu", 2, status="failed")
    write_run(sweep, "gelu", 0, status="running")
    write_run(sweep, "gelu", 0, model="vit")
    (sweep / "wandb").mkdir()  # not a run folder
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    runs = analysis.read_runs(sweep)
    assert analysis.status_counts(runs) == {
        "completed": 2,
        "diverged": 1,
        "failed": 1,
        "running": 1,
    }
    units = analysis.analyse(runs)
    assert [u.label for u in units] == ["mlp on mnist1d", "vit on mnist1d"]
    mlp = units[0]
    # finished runs are ranked: the diverged seed at chance (10 classes), the failed one not
    assert [r.activation for r in mlp.rows] == ["relu"]
    (row,) = mlp.rows
    assert row.n == 2 and row.diverged == 1 and row.unstable  # 1 of 2: at least half
    assert row.scores == {0: pytest.approx(0.8), 1: pytest.approx(0.1)}
    assert not row.could_be_best


def test_curves_read_wide_csv_and_aggregate_over_seeds(tmp_path: Path):
    path = tmp_path / "metrics.csv"
    write_metrics_csv(path, seed=1, steps=200)
    read = {k: np.asarray(v) for k, v in records.read_curves(path, curves.CURVE_KEYS).items()}
    loss = read["train/loss"]
    assert loss[:, 0].tolist() == [0, 50, 100, 150]  # empty cells skipped
    assert loss[0, 1] == pytest.approx(2.01)
    assert read["curv/top_eig"][:, 0].tolist() == [0, 1, 3, 10, 30, 100, 199]
    steps, mean, lo, hi = curves.aggregate_curves(
        [np.array([[0, 1.0], [10, 2.0]]), np.array([[0, 3.0]])]
    )
    assert steps.tolist() == [0, 10] and mean.tolist() == [2.0, 2.0]
    assert lo.tolist() == [1.0, 2.0] and hi.tolist() == [3.0, 2.0]


def test_every_registered_activation_has_its_own_fixed_colour():
    from actbench.activations import names

    colours = [figures.activation_colour(n) for n in names()]
    assert all(n in figures.ACTIVATION_COLOURS for n in names())
    assert len(set(colours)) == len(colours)
    variant = figures.activation_colour("swish(beta=1.5)")
    assert variant == figures.activation_colour("swish(beta=1.5)")
    assert variant not in colours


# ----------------------------------------------------------------------------- end to end


def two_stage_sweep(sweep: Path) -> None:
    """relu and gelu close together, identity far below; tune on seeds 0-1, confirm on 10-12."""
    val = {"relu": {1e-3: 0.80, 1e-2: 0.85}, "gelu": {1e-3: 0.84, 1e-2: 0.82}}
    val["identity"] = {1e-3: 0.40, 1e-2: 0.35}
    for act, by_lr in val.items():
        for lr, v in by_lr.items():
            for seed in (0, 1):
                write_run(sweep, act, seed, lr=lr, stage="tune", val_best=v + 0.01 * seed)
    test = {"relu": [0.810, 0.830, 0.820], "gelu": [0.815, 0.822, 0.826]}
    test["identity"] = [0.400, 0.405, 0.398]
    chosen = {"relu": 1e-2, "gelu": 1e-3, "identity": 1e-3}
    for act, accs in test.items():
        for seed, acc in zip((10, 11, 12), accs, strict=True):
            write_run(sweep, act, seed, lr=chosen[act], stage="confirm", test_acc=acc)
    write_run(sweep, "relu", 13, lr=1e-2, stage="confirm", status="diverged")
    write_run(sweep, "gelu", 13, lr=1e-3, stage="confirm", status="failed")
    write_run(sweep, "identity", 13, lr=1e-3, stage="confirm", status="running")


def test_end_to_end_report_files(tmp_path: Path):
    sweep = tmp_path / "multirun" / "demo"
    two_stage_sweep(sweep)
    out = tmp_path / "reports" / "demo"
    readme = cli.build_report(sweep, out)
    assert readme == out / "README.md"
    text = readme.read_text()

    # ranking: rows by mean; relu's diverged seed 13 scores chance (10 %), which puts it below
    # gelu; gelu and relu could both be best (their shared seeds do not separate them), and
    # identity is shown worse than both and gets its own letter
    table = text[text.index("### Ranking") : text.index("### Learning rate")]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()]
    cells = [c for c in cells if c and c[0].isdigit()]
    assert [(c[0], c[1]) for c in cells] == [("1", "`gelu`"), ("2", "`relu`"), ("3", "`identity`")]
    gelu_row, relu_row, identity_row = cells
    assert gelu_row[2] == "82.10 ± 0.56"  # mean ± std of the three confirmation seeds
    assert relu_row[2].startswith("64.00 ± ") and relu_row[4:6] == ["4", "1/4"]
    assert gelu_row[6] == relu_row[6] == "**yes**"
    assert identity_row[6] == "no: worse than `gelu`, `relu`"
    assert [gelu_row[7], relu_row[7], identity_row[7]] == ["`a`", "`a`", "`b`"]
    assert gelu_row[8] == "—" and identity_row[8].startswith("-42.00 [")  # Δ vs the first row
    assert identity_row[9].endswith("†")  # no test_correct.npz here: seeds only
    assert "1 diverged" in relu_row[-1] and "1 failed" in gelu_row[-1]
    assert "**Could be best**" in text and "`gelu`, `relu`." in text
    assert "**Diverged** (each such run scores chance, 10.0 %): `relu` 1/4." in text
    assert "**Power** (paired t-test, exact noncentral t): pooled paired-difference SD" in text

    # LR choice from the tune stage, shown in bold in the sensitivity table
    assert "| `relu` | 0.01 | 80.5 (n=2) | **85.5 (n=2)** |" in text
    assert "| `gelu` | 0.001 | **84.5 (n=2)** | 82.5 (n=2) |" in text
    assert "Incomplete sweep" in text and "1 of 24 runs are still running" in text
    assert "`selection.json` is missing from the sweep folder, so the choice was recomputed" in text
    assert "| mlp on mnist1d | confirm | 9 | 1 | 1 | 1 | 12 |" in text
    assert "| mlp on mnist1d | tune | 12 | 0 | 0 | 0 | 12 |" in text
    assert "RuntimeError: out of memory" in text  # failed runs are listed with their error
    assert "budget 200 optimizer steps" in text and "seeds 10, 11, 12, 13" in text

    # every figure exists, is a PNG and is embedded
    for prefix in ("ranking", "loss", "dead", "grad_norm", "sharpness", "lr_sensitivity"):
        png = out / f"{prefix}_mlp-mnist1d.png"
        assert png.read_bytes()[:8] == PNG_MAGIC, prefix
        assert f"]({png.name})" in text

    # one row per run with its status and metrics
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    assert list(rows[0]) == list(tables.SUMMARY_COLUMNS)
    assert sum(r["stage"] == "tune" for r in rows) == 12
    statuses = [r["status"] for r in rows if r["stage"] == "confirm"]
    assert sorted(set(statuses)) == ["completed", "diverged", "failed", "running"]
    gelu_10 = next(r for r in rows if r["activation"] == "gelu" and r["seed"] == "10")
    assert float(gelu_10["test/acc"]) == pytest.approx(0.815) and gelu_10["stage"] == "confirm"
    assert Path(gelu_10["run_folder"]).parent == sweep


def test_report_ranks_at_the_value_selection_json_chose(tmp_path: Path):
    """The sweeper's selection.json is the choice: the report ranks the confirmation runs at its
    value, even where the tuning records' means would choose another."""
    sweep = tmp_path / "multirun" / "demo"
    two_stage_sweep(sweep)  # the means choose relu at 0.01 (85.5 vs 80.5 %)
    for seed, acc in zip((10, 11, 12), (0.60, 0.61, 0.62), strict=True):
        write_run(sweep, "relu", seed, lr=1e-3, stage="confirm", test_acc=acc)
    runs = analysis.read_runs(sweep)
    lr_by_act = {"relu": "0.001", "gelu": "0.001", "identity": "0.001"}
    chosen = {
        records.selection_group(r.override_list, "optimizer.lr"): records.Choice(
            lr_by_act[r.activation], 0.5, {}
        )
        for r in runs
        if r.stage == "tune"
    }
    assert len(chosen) == 3
    records.write_selection(sweep, "optimizer.lr", "val/acc_best", "maximize", chosen)

    (unit,) = analysis.analyse(runs, records.read_selection(sweep))
    assert unit.selection_source == analysis.FROM_SWEEPER
    relu_ranked = [r for r in unit.ranked_runs if r.activation == "relu"]
    assert sorted(r.seed for r in relu_ranked) == [10, 11, 12]
    assert {r.lr for r in relu_ranked} == {1e-3}
    assert unit.chosen_lr == {"relu": 1e-3, "gelu": 1e-3, "identity": 1e-3}
    relu_row = next(row for row in unit.rows if row.activation == "relu")
    assert relu_row.mean == pytest.approx(0.61)
    # the same records without the file: the means' choice, relu at 0.01
    (recomputed,) = analysis.analyse(runs)
    assert recomputed.selection_source == analysis.RECOMPUTED
    assert {r.lr for r in recomputed.ranked_runs if r.activation == "relu"} == {1e-2}

    text = cli.build_report(sweep, tmp_path / "out").read_text()
    assert "| `relu` | 0.001 | **80.5 (n=2)** | 85.5 (n=2) |" in text
    assert "61.00 ± 1.00" in text
    assert "recomputed" not in text


def test_single_stage_records_without_sweep_key(tmp_path: Path):
    """Records from before the two-stage protocol (no ``sweep`` key) rank every run."""
    sweep = tmp_path / "old"
    for seed, (r, g) in enumerate([(0.64, 0.66), (0.65, 0.66), (0.63, 0.67)]):
        write_run(sweep, "relu", seed, test_acc=r, with_sweep_key=False)
        write_run(sweep, "gelu", seed, test_acc=g, with_sweep_key=False)
    text = cli.build_report(sweep, tmp_path / "out").read_text()
    assert "single stage" in text
    assert "this sweep tunes no learning rate" in text
    assert "lr_sensitivity" not in text
    assert "Incomplete sweep" not in text and "None: every run completed." in text


# ----------------------------------------------------------------------------- CLI and W&B


def test_cli_unknown_sweep_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture):
    write_run(tmp_path / "multirun" / "alpha", "relu", 0)
    write_run(tmp_path / "multirun" / "beta", "relu", 0)
    root = str(tmp_path / "multirun")
    code = cli.main(["nope", "--runs-root", root, "--no-wandb"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("actbench-report: error: sweep 'nope'") and "valid: alpha, beta" in err
    # a sweep file path resolves to its stem
    out = tmp_path / "reports"
    code = cli.main(["sweeps/alpha.yaml", "--runs-root", root, "--out", str(out), "--no-wandb"])
    assert code == 0 and (out / "alpha" / "README.md").is_file()


def test_exported_records_rebuild_the_report_without_checkpoints(tmp_path: Path, capsys):
    from actbench import records

    root = tmp_path / "multirun"
    sweep = root / "alpha"
    kept = [write_run(sweep, act, seed) for act in ("relu", "gelu") for seed in (0, 1)]
    stale = write_run(sweep, "elu", 0)  # a folder of an earlier grid
    records.write_grid(sweep, {"all": kept}, reduced=["model=vit: trainer.max_steps 300"])
    (kept[0] / "last.ckpt").write_bytes(b"weights")
    out, exported = tmp_path / "reports", tmp_path / "docs" / "alpha"
    args = ["alpha", "--runs-root", str(root), "--out", str(out), "--no-wandb"]
    assert cli.main([*args, "--export-records", str(exported)]) == 0
    assert "4 run records -> " in capsys.readouterr().out
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        [records.GRID, *(k.name for k in kept)]
    )
    assert (
        not (exported / stale.name).exists()
        and not (exported / kept[0].name / "last.ckpt").exists()
    )
    assert (exported / kept[0].name / records.SUMMARY).is_file()
    again = cli.build_report(exported, tmp_path / "again", sweep_name="alpha").read_text()
    first = (out / "alpha" / "README.md").read_text()
    body = lambda text: text.split("## What was measured", 1)[1]  # noqa: E731 (after the header)
    assert body(again) == body(first) and "trainer.max_steps 300" in again


def _inspect(path: Path, *args: str) -> str:
    """W&B's own reader of a run's transaction log."""
    return subprocess.run(
        [str(WANDB), "leet", "inspect", *args, str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip


def test_wandb_report_run_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_JOB_TYPE", raising=False)
    sweep = tmp_path / "multirun" / "demo"
    write_run(sweep, "relu", 0)
    write_run(sweep, "gelu", 0)
    cli.build_report(sweep, tmp_path / "out", log_wandb=True)
    (run_dir,) = list(tmp_path.rglob("offline-run-*"))
    # wandb.finish() returns before wandb-core has flushed the log to disk: wait for it.
    deadline = time.monotonic() + 60
    while True:
        info = json.loads(_inspect(run_dir, "--summary", "--json") or "{}")
        if info.get("state") == "finished" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert info["state"] == "finished" and info["name"] == "demo-report"
    assert info["summary"]["runs/completed"] == 2 and info["summary"]["runs/failed"] == 0
    assert info["summary"]["report/runs"]["nrows"] == 2
    assert info["summary"]["figures/ranking_mlp-mnist1d"]["_type"] == "image-file"
    records = [json.loads(line) for line in _inspect(run_dir, "--json").splitlines()]
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    assert run["job_type"] == "report" and run["run_group"] == "demo"
    assert os.environ.get("WANDB_JOB_TYPE") is None  # set only around the start


def test_wandb_failure_only_warns(tmp_path: Path, monkeypatch, caplog):
    from actbench import tracking

    def broken(*args, **kwargs):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(tracking, "start_wandb", broken)
    sweep = tmp_path / "s"
    write_run(sweep, "relu", 0)
    with caplog.at_level(logging.WARNING, logger="actbench.report"):
        readme = cli.build_report(sweep, tmp_path / "out", log_wandb=True)
    assert readme.is_file()
    assert "no W&B today" in caplog.text


def test_the_report_ignores_folders_of_an_earlier_grid(tmp_path: Path):
    sweep = tmp_path / "multirun" / "demo"
    current = [write_run(sweep, act, seed, lr=1e-3) for act in ("relu", "gelu") for seed in (0, 1)]
    old = write_run(sweep, "relu", 0, lr=0.5, test_acc=0.99)  # a value the grid no longer has
    records.write_grid(sweep, {"all": current})
    runs, earlier = analysis.read_sweep_records(sweep)
    assert sorted(r.folder for r in runs) == sorted(current) and [r.folder for r in earlier] == [
        old
    ]
    (unit,) = analysis.analyse(runs)
    assert unit.ranking.row("relu").mean == pytest.approx(0.8)  # not the old 0.99
    text = cli.build_report(sweep, tmp_path / "out").read_text()
    assert (
        "**1 run record from an earlier grid**: in the sweep folder" in text
        and f"`{old.name}`" in text
    )
    with open(tmp_path / "out" / "summary.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4
