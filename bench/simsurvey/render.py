"""Galaxy stamps: GalSim bulge + disk through a per-band Moffat PSF, with Gaussian sky noise.

Workers pin OpenMP to one thread (otherwise each process burns a second core for nothing).
Speed comes from three choices: only two Sersic indices (de Vaucouleurs bulge truncated at 8
half-light radii, exponential disk), so no new Sersic tables are built; seeing rounded to
0.01" so each worker reuses its PSF objects; untruncated Moffats (GalSim tabulates them per
beta, while a truncated Moffat rebuilds its transform per FWHM).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

from zpeft.simsurvey.photometry import depth_sigma
from zpeft.simsurvey.pool import forked_map

RENDER_STREAM = 3
BULGE_SIZE = 0.6  # bulge half-light radius relative to the galaxy's (Shen et al.) size
MAX_RADIUS = 4.0  # arcsec: a 64-pixel stamp (10.8") cannot hold more, and huge FFTs would dominate
BULGE_TRUNCATION = 8.0  # in bulge half-light radii
_SEEING_RANGE = (0.35, 1.6)  # arcsec, clip of the per-band seeing draw


@dataclass(frozen=True)
class Optics:
    """What the camera and sky do to every stamp."""

    stamp: int
    pixel_scale: float
    seeing: tuple[float, ...]  # median FWHM per band, arcsec
    seeing_scatter: float  # lognormal sigma of the FWHM
    psf_beta: float
    sky_sigma: tuple[float, ...]  # per-pixel noise per band, image units (zero-point 27)


@dataclass(frozen=True)
class RenderJob:
    """A chunk of galaxies to draw; everything random about a stamp is keyed on (seed, object_id)."""

    seed: int
    object_id: np.ndarray
    flux: np.ndarray  # (n, bands) true fluxes, zero-point 27
    half_light_radius: np.ndarray
    ellipticity: np.ndarray
    bulge_fraction: np.ndarray


def sky_sigma(depth_5sigma: tuple[float, ...], seeing: tuple[float, ...], psf_beta: float, pixel_scale: float,
              stamp: int) -> tuple[float, ...]:
    """Per-pixel Gaussian sky noise that gives a point source 5-sigma at the depth under median seeing.

    A PSF-weighted flux has variance sigma_pix^2 / sum(psf_i^2), the sum over the pixelised PSF.
    """
    import galsim

    out = []
    for depth, fwhm in zip(depth_5sigma, seeing):
        psf = galsim.Moffat(beta=psf_beta, fwhm=fwhm).drawImage(nx=stamp, ny=stamp, scale=pixel_scale).array
        psf = psf / psf.sum()
        out.append(float(depth_sigma(depth) * np.sqrt((psf**2).sum())))
    return tuple(out)


@lru_cache(maxsize=2048)
def _moffat(beta: float, fwhm: float):
    import galsim

    return galsim.Moffat(beta=beta, fwhm=fwhm)


def render_chunk(job: RenderJob, optics: Optics) -> np.ndarray:
    """Stamps (n, bands, stamp, stamp) as float16."""
    import galsim

    n, bands = job.flux.shape
    out = np.empty((n, bands, optics.stamp, optics.stamp), np.float16)
    for k in range(n):
        rng = np.random.default_rng(np.random.SeedSequence(job.seed, spawn_key=(RENDER_STREAM, int(job.object_id[k]))))
        radius = float(min(job.half_light_radius[k], MAX_RADIUS))
        bf = float(job.bulge_fraction[k])
        bulge_radius = BULGE_SIZE * radius
        galaxy = galsim.Add([galsim.DeVaucouleurs(half_light_radius=bulge_radius, flux=bf,
                                                  trunc=BULGE_TRUNCATION * bulge_radius),
                             galsim.Exponential(half_light_radius=radius, flux=1.0 - bf)])
        galaxy = galaxy.shear(g=min(float(job.ellipticity[k]), 0.9), beta=rng.uniform(0, np.pi) * galsim.radians)
        offset = rng.uniform(-0.5, 0.5, size=2)  # sub-pixel centring, as in real cutouts
        fwhm = np.clip(np.asarray(optics.seeing) * np.exp(optics.seeing_scatter * rng.standard_normal(bands)),
                       *_SEEING_RANGE)
        for b in range(bands):
            psf = _moffat(optics.psf_beta, round(float(fwhm[b]), 2))
            image = galsim.Convolve(galaxy.withFlux(float(job.flux[k, b])), psf).drawImage(
                nx=optics.stamp, ny=optics.stamp, scale=optics.pixel_scale, offset=offset)
            out[k, b] = image.array + optics.sky_sigma[b] * rng.standard_normal(image.array.shape)
    return out


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"  # for a fresh process, before galsim loads
    import galsim

    galsim.set_omp_threads(1)  # for a forked one, whose OpenMP runtime may already be up


def _render(args: tuple[RenderJob, Optics]) -> np.ndarray:
    return render_chunk(*args)


def render_jobs(jobs: list[RenderJob], optics: Optics, workers: int) -> Iterator[np.ndarray]:
    """Stamps of each job, in order; a process pool when workers > 1, each worker on one OpenMP thread."""
    return forked_map(_render, [(job, optics) for job in jobs], workers, initializer=_init_worker)
