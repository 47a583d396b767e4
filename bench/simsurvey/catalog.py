"""The survey catalogue: population tiles observed at HSC-Wide depth, cut at i < 25, with each
galaxy's set membership (photo-z, spec-z), split, and deep label photometry."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zpeft.simsurvey.photometry import (
    HSC_BANDS,
    HSC_FILTERS,
    depth_sigma,
    extended_factor,
    mag_error,
    observe,
    to_mag,
    true_fluxes,
)
from zpeft.simsurvey.pool import forked_map
from zpeft.simsurvey.population import coefficients, draw_population
from zpeft.simsurvey.presets import SurveyConfig
from zpeft.simsurvey.selection import assign_splits, spec_probability

TILE_STREAM, TEMPLATE_STREAM = 1, 2  # SeedSequence spawn keys: independent random streams
_ID_STRIDE = 10_000_000  # object_id = tile * stride + row: unique and independent of other tiles
DEEP_SEEING = 0.7  # arcsec, for the extended-source error of the deep label photometry


def stream(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=key)


def legacy_seed(seq: np.random.SeedSequence) -> int:
    """A 32-bit seed for numpy's global generator (SkyPy draws from it)."""
    return int(seq.generate_state(1)[0])


def n_tiles(config: SurveyConfig) -> int:
    return max(1, math.ceil(config.spec_area_deg2 / config.tile_area_deg2 - 1e-9))


def build_catalog(config: SurveyConfig, seed: int, progress: bool = False, workers: int = 1) -> pd.DataFrame:
    """Every galaxy in the photo-z or spec-z set, with truth, observed HSC and deep photometry.

    Tiles are drawn in `workers` processes; each has its own random streams, so the catalogue
    does not depend on how many.
    """
    tiles = n_tiles(config)
    jobs = [(config, seed, t, config.spec_area_deg2 / tiles) for t in range(tiles)]
    parts = list(tqdm(forked_map(_tile_job, jobs, workers), total=tiles, desc="population tiles", unit="tile",
                      disable=not progress))
    return pd.concat(parts, ignore_index=True)


def _tile_job(args: tuple[SurveyConfig, int, int, float]) -> pd.DataFrame:
    """One tile from a pool task's arguments."""
    return _tile(*args)


def _tile(config: SurveyConfig, seed: int, tile: int, area: float) -> pd.DataFrame:
    seq = stream(seed, TILE_STREAM, tile)
    rng = np.random.default_rng(seq)
    pop = draw_population(area, config.draw_mag_limit, config.z_max, legacy_seed(seq))
    n = len(pop)
    if n >= _ID_STRIDE:
        raise ValueError(f"preset {config.name!r}: a tile holds {n} galaxies, more than ids allow; "
                         f"lower tile_area_deg2 (now {config.tile_area_deg2})")
    coeff, z, r_half = coefficients(pop), pop["z"].to_numpy(), pop["r_half"].to_numpy()
    flux = true_fluxes(coeff, z, pop["abs_mag_b"].to_numpy(), HSC_FILTERS)
    sigma = depth_sigma(config.hsc_depth)[None, :] * extended_factor(r_half[:, None], np.array(config.hsc_seeing))
    observed = observe(flux, sigma, rng)
    mag, magerr = to_mag(observed, sigma), mag_error(observed, sigma)
    # Every draw below is made for all rows, in a fixed order, so a tile's galaxies never depend on cuts.
    detected = mag[:, 2] < config.i_limit
    in_spec = detected & (rng.random(n) < spec_probability(mag[:, 2], mag[:, 0] - mag[:, 3], config.spec_selection))
    in_photo = detected & (rng.random(n) < config.photo_area_deg2 / config.spec_area_deg2)
    split = assign_splits(n, config.splits, rng)
    spec_z = np.clip(z + config.spec_noise * rng.standard_normal(n), 0.0, None)

    keep = np.flatnonzero(in_spec | in_photo)
    deep_flux = true_fluxes(coeff[keep], z[keep], pop["abs_mag_b"].to_numpy()[keep], config.deep_filters)
    deep_sigma = depth_sigma(config.deep_depth)[None, :] * extended_factor(r_half[keep, None], DEEP_SEEING)
    deep_obs = observe(deep_flux, deep_sigma, np.random.default_rng(stream(seed, TILE_STREAM, tile, 1)))

    cols = {"object_id": tile * _ID_STRIDE + keep, "z_truth": z[keep], "spec_z": spec_z[keep],
            "in_photo": in_photo[keep], "in_spec": in_spec[keep], "split": split[keep],
            "red": pop["red"].to_numpy()[keep], "half_light_radius": r_half[keep],
            "ellipticity": pop["ellipticity"].to_numpy()[keep],
            "bulge_fraction": pop["bulge_fraction"].to_numpy()[keep]}
    for k, b in enumerate(HSC_BANDS):
        cols[f"{b}_flux_true"] = flux[keep, k]
        cols[f"{b}_cmodel_mag"] = mag[keep, k]
        cols[f"{b}_cmodel_magerr"] = magerr[keep, k]
    for k in range(len(config.deep_filters)):
        cols[f"deep_flux{k}"] = deep_obs[:, k]
        cols[f"deep_sigma{k}"] = deep_sigma[:, k]
    return pd.DataFrame(cols)


def deep_photometry(catalog: pd.DataFrame, n_filters: int) -> tuple[np.ndarray, np.ndarray]:
    """(fluxes, errors), each (N, n_filters), of the deep label photometry."""
    flux = catalog[[f"deep_flux{k}" for k in range(n_filters)]].to_numpy()
    sigma = catalog[[f"deep_sigma{k}" for k in range(n_filters)]].to_numpy()
    return flux, sigma
