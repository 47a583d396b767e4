"""The simulated survey's best-case non-ML reference: a template fit to each file's five catalogue magnitudes (grizy).

A best case twice over: the magnitudes are the true fluxes plus HSC-Wide noise (not photometry measured on the
cutouts the CNNs see; zpeft.yardsticks.onstamp measures that), and the templates and p(z | i) prior are drawn
from the simulator's own galaxy population (an off-the-shelf fit has neither; zpeft.yardsticks.bpz).

The files' `photoz_label` / `lp_zPDF_CLASSIC` are the deep u + grizy + YJH label fit, deeper and with more
bands than the images; the reference the report scores beside the CNNs must see what they see. It is
fitted when a pair is read, from the manifest's config, seed and label model, so it is the same every
load and needs no new file. Only the test splits are fitted (the report scores nothing else): on the
quick preset (7,431 test galaxies) that adds about 7 s to a read on 2 shared cores (2 s templates and
prior, 4 s fit, imports); every split would fit 36,562 galaxies, about 22 s.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from zpeft.simsurvey.photometry import HSC_BANDS
from zpeft.simsurvey.photoz import hsc_wide_photoz
from zpeft.simsurvey.presets import SurveyConfig, config_from_dict, config_hash

FITTED_SPLITS = ("test",)  # the splits a read pair gets the reference for; the others have none


def manifest_config(manifest: dict) -> tuple[SurveyConfig, int, str]:
    """(config, seed, label model) a simulated pair was made with, checked against its config hash."""
    missing = [k for k in ("config", "seed", "label_model", "config_hash") if k not in manifest]
    if missing:
        raise ValueError(f"simulated pair {manifest.get('name')!r}: manifest lacks {', '.join(missing)}")
    if not isinstance(manifest["config"], dict):
        raise ValueError(f"simulated pair {manifest.get('name')!r}: manifest's config is not a table")
    config, seed, label_model = config_from_dict(manifest["config"]), int(manifest["seed"]), manifest["label_model"]
    if config_hash(config, seed=seed, label_model=label_model) != manifest["config_hash"]:
        raise ValueError(f"simulated pair {manifest.get('name')!r}: its config does not hash to its config_hash "
                         f"{manifest['config_hash']} (written by another simulator version); simulate it again")
    return config, seed, label_model


def catalogue_photoz(path: str | Path, config: SurveyConfig, seed: int, label_model: str,
                     n_rows: int | None = None) -> np.ndarray:
    """(N,) float32 grizy template-fit photo-z of the first `n_rows` galaxies (default all) of one survey file
    simulated with `config`, `seed` and `label_model` (`manifest_config` reads them from its manifest)."""
    mag, magerr = catalogue_magnitudes(path, n_rows)
    return hsc_wide_photoz(mag, magerr, config, seed, label_model).z_median.astype(np.float32)


def catalogue_magnitudes(path: str | Path, n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(magnitudes, errors), each (N, 5) in HSC_BANDS order, of the first `n_rows` galaxies of one survey file."""
    with h5py.File(path, "r") as f:
        missing = [k for b in HSC_BANDS for k in (f"{b}_cmodel_mag", f"{b}_cmodel_magerr") if k not in f]
        if missing:
            raise ValueError(f"file {path}: {', '.join(missing)} missing; the grizy template fit needs them")
        rows = slice(None if n_rows is None else n_rows)
        mag = np.stack([f[f"{b}_cmodel_mag"][rows] for b in HSC_BANDS], axis=1)
        magerr = np.stack([f[f"{b}_cmodel_magerr"][rows] for b in HSC_BANDS], axis=1)
    return mag, magerr
