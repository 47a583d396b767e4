"""A toy dataset pair made of random images whose band fluxes depend on z: for tests only.

It is no survey: it exists so that the training loop and every strategy can run end to end
in seconds. Photo-z labels carry scatter and a few outliers; the spec-z set is brighter and
at lower z, as in real surveys, so adaptation has something to learn.
"""

from __future__ import annotations

import numpy as np

from zpeft.data.types import DatasetPair, GalaxySet

BANDS = ("g", "r", "i", "z", "y")


def toy_pair(n_photo: int = 600, n_spec: int = 300, size: int = 16, seed: int = 0) -> DatasetPair:
    """Photo-z and spec-z sets of Gaussian blobs whose colours encode redshift."""
    rng = np.random.default_rng(seed)
    photo = _toy_set(rng, n_photo, size, z_scale=1.0, bright=1.0, label_noise=0.05, start_id=0, name="toy/photo")
    spec = _toy_set(rng, n_spec, size, z_scale=0.5, bright=2.0, label_noise=1e-4, start_id=n_photo, name="toy/spec")
    return DatasetPair("toy", _split(photo, rng), _split(spec, rng), meta={"source": "toy", "seed": seed})


def _toy_set(rng, n, size, z_scale, bright, label_noise, start_id, name) -> GalaxySet:
    z_true = rng.gamma(2.0, z_scale / 2.0, size=n).clip(0.01, 4.0).astype(np.float32)
    # Redder bands brighten with z: a crude colour-redshift relation a CNN can learn.
    slope = np.linspace(-1.0, 1.0, len(BANDS))[None, :]
    flux = bright * np.exp(slope * np.log1p(z_true)[:, None]) * rng.lognormal(0, 0.2, size=(n, 1))
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    radius = rng.uniform(1.0, 3.0, size=n) / (1 + z_true)
    profile = np.exp(-(xx**2 + yy**2)[None] / (2 * radius[:, None, None] ** 2 + 1.0))
    images = flux[:, :, None, None] * profile[:, None] + rng.normal(0, 0.05, size=(n, len(BANDS), size, size))
    outlier = rng.random(n) < (0.03 if label_noise > 0.01 else 0.0)
    z = z_true + label_noise * (1 + z_true) * rng.standard_normal(n)
    z = np.where(outlier, rng.uniform(0.05, 3.0, size=n), z).clip(0.0, 6.0).astype(np.float32)
    mags = {b: (25.0 - 2.5 * np.log10(flux[:, i] * 2 * np.pi * radius**2 + 1e-3)).astype(np.float32)
            for i, b in enumerate(BANDS)}
    return GalaxySet(images.astype(np.float32), z, np.arange(start_id, start_id + n, dtype=np.int64),
                     z_true=z_true, mags=mags, name=name)


def _split(full: GalaxySet, rng, fractions=(0.6, 0.2, 0.2)) -> dict[str, GalaxySet]:
    order = rng.permutation(len(full))
    n_train = int(fractions[0] * len(full))
    n_val = int(fractions[1] * len(full))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {k: full.subset(np.sort(v), name=f"{full.name}/{k}") for k, v in parts.items()}
