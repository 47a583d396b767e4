"""Findings: Holm correction, paired-by-seed bootstrap, the pre-specified family and its error rate."""

from __future__ import annotations

import numpy as np
import pytest

from zpeft.report.findings import Comparison, bootstrap_p, compare_block, family, holm, with_holm

METRICS3 = ("bias", "sigma_nmad", "outlier_015")


def test_holm_matches_the_textbook_example():
    # m = 4: sorted p 0.01, 0.02, 0.03, 0.04 -> 0.04, 0.06, 0.06 (monotone), 0.06; order restored.
    p = np.array([0.03, 0.01, 0.04, 0.02])
    assert holm(p) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="p-values"):
        holm(np.array([0.1, 1.5]))


def test_bootstrap_p_is_two_sided_and_resolves_below_one_over_n_boot():
    rng = np.random.default_rng(0)
    draws = rng.standard_normal(1000)
    draws = (draws - draws.mean()) / draws.std(ddof=1)
    assert bootstrap_p(draws + 5.0) < 1e-4  # far below 1/1000: a large Holm family can still find it
    assert bootstrap_p(draws + 1.96) == pytest.approx(bootstrap_p(draws - 1.96), rel=0.2)
    assert 0.02 < bootstrap_p(draws + 1.96) < 0.1
    assert bootstrap_p(np.zeros(100)) == 1.0 and bootstrap_p(np.full(100, 0.2)) == 0.0


def _truth(rng, n=800):
    z = rng.uniform(0.05, 2.0, n)
    return z


def _noisy(rng, z, scale=0.03):
    return z + scale * (1 + z) * rng.standard_normal(z.size)


def test_identical_predictions_give_exactly_zero_difference_per_shared_resample():
    rng = np.random.default_rng(1)
    z = _truth(rng)
    runs = {"a": {0: _noisy(rng, z), 1: _noisy(rng, z)}}
    runs["b"] = {s: p.copy() for s, p in runs["a"].items()}
    out = compare_block(runs, z, [Comparison("a", "b", "test")], METRICS3, level=0.95, n_boot=200)
    assert (out["diff"] == 0).all() and (out["lo"] == 0).all() and (out["hi"] == 0).all()
    assert (out["p"] == 1.0).all() and (out["seeds"] == 2).all()


def test_seeds_are_paired_not_crossed():
    rng = np.random.default_rng(2)
    z = _truth(rng)
    # a's seed 0 equals b's seed 0 and a's seed 1 equals b's seed 1, but the seeds differ a lot: pairing gives 0.
    s0, s1 = _noisy(rng, z, 0.01), _noisy(rng, z, 0.08)
    out = compare_block({"a": {0: s0, 1: s1}, "b": {0: s0.copy(), 1: s1.copy(), 2: s0}}, z,
                        [Comparison("a", "b", "test")], METRICS3, level=0.95, n_boot=100)
    assert (out["hi"] - out["lo"] == 0).all() and (out["seeds"] == 2).all()


def test_a_real_difference_is_significant_after_holm():
    rng = np.random.default_rng(3)
    z = _truth(rng, 2000)
    runs = {"good": {s: _noisy(rng, z, 0.02) for s in (0, 1)}, "bad": {s: _noisy(rng, z, 0.04) for s in (0, 1)}}
    out = with_holm(compare_block(runs, z, [Comparison("good", "bad", "test")], METRICS3, level=0.95,
                                  n_boot=300), 0.05)
    row = out.set_index("metric").loc["sigma_nmad"]
    assert row["diff"] < 0 and row["hi"] < 0 and row["significant"]


def test_biases_are_compared_by_magnitude():
    # a is biased by -0.01, b by +0.02: a's bias is smaller in size, so |a| - |b| < 0 (a - b would be near -0.03).
    rng = np.random.default_rng(5)
    z = rng.uniform(0.0, 2.0, 2000)
    noise = 0.01 * rng.standard_normal(z.size)
    runs = {"a": {0: z + (-0.01 + noise) * (1 + z)}, "b": {0: z + (0.02 + noise) * (1 + z)}}
    row = compare_block(runs, z, [Comparison("a", "b", "test")], ("bias",), level=0.95, n_boot=300).iloc[0]
    assert row["diff"] == pytest.approx(-0.01, abs=2e-3)
    assert -0.015 < row["lo"] < row["hi"] < -0.005 and row["p"] < 0.01


def test_equal_strategies_rarely_give_any_holm_significant_claim():
    rng = np.random.default_rng(4)
    z = _truth(rng, 600)
    variants = {"head-only": "head-only", **{f"v{i}": "lora" for i in range(5)}}
    comparisons, _ = family(variants, {})
    false_families, repeats = 0, 12
    for _ in range(repeats):
        runs = {v: {s: _noisy(rng, z) for s in (0, 1)} for v in variants}
        out = with_holm(compare_block(runs, z, comparisons, METRICS3, level=0.95, n_boot=200), 0.05)
        false_families += bool(out["significant"].any())
    assert false_families / repeats <= 0.17  # family-wise rate 5 %: at most 2 of 12 by chance


def test_family_is_pre_specified_and_skips_combined_without_validation():
    variants = {"zero-shot": "zero-shot", "head-only": "head-only", "lora-r2": "lora", "lora-r4": "lora",
                "full": "full", "combined": "combined"}
    pairs, notes = family(variants, {})
    names = {(c.a, c.b) for c in pairs}
    assert {(v, "head-only") for v in variants if v != "head-only"} <= names
    assert {("lora-r2", "full"), ("lora-r4", "full")} <= names
    assert not any(c.a == "combined" and c.b != "head-only" for c in pairs)
    assert any("validation" in n for n in notes)
    pairs, _ = family(variants, {"lora-r2": 0.3, "lora-r4": 0.2})
    assert Comparison("combined", "lora-r4", "combined vs the adapter best on validation loss") in pairs
    pairs, _ = family({**variants, "tl": "paper-tl"}, {})
    assert ("lora-r2", "tl") in {(c.a, c.b) for c in pairs}
