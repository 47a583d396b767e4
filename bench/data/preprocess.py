"""Pixel preprocessing fitted on the photo-z training set: arcsinh stretch, per-band standardisation.

arcsinh(pixel / (3 sigma_sky)) keeps faint galaxies linear and compresses bright cores, the
usual choice for survey cutouts; the per-band mean and std then put all bands on one scale.
The fit uses only the photo-z training images, so no test information leaks in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from astropy.stats import mad_std

_FIT_ROWS = 4096  # statistics from at most this many images: plenty for 5 numbers per band


@dataclass(frozen=True)
class Preprocessor:
    """Per-band sky sigma, then mean and std of the stretched pixels; `crop` keeps the centre."""

    sky_sigma: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop: int | None = None

    @classmethod
    def fit(cls, images: np.ndarray, crop: int | None = None, seed: int = 0) -> "Preprocessor":
        """Estimate the statistics on (a random subset of) `images`, shape (N, C, H, W)."""
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(images), size=min(len(images), _FIT_ROWS), replace=False))
        sample = np.asarray(images[rows], dtype=np.float32)
        # The outer ring of each cutout is mostly sky: its robust spread is the sky noise.
        edge = np.concatenate([sample[:, :, :4, :].reshape(len(sample), sample.shape[1], -1),
                               sample[:, :, -4:, :].reshape(len(sample), sample.shape[1], -1)], axis=2)
        sky = np.array([mad_std(edge[:, b]) for b in range(sample.shape[1])], dtype=np.float64)
        if not np.all(np.isfinite(sky)) or np.any(sky <= 0):
            raise ValueError(f"cannot estimate sky noise per band from the image borders: {sky.tolist()}")
        stretched = _stretch(_crop(sample, crop), sky)
        mean = stretched.mean(axis=(0, 2, 3))
        std = stretched.std(axis=(0, 2, 3))
        return cls(tuple(map(float, sky)), tuple(map(float, mean)), tuple(map(float, std)), crop)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Transform raw images (N, C, H, W) to float32 network input."""
        if images.shape[1] != len(self.sky_sigma):
            raise ValueError(f"images have {images.shape[1]} bands, preprocessor was fitted on {len(self.sky_sigma)}")
        out = _stretch(_crop(np.asarray(images, dtype=np.float32), self.crop), np.asarray(self.sky_sigma))
        out -= np.asarray(self.mean, dtype=np.float32)[None, :, None, None]
        out /= np.asarray(self.std, dtype=np.float32)[None, :, None, None]
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def _stretch(images: np.ndarray, sky_sigma: np.ndarray) -> np.ndarray:
    scale = (3.0 * sky_sigma).astype(np.float32)[None, :, None, None]
    return np.arcsinh(images / scale).astype(np.float32)


def _crop(images: np.ndarray, size: int | None) -> np.ndarray:
    """Centre crop to size x size (None keeps the full cutout)."""
    if size is None:
        return images
    h, w = images.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the {h}x{w} cutouts")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]
