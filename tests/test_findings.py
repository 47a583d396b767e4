"""Findings: the joint seed-and-galaxy bootstrap, p and intervals that agree, Holm, and the primary family."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zpeft.report.findings import (
    PRIMARY_MAX,
    VS_BEST,
    VS_HEAD,
    VS_ZERO,
    Comparison,
    compare_block,
    primary_metrics,
    primary_pairs,
    truncate_primary,
    with_verdicts,
)
from zpeft.report.resampling import (
    bootstrap_p,
    excludes_zero_at,
    holm,
    holm_stepdown,
    min_resamples,
    percentile_interval,
)

METRICS3 = ("bias", "sigma_nmad", "outlier_015")


def test_holm_matches_the_textbook_example():
    # m = 4: sorted p 0.01, 0.02, 0.03, 0.04 -> 0.04, 0.06, 0.06 (monotone), 0.06; order restored.
    p = np.array([0.03, 0.01, 0.04, 0.02])
    assert holm(p) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="p-values"):
        holm(np.array([0.1, 1.5]))


def test_p_never_goes_below_what_the_resamples_resolve():
    far = np.linspace(1.0, 2.0, 999)  # every replicate above zero
    assert bootstrap_p(far) == pytest.approx(2 / 1000) and bootstrap_p(far) >= 1 / 1000
    assert bootstrap_p(-far) == bootstrap_p(far)
    assert bootstrap_p(np.zeros(100)) == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_interval_excludes_zero_exactly_when_p_is_at_most_its_level(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rng.integers(50, 3000))
        draws = rng.normal(rng.normal(0, 2), 1.0, n).round(int(rng.integers(1, 4)))  # rounding makes ties and zeros
        alpha = float(rng.choice([0.05, 0.01, 0.003, 0.05 / 17, 0.32]))
        lo, hi = percentile_interval(draws, alpha)
        excluded = lo > 0 or hi < 0
        assert excluded == excludes_zero_at(draws, alpha) == (bootstrap_p(draws) <= alpha + 1e-12)


def test_too_few_resamples_give_an_unresolved_interval_not_a_false_claim():
    draws = np.linspace(1.0, 2.0, 99)  # all positive, but 99 replicates cannot resolve alpha = 0.001
    assert percentile_interval(draws, 0.001) == (-np.inf, np.inf)
    assert not excludes_zero_at(draws, 0.001) and bootstrap_p(draws) > 0.001
    assert min_resamples(48, 0.05) >= 2 * 48 / 0.05 - 1


@pytest.mark.parametrize("seed", range(4))
def test_holm_intervals_exclude_zero_exactly_for_the_significant(seed):
    rng = np.random.default_rng(seed)
    family = [rng.normal(rng.choice([0.0, 0.5, 1.5, 3.0, 4.0]), 1.0, 2000) for _ in range(30)]
    significant, levels = holm_stepdown(family, 0.05)
    for draws, sig, a in zip(family, significant, levels):
        lo, hi = percentile_interval(draws, a)
        assert (lo > 0 or hi < 0) == sig
    adjusted = holm(np.array([bootstrap_p(d) for d in family]))
    assert ((adjusted <= 0.05) == significant).all()
    assert significant.any() and not significant.all()


def _truth(rng, n=800):
    return rng.uniform(0.05, 2.0, n)


def _noisy(rng, z, scale=0.03):
    return z + scale * (1 + z) * rng.standard_normal(z.size)


def _block(runs, z, pairs, metrics=METRICS3, n_boot=400, level=0.95):
    rows = compare_block(runs, z, pairs, metrics, n_boot=n_boot).assign(family="exploratory")
    return with_verdicts(rows, level)


def test_identical_predictions_give_exactly_zero_difference():
    rng = np.random.default_rng(1)
    z = _truth(rng)
    runs = {"a": {0: _noisy(rng, z), 1: _noisy(rng, z)}}
    runs["b"] = {s: p.copy() for s, p in runs["a"].items()}
    out = _block(runs, z, [Comparison("a", "b", "test")])
    assert (out["diff"] == 0).all() and (out["lo"] == 0).all() and (out["hi"] == 0).all()
    assert (out["p"] == 1.0).all() and (out["seeds"] == 2).all()


def test_seeds_are_paired_not_crossed():
    rng = np.random.default_rng(2)
    z = _truth(rng)
    # a's seed s equals b's seed s, but the seeds differ a lot: resampling seeds together keeps every difference 0.
    s0, s1 = _noisy(rng, z, 0.01), _noisy(rng, z, 0.08)
    out = _block({"a": {0: s0, 1: s1}, "b": {0: s0.copy(), 1: s1.copy(), 2: s0}}, z, [Comparison("a", "b", "t")])
    assert (out["hi"] - out["lo"] == 0).all() and (out["seeds"] == 2).all()


def test_interval_widens_with_seed_spread():
    """Per-seed predictions that disagree (one seed much worse than another) must widen the interval: the seed
    draw carries the between-seed variance that averaging over fixed seeds would leave out."""
    rng = np.random.default_rng(7)
    z = _truth(rng, 1500)
    base = {s: _noisy(rng, z, 0.03) for s in range(4)}
    agree = {s: _noisy(rng, z, 0.02) for s in range(4)}  # every seed equally good
    scales = (0.005, 0.035, 0.005, 0.035)  # same mean scatter over seeds, but the seeds disagree
    disagree = {s: _noisy(rng, z, scale) for s, scale in zip(range(4), scales)}
    pair = [Comparison("a", "b", "t")]
    width = {}
    for name, a in (("agree", agree), ("disagree", disagree)):
        row = _block({"a": a, "b": base}, z, pair, ("sigma_nmad",), n_boot=1000).iloc[0]
        width[name] = row["hi"] - row["lo"]
    assert width["disagree"] > 2 * width["agree"], width


def test_a_real_difference_is_significant_in_the_primary_family():
    rng = np.random.default_rng(3)
    z = _truth(rng, 2000)
    runs = {"good": {s: _noisy(rng, z, 0.02) for s in (0, 1, 2)}, "bad": {s: _noisy(rng, z, 0.04) for s in (0, 1, 2)}}
    rows = compare_block(runs, z, [Comparison("good", "bad", "test")], METRICS3, n_boot=1000)
    out = with_verdicts(rows.assign(family="primary"), 0.95)
    row = out.set_index("metric").loc["sigma_nmad"]
    assert row["diff"] < 0 and row["hi"] < 0 and row["significant"]
    assert (out["p"] >= 1 / 1001).all()


def test_biases_are_compared_by_magnitude():
    # a is biased by -0.01, b by +0.02: a's bias is smaller in size, so |a| - |b| < 0 (a - b would be near -0.03).
    rng = np.random.default_rng(5)
    z = rng.uniform(0.0, 2.0, 2000)
    noise = 0.01 * rng.standard_normal(z.size)
    runs = {"a": {0: z + (-0.01 + noise) * (1 + z)}, "b": {0: z + (0.02 + noise) * (1 + z)}}
    row = _block(runs, z, [Comparison("a", "b", "test")], ("bias",)).iloc[0]
    assert row["diff"] == pytest.approx(-0.01, abs=2e-3)
    assert -0.015 < row["lo"] < row["hi"] < -0.005


def test_equal_strategies_rarely_give_any_significant_primary_claim():
    rng = np.random.default_rng(4)
    z = _truth(rng, 600)
    variants = {"zero-shot": "zero-shot", "head-only": "head-only", **{f"v{i}": "lora" for i in range(4)}}
    comparisons, _ = primary_pairs(variants, {})
    false_families, repeats = 0, 10
    for _ in range(repeats):
        runs = {v: {s: _noisy(rng, z) for s in (0, 1, 2)} for v in variants}
        rows = compare_block(runs, z, comparisons, ("sigma_nmad",), n_boot=500).assign(family="primary")
        false_families += bool(with_verdicts(rows, 0.95)["significant"].any())
    assert false_families / repeats <= 0.2  # family-wise rate 5 %: at most 2 of 10 by chance


def test_primary_family_has_no_mirrored_or_null_by_construction_pairs():
    variants = {"zero-shot": "zero-shot", "head-only": "head-only", "paper-tl": "paper-tl", "lora-r2": "lora",
                "lora-r4": "lora", "full": "full", "combined": "combined"}
    pairs, notes = primary_pairs(variants, {})
    names = [(c.a, c.b) for c in pairs]
    assert len({frozenset(p) for p in names}) == len(names), "a pair and its mirror"
    assert ("head-only", "zero-shot") in names and ("zero-shot", "head-only") not in names
    assert not any({"paper-tl", "zero-shot"} == set(p) for p in names)
    assert {(v, "head-only") for v in ("paper-tl", "lora-r2", "lora-r4", "full", "combined")} <= set(names)
    assert not any(c.reason == VS_BEST for c in pairs) and any("validation" in n for n in notes)
    pairs, _ = primary_pairs(variants, {"lora-r2": 0.3, "lora-r4": 0.2})
    assert Comparison("combined", "lora-r4", VS_BEST) in pairs
    assert [c.reason for c in pairs][:5] == [VS_HEAD] * 5 and pairs[-1].reason == VS_ZERO


def test_metrics_join_the_primary_family_only_while_it_fits():
    assert primary_metrics([8, 8]) == ("sigma_nmad", "bias", "outlier_015")  # 48
    assert primary_metrics([13, 13]) == ("sigma_nmad",)  # 52 with |bias|: no room
    assert primary_metrics([10, 14]) == ("sigma_nmad", "bias")  # 48, then no room for the third


def test_a_family_past_the_cap_keeps_its_first_48_and_says_so():
    frame = pd.DataFrame({"family": ["primary"] * 60 + ["exploratory"] * 3})
    notes = []
    out = truncate_primary(frame, notes)
    assert (out["family"] == "primary").sum() == PRIMARY_MAX and (out["family"][:PRIMARY_MAX] == "primary").all()
    assert notes and "12 primary" in notes[0]


def test_the_answer_reads_a_pair_either_way_round_and_its_ratio_from_the_same_replicates():
    from zpeft.report.answer import pair_draws, ratio_draws

    rng = np.random.default_rng(9)
    z = _truth(rng, 1500)
    runs = {"lora": {s: _noisy(rng, z, 0.02) for s in (0, 1)}, "tl": {s: _noisy(rng, z, 0.04) for s in (0, 1)}}
    rows = compare_block(runs, z, [Comparison("lora", "tl", "t")], ("sigma_nmad",), n_boot=300)
    forward, backward = pair_draws(rows, "lora", "tl", "sigma_nmad"), pair_draws(rows, "tl", "lora", "sigma_nmad")
    assert forward[0] == -backward[0] < 0 and np.array_equal(forward[1], -backward[1])
    ratio, draws = ratio_draws(rows, "lora", "tl", "sigma_nmad")
    assert ratio == pytest.approx(2.0, rel=0.1) and np.all(draws > 1.5)  # tl scatters twice as much as lora
    assert ratio_draws(rows, "tl", "lora", "sigma_nmad")[0] == pytest.approx(1 / ratio)
    assert pair_draws(rows, "lora", "other", "sigma_nmad") is None


def test_a_verdict_says_when_two_strategies_predicted_identically_instead_of_a_zero_detectable_size():
    from zpeft.report.findings import verdict_text

    same = pd.Series({"significant": False, "diff": 0.0, "detectable": 0.0})
    assert verdict_text(same) == "no difference found (identical predictions in every seed and resample)"
    close = pd.Series({"significant": False, "diff": 0.001, "detectable": 0.004})
    assert verdict_text(close) == "no difference found (could detect ±0.0040)"
    assert verdict_text(pd.Series({"significant": True, "diff": -0.01, "detectable": 0.004})) == "A better"
