"""Metric definitions (the README's Metrics section), input checks, bootstrap intervals and the evaluate() record."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from zpeft import metrics as M

# Six galaxies chosen so each metric's arithmetic is short:
#   z_ref  0     0      0    1    1    3
#   z_pred 0.02 -0.04   0.3  1.0  1.1  4.6
#   dz     0.02 -0.04   0.3  0    0.05 0.4     (z_pred - z_ref) / (1 + z_ref)
#   err    0.02 -0.04   0.3  0    0.1  1.6     z_pred - z_ref
# sorted dz: -0.04, 0, 0.02, 0.05, 0.3, 0.4
Z_REF = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 3.0])
Z_PRED = np.array([0.02, -0.04, 0.3, 1.0, 1.1, 4.6])

# P25 at position 5 * 0.25 = 1.25: 0 + 0.25 * (0.02 - 0) = 0.005
# P75 at position 5 * 0.75 = 3.75: 0.05 + 0.75 * (0.3 - 0.05) = 0.2375
SIGMA_IQR = (0.2375 - 0.005) / 1.349

HAND = {
    "bias": (0.02 + 0.05) / 2,  # median of six: mean of 3rd and 4th
    "bias_mean": (0.02 - 0.04 + 0.3 + 0 + 0.05 + 0.4) / 6,
    # |dz - 0.035| = 0.015, 0.075, 0.265, 0.035, 0.015, 0.365 -> sorted middle pair 0.035, 0.075
    "sigma_nmad": 1.4826 * (0.035 + 0.075) / 2,
    "sigma_iqr": SIGMA_IQR,
    "outlier_015": 2 / 6,  # 0.3 and 0.4
    # threshold max(0.06, 3 * 0.1724) = 0.517: nothing; the 0.06 floor alone would give 2/6
    "outlier_rail": 0 / 6,
    # only |4.6 - 3| = 1.6 > 1; its dz (0.4) would not count if normalised
    "catastrophic": 1 / 6,
    "rmse": math.sqrt((0.02**2 + 0.04**2 + 0.3**2 + 0 + 0.05**2 + 0.4**2) / 6),
    # 1 - 1/(1+x) = x/(1+x), x = (dz/0.15)^2: 4/229, 16/241, 4/5, 0, 1/10, 64/73
    "hsc_loss": (4 / 229 + 16 / 241 + 4 / 5 + 0 + 1 / 10 + 64 / 73) / 6,
}


def _survey(n: int, scatter: float, seed: int, outliers: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Reference z and predictions with Gaussian scatter in dz and a few wild outliers."""
    rng = np.random.default_rng(seed)
    z_ref = rng.uniform(0.0, 3.0, n)
    z_pred = z_ref + scatter * (1 + z_ref) * rng.standard_normal(n)
    wild = rng.random(n) < outliers
    z_pred[wild] = rng.uniform(0.0, 4.0, wild.sum())
    return z_pred, z_ref


def test_registry_has_exactly_the_design_metrics_with_directions():
    assert list(M.METRICS) == ["bias", "bias_mean", "sigma_nmad", "sigma_iqr", "outlier_015",
                               "outlier_rail", "catastrophic", "rmse", "hsc_loss"]
    assert M.LOWER_IS_BETTER["bias"] == M.LOWER_IS_BETTER["bias_mean"] == "abs"
    assert all(M.LOWER_IS_BETTER[k] == "lower" for k in M.METRICS if not k.startswith("bias"))


@pytest.mark.parametrize("name", list(HAND))
def test_each_metric_matches_hand_arithmetic(name):
    assert M.METRICS[name](Z_PRED, Z_REF) == pytest.approx(HAND[name], rel=1e-12, abs=1e-15)


def test_point_metrics_returns_every_metric_and_n():
    got = M.point_metrics(Z_PRED, Z_REF)
    assert got["n"] == 6
    assert {k: got[k] for k in HAND} == pytest.approx(HAND, rel=1e-12, abs=1e-15)


def test_outlier_rail_uses_the_006_floor_when_scatter_is_tiny():
    # dz = -0.05, 0, 0, 0, 0.07: P25 = P75 = 0 so sigma_iqr = 0 and the threshold is 0.06 -> only 0.07
    z_ref = np.zeros(5)
    z_pred = np.array([-0.05, 0.0, 0.0, 0.0, 0.07])
    assert M.sigma_iqr(z_pred, z_ref) == 0.0
    assert M.outlier_rail(z_pred, z_ref) == pytest.approx(1 / 5)


def test_sigma_nmad_agrees_with_astropy_mad_std_to_its_constant():
    from astropy.stats import mad_std

    d = M.dz(Z_PRED, Z_REF)
    # astropy scales by 1/Phi^-1(3/4) = 1.482602..., the design fixes 1.4826
    assert M.sigma_nmad(Z_PRED, Z_REF) == pytest.approx(mad_std(d) * 1.4826 / 1.482602218505602, rel=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["z_pred", "z_ref"])
def test_non_finite_input_names_the_array_and_the_count(bad, which):
    z_pred, z_ref = Z_PRED.copy(), Z_REF.copy()
    target = z_pred if which == "z_pred" else z_ref
    target[[1, 4]] = bad
    with pytest.raises(ValueError, match=rf"{which} has 2 NaN or inf values of 6"):
        M.point_metrics(z_pred, z_ref)


def test_mismatched_lengths_and_empty_input_are_refused():
    with pytest.raises(ValueError, match="z_ref has 5 values but z_pred has 6"):
        M.point_metrics(Z_PRED, Z_REF[:5])
    with pytest.raises(ValueError, match="z_pred is empty"):
        M.point_metrics(np.array([]), np.array([]))


def test_paper_range_excludes_03_and_includes_15():
    z = np.array([0.2999, 0.3, 0.3001, 1.0, 1.5, 1.5001])
    assert M.paper_range_mask(z).tolist() == [False, False, True, True, True, False]


def test_binned_metrics_bins_are_half_open_and_empty_bins_are_nan():
    z_ref = np.array([0.0, 0.3, 0.31, 0.6, 2.5])
    z_pred = z_ref + 0.01
    bins = M.binned_metrics(z_pred, z_ref, edges=[0.0, 0.3, 0.6, 1.0, 3.0])
    assert [(b["lo"], b["hi"], b["n"]) for b in bins] == [(0.0, 0.3, 2), (0.3, 0.6, 2), (0.6, 1.0, 0),
                                                        (1.0, 3.0, 1)]
    assert math.isnan(bins[2]["sigma_nmad"])
    assert bins[3]["bias"] == pytest.approx(0.01 / 3.5)


def test_bootstrap_interval_contains_point_and_shrinks_with_more_data():
    z_pred, z_ref = _survey(30_000, 0.03, seed=1)
    small = z_pred[:300], z_ref[:300]
    point = M.point_metrics(*small)
    iv_small = M.bootstrap_interval(*small, n_boot=500, seed=0)
    iv_large = M.bootstrap_interval(z_pred, z_ref, n_boot=500, seed=0)
    for name, (lo, hi) in iv_small.items():
        assert lo <= point[name] <= hi, name
    # 100x the galaxies: ~10x narrower. Only robust metrics: rmse and bias_mean hinge on how many
    # of the ~6 wild outliers the small sample happens to hold.
    for name in ("bias", "sigma_nmad", "sigma_iqr", "outlier_015", "hsc_loss"):
        lo, hi = iv_small[name]
        assert iv_large[name][1] - iv_large[name][0] < 0.3 * (hi - lo), name


def test_bootstrap_is_reproducible_by_seed():
    data = _survey(500, 0.03, seed=2)
    assert M.bootstrap_interval(*data, n_boot=100, seed=5) == M.bootstrap_interval(*data, n_boot=100, seed=5)
    assert M.bootstrap_interval(*data, n_boot=100, seed=5) != M.bootstrap_interval(*data, n_boot=100, seed=6)


def test_evaluate_structure_and_json_roundtrip():
    z_pred, z_ref = _survey(800, 0.03, seed=6)
    z_true = z_ref + 0.005 * np.random.default_rng(7).standard_normal(800)
    z_true = np.clip(z_true, 0.0, None)
    rec = M.evaluate(z_pred, z_ref, z_true, n_boot=100, seed=0, edges=[0.0, 1.0, 3.0, 6.0])
    assert set(rec) == {"label", "true"}
    for ref in rec.values():
        assert set(ref) == {"all", "paper_range", "bins"}
        assert ref["all"]["n"] == 800
        for name in M.METRICS:
            assert ref["all"][f"{name}_lo"] <= ref["all"][name] <= ref["all"][f"{name}_hi"], name
        assert 0 < ref["paper_range"]["n"] < 800
        assert [b["n"] for b in ref["bins"]][-1] == 0  # nothing above z = 3
        assert math.isnan(ref["bins"][-1]["sigma_nmad_hi"])
    assert rec["label"]["all"]["bias"] == M.point_metrics(z_pred, z_ref)["bias"]
    assert rec["true"]["all"]["bias"] == M.point_metrics(z_pred, z_true)["bias"]
    text = json.dumps(rec, allow_nan=True)
    assert json.loads(text)["label"]["paper_range"]["n"] == rec["label"]["paper_range"]["n"]
    # NaN appears only in empty blocks
    nonempty = [rec["label"]["all"], rec["label"]["paper_range"], *rec["label"]["bins"][:-1]]
    assert all(math.isfinite(v) for block in nonempty for v in block.values())


def test_evaluate_without_true_z_has_only_label():
    z_pred, z_ref = _survey(200, 0.03, seed=8)
    assert set(M.evaluate(z_pred, z_ref, n_boot=20, seed=0)) == {"label"}


def test_evaluate_checks_true_z():
    z_true = Z_REF.copy()
    z_true[0] = np.nan
    with pytest.raises(ValueError, match="z_true has 1 NaN"):
        M.evaluate(Z_PRED, Z_REF, z_true, n_boot=10, seed=0)


def test_seed_summary_mean_and_sample_std():
    # mean 2, deviations -1, 0, 1: sample variance 2 / 2 = 1
    assert M.seed_summary([1.0, 2.0, 3.0]) == (2.0, 1.0)
    mean, std = M.seed_summary([0.5])
    assert mean == 0.5 and math.isnan(std)
    with pytest.raises(ValueError, match="non-finite"):
        M.seed_summary([1.0, float("nan")])


def test_comparable_folds_only_signed_metrics():
    assert M.comparable("bias", -0.02) == 0.02
    assert M.comparable("sigma_nmad", 0.02) == 0.02
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        M.comparable("nope", 1.0)


def test_metrics_scored_together_equal_each_metric_alone_even_from_several_threads():
    from concurrent.futures import ThreadPoolExecutor

    from zpeft.metrics import METRICS, _all_rows

    rng = np.random.default_rng(0)
    arrays = [rng.normal(0.01 * i, 0.05 * (i + 1), (40, 2000)) for i in range(6)]
    alone = [{name: m.rows(a, 2 * a) for name, m in METRICS.items()} for a in arrays]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda a: _all_rows(a, 2 * a), arrays * 4))
    for i, rows in enumerate(together):  # shared medians and sigma_iqr: bitwise the same, never another array's
        for name, values in rows.items():
            np.testing.assert_array_equal(values, alone[i % len(arrays)][name])
