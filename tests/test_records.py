"""The run record: atomic writes, reading a run and a sweep, and the one selection rule."""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import pytest

from actbench import records


def test_atomic_path_replaces_on_success_and_leaves_nothing_on_failure(tmp_path: Path):
    target = tmp_path / "sub" / "figure.png"
    with records.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and tmp != target
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like a file written in place
    with pytest.raises(RuntimeError), records.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"new"  # the old file stands
    assert sorted(p.name for p in target.parent.iterdir()) == ["figure.png"]


def test_concurrent_atomic_writes_never_share_a_temporary_file(tmp_path: Path):
    # The sweeper's manifest used to go through one fixed '.tmp' name: two writers collided.
    target = tmp_path / "progress.json"
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for _ in range(50):
                records.atomic_write_json(target, {"writer": i, "pad": "x" * 1000})
        except BaseException as err:  # pragma: no cover - the failure being tested for
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert json.loads(target.read_text())["writer"] in range(4)
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


def test_clear_partial_writes_removes_only_temporary_files(tmp_path: Path):
    records.write_summary(tmp_path, {"status": "running"})
    (tmp_path / f".{records.SUMMARY}.abc123").write_text("{half")
    (tmp_path / f".{records.METRICS}.def456").write_text("a,b")
    records.clear_partial_writes(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [records.SUMMARY]


def _run_folder(root: Path, name: str, summary: dict, config: dict | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    records.write_summary(folder, summary)
    if config is not None:
        (folder / records.CONFIG).write_text(json.dumps(config))  # JSON is YAML
    return folder


def test_a_run_is_read_summary_first_then_config_then_overrides(tmp_path: Path):
    folder = _run_folder(
        tmp_path,
        "r1",
        {
            "status": "completed",
            "overrides": ["activation=swish", "activation.beta=2", "optimizer.lr=0.01"],
            "activation": {"name": "swish"},
            "seeds": {"seed": 3},
            "metrics": {"test/acc": 0.5, "flag": True, "text": "x"},
            "peak_memory": {"rss_mib": 12.5},
            "sweep": {"stage": "confirm"},
            "run_id": "abc",
        },
        {"model": {"name": "mlp"}, "data": {"name": "digits"}, "trainer": {"max_steps": 40}},
    )
    (folder / records.METRICS).write_text("step,train/loss,val/acc\n0,2.0,\n5,1.5,\n5,1.25,0.7\n")
    run = records.read_run(folder, ["train/loss", "val/acc"])
    assert run is not None and run.ok and run.finished
    assert (run.model, run.dataset, run.stage) == ("mlp", "digits", "confirm")
    assert run.activation == "swish(beta=2)" and run.activation_name == "swish"
    assert run.lr == 0.01 and run.seed == 3 and run.max_steps == 40
    assert run.metrics == {"test/acc": 0.5}  # booleans and text are not metrics
    assert run.peak_rss_mib == 12.5 and run.peak_gpu_mib is None and run.run_id == "abc"
    # A step logged twice (a resumed run) keeps its last value; steps are integers.
    assert run.curve("train/loss") == [(0, 2.0), (5, 1.25)]
    assert run.metric("val/acc") == 0.7  # from the curve when the summary lacks it
    assert run.param("trainer.max_steps") == 40 and run.param("trainer.nope") is None


def test_a_sweep_is_every_folder_with_a_record(tmp_path: Path):
    _run_folder(tmp_path, "b", {"status": "running"})
    _run_folder(tmp_path, "a", {"status": "failed"})
    (tmp_path / "wandb").mkdir()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / records.SUMMARY).write_text("{not json")
    _run_folder(tmp_path / "previous", "old", {"status": "completed"})
    runs = records.read_sweep(tmp_path)
    assert [r.folder.name for r in runs] == ["a", "b"]
    assert records.status(tmp_path / "a") == "failed" and records.status(tmp_path / "zz") is None
    assert records.read_sweep(tmp_path / "missing") == []


# --- the selection rule -----------------------------------------------------------------------


def test_choose_takes_the_best_mean_and_a_diverged_seed_rules_a_value_out():
    pick = records.choose({"0.1": [0.95, -math.inf], "0.01": [0.85, 0.86], "0.001": [0.8, 0.8]})
    assert pick is not None and pick.value == "0.01" and pick.score == pytest.approx(0.855)
    assert pick.scores["0.1"] is None


def test_choose_ties_go_to_the_smallest_value_in_any_order():
    assert records.choose({"0.01": [0.9], "0.001": [0.9], "0.1": [0.5]}).value == "0.001"
    assert records.choose({"b": [1.0], "a": [1.0]}).value == "b"  # not numbers: first given


def test_choose_median_minimize_counts_a_diverged_seed_as_the_worst():
    scores = {"1": [0.5, 0.4, math.inf], "2": [0.45, 0.45, 0.46], "3": [math.inf, math.inf, 0.1]}
    pick = records.choose(scores, goal="minimize", statistic="median")
    assert pick.value == "2" and pick.score == pytest.approx(0.45)
    assert pick.scores["1"] == pytest.approx(0.5) and pick.scores["3"] is None
    assert records.choose({"1": [math.inf]}, goal="minimize") is None
    with pytest.raises(ValueError, match="valid: maximize, minimize"):
        records.choose({"1": [0.0]}, goal="up")


def test_select_per_group_waits_for_unfinished_trials_and_names_groups_canonically():
    def rec(status, acc=None):
        return {"status": status, "metrics": {} if acc is None else {"val/acc": acc}}

    trials = [
        (["model=b", "activation=relu", "optimizer.lr=0.1", "seed=0"], rec("completed", 0.7)),
        (["activation=relu", "model=b", "optimizer.lr=0.01", "seed=0"], rec("completed", 0.8)),
        (["activation=gelu", "optimizer.lr=0.1", "seed=0"], rec("running")),
        (["activation=gelu", "optimizer.lr=0.01", "seed=0"], rec("completed", 0.9)),
        (["activation=silu", "seed=0"], rec("completed", 0.9)),  # lr not swept: no trial
    ]
    chosen = records.select_per_group(trials, "optimizer.lr", "val/acc")
    assert list(chosen) == [("activation=relu", "model=b")]
    assert chosen[("activation=relu", "model=b")].value == "0.01"


def test_selection_round_trips_through_its_file(tmp_path: Path):
    chosen = {("model=b", "activation=relu"): records.Choice("0.01", 0.8, {"0.01": 0.8})}
    records.write_selection(tmp_path, "optimizer.lr", "val/acc", "maximize", chosen)
    read = records.read_selection(tmp_path)
    assert read["select"] == "optimizer.lr" and read["goal"] == "maximize"
    assert read["choices"] == {
        ("activation=relu", "model=b"): chosen[("model=b", "activation=relu")]
    }
    assert records.read_selection(tmp_path / "none") is None
