"""The yardsticks of one simulated survey file (GalaxySet.yardsticks), beside its best-case template fit.

- `template_onstamp`: the best-case templates, prior and error floor (zpeft.simsurvey.photoz.hsc_wide_photoz)
  fitted to photometry measured on the file's own cutouts (zpeft.yardsticks.onstamp), as magnitudes;
- `bpz`: desc-bpz's shipped templates and prior (zpeft.yardsticks.bpz) fitted to the catalogue magnitudes;
- `bpz_onstamp`: the same to the on-stamp magnitudes.
Both BPZ fits get the same errors as the best case (the survey's error floor added in quadrature), so what differs
from it is the templates and prior only. The on-stamp photometry, the BPZ template table and the fits are cached
under $ZPEFT_CACHE keyed by their inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zpeft.checksum import sha256_file
from zpeft.simsurvey.photometry import mag_error, to_mag
from zpeft.simsurvey.photoz import hsc_wide_photoz
from zpeft.simsurvey.presets import SurveyConfig, config_hash
from zpeft.simsurvey.reference import catalogue_magnitudes
from zpeft.yardsticks import bpz, onstamp
from zpeft.yardsticks.cache import cached, input_key

VERSION = 1  # bump when a yardstick's fit changes: cached fits of an older version are not reused


def onstamp_magnitudes(path: str | Path, pixel_scale: float, n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(magnitudes, errors) (N, bands) measured on the first `n_rows` cutouts of a file, as the catalogue writes
    them (zero point 27; a flux below its error floored there, an upper limit)."""
    measured = onstamp.file_photometry(path, pixel_scale)
    rows = slice(None if n_rows is None else n_rows)
    flux, error = measured["flux"][rows], measured["error"][rows]
    return to_mag(flux, error), mag_error(flux, error)


def survey_yardsticks(path: str | Path, config: SurveyConfig, seed: int, label_model: str, pixel_scale: float,
                      n_rows: int | None = None) -> dict[str, np.ndarray]:
    """Name (zpeft.run.records.YARDSTICKS) -> (N,) float32 photo-z of the first `n_rows` galaxies of a survey file.

    The fits are cached too, keyed by the file's bytes, the survey's config, seed and label model, the rows, BPZ's
    template table (so other filter curves refit) and the versions of the photometry, of desc-bpz and of this
    module: reading a survey again costs no fit.
    """
    def build() -> dict[str, np.ndarray]:
        mag, magerr = catalogue_magnitudes(path, n_rows)
        on_mag, on_err = onstamp_magnitudes(path, pixel_scale, n_rows)
        floor = config.deep_error_floor
        best = hsc_wide_photoz(on_mag, on_err, config, seed, label_model).z_median
        return {"template_onstamp": best.astype(np.float32),
                "bpz": bpz.bpz_from_magnitudes(mag, magerr, error_floor=floor),
                "bpz_onstamp": bpz.bpz_from_magnitudes(on_mag, on_err, error_floor=floor)}

    key = input_key("yardsticks", VERSION, onstamp.VERSION, bpz.package_version(), bpz.template_fluxes(),
                    sha256_file(path), config_hash(config, seed=seed, label_model=label_model), float(pixel_scale), n_rows)
    return cached("fits", key, build)
