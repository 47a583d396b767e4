"""On-disk layout of a simulated pair: one HDF5 file per (set, split) in the GalaxiesML layout,
plus manifest.json. The manifest is written last, so its presence marks a complete directory."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zpeft.checksum import matches, sha256_file
from zpeft.conventions import SPLITS
from zpeft.simsurvey.photometry import HSC_BANDS

LABEL_KEYS = {"photo": "lp_zPDF_CLASSIC", "spec": "specz_redshift"}
MANIFEST = "manifest.json"
# Columns copied from the catalogue into every file: name on disk -> (catalogue column, dtype).
_COMMON = {"z_truth": ("z_truth", "f4"), "object_id": ("object_id", "i8"), "is_red": ("red", "u1"),
           "half_light_radius": ("half_light_radius", "f4"), "ellipticity": ("ellipticity", "f4"),
           "bulge_fraction": ("bulge_fraction", "f4"),
           **{f"{b}_cmodel_mag": (f"{b}_cmodel_mag", "f4") for b in HSC_BANDS},
           **{f"{b}_cmodel_magerr": (f"{b}_cmodel_magerr", "f4") for b in HSC_BANDS}}
# Label-fit outputs, stored in the catalogue under these names.
PHOTO_COLUMNS = {"lp_zPDF_CLASSIC": "photoz", "lp_zPDF_l68": "photoz_l68", "lp_zPDF_u68": "photoz_u68",
                 "lp_chi2_best": "photoz_chi2"}


def file_name(kind: str, split: str) -> str:
    return f"{kind}_{split}.hdf5"


def set_rows(catalog: pd.DataFrame, kind: str, split_index: int) -> pd.DataFrame:
    """The galaxies of one set and split, ordered by object id."""
    mask = catalog[f"in_{kind}"].to_numpy() & (catalog["split"].to_numpy() == split_index)
    return catalog[mask].sort_values("object_id")


def write_tables(directory: Path, catalog: pd.DataFrame, stamp: int, attrs: dict) -> dict[tuple[str, str], int]:
    """Create every file with its columns and an empty `image` dataset; returns row counts."""
    counts = {}
    for kind in ("photo", "spec"):
        for k, split in enumerate(SPLITS):
            rows = set_rows(catalog, kind, k)
            if len(rows) == 0:
                raise ValueError(f"simulated {kind}-z {split} split is empty; enlarge the preset's areas")
            with h5py.File(directory / file_name(kind, split), "w") as f:
                f.create_dataset("image", shape=(len(rows), len(HSC_BANDS), stamp, stamp), dtype="f2")
                for name, (col, dtype) in _COMMON.items():
                    f.create_dataset(name, data=rows[col].to_numpy().astype(dtype))
                if kind == "photo":
                    for name, col in PHOTO_COLUMNS.items():
                        f.create_dataset(name, data=rows[col].to_numpy().astype("f4"))
                else:
                    f.create_dataset("specz_redshift", data=rows["spec_z"].to_numpy().astype("f4"))
                    # What the galaxy's photo-z label would be: lets a user see label error where spec-z galaxies live.
                    f.create_dataset("photoz_label", data=rows["photoz"].to_numpy().astype("f4"))
                f.attrs.update({**attrs, "set": kind, "split": split, "label_key": LABEL_KEYS[kind]})
            counts[(kind, split)] = len(rows)
    return counts


def fill_images(directory: Path, chunks: Iterable[tuple[tuple[str, str], int, np.ndarray]], total: int,
                progress: bool) -> None:
    """Write rendered stamps: each chunk is (file key, first row, images)."""
    with ExitStack() as stack, tqdm(total=total, desc="writing stamps", unit="gal", disable=not progress) as bar:
        files = {}
        for key, start, images in chunks:
            if key not in files:
                files[key] = stack.enter_context(h5py.File(directory / file_name(*key), "r+"))
            files[key]["image"][start:start + len(images)] = images
            bar.update(len(images))


def copy_images(directory: Path, donor: Path) -> None:
    """Take stamps from a finished pair with the same galaxies (same render hash)."""
    for kind in ("photo", "spec"):
        for split in SPLITS:
            name = file_name(kind, split)
            with h5py.File(donor / name, "r") as src, h5py.File(directory / name, "r+") as dst:
                if not np.array_equal(src["object_id"][:], dst["object_id"][:]):
                    raise ValueError(f"{donor / name}: object ids differ from the new pair's; delete that cache entry")
                for start in range(0, len(src["image"]), 4096):
                    dst["image"][start:start + 4096] = src["image"][start:start + 4096]


def write_manifest(directory: Path, manifest: dict) -> None:
    """Write the manifest last (it marks the pair complete), with the SHA-256 of every data file it names."""
    names = [name for split_files in manifest["files"].values() for name in split_files.values()]
    manifest = {**manifest, "sha256": {name: sha256_file(directory / name) for name in names}}
    path = directory / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=list))
    os.replace(tmp, path)


def damaged_files(directory: Path, manifest: dict) -> list[str]:
    """Data files of a pair that are missing or do not match the manifest's checksums (all, without checksums)."""
    sums = manifest.get("sha256")
    names = [name for split_files in manifest.get("files", {}).values() for name in split_files.values()]
    if not sums:
        return names
    return [name for name in names if not matches(Path(directory) / name, sums.get(name))]


def read_manifest(directory: Path) -> dict | None:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())
