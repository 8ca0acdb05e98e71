"""The ranking's rules (order, could-be-best, letters, constant differences, divergence, power)
on hand-made scores and records, and the procedure's error rates and power on thousands of
simulated sweeps, vectorised through the same functions the report calls."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from actbench import records
from actbench.report import analysis, cli, stats, tables
from test_report import write_run

ALPHA = stats.ALPHA


def _unit_scores(means: dict[str, float], noise: dict[str, float], seeds: int, rng) -> dict:
    """activation -> seed -> score: a shared seed effect plus each activation's own noise."""
    shared = rng.normal(0, 0.02, seeds)
    return {
        a: dict(enumerate(mu + shared + rng.normal(0, noise[a], seeds))) for a, mu in means.items()
    }


# ----------------------------------------------------------------------------- the rules


def test_close_activations_could_both_be_best_and_a_far_one_gets_its_own_letter():
    base = np.array([0.60, 0.65, 0.62, 0.70, 0.58])
    scores = {
        "a": dict(enumerate(base + np.array([0.01, -0.01, 0.005, -0.005, 0.0]))),
        "b": dict(enumerate(base + np.array([-0.005, 0.01, -0.01, 0.0, 0.005]))),
        "c": dict(enumerate(base - 0.2 + np.array([0.001, -0.001, 0.002, 0.0, -0.002]))),
    }
    rank = stats.ranking(scores)
    rows = {r.activation: r for r in rank.rows}
    assert [r.activation for r in rank.rows] == ["a", "b", "c"]
    assert rows["a"].could_be_best and rows["b"].could_be_best and not rows["c"].could_be_best
    assert rows["c"].worse_than == ["a", "b"] and rows["a"].worse_than == []
    assert (rows["a"].letters, rows["b"].letters, rows["c"].letters) == ("a", "a", "b")
    assert rank.different[("a", "c")] and not rank.different[("a", "b")]
    vs = stats.baseline_family(scores, "a")
    assert vs["c"][0].diff == pytest.approx(-0.2, abs=1e-3) and vs["c"][1] < 0.05
    assert vs["b"][1] > 0.05


def test_a_lower_mean_never_stands_above_a_higher_one():
    # The quick sweep's case: a precise activation just below the first is shown worse than
    # it, while a noisy one further down is not. The old rank (1 + number significantly
    # better) put the noisy one at rank 1 above the precise one at rank 2.
    scores = {
        "relu": {s: 0.642 + d for s, d in enumerate([0.0, 0.001, -0.001, 0.0005, -0.0005])},
        "gelu": {s: 0.639 + d for s, d in enumerate([0.0005, 0.001, -0.0015, 0.0, -0.0005])},
        "tanh": {s: 0.60 + d for s, d in enumerate([0.08, -0.09, 0.07, -0.06, 0.02])},
    }
    rows = stats.rank_activations(scores)
    assert [(r.position, r.activation) for r in rows] == [(1, "relu"), (2, "gelu"), (3, "tanh")]
    gelu, tanh = rows[1], rows[2]
    assert gelu.worse_than == ["relu"] and not gelu.could_be_best
    assert tanh.could_be_best  # too noisy to be shown worse: in the set, below gelu
    rng = np.random.default_rng(3)
    for _ in range(200):  # and in general: positions follow the means
        m = int(rng.integers(2, 7))
        noise = {f"a{i}": float(rng.uniform(0.001, 0.05)) for i in range(m)}
        means = {a: float(rng.uniform(0.5, 0.7)) for a in noise}
        rows = stats.rank_activations(_unit_scores(means, noise, 5, rng))
        assert [r.position for r in rows] == list(range(1, m + 1))
        assert all(x.mean >= y.mean for x, y in itertools.pairwise(rows))


def test_constant_paired_differences_follow_the_stated_rule():
    a = {s: 0.70 + 0.01 * s for s in range(5)}
    b = {s: v - 0.004 for s, v in a.items()}  # a - b = 0.004 on every seed (up to rounding)
    test = stats.paired_t_test(a, b)
    assert test.rule == stats.SIGN_RULE and test.n == 5
    assert test.p == pytest.approx(2 * 0.5**5)  # two-sided sign test: all 5 seeds agree
    assert stats.p_lower(np.array([b[s] - a[s] for s in a])) == pytest.approx(0.5**5)
    assert stats.p_lower(np.array([a[s] - b[s] for s in a])) == 1.0
    # in a unit of two, 0.5^5 = 0.031 < alpha: b is shown worse, a stays the only candidate
    rows = {r.activation: r for r in stats.rank_activations({"a": a, "b": b})}
    assert not rows["b"].could_be_best and rows["b"].worse_than == ["a"]
    assert rows["a"].rules == {"b": stats.SIGN_RULE}
    # with 4 seeds, 0.5^4 = 0.0625: all seeds agree, not enough to separate
    four = {s: a[s] for s in range(4)}
    assert stats.rank_activations({"a": four, "b": b})[1].could_be_best
    # zero difference everywhere is no difference
    same = stats.paired_t_test(a, dict(a))
    assert same.p == 1.0 and same.rule == stats.NO_DIFFERENCE and same.diff == 0.0
    # one shared seed: untestable, not shown different
    one = stats.paired_t_test({0: 0.9}, {0: 0.1})
    assert math.isnan(one.p) and one.rule == stats.UNTESTABLE
    assert all(r.could_be_best for r in stats.rank_activations({"a": {0: 0.9}, "b": {0: 0.1}}))


def test_three_of_five_diverged_is_never_first_nor_could_be_best(tmp_path: Path):
    sweep = tmp_path / "s"
    for seed in range(5):
        write_run(sweep, "relu", seed, test_acc=0.80 + 0.002 * seed)
        write_run(sweep, "gelu", seed, test_acc=0.79 + 0.003 * seed)
        # the two survivors are the best runs of the sweep
        flaky = "completed" if seed < 2 else "diverged"
        write_run(sweep, "mish", seed, test_acc=0.95, status=flaky)
    (unit,) = analysis.analyse(analysis.read_runs(sweep))
    rows = {r.activation: r for r in unit.rows}
    assert [r.activation for r in unit.rows] == ["relu", "gelu", "mish"]
    mish = rows["mish"]
    assert mish.position == 3 and mish.unstable and not mish.could_be_best
    assert (mish.n, mish.diverged) == (5, 3)
    assert mish.mean == pytest.approx((2 * 0.95 + 3 * 0.1) / 5)  # diverged seeds at chance
    # Even where chance scoring leaves it the highest mean, an unstable activation is listed
    # after every stable one and is never a candidate for best.
    scores = {"x": {0: 0.99, 1: 0.99, 2: 0.5, 3: 0.5, 4: 0.5}, "y": dict.fromkeys(range(5), 0.6)}
    rows = {r.activation: r for r in stats.rank_activations(scores, {"x": {2, 3, 4}})}
    x, y = rows["x"], rows["y"]
    assert x.mean > y.mean and (y.position, x.position) == (1, 2)
    assert x.unstable and not x.could_be_best and y.could_be_best
    assert stats.is_unstable(3, 5) and stats.is_unstable(1, 2) and not stats.is_unstable(2, 5)


def test_letters_are_exact_and_non_monotone_letters_are_noted():
    rng = np.random.default_rng(0)
    for _ in range(300):
        m = int(rng.integers(1, 8))
        upper = np.triu(rng.random((m, m)) < 0.4, 1)
        different = upper | upper.T
        order = list(rng.permutation(m))
        letters = stats.compact_letters(different, order)
        for i, j in itertools.combinations(range(m), 2):
            assert bool(set(letters[i]) & set(letters[j])) == (not different[i, j])
        assert "a" in letters[order[0]]
    # 0 and 2 differ, 1 is between them by position yet differs from neither... and 0-1, 1-2
    # differ while 0-2 do not: letter a joins 0 and 2 and skips 1.
    different = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=bool)
    assert stats.compact_letters(different, [0, 1, 2]) == ["a", "b", "a"]
    assert stats.non_monotone_letters(different, [0, 1, 2]) == [("a", [0, 2], [1])]


def test_holm_vectorised_matches_one_family_at_a_time():
    rng = np.random.default_rng(1)
    p = rng.random((50, 6)) ** 3
    p[rng.random((50, 6)) < 0.2] = math.nan
    batch = stats.holm(p)
    for row, adjusted in zip(p, batch, strict=True):
        finite = np.isfinite(row)
        order = np.argsort(row[finite])
        k = finite.sum()
        expected = np.maximum.accumulate(np.minimum(1, (k - np.arange(k)) * row[finite][order]))
        np.testing.assert_allclose(adjusted[finite][order], expected)
        assert np.isnan(adjusted[~finite]).all()


def test_power_figures_match_their_definition_and_the_committed_spread():
    # The figures: paired SD 2.7 points, 9 activations, 5 seeds.
    p = stats.unit_power(
        {
            f"a{i}": dict(enumerate(np.random.default_rng(i).normal(0, 0.027 / 2**0.5, 40)))
            for i in range(9)
        }
    )
    assert p.m == 9 and p.level_best == pytest.approx(ALPHA / 8)
    assert p.level_pairwise == pytest.approx(ALPHA / 36)
    assert stats.paired_power(p.mde_best, p.pooled_sd, p.n, p.level_best) == pytest.approx(0.8)
    assert stats.paired_power(p.mde_pairwise, p.pooled_sd, p.n, p.level_pairwise, 2) == (
        pytest.approx(0.8)
    )
    k = p.seeds_1pt_best
    assert stats.paired_power(0.01, p.pooled_sd, k, p.level_best) >= 0.8
    assert stats.paired_power(0.01, p.pooled_sd, k - 1, p.level_best) < 0.8
    sd, n, level = 0.027, 5, ALPHA / 8
    assert 0.06 < stats.min_detectable(sd, n, level) < 0.08  # ~7 points at 5 seeds
    assert 80 < stats.seeds_needed(0.01, sd, level) < 110  # ~90 seeds for 1 point
    assert math.isnan(stats.min_detectable(0.0, 5, level))
    assert stats.seeds_needed(0.01, math.nan, level) is None


# ----------------------------------------------------------------------------- simulations

SIMS, M, N = 2000, 5, 5
SE = math.sqrt(ALPHA * (1 - ALPHA) / SIMS)  # Monte Carlo s.e. of an error rate at alpha
SD_NOISE = 0.02  # per-run noise; paired differences have SD 0.02 * sqrt(2)


def _sweeps(rng, effect: np.ndarray | None = None) -> np.ndarray:
    """SIMS sweeps of M activations x N seeds: a seed effect shared by every activation plus
    independent noise, and ``effect`` added per activation."""
    x = rng.normal(0, 0.03, (SIMS, 1, N)) + rng.normal(0, SD_NOISE, (SIMS, M, N))
    return x if effect is None else x + effect[None, :, None]


def test_no_true_effect_keeps_the_family_wise_errors_at_alpha():
    x = _sweeps(np.random.default_rng(11))
    worse = stats.worse_matrix(x)
    # Could be best: each activation is a truly best one; its family (its m - 1 comparisons)
    # wrongly excludes it at most alpha of the time.
    excluded = ~stats.could_be_best(worse)
    assert excluded.mean(0).max() <= ALPHA + 3 * SE
    # (the README states both this per-activation rate and the chance that any is excluded)
    assert 0.02 < excluded.mean() < 0.06 and 0.12 < excluded.any(-1).mean() < 0.26
    # Letters: any separation of two equal activations anywhere in the display.
    assert stats.pairwise_different(worse).any((-1, -2)).mean() <= ALPHA + 3 * SE
    # The check can fail: without Holm the same data exclude equal activations far too often.
    unadjusted = (np.nan_to_num(worse, nan=1.0) < ALPHA).any(-1)
    assert unadjusted.mean(0).min() > ALPHA + 3 * SE


def test_a_planted_effect_of_the_printed_size_is_found_at_the_printed_power():
    sd_pairs = SD_NOISE * math.sqrt(2)
    # What the report prints for such a unit (its pooled SD estimates sd_pairs; checked below).
    delta = stats.min_detectable(sd_pairs, N, ALPHA / (M - 1))
    effect = np.zeros(M)
    effect[0] = delta  # one best activation; the other four are each delta below it
    best = stats.could_be_best(stats.worse_matrix(_sweeps(np.random.default_rng(12), effect)))
    found = 1 - best[:, 1:].mean()  # how often a worse activation is out of the set
    assert 0.70 <= found <= 0.90
    assert best[:, 0].mean() >= 1 - ALPHA - 3 * SE  # and the best stays in
    # the letters' printed size is a bound: found at least that often
    pairwise = stats.min_detectable(sd_pairs, N, ALPHA / (M * (M - 1) // 2), sided=2)
    effect[0] = pairwise
    differ = stats.pairwise_different(
        stats.worse_matrix(_sweeps(np.random.default_rng(13), effect))
    )
    assert differ[:, 0, 1:].mean() >= 0.75
    # the pooled SD the report prints estimates the paired SD (within a few per cent)
    x = _sweeps(np.random.default_rng(14))[:300]
    pooled = [
        stats.pooled_paired_sd({str(i): dict(enumerate(s[i])) for i in range(M)})[0] for s in x
    ]
    assert np.mean(pooled) == pytest.approx(sd_pairs, rel=0.05)


# ----------------------------------------------------------------------------- records


def _with_device(folder: Path, device: str, name: str) -> None:
    summary = records.read_summary(folder)
    summary["reproducibility"] = {"device": device, "device_name": name}
    records.write_summary(folder, summary)


def test_mixed_device_kinds_are_flagged(tmp_path: Path):
    sweep = tmp_path / "multirun" / "mixed"
    for seed in range(3):
        for act, acc in (("relu", 0.80), ("silu", 0.81)):
            folder = write_run(sweep, act, seed, test_acc=acc + 0.01 * seed)
            on_cpu = act == "silu"
            _with_device(
                folder, "cpu" if on_cpu else f"cuda:{seed}", "x86_64" if on_cpu else "H100"
            )
    (unit,) = analysis.analyse(analysis.read_runs(sweep))
    assert unit.mixed_devices
    assert unit.device_kinds == {"cuda (H100)": 3, "cpu (x86_64)": 3}  # cuda:0..2: one kind
    out = tmp_path / "out"
    text = cli.build_report(sweep, out).read_text()
    assert "> **Mixed hardware** in mlp on mnist1d" in text
    assert "kinds of device (cpu (x86_64): `silu` 3; cuda (H100): `relu` 3)" in text
    with open(out / "ranking.csv", newline="") as f:
        assert {r["mixed_devices"] for r in csv.DictReader(f)} == {"True"}
    with open(out / "summary.csv", newline="") as f:
        assert {r["device"] for r in csv.DictReader(f)} == {"cuda (H100)", "cpu (x86_64)"}
    # one kind: no flag
    for folder in records.run_folders(sweep):
        _with_device(folder, "cpu", "x86_64")
    (unit,) = analysis.analyse(analysis.read_runs(sweep))
    assert not unit.mixed_devices
    assert "Mixed hardware" not in cli.build_report(sweep, out).read_text()


def test_ranking_csv_columns_and_values(tmp_path: Path):
    sweep = tmp_path / "multirun" / "demo"
    val = {"relu": {1e-3: 0.80, 1e-2: 0.85}, "gelu": {1e-3: 0.84, 1e-2: 0.82}}
    for act, by_lr in val.items():
        for lr, v in by_lr.items():
            for seed in (100, 101):
                write_run(sweep, act, seed, lr=lr, stage="tune", val_best=v)
    chosen = {"relu": 1e-2, "gelu": 1e-3}
    accs = {"relu": [0.80, 0.82, 0.81, 0.83, 0.79], "gelu": [0.70, 0.71, 0.69, 0.72, 0.70]}
    for act, values in accs.items():
        for seed, acc in enumerate(values):
            write_run(sweep, act, seed, lr=chosen[act], stage="confirm", test_acc=acc)
    write_run(sweep, "gelu", 5, lr=1e-3, stage="confirm", status="diverged")
    runs = analysis.read_runs(sweep)
    choices = records.select_per_group(
        [(r.override_list, r.summary) for r in runs if r.stage == "tune"], "optimizer.lr", "val/acc"
    )
    brackets = {
        g: {"bracketed": c.value != "0.01", "reason": None if c.value != "0.01" else "limit"}
        for g, c in choices.items()
    }
    records.write_selection(sweep, "optimizer.lr", "val/acc", "maximize", choices, brackets)
    out = tmp_path / "out"
    cli.build_report(sweep, out)
    with open(out / "ranking.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(tables.RANKING_COLUMNS)
    relu, gelu = rows
    assert (relu["position"], relu["activation"], gelu["position"], gelu["activation"]) == (
        "1", "relu", "2", "gelu",
    )  # fmt: skip
    assert float(relu["mean"]) == pytest.approx(0.81)
    mean, half = stats.t_interval(accs["relu"])
    assert float(relu["ci_low"]) == pytest.approx(mean - half)
    assert float(relu["ci_high"]) == pytest.approx(mean + half)
    assert (relu["n"], relu["diverged"], gelu["n"], gelu["diverged"]) == ("5", "0", "6", "1")
    assert float(gelu["mean"]) == pytest.approx((sum(accs["gelu"]) + 0.1) / 6)
    assert float(gelu["divergence_rate"]) == pytest.approx(1 / 6) and gelu["unstable"] == "False"
    assert (relu["could_be_best"], gelu["could_be_best"]) == ("True", "False")
    assert (relu["letters"], gelu["letters"], gelu["worse_than"]) == ("a", "b", "relu")
    assert float(gelu["delta_vs_best"]) == pytest.approx(-0.106)
    assert gelu["delta_boot"] == "seeds only" and relu["delta_vs_best"] == ""
    assert (float(relu["chosen_lr"]), float(gelu["chosen_lr"])) == (0.01, 0.001)
    assert (relu["bracketed"], relu["bracket_reason"]) == ("False", "limit")
    assert (gelu["bracketed"], gelu["bracket_reason"]) == ("True", "")
    assert relu["pooled_sd"] == gelu["pooled_sd"] != ""
    p = analysis.analyse(runs, records.read_selection(sweep))[0].power
    assert float(relu["mde_best"]) == pytest.approx(p.mde_best)
    assert int(relu["seeds_1pt_best"]) == p.seeds_1pt_best
    assert relu["alpha"] == "0.05" and relu["power"] == "0.8" and relu["power_seeds"] == "5"
    text = (out / "README.md").read_text()
    assert "| 0.01 | **no**: limit |" in text and "| 0.001 | yes |" in text


def test_a_collapsed_run_is_flagged(tmp_path: Path):
    sweep = tmp_path / "s"
    folder = write_run(sweep, "relu", 0)
    write_run(sweep, "relu", 1)
    with open(folder / "metrics.csv", "a", newline="") as f:  # the loss climbs back at the end
        f.write(",,,0,,300,,,4.5\n")
    runs = analysis.read_runs(sweep)
    flags = analysis.collapse_flags(runs)
    assert list(flags) == [folder]
    assert flags[folder].startswith("final val/loss 4.5 > 2 x its minimum 1.5 and > its first")
    out = tmp_path / "out"
    text = cli.build_report(sweep, out).read_text()
    assert "**Collapsed** ranked runs (counted as they are): `relu` seed 0 (final val/loss" in text
    with open(out / "summary.csv", newline="") as f:
        collapsed = {r["seed"]: r["collapsed"] for r in csv.DictReader(f)}
    assert collapsed["0"].startswith("final val/loss") and collapsed["1"] == ""
