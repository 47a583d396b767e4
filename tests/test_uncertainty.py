"""Conformal error bars: coverage on synthetic residuals, the Mondrian fix for faint galaxies, no test label read,
and PIT / KS / CRPS equal to qp's or to their documented formulas."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zpeft.run.records import strict_json
from zpeft.uncertainty import LEVELS, PZ_LEVELS, Calibration, score
from zpeft.uncertainty.scores import crps, crps_ensemble, pit_ks

FAINT = 23.75  # the faintest quarter of i-mag in [20, 25]: the last of Calibration.fit's four quantile bins


def synthetic(n: int, seed: int, faint_scatter: float = 0.02):
    """Galaxies with i-mag in [20, 25]; dz ~ N(0, 0.02), except the faintest quarter, scattered by `faint_scatter`."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.05, 2.5, n)
    mag = rng.uniform(20.0, 25.0, n)
    sigma = np.where(mag > FAINT, faint_scatter, 0.02)
    z_pred = z + rng.normal(0.0, 1.0, n) * sigma * (1 + z)
    return z_pred, z, mag


def test_marginal_coverage_is_nominal_within_one_point_on_a_large_held_out_set():
    cal = Calibration.fit(*synthetic(20_000, seed=1)[:2])
    z_pred, z, _ = synthetic(200_000, seed=2)
    for level in LEVELS:
        lo, hi = cal.interval(z_pred, level)
        assert abs(np.mean((z >= lo) & (z <= hi)) - level) < 0.01, level


def test_mondrian_calibration_fixes_the_faint_bin_the_marginal_one_undercovers():
    val, test = synthetic(20_000, seed=3, faint_scatter=0.08), synthetic(100_000, seed=4, faint_scatter=0.08)
    faint = test[2] > FAINT
    marginal, mondrian = Calibration.fit(*val[:2]), Calibration.fit(*val)
    assert mondrian.mondrian and not marginal.mondrian
    for level in LEVELS:
        lo, hi = marginal.interval(test[0], level)
        marginal_faint = np.mean(((test[1] >= lo) & (test[1] <= hi))[faint])
        lo, hi = mondrian.interval(test[0], level, test[2])
        inside = (test[1] >= lo) & (test[1] <= hi)
        assert marginal_faint < level - 0.1, (level, marginal_faint)  # the gap marginal coverage hides
        assert abs(np.mean(inside[faint]) - level) < 0.02, level
        assert abs(np.mean(inside[~faint]) - level) < 0.02, level


def test_mondrian_bins_keep_enough_calibration_galaxies():
    z_pred, z, mag = synthetic(250, seed=5)
    cal = Calibration.fit(z_pred, z, mag)
    assert len(cal.residuals) == 2 and min(cal.sizes) >= 100
    assert Calibration.fit(z_pred[:150], z[:150], mag[:150]).sizes == [150]


def test_intervals_read_no_test_label():
    cal = Calibration.fit(*synthetic(2_000, seed=6))
    z_pred, z, mag = synthetic(1_000, seed=7)
    shuffled = np.random.default_rng(0).permutation(z)
    first, second = score(cal, z_pred, z, mag), score(cal, z_pred, shuffled, mag)
    assert first["coverage_68"] != second["coverage_68"]  # the labels matter to the scores, not to the intervals
    assert [first[f"width_{t}"] for t in (68, 95)] == [second[f"width_{t}"] for t in (68, 95)]
    assert [b["width_68"] for b in first["mag_bins"]] == [b["width_68"] for b in second["mag_bins"]]


def test_interval_ends_are_the_p_z_quantiles_and_nest():
    cal = Calibration.fit(*synthetic(2_000, seed=8)[:2])
    z_pred = synthetic(500, seed=9)[0]
    q = cal.quantiles(z_pred, PZ_LEVELS, None)
    assert np.all(np.diff(q, axis=1) >= 0)
    lo68, hi68 = cal.interval(z_pred, 0.68)
    lo95, hi95 = cal.interval(z_pred, 0.95)
    np.testing.assert_array_equal(lo68, q[:, PZ_LEVELS.index(0.16)])
    np.testing.assert_array_equal(hi95, q[:, PZ_LEVELS.index(0.975)])
    assert np.all(lo95 <= lo68) and np.all(hi68 <= hi95) and np.all(lo95 >= 0)


def test_pit_is_the_conformal_cdf_at_the_label():
    """Documented formula: with m calibration residuals r_k, PIT = (#{r_k < r} + U (#{r_k == r} + 1)) / (m + 1)."""
    rng = np.random.default_rng(10)
    cal = Calibration.fit(rng.uniform(0, 2, 300), rng.uniform(0, 2, 300))
    z_pred, z = rng.uniform(0, 2, 50), rng.uniform(0, 2, 50)
    pit = cal.pit(z_pred, z, seed=3)
    r = (z - z_pred) / (1 + z)
    below = (cal.residuals[0][None, :] < r[:, None]).sum(axis=1)
    m = len(cal.residuals[0])
    assert np.all(pit >= below / (m + 1) - 1e-12) and np.all(pit <= (below + 1) / (m + 1) + 1e-12)


def test_pit_ks_equals_qp():
    qp = pytest.importorskip("qp")
    from qp.metrics.pit import PIT
    from scipy import stats

    rng = np.random.default_rng(11)
    loc, scale = rng.uniform(0.2, 2.0, 400), rng.uniform(0.02, 0.2, 400)
    truth = loc + scale * rng.standard_t(4, 400)
    ensemble = qp.Ensemble(qp.stats.norm, data=dict(loc=loc[:, None], scale=scale[:, None]))
    expected = PIT(ensemble, truth)
    ours = stats.norm.cdf(truth, loc, scale)  # the PIT's definition: each CDF at its truth
    np.testing.assert_allclose(ours, expected.pit_samps, atol=1e-6)
    assert abs(pit_ks(ours) - expected.evaluate_PIT_KS().statistic) < 1e-6


def test_crps_equals_the_integral_of_the_squared_cdf_difference():
    rng = np.random.default_rng(12)
    atoms = np.sort(rng.normal(1.0, 0.3, (20, 37)), axis=1)
    y = rng.normal(1.0, 0.4, 20)
    for row, truth, got in zip(atoms, y, crps_ensemble(atoms, y)):
        # (F - 1{x >= y})^2 is constant between consecutive points of atoms + {y}: integrate it exactly
        points = np.sort(np.append(row, truth))
        mids = (points[:-1] + points[1:]) / 2
        cdf = np.searchsorted(row, mids, side="right") / row.size
        expected = np.sum((cdf - (mids >= truth)) ** 2 * np.diff(points))
        assert abs(got - expected) < 1e-6
    assert crps_ensemble(np.array([[0.7]]), np.array([0.2]))[0] == pytest.approx(0.5)  # one atom: |x - y|


def test_crps_of_a_calibration_uses_its_redshift_atoms():
    cal = Calibration.fit(*synthetic(400, seed=13)[:2])
    z_pred, z, _ = synthetic(30, seed=14)
    r = cal.residuals[0]
    atoms = np.clip((z_pred[:, None] + r) / (1 - r), 0.0, 6.0)
    np.testing.assert_allclose(crps(cal, z_pred, z), crps_ensemble(atoms, z), atol=1e-12)


def test_score_is_calibrated_on_held_out_data_and_json_ready():
    cal = Calibration.fit(*synthetic(5_000, seed=15))
    out = score(cal, *synthetic(20_000, seed=16))
    assert abs(out["coverage_68"] - 0.68) < 0.015 and abs(out["coverage_95"] - 0.95) < 0.01
    assert out["pit_ks"] < 0.02 and abs(sum(out["pit_hist"]) - 1) < 1e-9
    assert len(out["mag_bins"]) == 4 and sum(b["n"] for b in out["mag_bins"]) == 20_000
    assert sum(b["n"] for b in out["z_bins"]) == 20_000
    json.dumps(strict_json(out), allow_nan=False)  # as records are written (empty z bins: null)


def test_calibration_round_trips_through_its_dict():
    cal = Calibration.fit(*synthetic(1_000, seed=17))
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    z_pred, _, mag = synthetic(100, seed=18)
    np.testing.assert_array_equal(back.interval(z_pred, 0.95, mag), cal.interval(z_pred, 0.95, mag))
    with pytest.raises(ValueError, match="i-band magnitudes"):
        cal.interval(z_pred, 0.68)


def test_tied_magnitudes_leave_no_bin_without_calibration_galaxies():
    z_pred, z, _ = synthetic(1_000, seed=19)
    mag = np.where(np.arange(1_000) < 900, 22.0, 24.0)  # 90 % share one magnitude: quantile edges collapse
    cal = Calibration.fit(z_pred, z, mag)
    assert min(cal.sizes) > 0 and sum(cal.sizes) == 1_000
    lo, hi = cal.interval(z_pred, 0.68, mag)
    assert np.all(hi > lo)
