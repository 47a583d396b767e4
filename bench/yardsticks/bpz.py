"""An off-the-shelf photo-z: desc-bpz (LSST DESC's Python BPZ, the code RAIL's BPZliteEstimator wraps) with the
templates and prior it ships, on grizy fluxes.

Templates: the eight SEDs of desc-bpz's CWWSB4.list (CWW El, Sbc, Scd, Im and Kinney starbursts SB3, SB2, two SSPs),
Madau IGM absorption on, integrated by desc-bpz's own `f_z_sed_AB` through speclite's hsc2017-g, r, i, z, y curves
written as BPZ .res files (the five named bands: speclite's `hsc2017-*` wildcard would also load r2 and i2).
Prior: desc-bpz's `hdfn_gen` p(z, T | m) (Benitez 2000, types 1 elliptical, 2 spirals, 5 starbursts), m the i
magnitude. Likelihood: desc-bpz's `p_c_z_t` per galaxy. The point estimate is the median of p(z), as for the
best-case fit (zpeft.simsurvey.photoz). None of this knows the population being fitted: a mismatched-template
fit, what a user gets from the community code without tuning it to the survey.

Two traps: BPZ reads a flux error above 1 as "not observed", so fluxes go in as maggies (10^(-0.4 m), errors far
below 1; the survey's zero-point-27 fluxes would silently drop every noisy band); and integrating the templates
takes ~50 s, so the (z, template, band) flux table is cached under $ZPEFT_CACHE keyed by the filter curves, the
SED files, the z grid and the desc-bpz version.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from zpeft.simsurvey.photometry import HSC_FILTERS, ZERO_POINT
from zpeft.yardsticks.cache import cached, input_key

SED_LIST = "CWWSB4.list"
TYPES = (1, 2, 5)  # elliptical, spiral and starburst templates of CWWSB4.list, in its order: the prior's nt
PRIOR = "hdfn_gen"
PRIOR_M_STEP = 0.1  # the prior is evaluated once per 0.1 mag, as desc-bpz's own `prior` does
Z_STEP, Z_MAX = 0.01, 4.0  # the fit's z grid (0.01 .. 4.0): the simulated survey's range
MADAU = "yes"


def z_grid() -> np.ndarray:
    """The BPZ fit's redshift grid."""
    return np.arange(Z_STEP, Z_MAX + Z_STEP / 2, Z_STEP)


def _data_dir() -> Path:
    return Path(str(resources.files("desc_bpz") / "data_files"))


def package_version() -> str:
    """The installed desc-bpz version (part of every cache key of its outputs)."""
    return metadata.version("desc-bpz")


def sed_names() -> list[str]:
    """The shipped template names of SED_LIST, in its order."""
    return [line.split()[0].removesuffix(".sed") for line in (_data_dir() / "SED" / SED_LIST).read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def filter_curves(filters: tuple[str, ...] = HSC_FILTERS) -> dict[str, np.ndarray]:
    """speclite's response curves by name, each (n, 2): wavelength in Angstrom and photon response."""
    from speclite.filters import load_filter

    curves = {}
    for name in filters:
        band = load_filter(name)
        curves[name] = np.column_stack([np.asarray(band.wavelength, dtype=np.float64),
                                        np.asarray(band.response, dtype=np.float64)])
    return curves


def template_fluxes(filters: tuple[str, ...] = HSC_FILTERS) -> np.ndarray:
    """(nz, nt, nf) f_nu of the shipped templates on `z_grid()` through `filters`, built by desc-bpz, cached."""
    curves = filter_curves(filters)
    seds = sed_names()
    sed_bytes = [(_data_dir() / "SED" / f"{s}.sed").read_bytes() for s in seds]
    zs = z_grid()
    key = input_key("bpz-templates", package_version(), MADAU, seds,
                    [np.frombuffer(b, np.uint8) for b in sed_bytes], *curves.values(), list(curves), zs)
    return cached("bpz", key, lambda: {"fluxes": _build_template_fluxes(curves, seds, zs)})["fluxes"]


def _build_template_fluxes(curves: dict[str, np.ndarray], seds: list[str], zs: np.ndarray) -> np.ndarray:
    """desc-bpz's AB tables of every (SED, filter) in a scratch data directory, read on `zs`."""
    from desc_bpz import bpz_tools_py3 as bpz
    from desc_bpz import paths

    scratch = Path(tempfile.mkdtemp(prefix="zpeft-bpz-"))
    try:
        for sub in ("FILTER", "AB"):
            (scratch / sub).mkdir()
        for name, curve in curves.items():
            np.savetxt(scratch / "FILTER" / f"{name}.res", curve, fmt="%.6f %.8e")
        saved = paths.sed_dir, paths.fil_dir, paths.ab_dir
        paths.set_sed_dir(str(_data_dir() / "SED"))
        paths.set_fil_dir(str(scratch / "FILTER"))
        paths.set_ab_dir(str(scratch / "AB"))
        try:
            out = np.empty((len(zs), len(seds), len(curves)))
            with contextlib.redirect_stdout(io.StringIO()):  # ABflux prints every table it writes
                for t, sed in enumerate(seds):
                    for f, name in enumerate(curves):
                        out[:, t, f] = bpz.f_z_sed_AB(sed, name, zs, units="nu", madau=MADAU)
        finally:
            paths.sed_dir, paths.fil_dir, paths.ab_dir = saved
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


@lru_cache(maxsize=1024)
def _prior(m: float) -> np.ndarray:
    """desc-bpz's hdfn_gen p(z, T | m) on `z_grid()`, (nz, nt)."""
    from desc_bpz import prior_hdfn_gen

    return prior_hdfn_gen.function(z_grid(), m, list(TYPES))


def to_maggies(flux: np.ndarray, sigma: np.ndarray, zero_point: float = ZERO_POINT) -> tuple[np.ndarray, np.ndarray]:
    """Fluxes and errors at `zero_point` as maggies (zero point 0), the scale where BPZ reads every error as observed."""
    scale = 10.0 ** (-0.4 * zero_point)
    return np.asarray(flux, np.float64) * scale, np.asarray(sigma, np.float64) * scale


def bpz_photoz(maggies: np.ndarray, errors: np.ndarray, i_mag: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """(N,) median of desc-bpz's posterior, likelihood `p_c_z_t` x prior `hdfn_gen`, per galaxy.

    `maggies` and `errors` (N, nf) as `to_maggies` gives them (a non-detection as 0 +- its error); `i_mag` the
    prior's magnitude; `templates` (nz, nt, nf) from `template_fluxes`.
    """
    from desc_bpz.bpz_tools_py3 import p_c_z_t

    from zpeft.simsurvey.photoz import cdf_quantile

    maggies, errors = np.asarray(maggies, np.float64), np.asarray(errors, np.float64)
    if (errors >= 1).any():
        raise ValueError("flux errors of 1 or more are read by BPZ as unobserved bands; pass maggies (to_maggies)")
    zs = z_grid()
    posterior = np.empty((len(maggies), len(zs)))
    for k in range(len(maggies)):
        likelihood = p_c_z_t(maggies[k], errors[k], templates).likelihood
        m = round(float(i_mag[k]) / PRIOR_M_STEP) * PRIOR_M_STEP
        posterior[k] = (likelihood * _prior(round(m, 1))).sum(axis=1)
    cdf = np.cumsum(posterior, axis=1)
    cdf /= np.where(cdf[:, -1:] > 0, cdf[:, -1:], 1.0)
    return cdf_quantile(cdf, zs, 0.5).astype(np.float32)


def bpz_from_magnitudes(mag: np.ndarray, magerr: np.ndarray, *, error_floor: float) -> np.ndarray:
    """(N,) BPZ photo-z of grizy magnitudes and errors (N, 5) as the catalogue writes them (`photometry.to_mag`:
    a floored band is an upper limit, fitted as 0 +- its error), `error_floor` mag added in quadrature; the
    prior's magnitude is i."""
    from zpeft.simsurvey.photometry import HSC_BANDS, from_mag
    from zpeft.simsurvey.photoz import with_error_floor

    mag, magerr = np.asarray(mag, np.float64), np.asarray(magerr, np.float64)
    if mag.ndim != 2 or mag.shape[1] != len(HSC_BANDS):
        raise ValueError(f"magnitudes must be (N, {len(HSC_BANDS)}) in grizy order, got shape {mag.shape}")
    flux, sigma = from_mag(mag, magerr)
    maggies, errors = to_maggies(flux, with_error_floor(flux, sigma, error_floor))
    return bpz_photoz(maggies, errors, mag[:, HSC_BANDS.index("i")], template_fluxes())
