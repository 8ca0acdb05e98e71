"""Tests for an activation's measured shape: exact closed forms, kink and root machinery,
minima, zero slopes and vanishing points that rounding must not fake, and tail laws. Closed forms
here are written with ``math`` so they are independent of torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from actbench import activation_shape, activation_tails

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
    return {n: activation_shape.profile(n) for n in names}


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
    grid = activation_shape.window_grid()
    steep = activation_shape.find_jumps(lambda x: np.tanh(300.0 * np.asarray(x)), grid)
    assert steep == []  # changes by ~0.3 per grid step, but is continuous
    step = activation_shape.find_jumps(lambda x: np.where(np.asarray(x) > 0.3, 2.0, -1.0), grid)
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
    assert activation_tails.vanishing_point("relu", torch.float32) == 0.0
    assert activation_tails.vanishing_point("elu", torch.float64) is None
    v32 = activation_tails.vanishing_point("gelu", torch.float32)
    assert v32 is not None and -7.0 < v32 < -4.0


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
