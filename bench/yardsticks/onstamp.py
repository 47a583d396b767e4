"""Photometry measured on the very cutouts the CNNs see: photutils apertures, errors from each stamp's sky noise.

Cutouts are taken as sky-subtracted (HSC coadds are; the simulated stamps have zero sky level): per stamp and
band the sky noise is the sigma-clipped standard deviation of the pixels beyond SKY_RADIUS of the stamp's centre
(astropy.stats), and their level is not subtracted, since for an extended galaxy it holds the galaxy's wings. A detection image (the bands' sky-subtracted pixels in
units of their noise, summed) gives each galaxy one Kron radius r1 (the first moment of its light within
SKY_RADIUS); every band is then measured in the same centred circle of radius KRON_FACTOR x r1 (at least
MIN_RADIUS_ARCSEC, at most SKY_RADIUS - 2 pixels), with photutils' exact pixel overlap. The error is the sky
noise times the root sum of the squared overlap weights (the simulated stamps carry sky noise only; a real
survey's bright galaxies would add their own Poisson noise). The light outside the circle is put back by one
factor per galaxy, the detection image's flux within SKY_RADIUS over its flux within the circle (at least 1, at
most MAX_CORRECTION): the same factor for every band, so colours, which the template fit reads, stay as measured;
CORRECTION_ERROR of the flux is added to the error for what one factor cannot put back in a band of worse seeing.

Fluxes come in the stamps' units; with the survey's zero point (27 for the simulated survey and HSC coadds)
`photometry.to_mag` turns them into magnitudes as the catalogue's.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np
from astropy.stats import sigma_clipped_stats

from zpeft.checksum import sha256_file
from zpeft.yardsticks.cache import cached, input_key

SKY_RADIUS = 0.375  # of the stamp's side: 24 pixels of 64 (4.0"), leaving the corners (44 % of a stamp) for the sky
KRON_FACTOR = 2.5  # SExtractor's MAG_AUTO factor
MIN_RADIUS_ARCSEC = 1.0  # about 1.4 x the survey's median seeing FWHM
MAX_CORRECTION = 2.0  # the largest light-outside-the-aperture correction a noisy detection image may give
# Relative error added in quadrature: the one correction per galaxy cannot follow the bands' different seeing
# (a g or r band under worse seeing than i loses ~1-2 % more light outside the circle).
CORRECTION_ERROR = 0.02
CHUNK = 1024  # stamps read and measured at a time
VERSION = 3  # bump when the measurement changes: cached photometry of an older version is not reused


def measure(images: np.ndarray, pixel_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(flux, error), each (N, bands), of stamps (N, bands, H, W) centred on their galaxy (see the module doc)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"stamps must be (N, bands, H, H), got shape {images.shape}")
    n, bands, size, _ = images.shape
    radius = _radius_map(size)
    sky_pixels = radius >= SKY_RADIUS * size
    _, _, noise = sigma_clipped_stats(images[:, :, sky_pixels], axis=-1, sigma=3.0, maxiters=5)
    noise = np.maximum(np.asarray(noise, dtype=np.float32), 1e-12)
    signal = images  # sky-subtracted already (see the module doc): the corners' level would hold the galaxy's wings
    detection = (signal / noise[:, :, None, None]).sum(axis=1)  # (N, H, W), sum of the bands' S/N per pixel
    inner = ~sky_pixels
    total = detection[:, inner].sum(axis=1)
    first = (detection[:, inner] * radius[inner]).sum(axis=1)
    r1 = np.where(total > 0, first / np.where(total > 0, total, 1.0), np.inf)
    r_max = SKY_RADIUS * size - 2.0
    aperture = np.clip(KRON_FACTOR * r1, min(MIN_RADIUS_ARCSEC / pixel_scale, r_max), r_max)
    flux, error = np.empty((n, bands), np.float64), np.empty((n, bands), np.float64)
    for k in range(n):
        weights = _weights(size, round(float(aperture[k]), 1))
        flux[k] = np.einsum("bij,ij->b", signal[k], weights, dtype=np.float64)
        error[k] = noise[k] * np.sqrt((weights**2).sum())
        in_aperture = float((detection[k] * weights).sum())
        correction = total[k] / in_aperture if in_aperture > 0 else 1.0
        correction = float(np.clip(correction, 1.0, MAX_CORRECTION))
        flux[k] *= correction
        error[k] = np.hypot(error[k] * correction, CORRECTION_ERROR * flux[k])
    return flux, error


@lru_cache(maxsize=8)
def _radius_map(size: int) -> np.ndarray:
    """Each pixel's distance from the stamp's centre ((size - 1) / 2, where GalSim centres an even stamp)."""
    centre = (size - 1) / 2.0
    y, x = np.mgrid[:size, :size]
    return np.hypot(x - centre, y - centre).astype(np.float32)


@lru_cache(maxsize=512)
def _weights(size: int, radius: float) -> np.ndarray:
    """photutils' exact overlap of a centred circle of `radius` pixels with each pixel of a size x size stamp."""
    from photutils.aperture import CircularAperture

    centre = (size - 1) / 2.0
    weights = CircularAperture((centre, centre), r=radius).to_mask(method="exact").to_image((size, size))
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


def file_photometry(path: str | Path, pixel_scale: float, image_key: str = "image") -> dict[str, np.ndarray]:
    """{"flux", "error"} (N, bands) of every stamp of an HDF5 file, measured once and cached by the file's bytes.

    The cache key is the file's SHA-256, the pixel scale and VERSION: the same file read again reuses the
    measurement, another file (or the same name with other bytes) is measured afresh.
    """
    path = Path(path)

    def build() -> dict[str, np.ndarray]:
        parts = []
        with h5py.File(path, "r") as f:
            if image_key not in f:
                raise ValueError(f"file {path}: no {image_key!r} dataset to measure photometry on")
            stamps = f[image_key]
            for start in range(0, len(stamps), CHUNK):
                parts.append(measure(stamps[start:start + CHUNK], pixel_scale))
        flux = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 0))
        error = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 0))
        return {"flux": flux, "error": error}

    key = input_key("onstamp", VERSION, sha256_file(path), image_key, float(pixel_scale))
    return cached("onstamp", key, build)
