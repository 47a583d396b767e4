"""A toy dataset pair made of random images whose band fluxes depend on z: for tests only.

It is no survey: it exists so that the training loop and every strategy can run end to end
in seconds. Photo-z labels carry scatter and a few outliers; the spec-z set is brighter and
at lower z, as in real surveys, so adaptation has something to learn. `write_synthetic_pair`
writes such galaxies, any number of them, as an HDF5 pair on disk (for streaming and memory
benchmarks), chunk by chunk so the writer's memory stays small.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from zpeft.checksum import sha256_file
from zpeft.conventions import SPLITS
from zpeft.data.types import DatasetPair, GalaxySet

BANDS = ("g", "r", "i", "z", "y")
LABEL_KEYS = {"photo": "lp_zPDF_CLASSIC", "spec": "specz_redshift"}
_SETS = {"photo": dict(z_scale=1.0, bright=1.0, label_noise=0.05), "spec": dict(z_scale=0.5, bright=2.0, label_noise=1e-4)}
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


def toy_pair(n_photo: int = 600, n_spec: int = 300, size: int = 16, seed: int = 0) -> DatasetPair:
    """Photo-z and spec-z sets of Gaussian blobs whose colours encode redshift."""
    rng = np.random.default_rng(seed)
    photo = _toy_set(rng, n_photo, size, **_SETS["photo"], start_id=0, name="toy/photo")
    spec = _toy_set(rng, n_spec, size, **_SETS["spec"], start_id=n_photo, name="toy/spec")
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


def write_synthetic_pair(directory: str | Path, n_galaxies: int, *, size: int = 64, spec_share: float = 0.7,
                         seed: int = 0, chunk: int = 4096, progress: bool = True) -> Path:
    """Write `n_galaxies` toy galaxies as a pair directory in the GalaxiesML HDF5 layout (float16 images).

    `spec_share` of them form the spec-z set (the reference paper's pair is about 70 % spec-z),
    the rest the photo-z set; each set is split 60/20/20. Images are generated and written
    `chunk` rows at a time. The manifest, with every file's SHA-256, is written last.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n_spec = round(spec_share * n_galaxies)
    counts = {"photo": _split_counts(n_galaxies - n_spec), "spec": _split_counts(n_spec)}
    files: dict[str, dict[str, str]] = {}
    next_id = 0
    with tqdm(total=n_galaxies, desc="writing galaxies", unit="gal", disable=not progress) as bar:
        for k, (kind, splits) in enumerate(counts.items()):
            files[kind] = {}
            for i, (split, n) in enumerate(splits.items()):
                name = f"{kind}_{split}.hdf5"
                _write_set(directory / name, n, size, kind, next_id, seed=(seed, k, i), chunk=chunk, bar=bar)
                files[kind][split] = name
                next_id += n
    manifest = {"name": f"synthetic-{n_galaxies}", "source": "synthetic", "seed": seed, "size": size,
                "bands": list(BANDS), "label_keys": LABEL_KEYS, "files": files, "counts": counts,
                "sha256": {name: sha256_file(directory / name) for split_files in files.values()
                           for name in split_files.values()}}
    tmp = directory / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, directory / "manifest.json")
    return directory


def _split_counts(n: int) -> dict[str, int]:
    train, val = int(SPLIT_FRACTIONS[0] * n), int(SPLIT_FRACTIONS[1] * n)
    return dict(zip(SPLITS, (train, val, n - train - val)))


def _write_set(path: Path, n: int, size: int, kind: str, first_id: int, *, seed: tuple[int, ...], chunk: int,
               bar) -> None:
    with h5py.File(path, "w") as f:
        images = f.create_dataset("image", shape=(n, len(BANDS), size, size), dtype="f2")
        columns = {key: f.create_dataset(key, shape=(n,), dtype="f4")
                   for key in (LABEL_KEYS[kind], "z_truth", *(f"{b}_cmodel_mag" for b in BANDS))}
        f["object_id"] = np.arange(first_id, first_id + n, dtype=np.int64)
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            part = _toy_set(np.random.default_rng([*seed, start]), rows, size, **_SETS[kind], start_id=0, name="")
            images[start:start + rows] = part.images.read().astype(np.float16)
            columns[LABEL_KEYS[kind]][start:start + rows] = part.z
            columns["z_truth"][start:start + rows] = part.z_true
            for b in BANDS:
                columns[f"{b}_cmodel_mag"][start:start + rows] = part.mags[b]
            bar.update(rows)
