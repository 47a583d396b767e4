"""Galaxy population: SkyPy blue and red Schechter luminosity functions with kcorrect spectra,
Shen et al. sizes and beta-distributed ellipticities, plus a bulge/disk split by type.

Parameters are the ones SkyPy's examples use (Herbel et al. 2017 for the luminosity functions
and Dirichlet spectra; Shen et al. 2003 sizes; Kacprzak et al. 2020 ellipticities).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy import units as u

from zpeft.simsurvey.cosmology import planck18


@dataclass(frozen=True)
class GalaxyType:
    """Luminosity function, spectra, size and shape parameters of one population."""

    m_star: tuple[float, float]  # M*(z) = a z + b (rest B)
    phi_star: tuple[float, float]  # phi*(z) = A exp(z / tau), Mpc^-3
    alpha: float
    dirichlet_alpha0: tuple[float, ...]
    dirichlet_alpha1: tuple[float, ...]
    dirichlet_weight: tuple[float, ...]
    size: dict  # keyword arguments of SkyPy's late/early-type lognormal size
    e_ratio: float
    e_sum: float
    bulge_beta: tuple[float, float]  # Beta(a, b) of the bulge flux fraction


BLUE = GalaxyType(
    m_star=(-0.9408582, -20.40492365), phi_star=(0.00370253, -9.73858), alpha=-1.3,
    dirichlet_alpha0=(2.079, 3.524, 1.917, 1.992, 2.536), dirichlet_alpha1=(2.265, 3.862, 1.921, 1.685, 2.480),
    dirichlet_weight=(3.47e09, 3.31e06, 2.13e09, 1.64e10, 1.01e09),
    size=dict(alpha=0.21, beta=0.53, gamma=-1.31, M0=-20.52, sigma1=0.48, sigma2=0.25),
    e_ratio=0.45, e_sum=3.5, bulge_beta=(1.2, 6.0),
)
RED = GalaxyType(
    m_star=(-0.70798041, -20.37196157), phi_star=(0.0035097, -1.41649), alpha=-0.5,
    dirichlet_alpha0=(2.461, 2.358, 2.568, 2.268, 2.402), dirichlet_alpha1=(2.410, 2.340, 2.200, 2.540, 2.464),
    dirichlet_weight=(3.84e09, 1.57e06, 3.91e08, 4.66e10, 3.03e07),
    size=dict(a=0.60, b=-4.63, M0=-20.52, sigma1=0.48, sigma2=0.25),
    e_ratio=0.2, e_sum=7.0, bulge_beta=(4.0, 1.5),
)
_Z_MIN = 0.01  # the LF grid starts here: at z -> 0 sizes and brightnesses diverge


@contextmanager
def seeded_numpy(seed: int):
    """Seed numpy's global generator (SkyPy draws from it) and restore the caller's state after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def draw_type(kind: GalaxyType, area_deg2: float, mag_limit: float, z_max: float) -> dict[str, np.ndarray]:
    """One population (blue or red) over an area, to SkyPy's magnitude limit; draws from np.random."""
    from skypy.galaxies import schechter_lf
    from skypy.galaxies.morphology import (
        angular_size,
        beta_ellipticity,
        early_type_lognormal_size,
        late_type_lognormal_size,
    )
    from skypy.galaxies.spectrum import dirichlet_coefficients

    z_grid = np.linspace(_Z_MIN, z_max, int(round(z_max / 0.02)) + 1)
    (a_m, b_m), (amp, tau) = kind.m_star, kind.phi_star
    z, abs_mag = schechter_lf(z_grid, lambda zz: a_m * zz + b_m, lambda zz: amp * np.exp(zz / tau), kind.alpha,
                              mag_limit, area_deg2 * u.deg**2, planck18())
    coeff = dirichlet_coefficients(z, np.array(kind.dirichlet_alpha0), np.array(kind.dirichlet_alpha1),
                                   weight=np.array(kind.dirichlet_weight))
    size_fn = late_type_lognormal_size if "alpha" in kind.size else early_type_lognormal_size
    physical = size_fn(abs_mag, **kind.size)
    r_half = angular_size(physical, z, planck18()).to_value(u.arcsec)
    ellipticity = beta_ellipticity(kind.e_ratio, kind.e_sum, size=len(z))
    bulge = np.random.beta(*kind.bulge_beta, size=len(z))
    return {"z": z, "abs_mag_b": abs_mag, "coeff": coeff, "r_half": r_half, "ellipticity": ellipticity,
            "bulge_fraction": bulge}


def draw_population(area_deg2: float, mag_limit: float, z_max: float, seed: int) -> pd.DataFrame:
    """Blue and red galaxies over `area_deg2`, one row each, in a random order."""
    with seeded_numpy(seed):
        parts = [draw_type(kind, area_deg2, mag_limit, z_max) for kind in (BLUE, RED)]
        order = np.random.permutation(sum(len(p["z"]) for p in parts))
    cols = {key: np.concatenate([p[key] for p in parts]) for key in parts[0] if key != "coeff"}
    coeff = np.concatenate([p["coeff"] for p in parts])
    cols["red"] = np.concatenate([np.zeros(len(parts[0]["z"]), bool), np.ones(len(parts[1]["z"]), bool)])
    frame = pd.DataFrame({**cols, **{f"coeff{k}": coeff[:, k] for k in range(coeff.shape[1])}})
    return frame.iloc[order].reset_index(drop=True)


def coefficients(frame: pd.DataFrame) -> np.ndarray:
    """The (N, 5) kcorrect mixture coefficients of a population frame."""
    return frame[[f"coeff{k}" for k in range(5)]].to_numpy()
