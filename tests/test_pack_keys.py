"""Which runs share a pack and how a sweep's jobs become pack jobs (torch-free rules)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from actbench.config import ConfigError, pack_limit, register_configs
from actbench.packing.keys import AUTO_PACK_MAX, form_packs, member_jobs, pack_job, pack_key
from conftest import CONF_DIR


def _cfg(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["run_dir=/tmp/actbench-pack-keys", *overrides])


def test_pack_key_ignores_member_keys_and_run_dir_but_not_the_architecture():
    base = _cfg("activation=gelu", "seed=0", "optimizer.lr=0.001")
    same = _cfg("activation=relu", "seed=3", "optimizer.lr=0.01", "optimizer.weight_decay=0.1")
    assert pack_key(base) == pack_key(same)
    moved = _cfg("activation=gelu", "seed=0")
    moved.run_dir = "/elsewhere"  # each member's own folder: never a reason to split
    assert pack_key(moved) == pack_key(base)
    for other in ("model.width=128", "trainer.max_steps=10", "optimizer=sgd", "data=digits",
                  "callbacks=light", "torch_threads=1"):  # fmt: skip
        assert pack_key(_cfg(other)) != pack_key(base), other


@pytest.mark.parametrize(
    ("setting", "limit"), [("off", None), ("1", None), ("auto", 0), ("8", 8), (3, 3)]
)
def test_pack_limit_reads_each_setting(setting, limit):
    assert pack_limit(setting) == limit


@pytest.mark.parametrize("bad", ["banana", "0", "-2", "2.5"])
def test_a_bad_pack_setting_names_the_value_and_the_choices(bad):
    with pytest.raises(ConfigError, match=rf"pack='?{bad}'? .*valid: off, auto"):
        pack_limit(bad)


def test_form_packs_groups_equal_keys_in_even_packs():
    keys = ["a"] * 17 + ["b"] * 3
    assert form_packs(keys, "off") == [[i] for i in range(20)]
    packs = form_packs(keys, "8")
    assert sorted(len(p) for p in packs) == [3, 5, 6, 6]  # 17 at <= 8: 6 + 6 + 5
    assert sorted(i for p in packs for i in p) == list(range(20))
    assert all(len({keys[i] for i in p}) == 1 for p in packs)
    # auto: packs of at most AUTO_PACK_MAX, in a multiple of the workers, so none idles at the
    # end: 45 runs on 2 workers are 4 packs (12 + 11 + 11 + 11), not 3 of 15.
    auto = form_packs(["a"] * 45, "auto", workers=2)
    assert sorted(len(p) for p in auto) == [11, 11, 11, 12]
    assert sorted(len(p) for p in form_packs(["a"] * 45, "auto", workers=1)) == [15, 15, 15]
    assert max(len(p) for p in form_packs(["a"] * 100, "auto", workers=3)) <= AUTO_PACK_MAX
    assert len(form_packs(["a"] * 100, "auto", workers=3)) == 9
    assert len(form_packs(["a"] * 6, "auto", workers=2)) == 2  # one pack per worker
    assert form_packs(["a"], "auto", workers=2) == [[0]]
    assert len(form_packs(["a"] * 45, "16", workers=2)) == 3  # an explicit size is kept


def test_pack_job_round_trips_every_members_overrides():
    jobs = [
        ["model=mlp", "activation=gelu", "seed=0", "sweep.stage=tune"],
        ["model=mlp", "activation=relu", "seed=0", "sweep.stage=tune"],
        ["model=mlp", "activation=gelu", "seed=1", "sweep.stage=tune"],
    ]
    job = pack_job(jobs)
    assert job[:4] == jobs[0] and job[4].startswith("pack_members='")
    encoded = job[4].split("=", 1)[1].strip("'")
    assert member_jobs(job, encoded) == jobs
    assert pack_job(jobs[:1]) == jobs[0]  # a pack of one is the plain job
    with pytest.raises(ConfigError, match="same keys"):
        pack_job([["a=1", "b=2"], ["a=1"]])
