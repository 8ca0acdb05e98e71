"""Reproduction experiments: documents regenerate from their records, rules give known answers,
and each experiment's small variant runs end to end through the real entry points."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml

from actbench import activations, experiments
from actbench.data import DataModule
from actbench.diagnostics import CurvatureMonitor, DeadNeuronMonitor, TrainSetLoss
from actbench.diagnostics.base import fixed_steps
from actbench.experiments.base import DOCS, MANIFEST, RUNS
from actbench.experiments.collect import collect, in_grid, trim_metrics
from actbench.experiments.document import check, compose
from actbench.experiments.dying import Dying
from actbench.experiments.edge_of_stability import EdgeOfStability
from actbench.experiments.gelu_paper import GeluPaper
from actbench.experiments.registry import EXPERIMENTS
from actbench.models.mlp import MLP
from actbench.module import Classifier
from actbench.records import CONFIG, METRICS, RunRecord, read_curves, read_sweep, write_summary
from conftest import REPO

# --- the committed documents -------------------------------------------------------------------


def test_committed_documents_match_their_records():
    """CI fails when a document drifts from what its committed records regenerate."""
    assert check(DOCS) == []


def test_every_experiment_has_a_preset_and_a_grid_file():
    for name, exp in EXPERIMENTS.items():
        assert (REPO / "conf" / "experiment" / f"{name}.yaml").is_file()
        spec = yaml.safe_load(exp.sweep_file.read_text())
        assert spec["method"] == "grid" and "${args_no_hyphens}" in spec["command"]
        assert spec["parameters"]["experiment"] == {"value": name}


# --- rules on synthetic records (known answers) ------------------------------------------------


def _run(
    params: dict, metrics: dict | None = None, curves: dict | None = None, **summary
) -> RunRecord:
    config: dict = {}
    for dotted, value in params.items():
        node = config
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    record = {"status": "completed", "metrics": metrics or {}, **summary}
    return RunRecord(Path("r"), record, config, curves or {})


def _gelu_runs(train: dict[tuple[str, float, float], float], val: dict) -> list[RunRecord]:
    runs = []
    for (act, dropout, lr), loss in train.items():
        for seed in range(3):
            params = {"activation.name": act, "model.dropout": dropout, "optimizer.lr": lr}
            metrics = {"train_eval/loss": loss + 0.001 * seed, "val/loss": val[(act, dropout, lr)]}
            runs.append(_run({**params, "seed": seed}, metrics))
    return runs


def test_gelu_rule_selects_on_validation_and_compares_training_loss():
    exp = GeluPaper()
    acts = ("gelu_tanh", "relu", "elu", "silu")
    train, val = {}, {}
    for dropout in (0.0, 0.5):
        for act in acts:
            # lr 1e-3 fits the training set best, but validation picks 1e-4 for everyone.
            train[(act, dropout, 1e-3)] = 0.01
            val[(act, dropout, 1e-3)] = 2.0
            train[(act, dropout, 1e-4)] = {"gelu_tanh": 0.2, "relu": 0.3}.get(act, 0.4)
            val[(act, dropout, 1e-4)] = 1.0
    runs = _gelu_runs(train, val)
    assert set(exp.select(runs).values()) == {1e-4}
    decided = exp.decide(runs)
    assert decided[0.0][0] == decided[0.5][0] == "holds"
    assert decided[0.0][1]["gelu_tanh"] == pytest.approx(0.201)  # median of 3 seeds
    assert "**The claim holds**" in exp.analyse(runs, "full").verdict
    # ReLU lower at dropout 0.5 only: the claim fails as a whole.
    train[("relu", 0.5, 1e-4)] = 0.1
    decided = exp.decide(_gelu_runs(train, val))
    assert (decided[0.0][0], decided[0.5][0]) == ("holds", "fails")
    assert "**The claim does not hold**" in exp.analyse(_gelu_runs(train, val), "full").verdict


def test_gelu_rule_counts_a_diverged_seed_as_infinite_validation_loss():
    exp = GeluPaper()
    runs = []
    for lr, val in ((1e-3, 0.5), (1e-4, 0.9)):
        for seed in range(3):
            params = {"activation.name": "relu", "model.dropout": 0.0, "optimizer.lr": lr}
            runs.append(_run({**params, "seed": seed}, {"val/loss": val, "train_eval/loss": 0.1}))
    assert exp.select(runs)[("relu", 0.0)] == 1e-3
    for r in runs[:2]:  # two of three seeds at 1e-3 diverge: its median becomes infinite
        r.summary["status"] = "diverged"
    assert exp.select(runs)[("relu", 0.0)] == 1e-4


def test_gelu_rule_breaks_ties_towards_the_smaller_learning_rate():
    exp = GeluPaper()
    runs = []
    for lr in (1e-3, 1e-5, 1e-4):  # equal medians at 1e-4 and 1e-5, found in no sorted order
        for seed in range(3):
            val = 0.5 if lr < 1e-3 else 0.7
            params = {"activation.name": "elu", "model.dropout": 0.5, "optimizer.lr": lr}
            runs.append(_run({**params, "seed": seed}, {"val/loss": val, "train_eval/loss": 0.1}))
    assert exp.select(runs) == {("elu", 0.5): 1e-5}
    for r in runs:  # every seed diverged at every learning rate: nothing to choose
        r.summary["status"] = "diverged"
    assert exp.select(runs) == {}


def _eos(ratios: list[float], every: int = 50, status: str = "completed") -> dict:
    curve = [(i * every, r) for i, r in enumerate(ratios)]
    params = {"optimizer.lr": 0.1, "activation.name": "tanh"}
    run = _run(params, {}, {"curv/stability_ratio": curve}, steps=curve[-1][0])
    run.summary["status"] = status
    return EdgeOfStability().classify(run)


@pytest.mark.parametrize(
    ("ratios", "outcome", "tests"),
    [
        ([0.2, 0.5, 0.8, 0.95, 1.02, 0.98, 1.05, 1.0, 1.01], "plateau", True),
        ([0.2, 0.5, 0.9, 1.3, 1.6, 1.8, 2.0, 2.2, 2.5], "above", True),
        ([0.2, 0.95, 0.6, 0.5, 0.4, 0.5, 0.4, 0.3, 0.4], "fell back", True),
        ([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85], "not reached", False),
        ([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.95], "reached late", False),
        ([1.5, 1.2, 1.0, 0.95, 1.0, 1.1, 1.0, 0.98, 1.0], "never below 2/η", False),
        # A catapult: starts beyond, drops, sharpens again and settles at the limit.
        ([3.0, 0.3, 0.5, 0.9, 1.0, 1.05, 0.97, 1.0, 1.02], "plateau (after a drop", True),
    ],
)
def test_edge_of_stability_rule_known_answers(ratios, outcome, tests):
    c = _eos(ratios)
    assert c["outcome"].startswith(outcome) and c["tests"] is tests
    assert c["limit"] == pytest.approx(20.0)


def test_edge_of_stability_verdict_per_activation():
    exp = EdgeOfStability()

    def run(act: str, ratios: list[float]) -> RunRecord:
        curve = [(i * 50, r) for i, r in enumerate(ratios)]
        return _run({"optimizer.lr": 0.1, "activation.name": act}, {},
                    {"curv/stability_ratio": curve}, steps=curve[-1][0])  # fmt: skip

    plateau = [0.2, 0.5, 0.95, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    above = [0.2, 0.5, 0.95, 1.5, 1.8, 2.0, 2.0, 2.0, 2.0]
    never = [0.2] * 9
    catapult = [3.0, 0.3, 0.5, 0.9, 1.0, 1.05, 0.97, 1.0, 1.02]  # labelled "plateau (after ...)"
    assert exp.verdicts([run("relu", plateau), run("tanh", never), run("gelu", catapult)]) == {
        "gelu": "holds",
        "relu": "holds",
        "tanh": "untested",
    }
    assert exp.verdicts([run("relu", plateau), run("relu", above)])["relu"] == "fails"
    assert (
        "holds where tested"
        in exp.analyse([run("relu", plateau), run("tanh", never)], "full").verdict
    )


def test_dying_rule_measures_the_rise_over_units_born_dead():
    exp = Dying()

    def run(values: list[float], seed: int) -> RunRecord:
        curve = [(i * 10, v) for i, v in enumerate(values)]
        curves = {k: curve for k in exp.MEASURES}
        return _run({"activation.name": "relu", "optimizer.lr": 0.1, "seed": seed},
                    {"test/acc": 0.5}, curves)  # fmt: skip

    born_dead = exp.cell_stats([run([0.3, 0.32, 0.31, 0.3], s) for s in range(3)])
    assert not born_dead["dead/frozen"]["lost"]  # 30 % dead at birth is not the learning rate's
    recovering = exp.cell_stats([run([0.0, 0.4, 0.2, 0.1], s) for s in range(3)])
    assert recovering["dead/frozen"]["lost"] and recovering["dead/frozen"]["recovered"]
    assert recovering["dead/frozen"]["rise"] == pytest.approx(0.4)
    staying = exp.cell_stats([run([0.05, 0.3, 0.5, 0.45], s) for s in range(3)])
    assert staying["dead/frozen"]["lost"] and not staying["dead/frozen"]["recovered"]
    diverged = [run([0.0, 0.5], s) for s in range(3)]
    for r in diverged[:2]:
        r.summary["status"] = "diverged"
    assert exp.cell_stats(diverged)["is_diverged"]


def test_protocol_deviation_is_reported_and_invalidates_the_verdict():
    exp = EdgeOfStability()
    good = {k: v for k, v in exp.invariants.items()}
    bad = {**good, "loss": "ce"}  # what a preset that cannot set `loss` produces
    curve = {"curv/stability_ratio": [(0, 0.5), (50, 0.6)]}
    runs = [
        _run({**good, "optimizer.lr": 0.1, "activation.name": "relu"}, {}, curve, steps=50),
        _run({**bad, "optimizer.lr": 0.2, "activation.name": "relu"}, {}, curve, steps=50),
    ]
    deviations = exp.protocol_deviations(runs, "small")
    assert len(deviations) == 1 and "`loss` should be 'mse'" in deviations[0]
    manifest = {"scale": "small", "parameters": {"seed": {"value": 0}}, "points": 2}
    assert "**Invalid: the records break the protocol**" in compose(exp, manifest, runs)


def test_trimmed_metrics_keep_only_needed_columns_and_read_back(tmp_path: Path):
    src = tmp_path / "metrics.csv"
    src.write_text(
        "a,epoch,step,train_eval/loss,val/loss\n"
        "1,0,0,2.5,\n"
        "2,0,9,,2.4\n"
        "3,0,10,,\n"  # none of the kept columns: dropped
        "4,1,10,2.0,\n"
        "5,1,10,1.9,\n"  # a resumed run logged step 10 twice: the last value wins
    )
    dst = tmp_path / "trimmed.csv"
    assert trim_metrics(src, dst, ["train_eval/loss", "val/loss", "absent"]) == 4
    assert dst.read_text().splitlines()[0] == "step,train_eval/loss,val/loss"
    curves = read_curves(dst, ["train_eval/loss", "val/loss"])
    assert curves == {"train_eval/loss": [(0, 2.5), (10, 1.9)], "val/loss": [(9, 2.4)]}


def test_collect_keeps_finished_runs_of_the_grid_trimmed(tmp_path: Path):
    exp = EXPERIMENTS["edge_of_stability"]
    spec = exp.spec("small")
    sweep = tmp_path / "multirun" / exp.stem("small")
    config = {k: v for k, v in exp.invariants.items()}
    point = {"activation.name": "relu", "optimizer.lr": 0.04, "seed": 0, "loss": "mse",
             "data.num_samples": 500, "trainer.max_steps": 60,
             "callbacks.curvature.every_n_steps": 10}  # fmt: skip
    grid = ["experiment=edge_of_stability", "activation=relu", "optimizer.lr=0.04"]

    def run(folder: str, status: str, lr: float = 0.04) -> None:
        record = _run({**config, **point, "optimizer.lr": lr}, {}, {})
        out = sweep / folder
        write_summary(out, {**record.summary, "status": status, "overrides": grid})
        (out / CONFIG).write_text(yaml.safe_dump(record.config))
        (out / METRICS).write_text("epoch,step,curv/stability_ratio,other\n0,0,0.5,1\n0,10,,2\n")

    run("a", "completed")
    run("b", "diverged")
    run("c", "running")  # unfinished: left out
    run("d", "completed", lr=0.5)  # a stale run of another grid: left out
    assert in_grid(read_sweep(sweep)[0], spec) and not in_grid(read_sweep(sweep)[3], spec)
    dest = collect("edge_of_stability", "small", tmp_path / "multirun", tmp_path / "docs")
    kept = read_sweep(dest / RUNS, exp.csv_keys)
    assert [r.folder.name for r in kept] == ["a", "b"]
    assert kept[0].curve("curv/stability_ratio") == [(0, 0.5)]
    assert (dest / RUNS / "a" / METRICS).read_text() == "step,curv/stability_ratio\n0,0.5\n"
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["points"] == 4 and manifest["parameters"] == spec["parameters"]


# --- the diagnostics the experiments added -----------------------------------------------------


def test_fixed_cadence_steps():
    assert fixed_steps(100, 30) == [0, 30, 60, 90, 100]
    assert fixed_steps(90, 30) == [0, 30, 60, 90]
    with pytest.raises(ValueError, match="must be >= 1"):
        fixed_steps(10, 0)


def test_train_set_loss_is_the_eval_mode_loss_over_every_example():
    torch.manual_seed(0)
    model = MLP((10,), 3, partial(activations.build, name="gelu"), depth=2, width=16, dropout=0.5)
    x, y = torch.randn(100, 10), torch.randint(0, 3, (100,))
    model.train()
    got = TrainSetLoss(batch_size=7).compute(model, x, y)  # chunks of 7 weighted by size
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert got["train_eval/loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert got["train_eval/acc"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())
    model.train()
    assert model.training and all(m.training for m in model.modules())  # modes restored


def test_curvature_without_trace_skips_it():
    torch.manual_seed(0)
    model = MLP((10,), 3, partial(activations.build, name="tanh"), depth=2, width=8)
    monitor = CurvatureMonitor(trace_samples=0, lanczos_max_iter=8)
    monitor.chunks = [(torch.randn(64, 10), torch.randint(0, 3, (64,)))]
    totals, _ = monitor.compute(model)
    assert math.isfinite(totals["curv/top_eig"]) and "curv/trace" not in totals


def test_fixed_cadence_monitors_measure_on_schedule_and_leave_training_alone(data_root: Path):
    def fit(callbacks: list) -> dict[str, torch.Tensor]:
        pl.seed_everything(0, verbose=False)
        dm = DataModule("digits", root=str(data_root), batch_size=64, seed=0)
        dm.setup("fit")
        torch.manual_seed(0)
        model = MLP(dm.input_shape, 10, partial(activations.build, name="relu"), depth=2,
                    width=16, dropout=0.2)  # fmt: skip
        module = Classifier(model, 10, {"name": "sgd", "lr": 0.05}, loss="mse", max_steps=25)
        trainer = pl.Trainer(max_steps=25, accelerator="cpu", logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=callbacks)  # fmt: skip
        trainer.fit(module, datamodule=dm)
        return {k: v.clone() for k, v in module.state_dict().items()}

    seen: dict[str, list[int]] = {}

    def spy(monitor, name):  # record the steps each monitor publishes at
        publish = monitor.publish

        def wrapped(trainer, totals, per_layer=None, step=None):
            seen.setdefault(name, []).append(trainer.global_step)
            publish(trainer, totals, per_layer, step)

        monitor.publish = wrapped
        return monitor

    curvature = CurvatureMonitor(
        every_n_steps=10, probe_size=128, trace_samples=0, lanczos_max_iter=5
    )
    callbacks = [
        spy(curvature, "curv"),
        spy(DeadNeuronMonitor(every_n_steps=10), "dead"),
        spy(TrainSetLoss(every_n_steps=10), "loss"),
    ]
    on = fit(callbacks)
    off = fit([])
    for key in off:
        assert torch.equal(on[key], off[key]), key
    assert seen == {"curv": [0, 10, 20, 25], "dead": [0, 10, 20, 25], "loss": [0, 10, 20, 25]}
    # Under mse the monitors' loss is the module's: ½Σ over outputs, mean over examples.
    assert 0 < callbacks[2].last["train_eval/loss"] < 10


# --- the small variants, end to end ------------------------------------------------------------


CADENCE = {
    "gelu_paper": ("train_eval/loss", [0, 11, 22]),
    "dying": ("dead/frozen", [0, 10, 20, 30, 40]),
    "edge_of_stability": ("curv/stability_ratio", [0, 10, 20, 30, 40, 50, 60]),
}


# One experiment end to end in make test (each takes ~25 s); all of them under make test-slow.
@pytest.mark.parametrize(
    "name",
    [n if i == 0 else pytest.param(n, marks=pytest.mark.slow) for i, n in enumerate(EXPERIMENTS)],
)
def test_small_variant_runs_end_to_end(name: str, tmp_path: Path, data_root: Path):
    """``run --scale small`` (actbench-sweep -> actbench.train), collect, render, check."""
    proc = subprocess.run(
        [sys.executable, "-m", "actbench.experiments", "run", name, "--scale", "small",
         "--jobs", "2", f"data.root={data_root}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    docs = tmp_path / "docs"
    collect = ["--docs", str(docs), "collect", name, "--scale", "small"]
    assert experiments.main([*collect, "--multirun", str(tmp_path / "multirun")]) == 0
    exp = EXPERIMENTS[name]
    records_dir = docs / "records" / name
    manifest = json.loads((records_dir / MANIFEST).read_text())
    assert (
        manifest["scale"] == "small" and manifest["parameters"] == exp.spec("small")["parameters"]
    )
    runs = read_sweep(records_dir / RUNS, exp.csv_keys)
    assert len(runs) == manifest["points"] > 1
    assert all(r.status in ("completed", "diverged") for r in runs)
    assert exp.protocol_deviations(runs, "small") == []
    key, steps = CADENCE[name]
    for r in runs:
        if r.ok:
            assert [s for s, _ in r.curve(key)] == steps, r.folder
    if name == "edge_of_stability":
        for r in runs:
            ratio, top = dict(r.curve("curv/stability_ratio")), dict(r.curve("curv/top_eig"))
            lr = r.param("optimizer.lr")
            assert all(ratio[s] == pytest.approx(top[s] * lr / 2, rel=1e-5) for s in ratio)
    if name == "gelu_paper":
        grid = set(exp.spec("small")["parameters"]["optimizer.lr"]["values"])
        assert set(exp.select(runs).values()) <= grid and len(exp.select(runs)) == 4

    assert experiments.main(["--docs", str(docs), "render", name]) == 0
    text = (docs / f"{name}.md").read_text()
    assert "**Scale: small — a pipeline check, not evidence.**" in text
    assert "## Rule, decided in advance" in text and "## Verdict" in text
    assert (docs / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert check(docs, [name]) == []
    (docs / f"{name}.md").write_text(text.replace("## Verdict", "## Verdict (edited)"))
    problems = check(docs, [name])
    assert len(problems) == 1 and "differs from what its records give" in problems[0]
    assert experiments.main(["--docs", str(docs), "check"]) == 1  # others have no records here
