"""Sweeps: W&B-format files, the project's Hydra sweeper (skip, resume, two stages, failures),
the progress line and the W&B backend's command line."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from actbench import records, sweep, tuning
from conftest import REPO

SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_every_sweep_file_parses_and_each_value_composes(path: Path):
    spec = sweep.load_sweep(path)
    overrides = sweep.grid_overrides(spec)
    sweep.protocol(spec)  # a broken two-stage block raises
    # every value of every parameter composes and validates, the reduced protocols' too
    sweep.check_points(overrides + sweep.reduced_overrides(spec))
    assert "${args_no_hyphens}" in spec["command"]  # the same file drives W&B agents


def test_default_sweep_is_the_two_stage_protocol():
    spec = sweep.load_sweep(REPO / "sweeps" / "default.yaml")
    proto = sweep.protocol(spec)
    assert proto is not None and proto.select == "optimizer.lr" and len(proto.seeds) >= 5
    params = spec["parameters"]
    assert set(params["model"]["values"]) == {"mlp", "vit"}
    expected = {"identity", "relu", "gelu", "gelu_tanh", "silu", "softplus", "elu", "mish"}
    assert expected <= set(params["activation"]["values"])
    assert "actbench" not in sweep.wandb_spec(spec, "default")  # W&B never sees our block


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"method": "bayes", "parameters": {"seed": {"values": [0]}}}, "cannot run locally"),
        ({"parameters": {"optimizer.lr": {"min": 1e-4, "max": 1e-2}}}, "is not a grid"),
    ],
)
def test_unrunnable_sweeps_are_rejected(spec, fragment):
    with pytest.raises(sweep.SweepError, match=fragment):
        sweep.grid_overrides(spec)


@pytest.mark.parametrize(
    ("confirm", "fragment"),
    [
        ({"select": "optimizer.momentum", "seeds": [1]}, "not a swept parameter"),
        ({"select": "optimizer.lr", "seeds": [100]}, "must be non-empty and fresh"),
        ({"select": "optimizer.lr", "seeds": [1], "goal": "up"}, "valid: maximize, minimize"),
    ],
)
def test_bad_two_stage_blocks_are_rejected(confirm, fragment):
    spec = {
        "parameters": {"optimizer.lr": {"values": [1e-3, 1e-2]}, "seed": {"values": [100]}},
        "actbench": {"confirm": confirm},
    }
    with pytest.raises(sweep.SweepError, match=fragment):
        sweep.protocol(spec)


REDUCED = {
    "parameters": {
        "model": {"values": ["mlp", "vit"]},
        "optimizer.lr": {"values": [1e-3, 1e-2, 1e-1]},
        "seed": {"values": [100, 101]},
        "trainer.max_steps": {"value": 2000},
    },
    "actbench": {
        "confirm": {"select": "optimizer.lr", "seeds": [0, 1, 2, 3]},
        "reduce": [{
            "when": {"model": "vit"},
            "parameters": {"trainer.max_steps": {"value": 500}, "seed": {"values": [100]},
                           "optimizer.lr": {"values": [1e-3, 1e-2]}},
            "confirm_seeds": [0, 1], "why": "CPU budget",
        }],
    },
}  # fmt: skip


def test_a_reduced_protocol_narrows_only_its_part_of_the_grid():
    spec = REDUCED
    proto = sweep.protocol(spec)
    rule = proto.reductions[0]
    jobs = [
        [f"model={m}", f"optimizer.lr={lr}", f"seed={s}", "trainer.max_steps=2000"]
        for m in ("mlp", "vit") for lr in ("0.001", "0.01", "0.1") for s in (100, 101)
    ]  # fmt: skip
    reduced = tuning.reduce_jobs(jobs, proto.reductions)
    mlp = [j for j in reduced if "model=mlp" in j]
    vit = [j for j in reduced if "model=vit" in j]
    assert mlp == jobs[:6]  # untouched, in order
    assert vit == [  # each combination once, the keys in place
        ["model=vit", "optimizer.lr=0.001", "seed=100", "trainer.max_steps=500"],
        ["model=vit", "optimizer.lr=0.01", "seed=100", "trainer.max_steps=500"],
    ]
    assert proto.seeds_for(("model=vit", "trainer.max_steps=500")) == (0, 1)
    assert proto.seeds_for(("model=mlp", "trainer.max_steps=2000")) == (0, 1, 2, 3)
    assert tuning.reductions_from_json(tuning.reductions_to_json([rule])) == (rule,)
    assert rule.describe() == (
        "model=vit: trainer.max_steps 500; seed 100; optimizer.lr 0.001, 0.01; "
        "confirmation seeds 0, 1 (CPU budget)"
    )


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"when": {"model": "resnet"}}, "model='resnet' is not in the grid; valid: model=mlp"),
        ({"when": {"width": 3}}, "width=3 is not in the grid; valid: model, optimizer.lr"),
        ({"parameters": {"data": {"value": "digits"}}}, "parameters.data is not a swept"),
        ({"parameters": {"model": {"value": "mlp"}}}, "parameters.model is not a swept"),
        ({"confirm_seeds": [100]}, "must be non-empty and fresh"),
        ({"seeds": [1]}, "seeds is not a reduction key"),
    ],
)
def test_bad_reduced_protocols_are_rejected_naming_the_value(change, fragment):
    rule = {**REDUCED["actbench"]["reduce"][0], **change}
    spec = {**REDUCED, "actbench": {**REDUCED["actbench"], "reduce": [rule]}}
    with pytest.raises(sweep.SweepError, match=fragment.replace("(", r"\(")):
        sweep.protocol(spec)


def test_wandb_backend_refuses_a_reduced_grid_in_one_line(tmp_path: Path, capsys):
    path = tmp_path / "reduced.yaml"
    path.write_text(yaml.safe_dump({**REDUCED, "command": ["${args_no_hyphens}"]}))
    assert sweep.main([str(path), "--backend", "wandb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "which a W&B grid cannot express; valid: BACKEND=local" in err[0]


def test_parameter_the_configs_lack_fails_before_running(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"method": "grid", "parameters": {"optimizer.lrr": {"value": 1}}})
    )
    assert sweep.main([str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("actbench-sweep: error: optimizer.lrr: unknown key") and "\n" not in err


def test_hydra_settings_pass_the_pre_run_check(capsys):
    args = [str(REPO / "sweeps" / "quick.yaml"), "--backend", "slurm", "--dry-run",
            "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30"]  # fmt: skip
    assert sweep.main(args) == 0
    assert "hydra.launcher.partition=gpu" in capsys.readouterr().out


def test_a_bad_value_late_in_the_grid_fails_before_running(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    grid = {"activation": {"values": ["relu", "gelu", "geluu"]}, "seed": {"values": [0, 1]}}
    bad.write_text(yaml.safe_dump({"method": "grid", "parameters": grid}))
    assert sweep.main([str(bad), "--runs-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "geluu" in err and "relu" in err and "\n" not in err
    assert not (tmp_path / "runs").exists()  # nothing ran


# --- selection and progress on records with known answers -----------------------------------

PROTO = tuning.Protocol("optimizer.lr", "val/acc_best", "maximize", (0, 1))


def _rec(status: str, acc: float | None = None) -> dict:
    return {"status": status, "metrics": {} if acc is None else {"val/acc_best": acc}}


def test_select_best_uses_the_mean_over_tuning_seeds_and_never_a_diverging_value():
    jobs = [
        [f"activation={a}", f"optimizer.lr={lr}", f"seed={s}"]
        for a in ("relu", "gelu", "silu")
        for lr in ("0.001", "0.01", "0.1")
        for s in (100, 101)
    ]
    records = [
        # relu: 0.01 best on average although 0.1 has the single best seed, which diverged once
        _rec("completed", 0.80), _rec("completed", 0.82),
        _rec("completed", 0.85), _rec("completed", 0.86),
        _rec("completed", 0.95), _rec("diverged"),
        # gelu: a tie between 0.001 and 0.01 keeps grid order
        _rec("completed", 0.90), _rec("completed", 0.90),
        _rec("completed", 0.90), _rec("completed", 0.90),
        _rec("completed", 0.85), _rec("completed", 0.85),
        # silu: one tuning run failed and one never ran: no choice until a rerun finishes them
        _rec("completed", 0.99), _rec("completed", 0.99),
        _rec("failed"), _rec("completed", 0.5),
        None, _rec("completed", 0.5),
    ]  # fmt: skip
    chosen = tuning.select_best(jobs, records, PROTO)
    assert set(chosen) == {("activation=relu",), ("activation=gelu",)}
    assert chosen[("activation=relu",)].value == "0.01"
    assert chosen[("activation=relu",)].score == pytest.approx(0.855)
    assert chosen[("activation=relu",)].scores["0.1"] is None  # diverged: shown, never chosen
    assert chosen[("activation=gelu",)].value == "0.001"
    confirm = tuning.confirm_jobs(chosen, PROTO)
    assert confirm == [
        ["activation=relu", "optimizer.lr=0.01", "seed=0"],
        ["activation=relu", "optimizer.lr=0.01", "seed=1"],
        ["activation=gelu", "optimizer.lr=0.001", "seed=0"],
        ["activation=gelu", "optimizer.lr=0.001", "seed=1"],
    ]


def test_select_best_minimize_and_groups_with_nothing_usable():
    proto = tuning.Protocol("optimizer.lr", "val/loss", "minimize", (0,))
    jobs = [[f"model={m}", f"optimizer.lr={lr}"] for m in "ab" for lr in (1, 2)]
    records = [
        {"status": "completed", "metrics": {"val/loss": 0.5}},
        {"status": "completed", "metrics": {"val/loss": 0.3}},
        _rec("diverged"),
        _rec("failed"),
    ]
    chosen = tuning.select_best(jobs, records, proto)
    assert chosen[("model=a",)].value == "2" and ("model=b",) not in chosen


# --- bracketing: a choice on an edge of the grid -----------------------------------------------


def _choice(scores: dict[str, float | None]) -> sweep.Choice:
    finite = {v: s for v, s in scores.items() if s is not None}
    best = max(sorted(finite, key=float), key=lambda v: finite[v])
    return records.Choice(best, finite[best], scores)


GRID = ["0.001", "0.003", "0.01"]


def test_an_interior_choice_is_bracketed():
    br = tuning.bracket(_choice({"0.001": 0.5, "0.003": 0.7, "0.01": 0.6}), GRID, limit=2)
    assert br == tuning.Bracket(True, None, ())


def test_an_edge_choice_extends_by_the_grids_own_step_until_the_limit():
    br = tuning.bracket(_choice({"0.001": 0.5, "0.003": 0.6, "0.01": 0.7}), GRID, limit=2)
    assert not br.bracketed and br.extend == ("0.032",)  # 0.01 × √10 (the grid's log step)
    low = tuning.bracket(_choice({"0.001": 0.8, "0.003": 0.6, "0.01": 0.5}), GRID, limit=2)
    assert low.extend == ("0.00032",)
    extended = {"0.001": 0.5, "0.003": 0.6, "0.01": 0.65, "0.032": 0.68, "0.1": 0.7}
    br = tuning.bracket(_choice(extended), GRID, limit=2)
    assert br == tuning.Bracket(False, "on the upper edge, extension limit 2 reached", ())
    assert tuning.bracket(_choice(extended), GRID, limit=0).reason == (
        "on the upper edge, extension limit 0 reached"
    )


def test_a_choice_next_to_a_diverged_value_is_unbracketed_with_that_reason():
    br = tuning.bracket(_choice({"0.001": 0.5, "0.003": 0.7, "0.01": None}), GRID, limit=2)
    assert br == tuning.Bracket(False, "the next upper value 0.01 diverged", ())


def test_extension_jobs_run_each_groups_own_tuning_seeds_at_the_new_values():
    proto = tuning.Protocol("optimizer.lr", "val/acc", "maximize", (0,), extend=2)
    jobs = [[f"activation={a}", f"optimizer.lr={lr}", f"seed={s}"]
            for a in ("relu", "gelu") for lr in GRID for s in (100, 101)]  # fmt: skip
    brackets = {("activation=relu",): tuning.Bracket(False, "extending the grid", ("0.032",)),
                ("activation=gelu",): tuning.Bracket(True, None, ())}  # fmt: skip
    assert tuning.extension_jobs(jobs, brackets, proto) == [
        ["activation=relu", "optimizer.lr=0.032", "seed=100"],
        ["activation=relu", "optimizer.lr=0.032", "seed=101"],
    ]
    assert tuning.grid_values(jobs, "optimizer.lr") == GRID


def test_the_confirmation_stage_is_pinned_to_the_tuning_runs_device_type():
    def on(device):
        return {"status": "completed", "reproducibility": {"device": device}}

    tuned = [on("cuda:0"), on("cuda:1"), on("cpu"), None]
    assert tuning.confirm_accelerator(tuned) == "gpu"
    assert tuning.confirm_accelerator([None, {"status": "running"}]) is None
    jobs = [["activation=relu", "seed=0"], ["activation=gelu", "trainer.accelerator=cpu"]]
    assert tuning.pin_accelerator(jobs, "gpu") == [
        ["activation=relu", "seed=0", "trainer.accelerator=gpu"],
        ["activation=gelu", "trainer.accelerator=cpu"],  # the user's own choice stands
    ]
    # The pinned accelerator does not move a confirmation run out of its tuning group.
    assert records.selection_group(jobs[0] + ["trainer.accelerator=gpu"], "optimizer.lr") == (
        records.selection_group(["seed=3", "activation=relu"], "optimizer.lr")
    )


def test_non_log_spaced_or_bad_extend_values_are_named():
    assert tuning.log_step(["a", "b"]) is None and tuning.log_step(["0", "1"]) is None
    br = tuning.bracket(records.Choice("b", 1.0, {"a": 0.5, "b": 1.0}), ["a", "b"], limit=2)
    assert not br.bracketed and "cannot assess" in br.reason
    spec = {
        "parameters": {"optimizer.lr": {"values": [1e-3, 1e-2]}, "seed": {"values": [100]}},
        "actbench": {"confirm": {"seeds": [1], "extend": -1}},
    }
    with pytest.raises(sweep.SweepError, match="extend=-1; valid: an integer >= 0"):
        sweep.protocol(spec)


def test_an_edge_choice_is_extended_then_bracketed_or_marked_with_its_reason(
    tmp_path: Path, data_root: Path
):
    spec = {
        "method": "grid",
        "parameters": {
            "activation": {"value": "relu"},
            "optimizer": {"value": "sgd"},
            "optimizer.lr": {"values": [0.003, 0.01]},  # too small for 25 SGD steps: top edge
            "seed": {"values": [100]},
            "data": {"value": "digits"},
            "trainer.max_steps": {"value": 25},
        },
        "actbench": {"confirm": {"select": "optimizer.lr", "seeds": [0], "extend": 2}},
    }
    path = _write(tmp_path / "edge.yaml", spec)
    done = subprocess.run(
        _sweep_cmd(path, tmp_path, data_root), cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "choice(s) on an edge of the grid; trying 1 more tuning run(s) outward" in done.stdout
    sweep_dir = tmp_path / "multirun" / "edge"
    (group,) = json.loads((sweep_dir / "selection.json").read_text())["groups"]
    assert "0.033" in group["values"]  # 0.01 × (0.01 / 0.003): the file's own step
    assert group["value"] != "0.003"
    if group["bracketed"]:
        assert group["value"] not in (group["values"][0], group["values"][-1])
    else:  # still on an edge after two more values: said so
        assert group["values"] == ["0.003", "0.01", "0.033", "0.11"]
        assert group["reason"] == "on the upper edge, extension limit 2 reached"
    tune = [r for r in _records(sweep_dir).values() if r["sweep"]["stage"] == "tune"]
    assert len(tune) == len(group["values"])  # every value tried once on the tuning seed
    assert f"optimizer.lr={group['value']}" in done.stdout


def test_progress_line_counts_from_records_and_estimates_time_left(tmp_path: Path):
    statuses = ["completed", "completed", "diverged", "failed", "running", None]
    for i, status in enumerate(statuses):
        (tmp_path / f"r{i}").mkdir()
        if status:
            (tmp_path / f"r{i}" / "summary.json").write_text(
                json.dumps({"status": status, "wall_time_s": 40.0 if status != "running" else None})
            )
    manifest = {
        "name": "demo",
        "stage": "confirm",
        "sweep_dir": str(tmp_path),
        "runs": [f"r{i}" for i in range(6)],
        "started": 1000.0,
    }
    line = sweep.progress_line(manifest, now=1120.0)
    # 3 of 6 done (diverged counts as done), 1 failed; 2 to go at the 40 s finished runs took
    assert line == (
        "sweep demo [confirm]: 3/6 done (1 diverged, 1 failed) · 2m00s elapsed · ~1m20s left"
    )


def test_time_left_is_per_kind_of_run_and_counts_the_stages_to_come(tmp_path: Path):
    mlp = ["model=mlp", "data=mnist1d", "trainer.max_steps=2000"]
    vit = ["model=vit", "data=mnist1d", "trainer.max_steps=2000"]

    def record(name: str, kind: list[str], seconds: float) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {"status": "completed", "wall_time_s": seconds, "overrides": [*kind, "seed=1"]}
        ))  # fmt: skip

    runs = [f"m{i}" for i in range(4)] + [f"v{i}" for i in range(4)]
    kinds = [sweep.run_kind(mlp)] * 4 + [sweep.run_kind(vit)] * 4
    assert kinds[0] == "model=mlp data=mnist1d trainer.max_steps=2000"
    manifest = {"name": "default", "stage": "tune", "sweep_dir": str(tmp_path), "runs": runs,
                "kinds": kinds, "started": 0.0, "workers": 2, "next_stage": "confirm",
                "to_come": [kinds[0], kinds[0], kinds[-1], kinds[-1]]}  # fmt: skip
    record("m0", mlp, 5.0)
    record("m1", mlp, 5.0)
    # The cheap kind alone has finished: the estimate says so instead of extrapolating from it.
    assert sweep.progress_line(manifest, now=10.0) == (
        "sweep default [tune]: 2/8 done (0 diverged, 0 failed) · 0m10s elapsed · ≥0m10s left "
        "(+4 confirm runs; no finished run yet: model=vit data=mnist1d trainer.max_steps=2000)"
    )
    record("v0", vit, 157.0)
    # 4 MLP runs x 5 s + 5 ViT runs x 157 s, on 2 workers
    assert sweep.progress_line(manifest, now=170.0) == (
        "sweep default [tune]: 3/8 done (0 diverged, 0 failed) · 2m50s elapsed · ~6m42s left "
        "(+4 confirm runs)"
    )


# --- the sweeper end to end -----------------------------------------------------------------


def _write(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def _records(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}


def _sweep_cmd(path: Path, tmp_path: Path, data_root: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "actbench.sweep", str(path), "--jobs", "2", "--no-report",
        "--runs-root", str(tmp_path / "multirun"), "logger=none", "callbacks=no_diagnostics",
        f"data.root={data_root}", *extra,
    ]  # fmt: skip


def _two_stage(steps: int, **block: Any) -> dict:
    """A tiny two-stage sweep: relu and gelu x two LRs on tuning seed 100, confirmed on 0, 1."""
    return {
        "method": "grid",
        "parameters": {
            "activation": {"values": ["relu", "gelu"]},
            "optimizer.lr": {"values": [1e-3, 3e-2]},
            "seed": {"values": [100]},
            "data": {"value": "digits"},
            "trainer.max_steps": {"value": steps},
        },
        "actbench": {"confirm": {"select": "optimizer.lr", "seeds": [0, 1]}, **block},
    }


def test_two_stage_sweep_tunes_on_validation_then_confirms_on_fresh_seeds(
    tmp_path: Path, data_root: Path
):
    path = _write(tmp_path / "two.yaml", _two_stage(25))
    done = subprocess.run(
        _sweep_cmd(path, tmp_path, data_root), cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sweep_dir = tmp_path / "multirun" / "two"
    records = list(_records(sweep_dir).values())
    tune = [r for r in records if r["sweep"]["stage"] == "tune"]
    confirm = [r for r in records if r["sweep"]["stage"] == "confirm"]
    assert len(tune) == 4 and len(confirm) == 4
    assert all(r["status"] == "completed" and r["sweep"]["name"] == "two" for r in records)
    selection = json.loads((sweep_dir / "selection.json").read_text())
    assert selection["metric"] == "val/acc"  # the kind of quantity the ranking reads
    for group in selection["groups"]:
        activation = next(o for o in group["group"] if o.startswith("activation=")).split("=")[1]
        scores = {
            o: r["metrics"][selection["metric"]]
            for r in tune
            if r["activation"]["name"] == activation
            for o in r["overrides"]
            if o.startswith("optimizer.lr=")
        }
        assert len(scores) == 2
        best = max(scores, key=scores.get)
        assert f"optimizer.lr={group['value']}" == best  # the validation winner, per activation
        seeds = sorted(r["seeds"]["seed"] for r in confirm if r["activation"]["name"] == activation)
        assert seeds == [0, 1]  # fresh seeds, not the tuning seed
    assert "sweep two [confirm]: 4/4 done (0 diverged, 0 failed)" in done.stdout


def test_a_reduced_protocol_runs_its_own_steps_lrs_and_confirmation_seeds(
    tmp_path: Path, data_root: Path
):
    from actbench.report.cli import build_report

    spec = _two_stage(
        20,
        reduce=[{
            "when": {"activation": "gelu"}, "confirm_seeds": [0], "why": "a test budget",
            "parameters": {"trainer.max_steps": {"value": 14}, "optimizer.lr": {"values": [1e-3]}},
        }],
    )  # fmt: skip
    path = _write(tmp_path / "reduced.yaml", spec)
    done = subprocess.run(
        _sweep_cmd(path, tmp_path, data_root), cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sweep_dir = tmp_path / "multirun" / "reduced"
    runs = list(_records(sweep_dir).values())

    def of(act: str, stage: str) -> list[dict]:
        return [r for r in runs if r["activation"]["name"] == act and r["sweep"]["stage"] == stage]

    assert len(of("relu", "tune")) == 2 and len(of("gelu", "tune")) == 1
    assert sorted(r["seeds"]["seed"] for r in of("relu", "confirm")) == [0, 1]
    assert [r["seeds"]["seed"] for r in of("gelu", "confirm")] == [0]
    assert {r["activation"]["name"]: r["steps"] for r in runs} == {"relu": 20, "gelu": 14}
    assert "optimizer.lr=0.001" in of("gelu", "confirm")[0]["overrides"]
    # The projection, before the first run: the reduced grid's runs and confirmation seeds.
    first = done.stdout.splitlines()
    projected = next(i for i, line in enumerate(first) if "projected ~" in line)
    assert projected < next(i for i, line in enumerate(first) if "[tune]: 3 runs" in line)
    assert "for 3 runs + 3 confirmation runs" in first[projected]
    readme = build_report(sweep_dir, tmp_path / "report", sweep_name="reduced").read_text()
    assert (
        "Reduced protocol (the sweep file's `actbench.reduce`), activation=gelu: "  # yaml sorts
        "optimizer.lr 0.001; trainer.max_steps 14; confirmation seeds 0 (a test budget)."
    ) in readme


def test_failed_runs_make_the_sweep_fail_by_name_and_diverged_runs_are_results(
    tmp_path: Path, data_root: Path
):
    spec = {
        "method": "grid",
        "parameters": {
            "data": {"values": ["digits", "mnist"]},  # mnist has no files here: that run fails
            "optimizer": {"value": "sgd"},
            "optimizer.lr": {"values": [0.1, 1e5]},  # 1e5 diverges
            "trainer.max_steps": {"value": 25},
        },
    }
    path = _write(tmp_path / "mixed.yaml", spec)
    cmd = _sweep_cmd(path, tmp_path, data_root, "data.root=" + str(tmp_path / "empty"))
    cmd = [c for c in cmd if c != f"data.root={data_root}"]
    # digits needs no files; mnist finds none in the empty root and fails with a DataError
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("actbench-sweep: error: 2 run(s) of sweep mixed failed")
    assert "data=mnist" in last
    # The projection cannot time a kind whose data is missing: a lower bound, saying so.
    assert "projected ≥" in done.stdout and "not timed, not counted: data=mnist" in done.stdout
    records = _records(tmp_path / "multirun" / "mixed")
    digits = sorted(r["status"] for r in records.values() if "data=digits" in r["overrides"])
    assert digits == ["completed", "diverged"]  # a diverged run is a result, not a failure
    mnist = [r for r in records.values() if "data=mnist" in r["overrides"]]
    assert len(mnist) == 2 and all(r["status"] == "failed" for r in mnist)  # recorded as failed
    assert all("MNIST" in r["error"] for r in mnist)
    assert "(1 diverged, " in done.stdout


def test_kill_a_sweep_at_random_moments_then_rerun_runs_each_point_exactly_once(
    tmp_path: Path, data_root: Path
):
    spec = {
        "method": "grid",
        "parameters": {
            "activation": {"values": ["relu", "gelu", "elu", "silu"]},
            "data": {"value": "digits"},
            "trainer.max_steps": {"value": 120},
        },
    }
    path = _write(tmp_path / "killed.yaml", spec)
    cmd = _sweep_cmd(path, tmp_path, data_root)
    sweep_dir = tmp_path / "multirun" / "killed"
    rng = random.Random(7)
    for _ in range(2):  # two interruptions at random moments, then a clean finish
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        time.sleep(rng.uniform(6.0, 14.0))
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and every worker, mid-whatever
        proc.wait()
    finished_before = {
        name: (sweep_dir / name / "summary.json").stat().st_mtime_ns
        for name, r in _records(sweep_dir).items()
        if r["status"] in sweep.FINISHED
    }
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    records = _records(sweep_dir)
    assert len(records) == 4  # exactly the uninterrupted sweep's set of runs
    assert all(r["status"] == "completed" and r["steps"] == 120 for r in records.values())
    for name, stamp in finished_before.items():  # finished runs were not trained again
        assert (sweep_dir / name / "summary.json").stat().st_mtime_ns == stamp
    assert not list(sweep_dir.glob("*/previous"))  # nothing was set aside for a rerun


# --- the W&B backend's command line, without network ---------------------------------------


def test_wandb_backend_creates_the_sweep_then_starts_an_agent(tmp_path: Path, capsys):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "calls.txt"
    fake = fake_bin / "wandb"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'if [ "$1" = sweep ]; then\n'
        '  echo "wandb: Run sweep agent with: wandb agent me/proj/ab12cd" >&2\n'
        "fi\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "WANDB_API_KEY": "x" * 40}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        code = sweep.main([
            str(REPO / "sweeps" / "gpu.yaml"), "--backend", "wandb", "--project", "proj",
            "--runs-root", str(tmp_path / "multirun"),
        ])  # fmt: skip
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert code == 0
    sweep_file = tmp_path / "multirun" / "gpu" / "wandb_sweep.yaml"
    assert calls.read_text().splitlines() == [
        f"sweep {sweep_file} --project proj",
        "agent me/proj/ab12cd",
    ]
    created = yaml.safe_load(sweep_file.read_text())
    assert "actbench" not in created and created["method"] == "grid"
    assert created["parameters"]["sweep.stage"] == {"value": "tune"}
    out = capsys.readouterr().out
    assert "other machines join with: wandb agent me/proj/ab12cd" in out


def test_wandb_backend_without_an_account_is_one_line(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))  # no netrc login either
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    code = sweep.main([str(REPO / "sweeps" / "quick.yaml"), "--backend", "wandb"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "valid:" in err and "BACKEND=local" in err


def test_slurm_backend_uses_the_submitit_launcher_config(capsys):
    code = sweep.main([str(REPO / "sweeps" / "quick.yaml"), "--backend", "slurm", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and "hydra/launcher=slurm" in out and "hydra/sweeper=actbench" in out
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
