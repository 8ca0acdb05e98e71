"""Records bound to their configuration: one folder per resolved configuration however it is
spelled, another configuration's record or checkpoint never counts, folders of the earlier
naming are found, one process trains a run at a time, records of other code are named."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from actbench import records
from actbench.config import (
    NON_IDENTITY_KEYS,
    identity_diff,
    legacy_run_dirname,
    register_configs,
    run_dirname,
    run_id,
)
from actbench.run_lock import RunLock
from conftest import CONF_DIR, REPO

register_configs()


def _hydra_cfg(*overrides: str, conf_dir: Path = CONF_DIR):
    """The composed config with Hydra's node, as a run sees it while Hydra names its folder."""
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def _run_folder(*overrides: str, conf_dir: Path = CONF_DIR) -> str:
    """The folder a single run of ``overrides`` trains in (hydra.run.dir, resolved)."""
    return str(OmegaConf.select(_hydra_cfg(*overrides, conf_dir=conf_dir), "hydra.run.dir"))


# --- one folder per resolved configuration ----------------------------------------------------


def test_every_spelling_of_one_configuration_names_one_folder():
    lr = {
        _run_folder("optimizer.lr=1e-3"),
        _run_folder("optimizer.lr=0.001"),
        _run_folder('optimizer.lr="1e-3"'),
        _run_folder("optimizer.lr=0.0010", "seed=0"),  # seed=0 is the default, spelled out
    }
    assert len(lr) == 1, lr
    reordered = {
        _run_folder("activation=relu", "seed=01", "optimizer.lr=3e-3"),
        _run_folder("optimizer.lr=0.003", "seed=1", "activation=relu"),
        _run_folder("seed=1", "activation=relu", "logger=none", "torch_threads=2"),  # shown only
    }
    assert len(reordered) == 1, reordered
    assert _run_folder() == _run_folder("activation=gelu", "data=mnist1d")  # the defaults
    assert len({*lr, *reordered, _run_folder("optimizer.lr=1e-2"), _run_folder()}) == 4


def test_the_folder_is_named_by_the_run_id_and_sweeps_use_the_same_name():
    cfg = _hydra_cfg("activation=relu", "optimizer.lr=1e-3", "seed=3")
    name = Path(str(cfg.hydra.run.dir)).name
    assert name == str(cfg.hydra.sweep.subdir) == run_dirname(cfg)
    assert name == "relu_mlp_mnist1d_lr0.001_s3__" + run_id(cfg)
    assert len(name) <= 80 + 2 + 10
    # The run itself (its config without Hydra's node) computes the same id.
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    assert run_id(task) == run_id(cfg)


def test_a_changed_default_in_conf_names_a_new_folder(tmp_path: Path):
    conf = shutil.copytree(CONF_DIR, tmp_path / "conf")
    adam = conf / "optimizer" / "adam.yaml"
    text = adam.read_text()
    assert re.search(r"^lr: ", text, flags=re.M), text
    adam.write_text(re.sub(r"^lr: .*$", "lr: 0.0123", text, flags=re.M))
    same_command = ("activation=relu", "seed=1")
    assert _run_folder(*same_command, conf_dir=conf) != _run_folder(*same_command)


def test_identity_diff_names_the_keys_that_differ():
    a = OmegaConf.to_container(_hydra_cfg("optimizer.lr=1e-3"), resolve=False)
    b = _hydra_cfg("optimizer.lr=1e-2", "trainer.max_steps=7", "logger=none")
    a.pop("hydra")
    a["run_dir"] = "/somewhere/else"  # where a record lives is not what it computed
    assert identity_diff(a, b) == ["optimizer.lr", "trainer.max_steps"]


def test_the_readme_lists_the_presentation_only_keys():
    readme = (REPO / "README.md").read_text()
    start = "Presentation-only keys"
    paragraph = next((p for p in readme.split("\n\n") if p.startswith(start)), "")
    assert paragraph, f"README.md has no paragraph starting {start!r}"
    listed = re.findall(r"`([a-z_.]+)`", paragraph)  # the keys, not actbench.config's name
    assert sorted(listed) == sorted(NON_IDENTITY_KEYS), paragraph


# --- end to end: the entry point --------------------------------------------------------------


def _train(cwd: Path, *overrides: str, script: Path | None = None, **env: str):
    full_env = {**os.environ, **env}
    full_env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, *([str(script)] if script else ["-m", "actbench.train"])]
    return subprocess.Popen(
        [*command, *overrides], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _done(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    return out


SMOKE = ("experiment=smoke", "callbacks=no_diagnostics", "trainer.max_steps=20", "torch_threads=1")


def test_lr_1e_3_and_0_001_are_one_run(tmp_path: Path, data_root: Path):
    common = (*SMOKE, f"data.root={data_root}")
    first = _done(_train(tmp_path, *common, "optimizer.lr=1e-3"))
    again = _done(_train(tmp_path, *common, "seed=00", "optimizer.lr=0.001"))
    assert "actbench: completed" in first
    assert "already completed" in again, again[-2000:]
    (folder,) = (tmp_path / "outputs" / "runs").iterdir()
    assert folder.name.startswith("gelu_mlp_digits_lr0.001_s0__")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A finished run (optimizer.lr=0.01) with its record, config and last.ckpt."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    _done(_train(REPO, *SMOKE, "optimizer.lr=0.01", f"hydra.run.dir={run_dir}",
                 f"data.root={data_root}"))  # fmt: skip
    assert (run_dir / "last.ckpt").exists() and records.status(run_dir) == "completed"
    return run_dir


# "completed" in make test; the two other leftovers (~13 s each) under make test-slow.
@pytest.mark.parametrize(
    "left",
    [
        "completed",
        *(pytest.param(x, marks=pytest.mark.slow) for x in ("running", "checkpoint only")),
    ],
)
def test_another_configurations_record_or_checkpoint_is_set_aside_never_used(
    left: str, tmp_path: Path, data_root: Path, trained: Path
):
    # The folder holds another configuration's attempt: finished (the old code answered
    # "already completed"), interrupted (it resumed that checkpoint, old LR in the optimizer)
    # or a checkpoint with no record at all.
    run_dir = shutil.copytree(trained, tmp_path / "run")
    other = records.read_summary(run_dir)
    if left == "running":
        records.write_summary(run_dir, {**other, "status": "running"})
    elif left == "checkpoint only":
        (run_dir / records.SUMMARY).unlink()
    out = _done(_train(REPO, *SMOKE, "optimizer.lr=0.02", f"hydra.run.dir={run_dir}",
                       f"data.root={data_root}"))  # fmt: skip
    lines = [line for line in out.splitlines() if "set aside in" in line]
    assert len(lines) == 1, out[-3000:]
    if left != "checkpoint only":
        assert f"run {other['run_id']}" in lines[0] and "optimizer.lr" in lines[0], lines
        assert "trainer" not in lines[0]  # only the keys that differ
    assert "already" not in out and "resuming" not in out, out[-3000:]
    new = records.read_summary(run_dir)
    assert new["status"] == "completed" and new["attempt"] == 1 and new["steps"] == 20
    assert new["run_id"] != other["run_id"]
    (aside,) = (run_dir / "previous").iterdir()  # nothing the user computed is lost
    assert (aside / "last.ckpt").exists()
    assert (aside / records.SUMMARY).exists() == (left != "checkpoint only")
    assert (run_dir / records.LOCK).exists() and not (aside / records.LOCK).exists()


def test_a_folder_of_the_earlier_naming_is_moved_not_retrained(tmp_path: Path, data_root: Path,
                                                              trained: Path):  # fmt: skip
    command = (*SMOKE, "optimizer.lr=0.01", f"data.root={data_root}")
    cfg = _hydra_cfg(*command)
    runs = tmp_path / "outputs" / "runs"
    legacy = runs / legacy_run_dirname(cfg.hydra.job.override_dirname)
    shutil.copytree(trained, legacy)  # what the earlier version left for this command
    before = records.read_summary(legacy)
    assert before["run_id"] == run_id(cfg)
    out = _done(_train(tmp_path, *command))
    assert "already completed" in out and "named the earlier way" in out, out[-3000:]
    (folder,) = runs.iterdir()
    assert folder.name == run_dirname(cfg)
    assert records.read_summary(folder) == before  # the record itself, not a new training
    assert (folder / "last.ckpt").exists() and (folder / records.METRICS).exists()


# --- one process per run ----------------------------------------------------------------------

# The entry point with training held at its 5th step until a file appears, so a second
# invocation is sure to start while the first one trains.
HELD = """
import os, time
from actbench.module import Classifier

step = Classifier.training_step


def training_step(self, batch, batch_idx):
    if self.global_step == 5:
        deadline = time.time() + 240
        while not os.path.exists(os.environ["ACTBENCH_TEST_GO"]) and time.time() < deadline:
            time.sleep(0.05)
    return step(self, batch, batch_idx)


Classifier.training_step = training_step
from actbench.train import main

main()
"""


def test_the_same_command_twice_at_once_trains_once(tmp_path: Path, data_root: Path):
    script = tmp_path / "held_train.py"
    script.write_text(HELD)
    go = tmp_path / "go"
    command = (*SMOKE, f"data.root={data_root}")
    first = _train(tmp_path, *command, script=script, ACTBENCH_TEST_GO=str(go))
    runs = tmp_path / "outputs" / "runs"
    deadline = time.time() + 240
    while not list(runs.glob(f"*/{records.SUMMARY}")) and first.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    (folder,) = runs.iterdir()
    second = _done(_train(tmp_path, *command, script=script, ACTBENCH_TEST_GO=str(go)), 240)
    assert second.count("is being trained by another process") == 1, second[-3000:]
    assert f"in {folder}; skipped" in second
    assert records.status(folder) == "running"  # the second one left it alone
    go.touch()
    out = _done(first)
    assert "actbench: completed" in out
    summary = records.read_summary(folder)
    assert summary["status"] == "completed" and summary["attempt"] == 1 and summary["steps"] == 20
    header, rows = records.read_metrics_rows(folder / records.METRICS)
    assert "test/acc" in header and rows, "metrics.csv is whole"
    steps = [int(r[header.index("step")]) for r in rows if r[header.index("step")]]
    assert steps == sorted(steps)  # one writer: no interleaved rows


def test_a_held_lock_skips_the_run_without_touching_the_folder(tmp_path: Path, data_root: Path,
                                                              trained: Path):  # fmt: skip
    run_dir = shutil.copytree(trained, tmp_path / "run")
    records.write_summary(run_dir, {**records.read_summary(run_dir), "status": "running"})
    mine = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.name != ".hydra"}
    lock = RunLock(run_dir)
    assert lock.acquire()
    try:
        out = _done(_train(REPO, *SMOKE, "optimizer.lr=0.01", f"hydra.run.dir={run_dir}",
                           f"data.root={data_root}"))  # fmt: skip
    finally:
        lock.release()
    assert "is being trained by another process" in out and "skipped" in out, out[-2000:]
    # Hydra itself appends to train.log and rewrites .hydra/ before the entry point runs.
    after = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.name != ".hydra"}
    assert {k: v for k, v in after.items() if k != "train.log"} == {
        k: v for k, v in mine.items() if k != "train.log"
    }


def test_the_lock_is_released_by_the_os_when_its_holder_is_killed(tmp_path: Path):
    code = f"from actbench.run_lock import RunLock; assert RunLock({str(tmp_path)!r}).acquire(); "
    holder = subprocess.Popen([sys.executable, "-c", code + "import time; time.sleep(60)"])
    try:
        deadline = time.time() + 60
        while not (tmp_path / records.LOCK).exists():
            assert time.time() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # the holder has taken it (it sleeps only once it has)
        assert not RunLock(tmp_path).acquire()
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.wait()
    lock = RunLock(tmp_path)
    assert lock.acquire() and lock.held
    lock.release()
    # In one process a lock left held by an attempt that ended early is taken over.
    stale = RunLock(tmp_path)
    assert stale.acquire()
    again = RunLock(tmp_path)
    assert again.acquire() and not stale.held
    again.release()


# --- the records functions --------------------------------------------------------------------


def _record(folder: Path, run: str, status: str = "completed", commit: str | None = "a" * 40):
    repro = {"git": {"commit": commit, "dirty": False}} if commit is not None else None
    summary = {"status": status, "run_id": run, "reproducibility": repro}
    records.write_summary(folder, {k: v for k, v in summary.items() if v is not None})


def test_is_result_of_needs_a_finished_record_of_the_same_configuration():
    assert records.is_result_of({"status": "completed", "run_id": "abc"}, "abc")
    assert records.is_result_of({"status": "diverged", "run_id": "abc"}, "abc")
    assert not records.is_result_of({"status": "completed", "run_id": "old"}, "abc")
    assert not records.is_result_of({"status": "completed"}, "abc")
    assert not records.is_result_of({"status": "running", "run_id": "abc"}, "abc")
    assert not records.is_result_of(None, "abc")


def test_adopt_legacy_moves_only_a_record_of_the_same_configuration(tmp_path: Path):
    legacy, new = tmp_path / "a=1__12345678", tmp_path / "x_s1__abc"
    legacy.mkdir()
    _record(legacy, "other")
    (legacy / "last.ckpt").write_text("weights")
    assert not records.adopt_legacy(new, legacy, "abc") and legacy.exists()
    _record(legacy, "abc")
    assert records.adopt_legacy(new, legacy, "abc")  # no folder yet: one rename
    assert not legacy.exists() and (new / "last.ckpt").read_text() == "weights"
    assert records.read_summary(new)["run_id"] == "abc"
    # The new folder exists already (Hydra's .hydra/ and train.log in it): entry by entry.
    shutil.move(new, legacy)
    (legacy / "train.log").write_text("old log")
    new.mkdir()
    (new / "train.log").write_text("new log")
    assert records.adopt_legacy(new, legacy, "abc")
    assert (new / "train.log").read_text() == "new log"
    assert (new / "previous" / f"legacy-{legacy.name}" / "train.log").read_text() == "old log"
    assert not legacy.exists()
    assert not records.adopt_legacy(new, legacy, "abc")  # nothing left to move


def test_records_from_other_code_versions_are_counted_and_named(tmp_path: Path):
    current = records.source_commit()
    assert current is None or re.fullmatch(r"[0-9a-f]{40}", current)
    for name, commit in [("a", "1" * 40), ("b", "2" * 40), ("c", "1" * 40), ("d", None),
                         ("e", "f" * 40)]:  # fmt: skip
        (tmp_path / name).mkdir()
        _record(tmp_path / name, name, commit=commit)
    runs = records.read_sweep(tmp_path)
    other = records.from_other_code(runs, current="f" * 40)
    assert [r.folder.name for r in other] == ["a", "b", "c", "d"]
    assert records.short_commits(other) == ["1111111", "2222222", "unknown"]


# --- the sweeper: each job's folder, the skip decision ----------------------------------------


@pytest.fixture
def sweeper(tmp_path: Path):
    """The project's sweeper set up as Hydra sets it up for a multirun into ``tmp_path``."""
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import HydraContext, RunMode

    from hydra_plugins.actbench_sweeper.actbench_sweeper import ActbenchSweeper

    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2("train", create_config_search_path(str(CONF_DIR)))
    overrides = ["hydra/sweeper=actbench", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    cfg = hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN,
                               with_log_configuration=False)  # fmt: skip
    HydraConfig.instance().set_config(cfg)
    sweeper = ActbenchSweeper("t", None, "val/acc", "maximize", None, report=False)
    sweeper.config = cfg
    sweeper.hydra_context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks())
    yield sweeper
    GlobalHydra.instance().clear()


JOBS = [
    ["activation=relu", "optimizer.lr=1e-3", "seed=100", "sweep.stage=tune"],
    ["activation=relu", "optimizer.lr=0.001", "seed=100", "sweep.stage=tune"],  # the same run
    ["activation=relu", "optimizer.lr=3e-3", "seed=100", "sweep.stage=tune"],
    ["activation=gelu", "seed=101", "optimizer.lr=3e-3", "sweep.stage=tune"],  # keys reordered
    ["activation=relu", "optimizer.lr=3e-3", "sweep.stage=tune"],  # fewer keys, same groups
    ["model=vit", "activation=relu", "optimizer.lr=1e-2", "seed=100"],
    ["activation=relu", "seed=101", "model=vit", "optimizer.lr=1e-2"],  # groups reordered
    ["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.lr=0.1", "seed=100"],
    ["experiment=smoke", "seed=2", "~callbacks.checkpoint"],  # a delete: a fresh copy
    ["experiment=smoke", "seed=2", "trainer.max_steps=30"],
    ["activation=relu", "optimizer.lr=1e-3", "seed=100", "sweep.stage=confirm", "logger=none"],
]


def test_run_dirs_are_the_folders_hydra_gives_each_job(sweeper):
    loader = sweeper.hydra_context.config_loader
    expected = []
    for job in JOBS:  # what a launcher does for each job (hydra.core.utils.run_job)
        cfg = loader.load_sweep_config(sweeper.config, job)
        HydraConfig.instance().set_config(cfg)
        expected.append(Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir))
    assert sweeper._run_dirs(JOBS) == expected
    assert sweeper._run_dirs(JOBS[::-1]) == expected[::-1]  # shared copies in another order
    assert expected[0] == expected[1] == expected[-1] and len(set(expected)) == len(JOBS) - 2
    rid, legacy = sweeper.identities[expected[2]]
    assert expected[2].name.endswith(f"__{rid}") and legacy.startswith("activation=relu,")


def test_the_skip_decision_reads_each_jobs_own_record(sweeper, capsys):
    jobs = JOBS[:5]
    dirs = sweeper._run_dirs(jobs)
    ids = {d: sweeper.identities[d] for d in dirs}
    dirs[0].mkdir(parents=True)
    _record(dirs[0], ids[dirs[0]][0], commit="1" * 40)  # its own finished record
    dirs[2].mkdir(parents=True)
    _record(dirs[2], "another0id")  # another configuration's: to run again
    legacy = dirs[3].parent / ids[dirs[3]][1]  # the earlier naming, its own record
    legacy.mkdir()
    _record(legacy, ids[dirs[3]][0], commit="2" * 40)
    done = sweeper._finished(jobs, dirs)
    assert done == [True, True, False, True, False]
    assert not legacy.exists() and records.read_summary(dirs[3])["run_id"] == ids[dirs[3]][0]
    assert "1 run folder(s) named the earlier way" in capsys.readouterr().out
    assert sweeper._finished([[*j, "rerun=true"] for j in jobs], dirs) == [False] * 5
    note = sweeper._other_code_note(dirs, done)
    if records.source_commit() is not None:  # a git checkout: the commits can be compared
        assert note == " (3 finished records from other code versions: 1111111, 2222222)"
