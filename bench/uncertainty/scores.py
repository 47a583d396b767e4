"""How honest a run's error bars are, scored as RAIL scores p(z): coverage, width, PIT (histogram, KS) and CRPS.

PIT is each galaxy's predictive CDF at its reference redshift (qp's `PIT`: `ens.cdf(truth)`), its KS
statistic the one qp's `PIT.evaluate_PIT_KS` computes (scipy's kstest against U(0, 1); a test checks
they agree). qp has no CRPS: it is computed from its definition for an ensemble of m equally
weighted values, CRPS = mean|x_i - y| - sum_i (2i - m - 1) x_(i) / m^2 (Gneiting & Raftery 2007,
eq. 21, the form of properscoring's crps_ensemble), checked in a test against the integral of
(F(x) - 1{x >= y})^2.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from zpeft.metrics import DEFAULT_EDGES, bin_masks
from zpeft.uncertainty.conformal import LEVELS, Calibration, to_redshift

PIT_BINS = 10
MAG_BINS = 4  # i-magnitude bins for coverage tables: quartiles of the test set's own magnitudes (fixed per dataset)
_CHUNK = 1 << 22  # atoms held at once when computing CRPS (tens of MB)


def coverage(lo: np.ndarray, hi: np.ndarray, z: np.ndarray) -> float:
    """Fraction of galaxies whose reference z lies in [lo, hi]."""
    return float(np.mean((z >= lo) & (z <= hi)))


def pit_histogram(pit: np.ndarray, n_bins: int = PIT_BINS) -> list[float]:
    """Fraction of PIT values in each of `n_bins` equal bins of [0, 1] (flat at 1 / n_bins when calibrated)."""
    counts, _ = np.histogram(np.clip(pit, 0.0, 1.0), bins=n_bins, range=(0.0, 1.0))
    return (counts / max(1, len(pit))).tolist()


def pit_ks(pit: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of the PIT values from U(0, 1), as qp's PIT.evaluate_PIT_KS computes it."""
    from scipy import stats

    return float(stats.kstest(pit, stats.uniform.cdf).statistic)


def crps_ensemble(atoms: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of each row's equally weighted `atoms` (sorted along the last axis) against its y."""
    atoms = np.asarray(atoms, dtype=np.float64)
    m = atoms.shape[-1]
    weights = (2.0 * np.arange(1, m + 1) - m - 1) / (m * m)
    return np.mean(np.abs(atoms - y[:, None]), axis=-1) - atoms @ weights


def crps(calibration: Calibration, z_pred: np.ndarray, z: np.ndarray, mag: np.ndarray | None = None) -> np.ndarray:
    """Per-galaxy CRPS of the conformal predictive distribution (its m calibration atoms) against z."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty(len(z))
    for rows, atoms in _chunked_atoms(calibration, z_pred, mag):
        out[rows] = crps_ensemble(atoms, z[rows])
    return out


def _chunked_atoms(calibration: Calibration, z_pred: np.ndarray, mag: np.ndarray | None):
    z_pred = np.asarray(z_pred, dtype=np.float64)
    index = calibration.bin_index(mag)
    for b, r in enumerate(calibration.residuals):
        rows = np.arange(len(z_pred)) if index is None else np.flatnonzero(index == b)
        step = max(1, _CHUNK // max(1, r.size))
        for start in range(0, rows.size, step):
            part = rows[start:start + step]
            yield part, to_redshift(z_pred[part, None], r[None, :])


def magnitude_edges(mag: np.ndarray, n_bins: int = MAG_BINS) -> list[float]:
    """Edges of `n_bins` quantile bins of the finite magnitudes (outer edges included)."""
    finite = np.asarray(mag, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return np.unique(np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1))).tolist() if finite.size else []


def score(calibration: Calibration, z_pred: np.ndarray, z_ref: np.ndarray, mag: np.ndarray | None = None, *,
          seed: int = 0, z_edges: Sequence[float] = DEFAULT_EDGES, mag_edges: Sequence[float] | None = None) -> dict:
    """Coverage and width at LEVELS, PIT histogram and KS, mean CRPS: whole set, per z_ref bin, per i-mag bin.

    JSON-ready; a bin without galaxies has n = 0 and NaN values (written as null).
    """
    z_pred, z_ref = np.asarray(z_pred, dtype=np.float64), np.asarray(z_ref, dtype=np.float64)
    cal_mag = mag if calibration.mondrian else None
    bounds = {level: calibration.interval(z_pred, level, cal_mag) for level in LEVELS}
    inside = {level: (z_ref >= lo) & (z_ref <= hi) for level, (lo, hi) in bounds.items()}
    width = {level: hi - lo for level, (lo, hi) in bounds.items()}
    pit = calibration.pit(z_pred, z_ref, cal_mag, seed=seed)

    def block(mask: np.ndarray) -> dict:
        n = int(mask.sum())
        out: dict = {"n": n}
        for level in LEVELS:
            tag = round(100 * level)
            out[f"coverage_{tag}"] = float(inside[level][mask].mean()) if n else float("nan")
            out[f"width_{tag}"] = float(width[level][mask].mean()) if n else float("nan")
        return out

    everything = np.ones(len(z_ref), dtype=bool)
    out = block(everything)
    out.update(pit_ks=pit_ks(pit), pit_hist=pit_histogram(pit),
               crps=float(np.mean(crps(calibration, z_pred, z_ref, cal_mag))), calibration_bins=calibration.sizes)
    out["z_bins"] = [{"lo": lo, "hi": hi, **block(m)} for lo, hi, m in bin_masks(z_ref, z_edges)]
    if mag is not None:
        edges = magnitude_edges(mag) if mag_edges is None else list(mag_edges)
        mag = np.asarray(mag, dtype=np.float64)
        out["mag_bins"] = [{"lo": lo, "hi": hi, **block((mag > lo) & (mag <= hi) | ((mag == lo) & (i == 0)))}
                           for i, (lo, hi) in enumerate(zip(edges, edges[1:]))]
    return out
