"""Launchers: data-parallel ranks on the CPU (trainer=ddp_cpu) and submitit jobs.

Sharding is checked on the batching itself (every rank a disjoint shard; evaluation covers every
example exactly once whatever the split size), then end to end: a 2-process run writes one
folder, one record and one W&B run, and its evaluation equals one pass over the whole split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from actbench.config import register_configs
from actbench.data import DataError, DataModule, IndexBatches
from actbench.module import Classifier
from conftest import CONF_DIR, run_train

register_configs()


def _rank_batches(loader_for_rank, world: int) -> list[list[list[int]]]:
    """The example indices of every batch of every rank."""
    return [[b[1].tolist() for b in loader_for_rank(r)] for r in range(world)]


@pytest.mark.parametrize("n", [96, 97, 101])
@pytest.mark.parametrize("world", [2, 3])
def test_training_shards_are_disjoint_equal_and_cover_all_but_the_remainder(n: int, world: int):
    x, y = torch.arange(float(n)).unsqueeze(1), torch.arange(n)
    loaders = [
        IndexBatches(x, y, 8, shuffle=True, seed=5, rank=r, world_size=world) for r in range(world)
    ]
    epochs = []
    for _ in range(2):  # each pass over a loader is the next epoch
        ranks = _rank_batches(lambda r: loaders[r], world)
        shards = [[i for batch in batches for i in batch] for batches in ranks]
        seen = [i for shard in shards for i in shard]
        assert len(seen) == len(set(seen)), "an example is on two ranks"
        assert len({len(s) for s in shards}) == 1 and len(seen) == n - n % world
        assert len({len(b) for b in ranks}) == 1, "ranks must take the same number of steps"
        epochs.append(set(range(n)) - set(seen))
    # The left-out remainder follows each epoch's permutation, so no example is always skipped.
    if n % world:
        assert epochs[0] != epochs[1]


@pytest.mark.parametrize("n", [1, 7, 143, 360, 1000])
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("batch_size", [1, 50, 1024])
def test_evaluation_shards_cover_every_example_exactly_once(n: int, world: int, batch_size: int):
    if n < world:
        return
    x, y = torch.arange(float(n)).unsqueeze(1), torch.arange(n)

    def loader(rank: int) -> IndexBatches:
        return IndexBatches(x, y, batch_size, False, rank=rank, world_size=world, cover_all=True)

    ranks = _rank_batches(loader, world)
    seen = sorted(i for batches in ranks for batch in batches for i in batch)
    assert seen == list(range(n))
    # Same batch count on every rank (collectives stay in step), no empty batch, and at most one
    # example over the batch size.
    assert len({len(batches) for batches in ranks}) == 1
    sizes = [len(batch) for batches in ranks for batch in batches]
    assert min(sizes) >= 1 and max(sizes) <= batch_size + 1
    if world == 1:  # one process: plain slicing, as before sharding existed
        assert [len(b) for b in ranks[0]] == [len(c) for c in torch.arange(n).split(batch_size)]


def test_the_datamodule_shards_by_the_trainer_rank(data_root: Path):
    dm = DataModule("digits", root=str(data_root), val_fraction=0.0995, eval_batch_size=50)
    dm.setup("fit")
    sizes = dm.stats["sizes"]
    assert sizes["val"] % 2 == 1  # an odd split: the case that used to lose an example

    def trainer(rank: int) -> SimpleNamespace:
        strategy = SimpleNamespace(root_device=torch.device("cpu"))
        return SimpleNamespace(global_rank=rank, world_size=2, current_epoch=0, strategy=strategy)

    def indices(split: str, rank: int) -> list[int]:
        dm.trainer = trainer(rank)
        loader = {"train": dm.train_dataloader, "val": dm.val_dataloader}[split]()
        xs = torch.cat([b[0] for b in loader])
        # Recover each example's index in the split from its (unique) input row.
        full = dm.splits[split][0].flatten(1)
        return [int((full == row).all(1).nonzero()[0, 0]) for row in xs.flatten(1)]

    train = [indices("train", r) for r in range(2)]
    assert not set(train[0]) & set(train[1])
    assert len(train[0]) == len(train[1]) == sizes["train"] // 2
    val = [indices("val", r) for r in range(2)]
    assert sorted(val[0] + val[1]) == list(range(sizes["val"]))


def test_a_split_smaller_than_the_ranks_is_a_clear_error(data_root: Path):
    dm = DataModule("digits", root=str(data_root))
    dm.setup("fit")
    dm.splits["val"] = (dm.splits["val"][0][:1], dm.splits["val"][1][:1])
    strategy = SimpleNamespace(root_device=torch.device("cpu"))
    dm.trainer = SimpleNamespace(global_rank=0, world_size=2, current_epoch=0, strategy=strategy)
    with pytest.raises(DataError, match=r"val split .* 1 examples, fewer than the 2"):
        dm.val_dataloader()


def _evaluate(overrides: list[str], run_dir: Path) -> dict[str, float]:
    """The final checkpoint evaluated in one process over the whole val and test splits."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"run_dir={run_dir}", *overrides])
    dm = instantiate(cfg.data, seed=cfg.seed)
    dm.setup("fit")
    activation = instantiate(cfg.activation)
    model = instantiate(cfg.model)(
        input_shape=dm.input_shape, num_classes=dm.num_classes, activation=activation
    )
    module = Classifier(model, num_classes=dm.num_classes, optimizer=dict(cfg.optimizer))
    ckpt = torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=False)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    out = {"global_step": float(ckpt["global_step"])}
    with torch.no_grad():
        for split in ("val", "test"):
            x, y = dm.splits[split]
            logits = module(x)
            out[f"{split}/loss"] = float(F.cross_entropy(logits, y))
            out[f"{split}/acc"] = float((logits.argmax(1) == y).float().mean())
    return out


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path):
    """One 2-process trainer=ddp_cpu run on digits, shared by the tests below."""
    root = tmp_path_factory.mktemp("ddp")
    run_dir = root / "run"
    # digits' validation split at this fraction has 143 examples (odd); 6 steps per epoch, so
    # the run ends at an epoch end and last.ckpt holds the weights that were evaluated.
    config = ["experiment=smoke", "trainer=ddp_cpu", "logger=wandb", "trainer.max_steps=30",
              "data.val_fraction=0.0995", "data.eval_batch_size=50", f"data.root={data_root}",
              "callbacks.curvature.probe_size=128"]  # fmt: skip
    result = run_train(*config, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    return SimpleNamespace(root=root, run_dir=run_dir, result=result, summary=summary,
                           full=_evaluate(config, run_dir))  # fmt: skip


def test_ddp_cpu_run_is_one_run_in_one_folder(ddp_run):
    run_dir, summary = ddp_run.run_dir, ddp_run.summary
    assert ddp_run.result.stdout.count("actbench: completed") == 1  # rank 0 alone reports
    # One folder, one record, one W&B run: rank 1 wrote only its log, beside rank 0's.
    assert list(ddp_run.root.rglob("summary.json")) == [run_dir / "summary.json"]
    assert list(ddp_run.root.rglob(".hydra")) == [run_dir / ".hydra"]
    assert (run_dir / "train_rank1.log").exists()
    wandb_dir = run_dir / "wandb"
    runs = sorted(p.name for p in wandb_dir.iterdir() if p.is_dir() and not p.is_symlink())
    assert len(runs) == 1 and runs[0].startswith("offline-run-"), runs
    assert summary["status"] == "completed" and summary["steps"] == 30
    assert summary["reproducibility"]["world_size"] == 2
    assert summary["reproducibility"]["process_group_backend"] == "gloo"


@pytest.mark.parametrize("key", ["val/acc", "test/acc", "test/loss"])
def test_ddp_metrics_equal_one_pass_over_the_whole_split(ddp_run, key: str):
    assert ddp_run.summary["data"]["sizes"]["val"] == 143  # odd: ranks hold 72 and 71
    assert ddp_run.full["global_step"] == 30
    assert ddp_run.summary["metrics"][key] == pytest.approx(ddp_run.full[key], rel=1e-5, abs=1e-6)


# Lightning 2.6 mean-syncs its integer example count with truncating division
# (Lightning-AI/pytorch-lightning#21838); module.py's MeanMetric losses avoid it.
def test_ddp_val_loss_over_an_odd_split_is_exact(ddp_run):
    metrics = ddp_run.summary["metrics"]
    assert metrics["val/loss"] == pytest.approx(ddp_run.full["val/loss"], rel=1e-5, abs=1e-6)


def test_ddp_divergence_stops_every_rank_at_the_same_step(tmp_path: Path, data_root: Path):
    run_dir = tmp_path / "div"
    result = run_train("experiment=smoke", "trainer=ddp_cpu", "optimizer=sgd", "optimizer.lr=50",
                       "trainer.max_steps=200", "callbacks=no_diagnostics",
                       f"data.root={data_root}", f"hydra.run.dir={run_dir}",
                       timeout=180)  # fmt: skip
    # A rank that missed the others' non-finite loss would wait in the next all-reduce forever.
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert 0 <= summary["diverged_at_step"] < summary["steps"] < 200


# Imported by every Python process started with this folder on PYTHONPATH: rank 1 of a run that
# rank 0 launched dies, either at start-up (before it joins the process group: rank 0 waits in
# the rendezvous) or in its 4th training step (rank 0 is in an all-reduce).
CRASH_RANK_1 = """
import os

if os.environ.get("LOCAL_RANK") == "1" and os.environ.get("ACTBENCH_DDP_RANK_OF"):
    if WHEN == "startup":
        os._exit(3)
    from actbench.module import Classifier

    step = Classifier.training_step

    def training_step(self, batch, batch_idx):
        if self.global_step == 3:
            raise RuntimeError("planted crash on rank 1")
        return step(self, batch, batch_idx)

    Classifier.training_step = training_step
"""


# The training-time death only under make test-slow (~25 s): startup covers the same stop.
@pytest.mark.parametrize(
    ("when", "code"), [("startup", 3), pytest.param("training", 1, marks=pytest.mark.slow)]
)
def test_a_rank_that_dies_fails_the_run_instead_of_hanging(
    tmp_path: Path, data_root: Path, when: str, code: int
):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(f"WHEN = {when!r}\n{CRASH_RANK_1}")
    run_dir = tmp_path / "run"
    result = run_train("experiment=smoke", "trainer=ddp_cpu", "trainer.max_steps=60",
                       "callbacks=no_diagnostics", f"data.root={data_root}",
                       f"hydra.run.dir={run_dir}", env={"PYTHONPATH": str(tmp_path / "site")},
                       timeout=180)  # fmt: skip
    assert result.returncode != 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary.get("steps", 0) < 60
    log = run_dir / "train_rank1.log"
    assert summary["error"].startswith(f"rank 1 exited with code {code} (its traceback: {log})")
    if when == "training":
        assert "RuntimeError: planted crash on rank 1" in log.read_text()


def test_submitit_local_multirun_completes_both_records(tmp_path: Path, data_root: Path):
    sweep_dir = tmp_path / "sweep"
    result = run_train(
        "--multirun", "hydra/launcher=submitit_local", "experiment=smoke", "seed=0,1",
        "trainer.max_steps=12", "callbacks=no_diagnostics", "torch_threads=1",
        f"data.root={data_root}", f"hydra.sweep.dir={sweep_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = sorted(sweep_dir.glob("*/summary.json"))
    assert len(records) == 2
    summaries = [json.loads(p.read_text()) for p in records]
    assert {s["status"] for s in summaries} == {"completed"}
    assert sorted(s["seeds"]["seed"] for s in summaries) == [0, 1]
    assert all(s["steps"] == 12 for s in summaries)
    # Each job ran in its own submitit process, not in the launching one.
    commands = {tuple(s["reproducibility"]["command"]) for s in summaries}
    assert all("submitit" in " ".join(c) for c in commands), commands
    assert sys.executable in {c[0] for c in commands}
