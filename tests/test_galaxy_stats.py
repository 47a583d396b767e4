"""The per-galaxy statistics behind the astronomer plots: metrics per magnitude bin and the running median of dz."""

from __future__ import annotations

import numpy as np
import pytest

from zpeft.metrics import point_metrics
from zpeft.report.galaxies import MIN_PER_BIN, GalaxyArrays, magnitude_bins, magnitude_edges, running_median


def _arrays(seed: int = 0, n: int = 600) -> GalaxyArrays:
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 2.0, n)
    mag = rng.uniform(18.0, 24.0, n)
    # Fainter galaxies get noisier predictions, as in a real survey.
    z_pred = z + (1 + z) * rng.normal(0.0, 0.01 * (mag - 17.0))
    return GalaxyArrays(z_label=z, z_true=z, magnitude=mag, predictions={("a", 0): z_pred})


def test_magnitude_bins_score_each_bin_like_point_metrics_on_its_galaxies():
    arrays = _arrays()
    table = magnitude_bins({"spec": arrays}, n_boot=50)
    edges = magnitude_edges({"spec": arrays})
    assert edges[0] == 18.0 and edges[-1] == 24.0 and np.allclose(np.diff(edges), 1.0)
    assert len(table) == 6 and set(table["reference"]) == {"label"}
    row = table[table["lo"] == 21.0].iloc[0]
    mask = (arrays.magnitude > 21.0) & (arrays.magnitude <= 22.0)
    expected = point_metrics(arrays.predictions["a", 0][mask], arrays.z_label[mask])
    assert row["n"] == mask.sum()
    assert row["sigma_nmad"] == pytest.approx(expected["sigma_nmad"])
    assert row["sigma_nmad_lo"] < row["sigma_nmad"] < row["sigma_nmad_hi"]
    # The scatter grows with magnitude, as simulated: the faintest bin is worse than the brightest.
    assert table["sigma_nmad"].iloc[-1] > 2 * table["sigma_nmad"].iloc[0]


def test_sparse_bins_and_missing_magnitudes_are_left_out():
    arrays = _arrays(n=200)
    arrays.magnitude[:] = 20.5
    arrays.magnitude[:MIN_PER_BIN - 1] = 23.5  # too few galaxies for a bin of their own
    table = magnitude_bins({"spec": arrays}, n_boot=20)
    assert list(table["lo"]) == [20.0]
    assert magnitude_bins({"spec": GalaxyArrays(z_label=arrays.z_label)}, n_boot=20).empty


def test_photo_test_set_is_scored_against_the_true_redshift():
    arrays = _arrays()
    arrays.z_label = arrays.z_label + 0.3  # noisy photo-z labels
    table = magnitude_bins({"photo": arrays}, n_boot=20)
    assert set(table["reference"]) == {"true"}
    assert table["sigma_nmad"].max() < 0.2  # against the labels it would be dominated by their 0.3 offset


def test_running_median_follows_a_redshift_dependent_bias():
    z = np.linspace(0.1, 3.0, 1000)
    z_pred = z + 0.05 * z * (1 + z)  # dz = 0.05 z
    z_mid, median, p16, p84 = running_median(z, z_pred, n_points=10)
    assert len(z_mid) == 10 and np.all(np.diff(z_mid) > 0)
    assert median == pytest.approx(0.05 * z_mid, rel=0.02)
    assert np.all(p16 <= median) and np.all(median <= p84)
