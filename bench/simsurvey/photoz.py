"""Photo-z labels by template fitting, as COSMOS-like catalogues make them, and the same fit to the five
HSC-Wide catalogue magnitudes alone (`hsc_wide_photoz`), the non-ML reference at the images' bands and depth.

A label is the median of p(z) = prior(z | i) x sum over templates of exp(-chi2 / 2), the chi2
of each template at each z having its amplitude fitted analytically. Two template sets:
- `deep`: kcorrect mixtures drawn from an independent realisation of the population (the
  population's own spectral space, but not its galaxies), so errors come from noise and
  colour-redshift degeneracies;
- `mismatch`: the four CWW SEDs shipped with GalSim, interpolated to 13, a template set unlike
  the population's, giving colour- and redshift-dependent systematics.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from scipy.ndimage import gaussian_filter1d
from tqdm.auto import tqdm

from zpeft.simsurvey.photometry import basis_maggies, interp_table, kcorrect_table
from zpeft.simsurvey.pool import forked_map

LABEL_MODELS = ("deep", "mismatch")
_CWW = ("CWW_E_ext", "CWW_Sbc_ext", "CWW_Scd_ext", "CWW_Im_ext")
_PRIOR_I_EDGES = np.arange(17.0, 26.01, 0.5)
FIT_CHUNK = 128  # galaxies per matrix product in `fit`
FIT_JOB = 32 * FIT_CHUNK  # galaxies per pool task: a whole number of chunks, so results never depend on the split


@dataclass(frozen=True)
class PhotozResult:
    """Point estimate (median of p(z)), 68% interval, and the best template's chi2 per galaxy."""

    z_median: np.ndarray
    z_lo68: np.ndarray
    z_hi68: np.ndarray
    chi2: np.ndarray


def z_grid(z_max: float, step: float) -> np.ndarray:
    return np.arange(step, z_max + step / 2, step)


def kcorrect_template_fluxes(coeff: np.ndarray, filters: tuple[str, ...], zs: np.ndarray) -> np.ndarray:
    """(nz, nt, nf) fluxes of kcorrect mixtures (rows of `coeff`), each template's overall scale free."""
    z_table, table = kcorrect_table(tuple(filters))
    return np.einsum("tk,zkf->ztf", coeff, interp_table(z_table, table, zs))


def cww_template_fluxes(filters: tuple[str, ...], zs: np.ndarray, n_between: int = 3) -> np.ndarray:
    """(nz, 13, nf) fluxes of GalSim's CWW E, Sbc, Scd, Im SEDs with `n_between` mixtures between neighbours."""
    share = resources.files("galsim") / "share" / "SEDs"
    seds = [np.loadtxt(share / f"{name}.sed") for name in _CWW]
    wave = seds[0][:, 0]
    flux = np.array([np.interp(wave, s[:, 0], s[:, 1], left=0, right=0) for s in seds])
    flux /= np.array([np.interp(5500.0, wave, f) for f in flux])[:, None]  # mix at equal 5500 A flux
    mixes = [flux[0]]
    for a, b in zip(flux[:-1], flux[1:]):
        mixes += [(1 - w) * a + w * b for w in np.linspace(0, 1, n_between + 2)[1:]]
    return basis_maggies(wave, np.array(mixes), filters, zs)


def magnitude_prior(i_mag: np.ndarray, z: np.ndarray, zs: np.ndarray, smooth: float = 0.04) -> np.ndarray:
    """p(z | i) on `zs` per i bin (n_ibins, nz), from a training population's (i, z): a BPZ-style prior.

    Smoothed in z by `smooth` and given a small floor, so no redshift is ever excluded outright.
    """
    step = zs[1] - zs[0]
    edges = np.concatenate([[zs[0] - step / 2], zs + step / 2])
    ibin = np.clip(np.digitize(i_mag, _PRIOR_I_EDGES) - 1, 0, len(_PRIOR_I_EDGES) - 2)
    prior = np.zeros((len(_PRIOR_I_EDGES) - 1, len(zs)))
    for b in range(len(prior)):
        hist = np.histogram(z[ibin == b], bins=edges)[0].astype(float)
        hist = gaussian_filter1d(hist, smooth / step, mode="constant")
        total = hist.sum()
        prior[b] = hist / total if total > 0 else 1.0 / len(zs)
    prior += 1e-3 / len(zs)
    return prior / prior.sum(axis=1, keepdims=True)


def prior_rows(prior: np.ndarray, i_mag: np.ndarray) -> np.ndarray:
    ibin = np.clip(np.digitize(i_mag, _PRIOR_I_EDGES) - 1, 0, len(_PRIOR_I_EDGES) - 2)
    return prior[ibin]


def fit(flux: np.ndarray, sigma: np.ndarray, templates: np.ndarray, zs: np.ndarray, prior: np.ndarray,
        *, chunk: int = FIT_CHUNK, progress: bool = False) -> PhotozResult:
    """Template-fit photo-z for galaxies with fluxes and errors (N, nf); `prior` is (N, nz).

    chi2 with the best non-negative amplitude is sum F^2/s^2 - (sum F T/s^2)^2 / sum T^2/s^2,
    so a whole chunk of galaxies against every (z, template) is two matrix products.
    """
    nz, nt, nf = templates.shape
    flat = templates.reshape(nz * nt, nf).astype(np.float32)
    sq = flat**2
    out = {k: np.empty(len(flux), np.float32) for k in ("med", "lo", "hi", "chi2")}
    for start in tqdm(range(0, len(flux), chunk), desc="photo-z fit", unit="chunk", disable=not progress):
        # One memory layout whatever the caller's (a pandas view, a pickled copy): BLAS and numpy's
        # reductions round C- and F-ordered operands differently. F is what pandas hands over.
        f = np.asfortranarray(flux[start:start + chunk], dtype=np.float32)
        w = 1.0 / np.asfortranarray(sigma[start:start + chunk], dtype=np.float32) ** 2
        ff = (f**2 * w).sum(axis=1, keepdims=True)
        # In place: the (chunk, nz * nt) arrays dominate memory traffic.
        gain = np.maximum((f * w) @ flat.T, 0.0)  # a negative best amplitude means "no flux": amplitude 0
        gain *= gain
        gain /= w @ sq.T
        np.subtract(ff, gain, out=gain)
        chi2 = gain.reshape(len(f), nz, nt)
        best = chi2.min(axis=(1, 2))
        chi2 -= best[:, None, None]
        chi2 *= -0.5
        like = np.exp(chi2, out=chi2).sum(axis=2)
        post = like * prior[start:start + chunk]
        cdf = np.cumsum(post, axis=1)
        cdf /= cdf[:, -1:]
        sl = slice(start, start + len(f))
        out["med"][sl], out["lo"][sl], out["hi"][sl] = (cdf_quantile(cdf, zs, q) for q in (0.5, 0.16, 0.84))
        out["chi2"][sl] = best
    return PhotozResult(out["med"], out["lo"], out["hi"], out["chi2"])


def cdf_quantile(cdf: np.ndarray, zs: np.ndarray, q: float) -> np.ndarray:
    """Per-row quantile of a gridded CDF, linearly interpolated between grid points."""
    k = np.clip((cdf < q).sum(axis=1), 1, len(zs) - 1)
    rows = np.arange(len(cdf))
    c0, c1 = cdf[rows, k - 1], cdf[rows, k]
    frac = np.where(c1 > c0, (q - c0) / np.maximum(c1 - c0, 1e-30), 0.5)
    return zs[k - 1] + np.clip(frac, 0, 1) * (zs[k] - zs[k - 1])


def label_setup(config, seed: int, label_model: str,
                filters: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(templates (nz, nt, nf) in `filters`, z grid, prior (n_ibins, nz)) for a label model.

    Templates (for `deep`) and the p(z | i) prior come from a population drawn with its own
    random stream, so the fit never sees the catalogue's galaxies. The same seed gives the same
    templates and prior whatever the filters: the deep label fit and the HSC-Wide reference fit
    (`hsc_wide_photoz`) differ only in the photometry they see.
    """
    from zpeft.simsurvey.catalog import TEMPLATE_STREAM, legacy_seed, stream
    from zpeft.simsurvey.photometry import ZERO_POINT, true_fluxes
    from zpeft.simsurvey.population import coefficients, draw_population

    if label_model not in LABEL_MODELS:
        raise ValueError(f"unknown label model {label_model!r}; known: {', '.join(LABEL_MODELS)}")
    seq = stream(seed, TEMPLATE_STREAM)
    pop = draw_population(config.prior_area_deg2, config.draw_mag_limit, config.z_max, legacy_seed(seq))
    coeff = coefficients(pop)
    i_true = ZERO_POINT - 2.5 * np.log10(true_fluxes(coeff, pop["z"].to_numpy(), pop["abs_mag_b"].to_numpy(),
                                                      ("hsc2017-i",))[:, 0])
    train = np.flatnonzero(i_true < config.i_limit + 0.5)
    if len(train) < config.n_templates:
        raise ValueError(f"preset {config.name!r}: prior_area_deg2={config.prior_area_deg2} yields {len(train)} "
                         f"galaxies, fewer than n_templates={config.n_templates}; raise prior_area_deg2")
    zs = z_grid(config.z_max, config.z_grid_step)
    prior = magnitude_prior(i_true[train], pop["z"].to_numpy()[train], zs)
    if label_model == "deep":
        pick = np.random.default_rng(seq).choice(train, size=config.n_templates, replace=False)
        templates = kcorrect_template_fluxes(coeff[pick], tuple(filters), zs)
    else:
        templates = cww_template_fluxes(tuple(filters), zs)
    return templates, zs, prior


def with_error_floor(flux: np.ndarray, sigma: np.ndarray, floor_mag: float) -> np.ndarray:
    """Flux errors with a magnitude floor added in quadrature: it stands for zero-point and template-model
    error, as photo-z codes add it."""
    fractional = 0.4 * np.log(10) * floor_mag
    return np.sqrt(sigma**2 + (fractional * np.abs(flux)) ** 2)


def photoz_labels(flux: np.ndarray, sigma: np.ndarray, i_mag: np.ndarray, config, seed: int, label_model: str,
                  progress: bool = False, workers: int = 1) -> PhotozResult:
    """Fit every galaxy's deep photometry (config.deep_filters); `i_mag` picks its p(z | i) prior row."""
    templates, zs, prior = label_setup(config, seed, label_model, config.deep_filters)
    return fit_all(flux, with_error_floor(flux, sigma, config.deep_error_floor), i_mag, templates, zs, prior,
                   progress, workers)


def hsc_wide_photoz(mag: np.ndarray, magerr: np.ndarray, config, seed: int, label_model: str = "deep", *,
                    progress: bool = False, workers: int = 1) -> PhotozResult:
    """Photo-z from a template fit to the five HSC-Wide catalogue magnitudes alone (grizy, the images' bands).

    `mag` and `magerr` are (N, 5) `{band}_cmodel_mag` / `_magerr` in HSC_BANDS order, as the catalogue
    writes them (`photometry.to_mag`, `mag_error`; undetected bands, floored at 1 sigma, are fitted as
    0 +- sigma). Same templates, p(z | i) prior (on the catalogue's i) and error floor as the deep labels
    of the survey simulated with `config`, `seed` and `label_model`: the non-ML reference at the images'
    depth and bands, where the labels see deep u + grizy + YJH.
    """
    from zpeft.simsurvey.photometry import HSC_FILTERS, from_mag

    mag, magerr = np.asarray(mag), np.asarray(magerr)
    if mag.ndim != 2 or mag.shape[1] != len(HSC_FILTERS):
        raise ValueError(f"magnitudes must be (N, {len(HSC_FILTERS)}) in grizy order, got shape {mag.shape}")
    flux, sigma = from_mag(mag, magerr)
    templates, zs, prior = _hsc_setup(config, seed, label_model)
    return fit_all(flux, with_error_floor(flux, sigma, config.deep_error_floor), mag[:, HSC_FILTERS.index("hsc2017-i")],
                   templates, zs, prior, progress, workers)


@lru_cache(maxsize=4)
def _hsc_setup(config, seed: int, label_model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`label_setup` for the HSC filters, once per process per survey (it draws a population); read-only arrays."""
    from zpeft.simsurvey.photometry import HSC_FILTERS

    arrays = label_setup(config, seed, label_model, HSC_FILTERS)
    for a in arrays:
        a.setflags(write=False)
    return arrays


def fit_all(flux: np.ndarray, sigma: np.ndarray, i_mag: np.ndarray, templates: np.ndarray, zs: np.ndarray,
            prior: np.ndarray, progress: bool = False, workers: int = 1) -> PhotozResult:
    """`fit` every galaxy (errors `sigma` already floored); `i_mag` picks its p(z | i) prior row.

    Galaxies are fitted in tasks of FIT_JOB (a multiple of the fit's chunk), in `workers`
    processes: every chunk holds the same galaxies whatever the number of workers, so the
    results are identical bit for bit.
    """
    if FIT_JOB % FIT_CHUNK:
        raise ValueError(f"FIT_JOB ({FIT_JOB}) must be a multiple of FIT_CHUNK ({FIT_CHUNK})")
    starts = range(0, len(flux), FIT_JOB)
    jobs = [(flux[s:s + FIT_JOB], sigma[s:s + FIT_JOB], i_mag[s:s + FIT_JOB], templates, zs, prior) for s in starts]
    parts = []
    with tqdm(total=len(flux), desc="photo-z fit", unit="gal", disable=not progress) as bar:
        for part in forked_map(_fit_job, jobs, workers):
            parts.append(part)
            bar.update(len(part.z_median))
    if not parts:  # no galaxies: the serial fit's empty arrays
        return fit(flux, sigma, templates, zs, prior_rows(prior, i_mag))
    return PhotozResult(*(np.concatenate([getattr(p, name) for p in parts])
                          for name in ("z_median", "z_lo68", "z_hi68", "chi2")))


def _fit_job(args: tuple[np.ndarray, ...]) -> PhotozResult:
    """Fit one pool task's galaxies: (flux, sigma, i_mag, templates, z grid, prior table)."""
    flux, sigma, i_mag, templates, zs, prior = args
    return fit(flux, sigma, templates, zs, prior_rows(prior, i_mag))
