"""Band fluxes of kcorrect-mixture galaxies (SkyPy templates, speclite filters) and their noisy
observation at a survey depth.

Fluxes are in the HSC coadd convention: zero-point 27 AB, so flux 1 is magnitude 27 and image
pixels and catalogue fluxes share units.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from zpeft.simsurvey.cosmology import planck18

HSC_FILTERS = ("hsc2017-g", "hsc2017-r", "hsc2017-i", "hsc2017-z", "hsc2017-y")  # never the r2/i2 wildcard
HSC_BANDS = ("g", "r", "i", "z", "y")
ZERO_POINT = 27.0
# Emission below this is taken as zero: kcorrect's templates start at 600 A, and Lyman-continuum
# photons are absorbed anyway; padding lets u-band fluxes exist up to z ~ 4.
_PAD_WAVELENGTH = (100.0, 599.0)
_Z_TABLE = np.linspace(0.0, 4.5, 901)


@lru_cache(maxsize=1)
def kcorrect_spectra() -> tuple[np.ndarray, np.ndarray]:
    """SkyPy's 5 kcorrect basis spectra (wavelength in A, flux per unit template mass), padded blueward."""
    from skypy.galaxies.spectrum import kcorrect

    wave = np.concatenate([_PAD_WAVELENGTH, kcorrect.wavelength.to_value("Angstrom")])
    flux = np.concatenate([np.zeros((5, 2)), kcorrect.templates.value], axis=1)
    return wave, flux


def basis_maggies(wave: np.ndarray, spectra: np.ndarray, filters: tuple[str, ...], redshift: np.ndarray) -> np.ndarray:
    """AB maggies of each spectrum redshifted to each z, at 10 pc (no distance modulus): (nz, ns, nf).

    Linear in the spectrum, so any template mixture's maggies are the same mixture of these.
    Same convention as SkyPy's `mag_ab` (which shifts the filter instead; a test checks they
    agree), but every redshift goes through speclite's integral in one call per filter.
    """
    from speclite.filters import load_filters

    redshift = np.atleast_1d(np.asarray(redshift, dtype=float))
    out = np.empty((len(redshift), len(spectra), len(filters)))
    for k, band in enumerate(load_filters(*filters)):
        obs = np.linspace(band.wavelength[0], band.wavelength[-1], 2000)
        rest = obs[None, :] / (1.0 + redshift[:, None])  # (nz, nw)
        shifted = np.stack([np.interp(rest, wave, s, left=0.0, right=0.0) for s in spectra], axis=1)
        shifted /= (1.0 + redshift)[:, None, None]
        out[:, :, k] = band.get_ab_maggies(shifted, obs)
    return out


def kcorrect_table(filters: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(z grid, maggies (nz, 5, nf)) of the kcorrect basis; each filter is tabulated once per process."""
    return _Z_TABLE, np.stack([_kcorrect_column(name) for name in filters], axis=-1)


@lru_cache(maxsize=64)
def _kcorrect_column(name: str) -> np.ndarray:
    wave, flux = kcorrect_spectra()
    return basis_maggies(wave, flux, (name,), _Z_TABLE)[:, :, 0]


@lru_cache(maxsize=1)
def rest_b_maggies() -> np.ndarray:
    """Rest-frame Bessell-B maggies of the kcorrect basis: SkyPy's LF magnitudes are in B."""
    wave, flux = kcorrect_spectra()
    return basis_maggies(wave, flux, ("bessell-B",), np.zeros(1))[0, :, 0]


def interp_table(z_table: np.ndarray, table: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Linear interpolation of a (nz, ...) table at redshifts z: (len(z), ...)."""
    pos = np.interp(z, z_table, np.arange(len(z_table)))
    lo = np.minimum(pos.astype(int), len(z_table) - 2)
    w = (pos - lo).reshape((-1,) + (1,) * (table.ndim - 1))
    return table[lo] * (1 - w) + table[lo + 1] * w


def true_fluxes(coeff: np.ndarray, z: np.ndarray, abs_mag_b: np.ndarray, filters: tuple[str, ...]) -> np.ndarray:
    """Noise-free fluxes (N, nf), zero-point 27, of galaxies with kcorrect coefficients and rest-B magnitudes.

    The stellar-mass normalisation follows SkyPy's `kcorrect.stellar_mass`: the mixture is scaled
    until its rest-frame B magnitude equals the luminosity-function draw.
    """
    z_table, table = kcorrect_table(tuple(filters))
    mass = 10.0 ** (-0.4 * abs_mag_b) / (coeff @ rest_b_maggies())
    mixed = np.einsum("nt,ntf->nf", coeff, interp_table(z_table, table, z))
    distance = 10.0 ** (-0.4 * planck18().distmod(z).value)
    return mixed * (mass * distance)[:, None] * 10.0 ** (0.4 * ZERO_POINT)


def depth_sigma(depth_5sigma: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """1-sigma point-source flux error (zero-point 27) from 5-sigma limiting magnitudes."""
    return 10.0 ** (-0.4 * (np.asarray(depth_5sigma, dtype=float) - ZERO_POINT)) / 5.0


def extended_factor(half_light_arcsec: np.ndarray, seeing_fwhm: float | np.ndarray) -> np.ndarray:
    """How much larger an extended source's flux error is than a point source's at the same depth.

    A sky-limited optimal measurement's noise scales with the square root of the effective area;
    the galaxy is approximated as a Gaussian (sigma = r_half / 1.1774) convolved with the PSF.
    """
    psf_sigma = np.asarray(seeing_fwhm) / 2.3548
    gal_sigma = np.asarray(half_light_arcsec) / 1.1774
    return np.sqrt(1.0 + (gal_sigma / psf_sigma) ** 2)


def observe(flux: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fluxes with Gaussian noise of per-object, per-band standard deviation `sigma`."""
    return flux + sigma * rng.standard_normal(flux.shape)


def to_mag(flux: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """AB magnitudes; fluxes below 1 sigma are floored there, so undetections read as upper limits."""
    return ZERO_POINT - 2.5 * np.log10(np.maximum(flux, sigma))


def mag_error(flux: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Magnitude error 1.0857 sigma / flux, using the same 1-sigma floor as `to_mag`."""
    return 2.5 / np.log(10) * sigma / np.maximum(flux, sigma)


def from_mag(mag: np.ndarray, magerr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flux, sigma), zero-point 27, from `to_mag` magnitudes and `mag_error` errors: their inverse.

    A detected flux (above 1 sigma) comes back as it was. A floored one (magerr = 2.5 / ln 10, the
    flux read as 1 sigma) is an upper limit: it comes back as 0 +- sigma, as template-fit codes take
    non-detections, since the measured flux is unknown below sigma.
    """
    mag, magerr = np.asarray(mag, dtype=np.float64), np.asarray(magerr, dtype=np.float64)
    if mag.shape != magerr.shape:
        raise ValueError(f"magnitudes {mag.shape} and errors {magerr.shape} differ in shape")
    if not (np.isfinite(mag).all() and np.isfinite(magerr).all() and (magerr > 0).all()):
        raise ValueError("magnitudes and errors must be finite, errors > 0 (the catalogue floors undetected "
                         "fluxes at 1 sigma, so it never writes NaN or inf)")
    floored = 10.0 ** (-0.4 * (mag - ZERO_POINT))
    sigma = magerr * floored / (2.5 / np.log(10))
    # float32 storage rounds the floor's 1.0857 by ~1e-7; a flux within 1e-6 of sigma is an upper limit either way.
    limit = magerr >= (1 - 1e-6) * 2.5 / np.log(10)
    return np.where(limit, 0.0, floored), sigma
