"""A run's error bars: calibrate on its own spec-z validation predictions, score every test set, catalogue columns.

Only validation labels are read to calibrate; test labels enter the scores alone. Each run gets a
marginal calibration and, where the validation set has i-band magnitudes, a Mondrian one by
i-magnitude bin; catalogues use the Mondrian one wherever the galaxies' i magnitudes are known
(`preferred`), since it keeps faint galaxies covered as well as bright ones, and `zpeft export`
ships both (`calibration_file`).
"""

from __future__ import annotations

import numpy as np

from zpeft.data import GalaxySet
from zpeft.uncertainty.conformal import LEVELS, PZ_LEVELS, Calibration
from zpeft.uncertainty.scores import magnitude_edges, score

BAND = "i"  # the magnitude Mondrian bins and magnitude tables use
VARIANTS = ("marginal", "mondrian")


def calibrate(validation: GalaxySet, z_pred: np.ndarray) -> dict[str, Calibration]:
    """{"marginal": ..., "mondrian": ...} from validation predictions; "mondrian" only where i-mags are known."""
    out = {"marginal": Calibration.fit(z_pred, validation.z)}
    if BAND in validation.mags:
        out["mondrian"] = Calibration.fit(z_pred, validation.z, validation.mags[BAND])
    return out


def usable(calibrations: dict[str, Calibration], galaxies: GalaxySet) -> dict[str, Calibration]:
    """The calibrations that apply to `galaxies`: a magnitude-conditional one needs their i magnitudes."""
    return {name: cal for name, cal in calibrations.items() if not cal.mondrian or BAND in galaxies.mags}


def preferred(calibrations: dict[str, Calibration], galaxies: GalaxySet) -> tuple[str, Calibration]:
    """The calibration catalogues use for `galaxies`: Mondrian where it applies, else marginal."""
    name = "mondrian" if "mondrian" in usable(calibrations, galaxies) else "marginal"
    return name, calibrations[name]


def calibration_file(calibrations: dict[str, Calibration]) -> dict:
    """What `calibration.json` holds: every variant (Calibration.to_dict) and the one catalogues prefer."""
    return {"preferred": "mondrian" if "mondrian" in calibrations else "marginal",
            "variants": {name: cal.to_dict() for name, cal in calibrations.items()}}


def score_tests(calibrations: dict[str, Calibration], predictions: dict[str, np.ndarray],
                tests: dict[str, GalaxySet], *, seed: int = 0) -> dict:
    """test set -> variant -> reference ("label", and "true" where known) -> `scores.score` block."""
    out: dict = {}
    for kind, z_pred in predictions.items():
        galaxies = tests[kind]
        mag = galaxies.mags.get(BAND)
        mag_edges = None if mag is None else magnitude_edges(mag)
        references = {"label": galaxies.z, **({} if galaxies.z_true is None else {"true": galaxies.z_true})}
        out[kind] = {name: {ref: score(cal, z_pred, z_ref, mag, seed=seed, mag_edges=mag_edges)
                            for ref, z_ref in references.items()}
                     for name, cal in usable(calibrations, galaxies).items()}
    return out


def catalogue_columns(calibration: Calibration, galaxies: GalaxySet, z_pred: np.ndarray) -> dict[str, np.ndarray]:
    """z_lo_68, z_hi_68, z_lo_95, z_hi_95 and z_quantiles (N x len(PZ_LEVELS): p(z) as qp.quant locs)."""
    mag = galaxies.mags.get(BAND) if calibration.mondrian else None
    quantiles = calibration.quantiles(z_pred, PZ_LEVELS, mag)
    columns = {}
    for level in LEVELS:
        tag, low = round(100 * level), round((1 - level) / 2, 3)
        columns[f"z_lo_{tag}"] = quantiles[:, PZ_LEVELS.index(low)]
        columns[f"z_hi_{tag}"] = quantiles[:, PZ_LEVELS.index(round(1 - low, 3))]
    columns["z_quantiles"] = quantiles
    return {k: np.asarray(v, dtype=np.float32) for k, v in columns.items()}
