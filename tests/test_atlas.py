"""Tests for the activation atlas: the sigmoid match, the Monte Carlo checks (including their
power against wrong formulas), born-dead nets and registry extension through the CLI. Closed
forms here are written with ``math`` so they are independent of torch."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from torch import nn

from actbench import activations, atlas
from actbench.atlas import measure

SQRT2 = math.sqrt(2.0)
TOL = 1e-6  # closed forms are exact: autograd in float64 should match them to this


def small_phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def test_curvature_matched_beta_and_gaps() -> None:
    sig = measure.sigmoid_match()
    # d²/dx² x·σ(βx) at 0 is β/2, GELU″(0) = 2φ(0): β* = 4φ(0) = √(8/π).
    assert sig["curvature_matched"]["beta"] == pytest.approx(math.sqrt(8 / math.pi), abs=TOL)
    assert sig["curvature_matched"]["f_second_0"] == pytest.approx(2 * small_phi(0.0), abs=1e-9)
    # Largest gap of x·σ(1.702x) to GELU, by brute force with math.erfc only.
    x = np.linspace(-10, 10, 200001)
    gelu = x * 0.5 * np.array([math.erfc(-v / SQRT2) for v in x])
    brute = np.max(np.abs(x / (1 + np.exp(-1.702 * x)) - gelu))
    assert sig["usual"]["max_gap"] == pytest.approx(brute, abs=1e-6)
    assert (
        sig["minimax"]["max_gap"] <= sig["usual"]["max_gap"] < sig["curvature_matched"]["max_gap"]
    )


def test_noisy_relu_monte_carlo_and_a_wrong_formula_fails() -> None:
    mc = measure.mc_noisy_relu(xs=(-1.0, 0.0, 0.5, 1.0), sigmas=(0.5, 1.5), n=2**19, seed=3)
    ok = mc["correct"]
    assert ok["n"] == 8 and ok["max_se"] < measure.MC_SE_BOUND
    assert ok["all_within_limit"] and ok["passes"]
    for name, wrong in mc["wrong"].items():
        assert wrong["max_abs_z"] > measure.Z_LIMIT, name
        assert not wrong["passes"], name


def test_stochastic_gate_monte_carlo_and_wrong_formulas_fail() -> None:
    mc = measure.mc_stochastic_gate(xs=(-2.0, -1.0, 0.0, 0.5, 1.5), n=2**18, seed=5)
    assert [r["tested"] for r in mc["rows"]] == [True, True, False, True, True]  # x = 0: no spread
    ok = mc["correct"]
    assert ok["n"] == 4 and ok["max_se"] < measure.MC_SE_BOUND
    assert ok["all_within_limit"] and ok["passes"]
    # Even the close sigmoid approximation (max gap 0.02) is rejected at this precision.
    for name, wrong in mc["wrong"].items():
        assert wrong["n_beyond_limit"] >= 3 and not wrong["passes"], name


def test_born_dead_matches_closed_form_for_width_one_relu() -> None:
    # Width 1, zero bias: layer 1 is alive on half the inputs, and each later ReLU layer is dead
    # exactly when its single weight is negative, so P(dead by depth d) = 1 − 2^−(d−1).
    trials = 4000
    res = measure.born_dead(["relu", "identity"], widths=(1,), depths=(2, 3, 5), trials=trials)
    for d in (2, 3, 5):
        cell = res["rows"]["relu"][f"1x{d}"]
        p = 1 - 2.0 ** -(d - 1)
        assert abs(cell["share"] - p) < 4 * math.sqrt(p * (1 - p) / trials)
        assert cell["exact"] == cell["dead"]
        assert res["rows"]["identity"][f"1x{d}"]["dead"] == 0


def test_born_dead_relative_tolerance_does_not_flag_shrinking_linear_nets() -> None:
    res = measure.born_dead(["identity", "relu"], widths=(2,), depths=(10, 50), trials=300)
    ident = res["rows"]["identity"]["2x50"]
    assert ident["dead"] == 0 and ident["vanished"] > 0  # shrinks in scale, never constant
    relu10, relu50 = res["rows"]["relu"]["2x10"], res["rows"]["relu"]["2x50"]
    assert 0 < relu10["dead"] <= relu50["dead"] == 300  # nested depths: monotone


def test_new_registry_entry_gets_row_curves_and_born_dead(monkeypatch, tmp_path) -> None:
    spec = activations.ActivationSpec(lambda: nn.Tanhshrink(), description="x - tanh(x)")
    monkeypatch.setitem(activations.REGISTRY, "tanhshrink", spec)
    args = ["--out", str(tmp_path), "--trials", "4", "--mc-samples", "4096"]
    assert atlas.main([*args, "--widths", "2,3", "--depths", "3,6"]) == 0
    data = json.loads((tmp_path / "atlas.json").read_text())
    row = next(p for p in data["profiles"] if p["name"] == "tanhshrink")
    # tanhshrink = x − tanh x: f′(0) = 0, f″(0) = 0 with a sign change, so one inflection at 0.
    assert row["f_prime_0"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert row["inflections"] == pytest.approx([0.0], abs=1e-9)
    assert [p["name"] for p in data["profiles"]] == activations.names()
    assert set(data["born_dead"]["rows"]) == set(activations.names())
    readme = (tmp_path / "README.md").read_text()
    assert "| `tanhshrink` |" in readme
    assert readme.count("`tanhshrink`") >= 3  # property table and both born-dead tables
    assert len(data["claims"]) >= 15
    for png in ("curves", "overlay", "tails", "born_dead", "monte_carlo", "gelu_neighbours"):
        assert (tmp_path / f"{png}.png").stat().st_size > 10_000
