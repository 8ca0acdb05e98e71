"""Per-example test correctness: the LightningModule records it (one bit per test example, in
the split's order, gathered across data-parallel ranks), the records module stores it, and the
report bootstraps over seeds and test examples together where every run of a pair has it."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from actbench import records
from actbench.data import IndexBatches
from actbench.module import Classifier, assemble_test_correct
from actbench.report import analysis, bootstrap, cli
from conftest import CONF_DIR, run_train
from test_report import write_run


def test_the_file_round_trips_in_one_bit_per_example(tmp_path: Path):
    correct = np.random.default_rng(0).random(1001) < 0.7  # not a multiple of 8
    path = records.write_test_correct(tmp_path, correct)
    assert path == tmp_path / records.TEST_CORRECT
    np.testing.assert_array_equal(records.read_test_correct(tmp_path), correct)
    assert path.stat().st_size < 1001 // 8 + 600  # the bits plus the npz headers
    assert records.read_test_correct(tmp_path / "nothing") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / records.TEST_CORRECT).write_text("not a zip")
    assert records.read_test_correct(tmp_path / "bad") is None
    # a write cut short leaves a temporary file that a resumed run clears
    (tmp_path / f".{records.TEST_CORRECT}.123-abcd.npz").write_bytes(b"half")
    records.clear_partial_writes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", records.TEST_CORRECT]


def test_shards_are_put_back_in_the_split_order():
    # two ranks of a strided evaluation split of 7 examples: 0, 2, 4, 6 and 1, 3, 5
    truth = np.array([1, 0, 0, 1, 1, 0, 1], dtype=bool)
    shards = [
        (np.array([0, 2, 4, 6]), truth[[0, 2, 4, 6]]),
        (np.array([1, 3, 5]), truth[[1, 3, 5]]),
    ]
    np.testing.assert_array_equal(assemble_test_correct(shards), truth)
    assert assemble_test_correct([(np.array([0, 2]), truth[:2])]) is None  # not every example
    assert assemble_test_correct([(np.array([0, 0, 1]), truth[:3])]) is None  # one twice
    assert assemble_test_correct([(np.array([-1, -1]), truth[:2])]) is None  # no order known


def _tiny(tmp_path: Path, loader, record: bool = True) -> tuple[Classifier, np.ndarray]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    module = Classifier(model, 3, {"name": "sgd", "lr": 0.1})
    if record:
        records.write_summary(tmp_path, {"status": "running"})
    trainer = pl.Trainer(
        default_root_dir=str(tmp_path), accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    metrics = trainer.test(module, dataloaders=loader, verbose=False)[0]
    return module, metrics["test/acc"]


def _data(n: int = 103) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)


@pytest.mark.parametrize("kind", ["index_batches", "dataloader"])
def test_the_test_step_records_each_example_in_the_split_order(tmp_path: Path, kind: str):
    x, y = _data()
    loader = (
        IndexBatches(x, y, 16, shuffle=False, cover_all=True)
        if kind == "index_batches"
        else DataLoader(TensorDataset(x, y), batch_size=16)
    )
    module, acc = _tiny(tmp_path, loader)
    with torch.no_grad():
        expected = (module(x).argmax(-1) == y).numpy()
    saved = records.read_test_correct(tmp_path)
    np.testing.assert_array_equal(saved, expected)
    assert saved.mean() == pytest.approx(acc, abs=1e-6)


def test_nothing_is_written_outside_a_run_folder(tmp_path: Path):
    x, y = _data()
    _tiny(tmp_path, IndexBatches(x, y, 16, shuffle=False, cover_all=True), record=False)
    assert not (tmp_path / records.TEST_CORRECT).exists()


def test_a_loader_of_unknown_order_is_not_saved(tmp_path: Path, caplog):
    x, y = _data()
    shuffled = [
        IndexBatches(x, y, 16, shuffle=True, cover_all=True),
        DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True),
    ]
    for loader in shuffled:
        with caplog.at_level("WARNING", logger="actbench.module"):
            _tiny(tmp_path, loader)
        assert not (tmp_path / records.TEST_CORRECT).exists()
    assert caplog.text.count("per-example test correctness not saved") == 2


@pytest.mark.slow
def test_a_ddp_cpu_run_gathers_every_rank_in_the_split_order(tmp_path: Path, data_root: Path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from actbench.config import register_configs

    register_configs()  # the structured schemas the conf files name

    run_dir = tmp_path / "run"
    config = ["experiment=smoke", "trainer=ddp_cpu", "trainer.max_steps=12",
              "callbacks=no_diagnostics", f"data.root={data_root}"]  # fmt: skip
    result = run_train(*config, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / records.SUMMARY).read_text())
    assert summary["reproducibility"]["world_size"] == 2
    saved = records.read_test_correct(run_dir)
    assert saved.size == summary["data"]["sizes"]["test"]
    assert saved.mean() == pytest.approx(summary["metrics"]["test/acc"], abs=1e-6)
    # one process, the final weights, the whole split in order
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"run_dir={run_dir}", *config])
    dm = instantiate(cfg.data, seed=cfg.seed)
    dm.setup("fit")
    model = instantiate(cfg.model)(
        input_shape=dm.input_shape,
        num_classes=dm.num_classes,
        activation=instantiate(cfg.activation),
    )
    module = Classifier(model, num_classes=dm.num_classes, optimizer=dict(cfg.optimizer))
    ckpt = torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=False)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    x, y = dm.splits["test"]
    with torch.no_grad():
        np.testing.assert_array_equal(saved, (module(x).argmax(-1) == y).numpy())


# ----------------------------------------------------------------------------- the bootstrap


def test_the_bootstrap_resamples_examples_and_seeds():
    rng = np.random.default_rng(0)
    # no spread between seeds, only between examples: the interval is the examples' own
    row = (rng.random(2000) < 0.5).astype(float) - (rng.random(2000) < 0.45).astype(float)
    d = np.tile(row, (5, 1))
    low, high = bootstrap.paired_bootstrap(d)
    half = 1.96 * row.std() / math.sqrt(row.size)
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    assert low < row.mean() < high
    # seeds only: the spread between seed means
    per_seed = np.array([0.01, 0.03, 0.02, 0.05, 0.04])
    low, high = bootstrap.paired_bootstrap(per_seed[:, None])
    assert per_seed.min() <= low < per_seed.mean() < high <= per_seed.max()
    # the same examples for both activations: identical runs differ by exactly nothing
    assert bootstrap.paired_bootstrap(np.zeros((5, 100))) == (0.0, 0.0)


def _with_examples(folder: Path, correct: np.ndarray) -> None:
    records.write_test_correct(folder, correct)
    summary = records.read_summary(folder)
    summary["metrics"]["test/acc"] = float(correct.mean())
    records.write_summary(folder, summary)


def test_the_report_bootstraps_over_seeds_and_examples_where_every_run_has_the_file(
    tmp_path: Path,
):
    sweep = tmp_path / "multirun" / "demo"
    rng = np.random.default_rng(4)
    shared = rng.random(1000)  # how hard each test example is, the same for every run
    folders = {}
    for seed in range(5):
        for act, skill in (("relu", 0.70), ("gelu", 0.66)):
            folder = write_run(sweep, act, seed)
            correct = shared < skill + 0.01 * rng.standard_normal()
            _with_examples(folder, correct)
            folders[act, seed] = folder
    write_run(sweep, "gelu", 5, status="diverged")  # unpaired: relu has no seed 5
    (unit,) = analysis.analyse(analysis.read_runs(sweep))
    delta = unit.deltas["gelu"]
    assert delta.boot == bootstrap.SEEDS_AND_EXAMPLES and delta.examples == 1000 and delta.n == 5
    assert delta.boot_low < delta.diff < delta.boot_high
    relu, gelu = unit.ranking.row("relu").scores, unit.ranking.row("gelu").scores
    assert delta.diff == pytest.approx(np.mean([gelu[s] - relu[s] for s in range(5)]))
    out = tmp_path / "out"
    text = cli.build_report(sweep, out).read_text()
    gelu_line = next(line for line in text.splitlines() if line.startswith("| 2 | `gelu`"))
    assert "†" not in gelu_line
    with open(out / "ranking.csv", newline="") as f:
        gelu = next(r for r in csv.DictReader(f) if r["activation"] == "gelu")
    assert gelu["delta_boot"] == bootstrap.SEEDS_AND_EXAMPLES
    assert float(gelu["delta_boot_low"]) == pytest.approx(delta.boot_low)
    # a file that does not reproduce its record's test/acc is not used: seeds only, marked
    records.write_test_correct(folders["relu", 2], ~records.read_test_correct(folders["relu", 2]))
    (unit,) = analysis.analyse(analysis.read_runs(sweep))
    assert unit.deltas["gelu"].boot == bootstrap.SEEDS_ONLY
    text = cli.build_report(sweep, out).read_text()
    gelu_line = next(line for line in text.splitlines() if line.startswith("| 2 | `gelu`"))
    assert gelu_line.count("†") == 1
