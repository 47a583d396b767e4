"""Split-conformal calibration of point redshifts: intervals and p(z) from a run's own validation residuals.

The conformity score is r = (z - z_pred) / (1 + z) = -dz, the normalised residual every zpeft
metric uses (sign flipped so that r grows with z). crepes' ConformalPredictiveSystem, fitted on
the validation galaxies' r, gives each test galaxy a conformal predictive distribution (CPD) of r;
z = (z_pred + r) / (1 - r) is increasing in r whenever z_pred > -1, so quantiles, intervals and
p-values of r are those of z and the coverage guarantee carries over unchanged. The Mondrian
variant calibrates each i-band magnitude bin on its own residuals: marginal coverage can hide
faint galaxies being badly covered.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from zpeft.data.checks import Z_RANGE

LEVELS = (0.68, 0.95)  # the intervals every run reports and every catalogue carries
# p(z) as quantiles (qp.quant's representation): both intervals' ends, the median and a few in between.
PZ_LEVELS = (0.025, 0.05, 0.1, 0.16, 0.25, 0.5, 0.75, 0.84, 0.9, 0.95, 0.975)
MIN_PER_BIN = 100  # calibration galaxies per magnitude bin (95 % intervals need >= 39; 100 keeps them stable)
MAX_BINS = 4


@dataclass(frozen=True)
class Calibration:
    """Sorted validation residuals r per i-magnitude bin; one bin (no edges) is the marginal calibration."""

    residuals: tuple[np.ndarray, ...]  # sorted r of each bin, faintest last
    edges: tuple[float, ...] = ()  # interior i-magnitude edges between the bins (len(residuals) - 1 of them)

    @classmethod
    def fit(cls, z_pred: np.ndarray, z: np.ndarray, mag: np.ndarray | None = None, *,
            min_per_bin: int = MIN_PER_BIN, max_bins: int = MAX_BINS) -> "Calibration":
        """Calibrate on validation predictions and labels: marginal without `mag`, Mondrian by magnitude with it.

        Magnitude bins are quantiles of the validation magnitudes, as many as keep `min_per_bin`
        galaxies each (at most `max_bins`); too few galaxies for two bins gives one.
        """
        r = residuals(z_pred, z, "validation")
        if mag is None:
            return cls((np.sort(r),))
        mag = np.asarray(mag, dtype=np.float64)
        if mag.shape != r.shape:
            raise ValueError(f"validation magnitudes have {mag.size} values for {r.size} galaxies")
        k = int(min(max_bins, max(1, r.size // min_per_bin)))
        finite = mag[np.isfinite(mag)]
        edges = tuple(float(e) for e in np.unique(np.quantile(finite, np.arange(1, k) / k))) if finite.size else ()
        while edges:  # a bin without galaxies (tied magnitudes) merges into its neighbour: each bin must calibrate
            sizes = np.bincount(cls((), edges).bin_index(mag), minlength=len(edges) + 1)
            if sizes.min() > 0:
                break
            empty = int(np.argmin(sizes))
            edges = edges[:empty] + edges[empty + 1:] if empty < len(edges) else edges[:-1]
        if not edges:
            return cls((np.sort(r),))
        index = cls((), edges).bin_index(mag)
        return cls(tuple(np.sort(r[index == b]) for b in range(len(edges) + 1)), edges)

    @property
    def mondrian(self) -> bool:
        return bool(self.edges)

    @property
    def sizes(self) -> list[int]:
        return [len(r) for r in self.residuals]

    def bin_index(self, mag: np.ndarray | None) -> np.ndarray | None:
        """Each galaxy's magnitude bin (0 = brightest); galaxies without a finite magnitude go to the faintest."""
        if not self.edges:
            return None
        if mag is None:
            raise ValueError("this calibration is magnitude-conditional (Mondrian): pass the i-band magnitudes")
        mag = np.asarray(mag, dtype=np.float64)
        index = np.searchsorted(np.asarray(self.edges), mag, side="right")
        index[~np.isfinite(mag)] = len(self.edges)
        return index

    def _cps(self):
        from crepes import ConformalPredictiveSystem

        if not self.mondrian:
            return ConformalPredictiveSystem().fit(self.residuals[0])
        r = np.concatenate(self.residuals)
        bins = np.repeat(np.arange(len(self.residuals)), self.sizes)
        return ConformalPredictiveSystem().fit(r, bins=bins)

    def quantiles(self, z_pred: np.ndarray, levels=PZ_LEVELS, mag: np.ndarray | None = None) -> np.ndarray:
        """(N, len(levels)) redshift quantiles of each galaxy's conformal predictive distribution.

        Levels below 0.5 take crepes' "lower" percentile, the others its "higher" one, so an
        interval between levels p and 1 - p covers at least 1 - 2p (the split-conformal guarantee).
        """
        levels = np.asarray(levels, dtype=np.float64)
        if levels.ndim != 1 or np.any(np.diff(levels) <= 0) or levels[0] <= 0 or levels[-1] >= 1:
            raise ValueError(f"quantile levels must increase strictly within (0, 1), got {levels.tolist()}")
        z_pred = np.asarray(z_pred, dtype=np.float64)
        low, high = levels[levels < 0.5], levels[levels >= 0.5]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # crepes warns when a bin is too small for a level; it then says +-inf
            r = self._cps().predict(np.zeros_like(z_pred), bins=self.bin_index(mag),
                                    lower_percentiles=list(100 * low) or None,
                                    higher_percentiles=list(100 * high) or None)
        return to_redshift(z_pred[:, None], np.asarray(r, dtype=np.float64).reshape(len(z_pred), -1))

    def interval(self, z_pred: np.ndarray, level: float, mag: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The central `level` conformal interval (lo, hi) of each galaxy's redshift."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"interval level must be between 0 and 1, got {level}")
        q = self.quantiles(z_pred, ((1 - level) / 2, (1 + level) / 2), mag)
        return q[:, 0], q[:, 1]

    def pit(self, z_pred: np.ndarray, z: np.ndarray, mag: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
        """Each galaxy's CPD evaluated at its reference z: the PIT (crepes' smoothed p-value, ties broken at random,
        so a calibrated system gives exactly uniform values)."""
        r = residuals(z_pred, z, "test")
        return np.asarray(self._cps().predict_p(np.zeros_like(r), r, bins=self.bin_index(mag), smoothing=True,
                                                seed=seed), dtype=np.float64).ravel()

    def to_dict(self) -> dict:
        """JSON-ready form (what `zpeft export` ships): edges and each bin's sorted residuals."""
        return {"score": "r = (z - z_pred) / (1 + z)", "inverse": "z = (z_pred + r) / (1 - r)",
                "magnitude_band": "i" if self.mondrian else None, "edges": list(self.edges),
                "residuals": [r.tolist() for r in self.residuals], "z_range": list(Z_RANGE)}

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        try:
            return cls(tuple(np.sort(np.asarray(r, dtype=np.float64)) for r in data["residuals"]),
                       tuple(float(e) for e in data["edges"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"calibration is malformed ({err}); expected keys 'residuals' and 'edges'") from None


def residuals(z_pred: np.ndarray, z: np.ndarray, what: str) -> np.ndarray:
    """r = (z - z_pred) / (1 + z) of paired arrays; ValueError naming `what` for mismatched or non-finite input."""
    z_pred, z = np.asarray(z_pred, dtype=np.float64), np.asarray(z, dtype=np.float64)
    if z_pred.shape != z.shape or z.ndim != 1 or z.size == 0:
        raise ValueError(f"{what} set: {z_pred.size} predictions for {z.size} labels (need equal, non-empty 1-D)")
    if not (np.all(np.isfinite(z_pred)) and np.all(np.isfinite(z))) or np.any(z <= -1):
        raise ValueError(f"{what} set: predictions and labels must be finite with labels > -1")
    return (z - z_pred) / (1.0 + z)


def to_redshift(z_pred: np.ndarray, r: np.ndarray) -> np.ndarray:
    """z = (z_pred + r) / (1 - r), clipped to the label range Z_RANGE (clipping keeps every label's coverage).

    r = -inf / +inf (a bin too small for a level) give the range's ends. A prediction <= -1 (where the map is not
    increasing) gets the range's ends too, lo for r < 0 and hi otherwise: the widest interval, no claim.
    """
    lo, hi = Z_RANGE
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (z_pred + r) / (1.0 - r)
    z = np.where(np.isneginf(r), lo, np.where(np.isposinf(r) | (r >= 1.0), hi, z))
    z = np.where(np.broadcast_to(z_pred <= -1.0, z.shape), np.where(r < 0, lo, hi), z)
    return np.clip(z, lo, hi)
