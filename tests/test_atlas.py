"""Tests for the activation atlas: exact closed forms, kink and root machinery, tail laws, the
Monte Carlo checks (including their power against wrong formulas), born-dead nets and registry
extension. Closed forms here are written with ``math`` so they are independent of torch."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from actbench import activations, atlas

SQRT2 = math.sqrt(2.0)
TOL = 1e-6  # closed forms are exact: autograd in float64 should match them to this


def big_phi(x: float) -> float:
    return 0.5 * math.erfc(-x / SQRT2)


def small_phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


@pytest.fixture(scope="module")
def profiles() -> dict[str, dict]:
    names = ["identity", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "gelu_tanh"]
    names += ["gelu_sigmoid", "silu", "noisy_relu"]
    return {n: atlas.profile(n) for n in names}


def test_gelu_closed_forms(profiles: dict[str, dict]) -> None:
    g = profiles["gelu"]
    assert g["f_prime_0"]["value"] == pytest.approx(0.5, abs=TOL)
    assert g["f_second_0"]["value"] == pytest.approx(2 * small_phi(0.0), abs=TOL)
    assert g["inflections"] == pytest.approx([-SQRT2, SQRT2], abs=TOL)
    assert g["f_prime_m1"]["value"] == pytest.approx(big_phi(-1) - small_phi(-1), abs=TOL)
    assert g["convex_region"] == [pytest.approx([-SQRT2, SQRT2], abs=TOL)]
    # The negative-side zero of GELU' solves Φ(r) + r·φ(r) = 0; the minimum sits there.
    (root,) = [z["x"] for z in g["zero_slope_negative"] if z["kind"] == "root"]
    assert abs(big_phi(root) + root * small_phi(root)) < 1e-12
    assert -0.76 < root < -0.74
    assert g["minimum"]["kind"] == "attained"
    assert g["minimum"]["x"] == pytest.approx(root, abs=1e-9)
    assert g["minimum"]["value"] == pytest.approx(root * big_phi(root), abs=1e-12)
    assert g["negative_slope_region"] == [[-math.inf, pytest.approx(root, abs=1e-9)]]


def test_softplus_slope_curvature_convexity(profiles: dict[str, dict]) -> None:
    s = profiles["softplus"]
    assert s["f_prime_0"]["value"] == pytest.approx(0.5, abs=TOL)
    assert s["f_second_0"]["value"] == pytest.approx(0.25, abs=TOL)
    assert s["inflection_text"] == "none"
    assert s["convex_text"] == "everywhere"
    assert s["minimum"]["kind"] == "infimum"
    assert s["minimum"]["value"] == 0.0


def test_kinks_are_detected_not_named(profiles: dict[str, dict]) -> None:
    relu = profiles["relu"]
    assert relu["f_prime_0"]["defined"] is False
    assert (relu["f_prime_0"]["left"], relu["f_prime_0"]["right"]) == (0.0, 1.0)
    assert relu["f_second_0"]["defined"] is False
    assert relu["f_prime_m1"]["value"] == 0.0  # the closed form is exactly 0
    assert relu["kinks_f_prime"] == [{"x": 0.0, "left": 0.0, "right": 1.0}]
    assert relu["zero_slope_negative"][0]["interval"] == [-math.inf, 0.0]
    assert relu["minimum"] == {
        "kind": "interval",
        "value": 0.0,
        "interval": [-math.inf, 0.0],
        "text": "0 on (-inf, 0]",
    }
    assert "undefined" in relu["inflection_text"]
    leaky = profiles["leaky_relu"]
    assert leaky["f_prime_m1"]["value"] == pytest.approx(0.01, abs=1e-12)
    assert leaky["minimum"]["kind"] == "unbounded"
    # ELU (α = 1) is C¹ but not C²: f′(0) exists, f″ jumps from α = 1 to 0.
    elu = profiles["elu"]
    assert elu["f_prime_0"]["value"] == pytest.approx(1.0, abs=TOL)
    assert elu["f_second_0"]["defined"] is False
    assert elu["f_second_0"]["left"] == pytest.approx(1.0, abs=1e-6)
    assert elu["f_second_0"]["right"] == 0.0
    assert elu["minimum"]["value"] == pytest.approx(-1.0, abs=1e-12)
    # Smooth functions report no kinks, and affine / odd ones get honest inflection labels.
    assert profiles["gelu"]["kinks_f_prime"] == profiles["gelu"]["kinks_f_second"] == []
    assert profiles["identity"]["inflection_text"] == "none (f'' = 0)"
    assert profiles["identity"]["convex_text"] == "everywhere (affine)"
    assert profiles["tanh"]["inflections"] == pytest.approx([0.0], abs=1e-12)
    assert profiles["tanh"]["convex_region"] == [[-math.inf, pytest.approx(0.0, abs=1e-12)]]


def test_find_jumps_separates_steps_from_steep_slopes() -> None:
    grid = atlas.window_grid()
    steep = atlas.find_jumps(lambda x: np.tanh(300.0 * np.asarray(x)), grid)
    assert steep == []  # changes by ~0.3 per grid step, but is continuous
    step = atlas.find_jumps(lambda x: np.where(np.asarray(x) > 0.3, 2.0, -1.0), grid)
    assert len(step) == 1
    assert step[0]["x"] == pytest.approx(0.3, abs=1e-9)
    assert (step[0]["left"], step[0]["right"]) == (-1.0, 2.0)


def test_minimum_and_zero_slope_ignore_rounding(profiles: dict[str, dict]) -> None:
    # x·Φ(x) + φ(x) rounds slightly below 0 near x = -8; that must not become "the minimum".
    assert profiles["noisy_relu"]["minimum"]["kind"] == "infimum"
    assert profiles["noisy_relu"]["minimum"]["value"] == 0.0
    # tanh-GELU's slope rounds to exactly 0 far left; a precision-dependent zero is labelled.
    kinds = {z["kind"] for z in profiles["gelu_tanh"]["zero_slope_negative"]}
    assert kinds == {"root", "rounding"}
    assert atlas.vanishing_point("relu", torch.float32) == 0.0
    assert atlas.vanishing_point("elu", torch.float64) is None
    v32 = atlas.vanishing_point("gelu", torch.float32)
    assert v32 is not None and -7.0 < v32 < -4.0


def test_curvature_matched_beta_and_gaps() -> None:
    sig = atlas.sigmoid_match()
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


def test_tail_laws_distinguish_gaussian_from_exponential(profiles: dict[str, dict]) -> None:
    gelu, silu, gsig = (profiles[n]["tail"] for n in ("gelu", "silu", "gelu_sigmoid"))
    assert gelu["order"] == 2 and gelu["leading_coefficient"] == pytest.approx(-0.5, abs=0.05)
    assert silu["order"] == 1 and silu["leading_coefficient"] == pytest.approx(-1.0, abs=0.05)
    assert silu["log_x_coefficient"] == pytest.approx(1.0, abs=0.2)
    assert gsig["order"] == 1 and gsig["leading_coefficient"] == pytest.approx(-1.702, abs=0.05)
    assert profiles["noisy_relu"]["tail"]["approach"] == "above"
    assert profiles["relu"]["tail"]["kind"] == profiles["identity"]["tail"]["kind"] == "exact"
    assert profiles["tanh"]["tail"]["kind"] == "no_decay"
    # float64 x − f(x) at 5 is accurate; the same subtraction in float32 is visibly not.
    exact = 5 * big_phi(-5)
    assert gelu["deviation_at_5_float64"] == pytest.approx(exact, rel=1e-6)
    assert abs(gelu["deviation_at_5_float32"] - exact) / exact > 1e-4


def test_noisy_relu_monte_carlo_and_a_wrong_formula_fails() -> None:
    mc = atlas.mc_noisy_relu(xs=(-1.0, 0.0, 0.5, 1.0), sigmas=(0.5, 1.5), n=2**19, seed=3)
    ok = mc["correct"]
    assert ok["n"] == 8 and ok["max_se"] < atlas.MC_SE_BOUND
    assert ok["all_within_limit"] and ok["passes"]
    for name, wrong in mc["wrong"].items():
        assert wrong["max_abs_z"] > atlas.Z_LIMIT, name
        assert not wrong["passes"], name


def test_stochastic_gate_monte_carlo_and_wrong_formulas_fail() -> None:
    mc = atlas.mc_stochastic_gate(xs=(-2.0, -1.0, 0.0, 0.5, 1.5), n=2**18, seed=5)
    assert [r["tested"] for r in mc["rows"]] == [True, True, False, True, True]  # x = 0: no spread
    ok = mc["correct"]
    assert ok["n"] == 4 and ok["max_se"] < atlas.MC_SE_BOUND
    assert ok["all_within_limit"] and ok["passes"]
    # Even the close sigmoid approximation (max gap 0.02) is rejected at this precision.
    for name, wrong in mc["wrong"].items():
        assert wrong["n_beyond_limit"] >= 3 and not wrong["passes"], name


def test_born_dead_matches_closed_form_for_width_one_relu() -> None:
    # Width 1, zero bias: layer 1 is alive on half the inputs, and each later ReLU layer is dead
    # exactly when its single weight is negative, so P(dead by depth d) = 1 − 2^−(d−1).
    trials = 4000
    res = atlas.born_dead(["relu", "identity"], widths=(1,), depths=(2, 3, 5), trials=trials)
    for d in (2, 3, 5):
        cell = res["rows"]["relu"][f"1x{d}"]
        p = 1 - 2.0 ** -(d - 1)
        assert abs(cell["share"] - p) < 4 * math.sqrt(p * (1 - p) / trials)
        assert cell["exact"] == cell["dead"]
        assert res["rows"]["identity"][f"1x{d}"]["dead"] == 0


def test_born_dead_relative_tolerance_does_not_flag_shrinking_linear_nets() -> None:
    res = atlas.born_dead(["identity", "relu"], widths=(2,), depths=(10, 50), trials=300)
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
