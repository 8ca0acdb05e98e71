"""Diagnostics against known answers; measuring must not change training."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from actbench import activations, hessian
from actbench.data import DataModule
from actbench.diagnostics import (
    CurvatureMonitor,
    DeadNeuronMonitor,
    GradientNormMonitor,
    log_spaced_steps,
)
from actbench.diagnostics.curvature import eval_differs
from actbench.diagnostics.grad_norms import block_norms, parameter_blocks
from actbench.models.mlp import MLP
from actbench.module import Classifier, classification_loss
from conftest import run_train


def test_cadence_is_log_spaced_dense_early_and_ends_at_the_end():
    steps = log_spaced_steps(3000, 12)
    assert len(steps) >= 12 and steps[0] == 0 and steps[-1] == 3000
    gaps = np.diff(steps)
    assert gaps[0] < gaps[-1] / 50  # dense early, sparse late
    assert log_spaced_steps(5, 12) == [0, 1, 2, 3, 4, 5]
    # Two points are the ends (the default curvature cadence), three add step 1.
    assert log_spaced_steps(3000, 2) == [0, 3000]
    assert log_spaced_steps(3000, 3) == [0, 1, 3000]
    assert log_spaced_steps(1, 2) == [0, 1]


def _mlp(name: str, width: int = 16, depth: int = 2, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP((10,), 3, partial(activations.build, name=name), depth=depth, width=width)


@pytest.mark.parametrize("name", ["relu", "gelu"])
def test_dead_units_known_answer(name: str):
    model = _mlp(name)
    with torch.no_grad():  # units 0-4 of the first layer: pre-activation -4 for every input
        model.hidden[0].linear.weight[:5] = 0.0
        model.hidden[0].linear.bias[:5] = -4.0
    x = torch.randn(512, 10)
    totals, layers = DeadNeuronMonitor().compute(model, x)
    hard = layers["dead/hard"]["hidden.0.act"]
    if name == "relu":
        assert hard == 5 / 16
        assert layers["dead/frozen"]["hidden.0.act"] == 5 / 16  # f'(-4) = 0: no gradient
    else:
        # GELU(-4) ≈ -1.3e-4 is small but not zero: not hard-dead, yet dormant and frozen.
        # (Below about -5.5 float32 GELU rounds to exactly 0: the atlas measures where.)
        assert hard == 0.0 and totals["dead/hard"] == 0.0
        assert layers["dead/dormant_0.025"]["hidden.0.act"] >= 5 / 16
        assert layers["dead/frozen"]["hidden.0.act"] >= 5 / 16
    assert 0.0 <= totals["act/neg_share"] <= 1.0


def _quadratic(eigenvalues: list[float], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen))
    a = q @ torch.diag(torch.tensor(eigenvalues)) @ q.T
    return (lambda v: a @ v), a


def test_spectrum_of_an_indefinite_quadratic():
    eigenvalues = [-5.0, -1.0, 0.5, 2.0, 3.0, 0.0, 1.0, -0.5]
    hvp, _ = _quadratic(eigenvalues)
    res = hessian.lanczos_extremes(hvp, len(eigenvalues), tol=1e-8)
    top, bottom = res.top, res.bottom
    assert res.top_converged and res.bottom_converged and res.hvps <= len(eigenvalues)
    assert top == pytest.approx(3.0, abs=1e-4) and bottom == pytest.approx(-5.0, abs=1e-4)
    trace, se = hessian.hutchinson_trace(hvp, len(eigenvalues), samples=400, seed=1)
    assert se > 0 and abs(trace - sum(eigenvalues)) < 4 * se
    # Power iteration finds the largest *magnitude*: -5, not the top eigenvalue 3.
    power = hessian.power_iteration(hvp, len(eigenvalues), iters=500, tol=1e-9)
    assert power == pytest.approx(-5.0, abs=1e-3) and abs(power - top) > 7


def test_lanczos_converging_on_the_top_alone_takes_fewer_products_for_the_same_top():
    # A spread-out spectrum: the top is isolated (fast), the bottom sits in a dense cluster (slow).
    eigenvalues = [10.0, *torch.linspace(-1.0, 1.0, 199).tolist()]
    hvp, _ = _quadratic(eigenvalues)
    counts = {}
    tops = {}
    for converge in ("both", "top"):
        calls = [0]

        def counted(v: torch.Tensor, calls: list[int] = calls) -> torch.Tensor:
            calls[0] += 1
            return hvp(v)

        res = hessian.lanczos_extremes(
            counted, len(eigenvalues), tol=1e-6, max_iter=150, converge=converge
        )
        tops[converge] = res.top
        counts[converge] = calls[0]
        assert res.hvps == calls[0] and res.top_converged
    assert tops["top"] == pytest.approx(10.0, rel=1e-5) and tops["both"] == pytest.approx(10.0)
    assert counts["top"] < counts["both"] / 2, counts
    with pytest.raises(ValueError, match="converge='middle'"):
        hessian.lanczos_extremes(hvp, len(eigenvalues), converge="middle")


@pytest.mark.parametrize("name", ["gelu", "tanh"])
def test_top_eig_matches_the_dense_hessian_of_a_small_mlp(name: str):
    model = _mlp(name, width=6).double()
    x, y = torch.randn(64, 10, dtype=torch.float64), torch.randint(0, 3, (64,))
    params = [p for p in model.parameters()]
    shapes = [p.shape for p in params]

    def loss_of_flat(flat: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, [math.prod(s) for s in shapes])
        named = {
            n: t.view(s)
            for (n, _), t, s in zip(model.named_parameters(), pieces, shapes, strict=True)
        }
        out = torch.func.functional_call(model, named, (x,))
        return classification_loss("ce", out, y)

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    dense = torch.autograd.functional.hessian(loss_of_flat, flat)
    eig = torch.linalg.eigvalsh(dense)
    hvp, n = hessian.model_hvp(
        model, partial(classification_loss, "ce"), [(x[:40], y[:40]), (x[40:], y[40:])]
    )
    res = hessian.lanczos_extremes(hvp, n, dtype=torch.float64, tol=1e-6)
    top, bottom = res.top, res.bottom
    assert top == pytest.approx(eig[-1].item(), rel=0.01)
    assert bottom == pytest.approx(eig[0].item(), rel=0.01, abs=1e-6)


def test_global_grad_norm_equals_clip_grad_norm():
    model = _mlp("silu", depth=3)
    loss = model(torch.randn(32, 10)).pow(2).mean()
    loss.backward()
    total, norms, ratios = block_norms(parameter_blocks(model))
    assert set(norms) == {"hidden.0.linear", "hidden.1.linear", "hidden.2.linear", "head"}
    expected = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e9)
    assert total == pytest.approx(expected.item(), rel=1e-6)
    assert all(r > 0 for r in ratios.values())


def _fit(data_root: Path, callbacks: list, max_steps: int = 30) -> dict[str, torch.Tensor]:
    pl.seed_everything(0, verbose=False)
    dm = DataModule("digits", root=str(data_root), batch_size=64, seed=0)
    dm.setup("fit")
    torch.manual_seed(0)
    # Stochastic gate and dropout both draw random numbers: the probes must not shift them.
    model = MLP(dm.input_shape, 10, partial(activations.build, name="stochastic_gelu"),
                depth=2, width=32, dropout=0.2)  # fmt: skip
    module = Classifier(model, 10, {"name": "adam", "lr": 1e-2}, max_steps=max_steps)
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=callbacks)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_training_is_bit_identical_with_diagnostics_on_and_off(data_root: Path):
    callbacks = [
        DeadNeuronMonitor(points=30),
        GradientNormMonitor(points=30),
        CurvatureMonitor(points=8, probe_size=256, trace_samples=2, lanczos_max_iter=8),
    ]
    on = _fit(data_root, callbacks)
    off = _fit(data_root, [])
    assert callbacks[2].last["curv/top_eig"] > 0 and callbacks[0].last  # they did measure
    assert all(c.seconds > 0 for c in callbacks)  # and timed their measurements
    for key in off:
        assert torch.equal(on[key], off[key]), key


def test_end_to_end_diagnostics_in_record_and_relu_dies_at_high_lr(tmp_path: Path, data_root):
    run_dir = tmp_path / "relu"
    result = run_train("experiment=smoke", "activation=relu", "optimizer.lr=0.5",
                       "trainer.max_steps=80", f"hydra.run.dir={run_dir}",
                       f"data.root={data_root}", "callbacks.curvature.probe_size=512")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]
    fractions = ["dead/hard", "dead/dormant_0.1", "dead/dormant_0.025", "dead/frozen",
                 "act/neg_share"]  # fmt: skip
    for key in fractions:
        assert 0.0 <= metrics[key] <= 1.0, key
    finite = ["grad/global_norm", "curv/top_eig", "curv/trace", "curv/trace_se",
              "curv/stability_ratio", "act/pre_std", "act/mean_abs_f2", "curv/hvps"]  # fmt: skip
    for key in finite:
        assert math.isfinite(metrics[key]), key
    # The minimum under its own name only when converged, else as a bound; never both.
    (bottom_key,) = {"curv/min_eig", "curv/min_eig_bound"} & set(metrics)
    assert metrics["curv/top_eig"] >= metrics[bottom_key]
    assert metrics["curv/nonfinite"] == 0 and metrics["act/nonfinite_layers"] == 0
    assert metrics["dead/hard"] > 0  # a ReLU MLP at a high learning rate loses units
    assert "act/convex_share" not in metrics  # ReLU's f'' is undefined at its kink
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "dead/hard/hidden.0.act" in header and "grad/norm/head" in header


@pytest.mark.parametrize("name", activations.names())
def test_every_activation_gets_finite_diagnostics(name: str):
    model = _mlp(name, width=12)
    x, y = torch.randn(96, 10), torch.randint(0, 3, (96,))
    totals, _ = DeadNeuronMonitor().compute(model, x)
    assert all(math.isfinite(v) for v in totals.values())
    monitor = CurvatureMonitor(trace_samples=2, lanczos_max_iter=8)
    monitor.chunks = [(x, y)]
    curv, layers = monitor.compute(model)
    bottom = curv.get("curv/min_eig", curv.get("curv/min_eig_bound"))
    assert math.isfinite(curv["curv/top_eig"]) and curv["curv/top_eig"] >= bottom
    assert curv["curv/nonfinite"] == 0 and curv["curv/eval_mode_differs"] == (
        name == "stochastic_gelu"
    )
    f2 = layers["act/mean_abs_f2"]
    if name in ("identity", "relu", "leaky_relu"):  # f'' = 0 wherever it is defined
        assert all(v == 0.0 for v in f2.values())
    else:
        assert all(v > 0.0 for v in f2.values())


def _monitor(x: torch.Tensor, y: torch.Tensor, **kwargs) -> CurvatureMonitor:
    monitor = CurvatureMonitor(**{"trace_samples": 2, "lanczos_max_iter": 8, **kwargs})
    monitor.chunks = [(x, y)]
    return monitor


def test_min_eig_is_logged_as_such_only_when_converged():
    model = _mlp("tanh", width=8)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    n = sum(p.numel() for p in model.parameters())
    short, _ = _monitor(x, y, lanczos_max_iter=3, lanczos_converge="top").compute(model)
    assert "curv/min_eig_bound" in short and "curv/min_eig" not in short
    assert short["curv/hvps"] == 3 + 2  # three Lanczos products, two trace samples
    full, _ = _monitor(x, y, lanczos_max_iter=n, lanczos_converge="both").compute(model)
    assert "curv/min_eig" in full and "curv/min_eig_bound" not in full
    assert full["curv/top_converged"] == 1.0 and full["curv/top_residual"] <= 1e-3
    assert short["curv/min_eig_bound"] >= full["curv/min_eig"] - 1e-5  # a bound, from above


def test_a_non_finite_hessian_is_a_counted_event_and_nan_layers_are_not_skipped():
    model = _mlp("gelu", width=8)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    monitor = _monitor(x, y)
    good, _ = monitor.compute(model)
    assert good["curv/nonfinite"] == 0 and good["act/nonfinite_layers"] == 0
    with torch.no_grad():
        model.hidden[1].linear.weight[0, 0] = float("nan")  # the second layer's units: NaN
    bad, layers = monitor.compute(model)
    assert bad["curv/nonfinite"] == 1 and math.isnan(bad["curv/top_eig"])
    assert math.isnan(bad["curv/trace"])  # reported NaN, never left out
    assert math.isnan(layers["act/mean_abs_f2"]["hidden.1.act"])
    assert math.isfinite(layers["act/mean_abs_f2"]["hidden.0.act"])
    assert math.isnan(bad["act/mean_abs_f2"]) and bad["act/nonfinite_layers"] >= 1
    again, _ = monitor.compute(model)
    assert again["curv/nonfinite"] == 2  # counted over the run (and kept in the state)
    assert monitor.state_dict()["nonfinite"] == 2


def test_eval_mode_differences_are_flagged_for_mode_dependent_activations():
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    for name, differs in (("stochastic_gelu", 1.0), ("gelu", 0.0), ("noisy_relu", 0.0)):
        curv, _ = _monitor(x, y, trace_samples=0).compute(_mlp(name, width=8))
        assert curv["curv/eval_mode_differs"] == differs, name

    class Flagged(torch.nn.Module):  # the convention: a class attribute, read by getattr
        train_eval_differ = True

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.tanh(z)

    flagged = _mlp("tanh", width=8)
    assert not eval_differs(flagged)
    flagged.hidden[1].act = Flagged()
    assert eval_differs(flagged)
