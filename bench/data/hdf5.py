"""Reader for cutout files in the GalaxiesML / TransferZ HDF5 layout (dataset `image`, N x 5 x H x W).

A file holds one split of one catalogue: `image`, a label column (`specz_redshift`,
`lp_zPDF_CLASSIC` or `z_truth`), and optionally `object_id`, `z_truth`, `{band}_cmodel_mag`
and a template-fit photo-z column named by the caller. The simulated survey is written in the
same layout (its template-fit reference is fitted on reading: zpeft.simsurvey.reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import h5py

from zpeft.data.checks import BANDS, LABEL_KEYS, ImageMode, Problem, Scan, scan_columns
from zpeft.data.rows import HDF5Store, ImageRows
from zpeft.data.types import GalaxySet

IMAGE_KEY = "image"


def scan_hdf5(path: str | Path, label_key: str | None = None, *, bands: Sequence[str] | None = None,
              max_rows: int | None = None, id_key: str = "object_id", id_offset: int = 0,
              mode: ImageMode | Literal["stream"] = "load", template_key: str | None = None) -> Scan:
    """Check one HDF5 file and collect its columns; the reader and `zpeft data validate` both use it.

    Without `label_key` the first of the usual label columns present is used. `mode="stream"`
    checks every pixel like "check", then leaves the images in the file, read batch by batch.
    """
    if mode == "stream":
        scan = scan_hdf5(path, label_key, bands=bands, max_rows=max_rows, id_key=id_key, id_offset=id_offset,
                         mode="check", template_key=template_key)
        if not scan.problems:
            scan.images = ImageRows.whole(HDF5Store(path, IMAGE_KEY, scan.shape[0]))
        return scan
    file = str(path)
    bands = tuple(BANDS if bands is None else bands)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        return Scan(file, [Problem(file, None, f"is not a readable HDF5 file ({err})")])
    with handle:
        datasets = {k: v for k, v in handle.items() if isinstance(v, h5py.Dataset)}
        images = datasets.pop(IMAGE_KEY, None)
        if images is not None and images.size and images.id.get_storage_size() == 0:
            return Scan(file, [Problem(file, IMAGE_KEY, f"declares shape {images.shape} but stores no pixel data "
                                                        "(an empty or truncated file)")])
        if label_key is None:
            label_key = next((k for k in LABEL_KEYS if k in datasets), LABEL_KEYS[0])
        return scan_columns(file, images, datasets, label_key=label_key, id_key=id_key, image_key=IMAGE_KEY,
                            bands=bands, max_rows=max_rows, id_offset=id_offset, mode=mode, template_key=template_key)


def read_hdf5(path: str | Path, label_key: str, *, name: str | None = None, bands: Sequence[str] | None = None,
              max_rows: int | None = None, id_key: str = "object_id", id_offset: int = 0,
              template_key: str | None = None) -> GalaxySet:
    """Load one HDF5 cutout file into memory (first `max_rows` rows if given).

    `bands` names the image channels in order (default grizy): the file must have that many,
    and `{band}_cmodel_mag` columns become magnitudes. `z_truth`, when present and not the
    label, becomes the true z. `template_key`, a column of a template fit to the image bands
    (for HSC a grizy photo-z), becomes the reference `z_template`; without it there is none, since
    the usual photo-z columns (`lp_zPDF_CLASSIC`, `photoz_label`) are deep label fits. Raises ValueError
    naming file, key and rows on bad input.
    """
    scan = scan_hdf5(path, label_key, bands=bands, max_rows=max_rows, id_key=id_key, id_offset=id_offset,
                     template_key=template_key)
    return scan.galaxy_set(Path(path).stem if name is None else name)
