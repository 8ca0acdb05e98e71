"""Packed runs (issue 15): a member ends as its unpacked run ends, whatever pack it trains in,
through dropout, stochastic activations, a diverging neighbour, crashes and resumes into another
pack, and leaves the record its unpacked run leaves.

All at one thread on the CPU (``torch_threads=1``; run with OMP_NUM_THREADS=1), digits, no W&B.
"""

from __future__ import annotations

import csv
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from actbench import records
from actbench.config import ConfigError, one_line_error
from conftest import REPO, run_train
from packing_helpers import (
    STEPS_PER_EPOCH,
    Interrupted,
    assert_bitwise_equal,
    compose_runs,
    crash_after_save_at,
    crash_inside_save,
    driver_command,
    packed_params,
    record_and_curves,
    relative_errors,
    saved_step,
    summary,
    sweep_command,
    train_packed,
    train_unpacked,
    unpacked_params,
    written_since,
)

# Two activations, two seeds, two learning rates.
MIXED = [
    ["activation=gelu", "seed=0", "optimizer.lr=1e-3"],
    ["activation=relu", "seed=1", "optimizer.lr=3e-3"],
    ["activation=gelu", "seed=1", "optimizer.lr=3e-3"],
    ["activation=relu", "seed=0", "optimizer.lr=1e-3"],
]
MODELS = {
    "mlp": (),
    "vit": ("model=vit", "model.dim=16", "model.depth=1", "model.heads=2"),  # its dropout: 0.1
}
# 60 steps: past 50, ending inside an epoch and off the logging cadence (every 50 steps).
FLOAT64 = ("trainer.precision=64-true", "trainer.max_steps=60", "callbacks=no_diagnostics")
# What a record says about cost and W&B, which differ between any two attempts.
COST_KEYS = {"pack", "wall_time_s", "peak_memory", "wandb_id", "diagnostics_s"}


def _without(record: dict, keys: set[str]) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


@pytest.fixture(scope="module", params=list(MODELS))
def exact_runs(request, tmp_path_factory, data_root: Path):
    """MIXED in float64 as one pack of 4 and as four unpacked runs: (packed folders, unpacked
    folders, the overrides they share)."""
    root = tmp_path_factory.mktemp(f"exact-{request.param}")
    shared = (*MODELS[request.param], *FLOAT64, f"data.root={data_root}")
    packed = train_packed(root / "packed", MIXED, *shared)
    return packed, train_unpacked(root / "single", MIXED, *shared), shared


# --- exactness against unpacked runs -------------------------------------------------------


def test_each_member_ends_with_its_unpacked_runs_parameters(exact_runs):
    packed, single, _ = exact_runs
    for p, s in zip(packed, single, strict=True):
        assert p.name == s.name  # the same configuration, so the same folder name
        errors = relative_errors(packed_params(p), unpacked_params(s))
        assert max(errors.values()) <= 1e-8, (p.name, errors)


def test_a_packed_members_record_is_its_unpacked_runs_plus_its_pack(exact_runs):
    packed, single, _ = exact_runs
    pack_ids = set()
    for p, s in zip(packed, single, strict=True):
        got, want = summary(p), summary(s)
        assert got["status"] == "completed" and got["run_id"] == want["run_id"]
        ignored = COST_KEYS | {"metrics"}
        assert _without(got, ignored) == _without(want, ignored)
        # In 64-true the unpacked run's eval-loss metric turns to float64 products part-way
        # (Lightning moves a logged torchmetrics Metric under the float64 default dtype, and
        # torchmetrics takes its dtype from that move), so its eval losses may differ from the
        # member's in the last float32 bit; everything else is exact.
        loose = {"val/loss", "test/loss"}
        assert _without(got["metrics"], loose) == _without(want["metrics"], loose)
        assert got["metrics"].keys() == want["metrics"].keys()
        for key in loose:
            assert got["metrics"][key] == pytest.approx(want["metrics"][key], rel=1e-6)
        pack = got["pack"]
        assert pack["size"] == len(MIXED) and pack["wall_time_s"] > 0
        # What a member's cost means: its share of the pack's.
        assert got["wall_time_s"] == round(pack["wall_time_s"] / pack["size"], 3)
        pack_ids.add(pack["id"])
        run = records.read_run(p, ["val/acc"])
        assert run is not None and run.summary == got and len(run.curves["val/acc"]) == 5
        # config.yaml: the same resolved configuration, in the member's own folder.
        text = (p / records.CONFIG).read_text().replace(str(p), "<run_dir>")
        assert text == (s / records.CONFIG).read_text().replace(str(s), "<run_dir>")
        assert (p / records.TEST_CORRECT).read_bytes() == (s / records.TEST_CORRECT).read_bytes()
    assert len(pack_ids) == 1  # one pack


def test_training_a_finished_pack_again_trains_nothing(exact_runs, capsys):
    packed, _, shared = exact_runs
    files = [p / name for p in packed for name in (records.SUMMARY, records.PACK_STATE)]
    stamps = [f.stat().st_mtime_ns for f in files]
    capsys.readouterr()
    assert train_packed(packed[0].parent, MIXED, *shared) == packed
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(MIXED) and all("already completed" in line for line in lines), lines
    assert [f.stat().st_mtime_ns for f in files] == stamps


# --- diagnostics and metrics.csv (float32, the default precision) --------------------------

# The default diagnostics, with fewer curvature points and trace samples (their cost).
DIAGNOSED = ("callbacks=default", "trainer.max_steps=60", "callbacks.curvature.points=2",
             "callbacks.curvature.trace_samples=4")  # fmt: skip
DIAGNOSTICS = ("dead/", "grad/", "curv/", "act/")


@pytest.fixture(scope="module")
def diagnosed_runs(tmp_path_factory, data_root: Path):
    """Two members of MIXED with the default diagnostics, packed and unpacked."""
    root = tmp_path_factory.mktemp("diagnosed")
    shared = (*DIAGNOSED, f"data.root={data_root}")
    packed = train_packed(root / "packed", MIXED[:2], *shared)
    return packed, train_unpacked(root / "single", MIXED[:2], *shared)


def _diagnostic_values(metrics_csv: Path) -> dict[tuple[str, str], float]:
    """{(step, key): value} of every diagnostic a metrics.csv holds."""
    out = {}
    with metrics_csv.open() as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key.startswith(DIAGNOSTICS) and value != "":
                    out[(row["step"], key)] = float(value)
    return out


def test_each_members_diagnostics_equal_its_unpacked_runs(diagnosed_runs):
    packed, single = diagnosed_runs
    for p, s in zip(packed, single, strict=True):
        got, want = _diagnostic_values(p / records.METRICS), _diagnostic_values(s / records.METRICS)
        keys = {k for _, k in got}
        assert all(any(k.startswith(prefix) for k in keys) for prefix in DIAGNOSTICS), keys
        assert got.keys() == want.keys()
        for where, value in want.items():
            if where[1].startswith("dead/"):  # unit counts: exactly
                assert got[where] == value, where
            else:  # eigen-solvers, norms: float32 sums
                assert got[where] == pytest.approx(value, rel=1e-5, abs=1e-9), where
        final, expected = summary(p)["metrics"], summary(s)["metrics"]
        assert final.keys() == expected.keys()
        assert {k: v for k, v in final.items() if k.startswith("dead/")} == {
            k: v for k, v in expected.items() if k.startswith("dead/")
        }
        for key in ("curv/top_eig", "curv/precond_top_eig", "curv/trace", "grad/global_norm"):
            assert final[key] == pytest.approx(expected[key], rel=1e-5), key
        assert summary(p)["diagnostics_s"].keys() == summary(s)["diagnostics_s"].keys()


def test_a_packed_members_metrics_csv_is_its_unpacked_runs(diagnosed_runs):
    packed, single = diagnosed_runs
    for p, s in zip(packed, single, strict=True):
        got, want = (p / records.METRICS).read_text(), (s / records.METRICS).read_text()
        assert got.splitlines()[0] == want.splitlines()[0], "the columns differ"
        assert got == want, p.name


# --- results independent of the pack: dropout, stochastic gates, resumes ------------------

# Dropout and stochastic gates both draw from the member's random stream.
RANDOM_SHARED = ("model.dropout=0.1",)
RANDOM = [
    ["activation=stochastic_gelu", "seed=0", "optimizer.lr=1e-3"],
    ["activation=relu", "seed=1", "optimizer.lr=3e-3"],
    ["activation=stochastic_gelu", "seed=2", "optimizer.lr=3e-3"],
    ["activation=gelu", "seed=3", "optimizer.lr=1e-3"],
]
# Saves at every epoch end, so a crash can follow any of them.
RESUMABLE = ("callbacks=no_diagnostics", "callbacks.checkpoint.min_interval_s=0")


def test_random_members_train_alike_in_any_pack_and_after_resuming_into_another(
    tmp_path: Path, data_root: Path
):
    a, b, c, d = RANDOM
    shared = (*RANDOM_SHARED, *RESUMABLE, "trainer.max_steps=50", f"data.root={data_root}")
    two = train_packed(tmp_path / "two", [a, b], *shared)
    four = train_packed(tmp_path / "four", [a, b, c, d], *shared)
    for in_two, in_four in zip(two, four[:2], strict=True):
        assert_bitwise_equal(packed_params(in_two), packed_params(in_four))

    # {a, b} and {c, d} crash after their second epoch's save; a and c resume as one pack.
    crashed = tmp_path / "crashed"
    for pair in ([a, b], [c, d]):
        with crash_after_save_at(2 * STEPS_PER_EPOCH), pytest.raises(Interrupted):
            train_packed(crashed, pair, *shared)
    resumed = train_packed(crashed, [a, c], *shared)
    after = [summary(r) for r in resumed]
    assert [r["pack"]["size"] for r in after] == [2, 2]
    assert after[0]["pack"]["id"] == after[1]["pack"]["id"]  # one pack, not two of one
    assert [r["attempt"] for r in after] == [2, 2]
    for again, whole in zip(resumed, [four[0], four[2]], strict=True):
        assert again.name == whole.name and summary(again)["status"] == "completed"
        assert_bitwise_equal(packed_params(again), packed_params(whole))
        assert summary(again)["metrics"] == summary(whole)["metrics"]
        assert (again / records.METRICS).read_text() == (whole / records.METRICS).read_text()


@pytest.mark.parametrize(
    ("phase", "precision"), [("writing", "32-true"), ("committing", "64-true")]
)
def test_a_crash_inside_a_save_resumes_every_member_from_one_step(
    phase: str, precision: str, tmp_path: Path, data_root: Path, caplog
):
    members = MIXED[:3]
    shared = (*RESUMABLE, "trainer.max_steps=40", f"trainer.precision={precision}",
              f"data.root={data_root}")  # fmt: skip
    whole = train_packed(tmp_path / "whole", members, *shared)
    root = tmp_path / "crashed"
    with crash_inside_save(phase, save=3, size=len(members)), pytest.raises(Interrupted):
        train_packed(root, members, *shared)
    folders = [root / w.name for w in whole]
    pending = [(f / records.PACK_STATE_PENDING).exists() for f in folders]
    steps = [saved_step(f) for f in folders]
    if phase == "writing":  # the first member's save written, no member's committed
        assert pending == [True, False, False] and steps == [2 * STEPS_PER_EPOCH] * 3
    else:  # the first member's committed, the others' written
        assert pending == [False, True, True] and steps[0] == 3 * STEPS_PER_EPOCH
    with caplog.at_level(logging.INFO, logger="actbench.train"):
        assert train_packed(root, members, *shared) == folders
    # A save every member wrote is completed, one some member did not write is dropped.
    resumed_at = (3 if phase == "committing" else 2) * STEPS_PER_EPOCH
    resumes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming")]
    assert resumes == [f"resuming {f} from step {resumed_at}" for f in folders], resumes
    packs = {(summary(f)["pack"]["id"], summary(f)["pack"]["size"]) for f in folders}
    assert len(packs) == 1 and packs.pop()[1] == len(members)  # together, as one pack
    for again, first in zip(folders, whole, strict=True):
        assert not (again / records.PACK_STATE_PENDING).exists()
        assert_bitwise_equal(packed_params(again), packed_params(first))
        assert summary(again)["metrics"] == summary(first)["metrics"]
        assert (again / records.METRICS).read_text() == (first / records.METRICS).read_text()


# --- a diverging member ---------------------------------------------------------------------


def test_a_diverging_member_stops_alone_and_changes_no_other_member(
    tmp_path: Path, data_root: Path
):
    shared = ("optimizer=sgd", "trainer.max_steps=40", "callbacks=no_diagnostics",
              f"data.root={data_root}")  # fmt: skip
    wild = ["activation=relu", "seed=2", "optimizer.lr=1e5"]
    calm = [["activation=relu", "seed=0", "optimizer.lr=0.1"],
            ["activation=gelu", "seed=1", "optimizer.lr=0.05"]]  # fmt: skip
    # The diverging member first: the one whose loader and cadence the pack is timed by.
    wild_dir, *with_wild = train_packed(tmp_path / "with", [wild, *calm], *shared)
    without = train_packed(tmp_path / "without", calm, *shared)
    (alone,) = train_unpacked(tmp_path / "alone", [wild], *shared)

    record, unpacked = summary(wild_dir), summary(alone)
    assert unpacked["status"] == "diverged" and unpacked["diverged_at_step"] is not None
    assert record["status"] == "diverged"
    assert record["diverged_at_step"] == unpacked["diverged_at_step"]
    assert record["steps"] == unpacked["steps"]
    for p, q in zip(with_wild, without, strict=True):
        assert summary(p)["status"] == "completed"
        assert_bitwise_equal(packed_params(p), packed_params(q))
        assert (p / records.METRICS).read_bytes() == (q / records.METRICS).read_bytes()
        assert summary(p)["metrics"] == summary(q)["metrics"]


# --- W&B ----------------------------------------------------------------------------------


@pytest.mark.slow  # W&B's service starts per run (~5 s here)
def test_each_member_logs_its_own_wandb_run(tmp_path: Path, data_root: Path):
    from test_lifecycle import _inspect

    folders = train_packed(
        tmp_path, [["activation=relu"], ["activation=gelu", "seed=1"]], "logger=wandb",
        "trainer.max_steps=20", "callbacks=no_diagnostics", f"data.root={data_root}",
    )  # fmt: skip
    ids = set()
    for folder in folders:
        record = summary(folder)
        (offline,) = (folder / "wandb").glob("offline-run-*")  # offline: no API key here
        info = _inspect(offline)
        assert info["state"] == "finished" and info["run_id"] == record["wandb_id"]
        assert info["summary"]["test/acc"] == record["metrics"]["test/acc"]
        assert info["summary"]["status"] == "completed"
        ids.add(record["wandb_id"])
    assert len(ids) == len(folders)


# --- kill -9 mid-pack, then the same command ------------------------------------------------


@pytest.mark.slow  # three processes of ~10 s of imports each
def test_kill_9_mid_pack_then_the_same_command_ends_as_if_uninterrupted(
    tmp_path: Path, data_root: Path
):
    members = MIXED[:3]
    shared = ["trainer.max_steps=150", "callbacks=no_diagnostics",
              "callbacks.checkpoint.min_interval_s=0", f"data.root={data_root}"]  # fmt: skip
    whole = train_packed(tmp_path / "whole", members, *shared)
    killed = tmp_path / "killed"
    cmd, env = driver_command(tmp_path, killed, members, *shared)
    folders = [killed / w.name for w in whole]
    # First kill: as soon as a member's state is written, pending or committed (most often
    # mid-save); second: once the second attempt has committed a member's state (the others'
    # perhaps still pending).
    pending = [f / records.PACK_STATE_PENDING for f in folders]
    committed = [f / records.PACK_STATE for f in folders]
    for watched in (pending + committed, committed):
        start = time.time_ns()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 120
        while not written_since(watched, start):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no save appeared"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert all(summary(f)["status"] == "running" for f in folders)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for again, first in zip(folders, whole, strict=True):
        assert summary(again)["attempt"] == 3
        got, want = record_and_curves(again), record_and_curves(first)
        assert got[0] == want[0]
        assert got[1] == want[1], f"{again.name} metrics.csv"
        assert got[2] == want[2]
        assert_bitwise_equal(packed_params(again), packed_params(first))


# --- the sweeper ----------------------------------------------------------------------------


TINY = {
    "name": "tiny",
    "method": "grid",
    "parameters": {
        "activation": {"values": ["relu", "gelu"]},
        "data": {"value": "digits"},
        "trainer.max_steps": {"value": 20},
    },
}


def test_the_sweeper_skips_the_members_of_a_finished_pack(tmp_path: Path, data_root: Path):
    # Trained as a pack in the folders the sweep names its runs by.
    folders = train_packed(
        tmp_path / "multirun" / "tiny", [["activation=relu"], ["activation=gelu"]],
        "trainer.max_steps=20", "callbacks=no_diagnostics", f"data.root={data_root}",
    )  # fmt: skip
    stamps = [(f / records.SUMMARY).stat().st_mtime_ns for f in folders]
    cmd, env = sweep_command(TINY, tmp_path, data_root)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sweep tiny: 2 runs, 2 already finished, 0 to run" in done.stdout
    assert [(f / records.SUMMARY).stat().st_mtime_ns for f in folders] == stamps


@pytest.mark.slow
def test_kill_a_packed_sweep_then_rerun_ends_as_the_uninterrupted_sweep(
    tmp_path: Path, data_root: Path
):
    spec = {**TINY, "name": "killed"}
    spec["parameters"] = {**TINY["parameters"], "seed": {"values": [0, 1]},
                          "trainer.max_steps": {"value": 200}}  # fmt: skip
    cmd, env = sweep_command(spec, tmp_path, data_root, "callbacks.checkpoint.min_interval_s=0")
    whole_cmd, _ = sweep_command({**spec, "name": "whole"}, tmp_path, data_root,
                          "callbacks.checkpoint.min_interval_s=0")  # fmt: skip
    done = subprocess.run(whole_cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "4 runs in 1 packs" in done.stdout
    sweep_dir = tmp_path / "multirun" / "killed"
    for _ in range(2):  # killed twice, each time once a save of this attempt is committed
        start = time.time_ns()
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 180
        while not written_since(sweep_dir.glob(f"*/{records.PACK_STATE}"), start):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    whole_dir = tmp_path / "multirun" / "whole"
    names = sorted(p.parent.name for p in whole_dir.glob(f"*/{records.SUMMARY}"))
    assert len(names) == 4
    for name in names:
        got, want = record_and_curves(sweep_dir / name), record_and_curves(whole_dir / name)
        assert got == want, name
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "sweep killed: 4 runs, 4 already finished, 0 to run" in again.stdout


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.slow  # each entry point imports Lightning before it checks (~10 s here)
@pytest.mark.parametrize("entry", ["actbench-sweep", "actbench-train"])
def test_a_bad_pack_setting_is_one_line_naming_it_and_the_choices(
    entry: str, tmp_path: Path, data_root: Path
):
    if entry == "actbench-train":
        result = run_train("pack=banana", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    else:
        cmd, env = sweep_command(TINY, tmp_path, data_root)
        result = subprocess.run(
            [*cmd, "pack=banana"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    prefix = {"actbench-train": "actbench", "actbench-sweep": "actbench-sweep"}[entry]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prefix}: error: pack='banana' is not a pack setting")
    assert "valid: off, auto or a number" in lines[0]
    assert not list(tmp_path.glob(f"**/{records.SUMMARY}"))  # refused before any run


def test_a_bad_pack_setting_is_refused_with_the_configuration(tmp_path: Path):
    # The values pack_limit accepts are tests/test_pack_keys.py's; this is the wiring.
    from actbench.config import validate

    (cfg,) = compose_runs(tmp_path, [["pack=banana"]])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert "pack='banana'" in one_line_error(info.value)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model.width=64", "model.width"),
        ("trainer.max_steps=7", "trainer.max_steps"),
        ("optimizer=sgd", "optimizer.name"),
        ("data.batch_size=64", "data.batch_size"),
        ("callbacks=none", "callbacks"),
        ("torch_threads=2", "torch_threads"),
    ],
)
def test_runs_that_cannot_share_a_pack_are_refused_naming_the_key(
    override: str, named: str, tmp_path: Path
):
    from actbench.packing.run import train_pack

    cfgs = compose_runs(tmp_path / "runs", [["seed=0"], ["seed=1", override]])
    with pytest.raises(ConfigError) as info:
        train_pack(cfgs)
    message = one_line_error(info.value)
    differing = message.split("they differ in ", 1)[-1].split(" (members", 1)[0]
    assert "\n" not in message and named in differing.split(", "), message
    assert "activation, seed, optimizer.lr" in message  # what members may differ in
    assert not (tmp_path / "runs").exists()  # refused before any folder was made
