"""Reader for FITS cutouts with astropy: a cube (N x C x H x W) or one file per object, plus a catalogue.

The catalogue (labels, ids, optional `z_truth`, `{band}_cmodel_mag` and a named template-fit
photo-z column, see checks.scan_columns) is a table: a binary-table HDU in the cube's file, or a separate FITS / CSV / ECSV file. Cube rows match
catalogue rows by position; per-object cutouts match catalogue rows by id, the id coming
from a header keyword (`id_header`) or else from the digits in the file name.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from zpeft.data.checks import BANDS, LABEL_KEYS, ImageMode, Problem, Scan, check_ids, scan_columns
from zpeft.data.fitsheaders import header_problems
from zpeft.data.types import GalaxySet

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz")
_TABLE_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}


def is_fits(path: Path) -> bool:
    return path.name.lower().endswith(FITS_SUFFIXES)


def scan_fits(path: str | Path, catalogue: str | Path | None = None, *, label_key: str | None = None,
              id_key: str = "object_id", id_header: str = "OBJID", hdu: int | str | None = None,
              bands: Sequence[str] | None = None, max_rows: int | None = None, id_offset: int = 0,
              mode: ImageMode = "load", template_key: str | None = None) -> Scan:
    """Check a FITS cube or cutout directory with its catalogue and collect the columns (see `read_fits`)."""
    path = Path(path)
    bands = tuple(BANDS if bands is None else bands)
    common = dict(id_key=id_key, bands=bands, max_rows=max_rows, id_offset=id_offset, mode=mode,
                  template_key=template_key)
    if path.is_dir():
        return _scan_cutouts(path, catalogue, label_key, id_header, hdu, common)
    problems = header_problems(path)
    if problems:
        return Scan(str(path), problems)
    try:
        hdul = _open(path)
    except (OSError, ValueError) as err:
        return Scan(str(path), [Problem(str(path), None, f"is not a readable FITS file ({err})")])
    with hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        cube = _cube_hdu(hdul, hdu)
        if catalogue is None:
            tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
            if not tables:
                return Scan(str(path), [Problem(str(path), None, "has no binary-table HDU with labels; "
                                                                 "pass the catalogue file as `catalogue`")])
            table, table_file = Table.read(tables[0]), str(path)
        else:
            table, table_file = _read_table(Path(catalogue))
            if table is None:
                return Scan(str(path), [Problem(table_file, None, "cannot be read as a table (FITS, CSV or ECSV)")])
        columns = _columns(table)
        label_key = label_key or next((k for k in LABEL_KEYS if k in columns), LABEL_KEYS[0])
        image_key = "HDU " + (str(hdu) if cube is None else cube.name or str(hdul.index_of(cube)))
        images = None if cube is None or cube.data is None else cube.data
        scan = scan_columns(str(path), images, columns, label_key=label_key,
                            image_key=image_key, **common)
    if table_file != str(path):
        # Problems in catalogue columns belong to the catalogue file, not the cube.
        scan.problems = [Problem(table_file, p.key, p.message, p.rows, p.n_rows)
                         if p.key in columns else p for p in scan.problems]
    return scan


def read_fits(path: str | Path, catalogue: str | Path | None = None, *, label_key: str,
              id_key: str = "object_id", id_header: str = "OBJID", hdu: int | str | None = None,
              name: str | None = None, bands: Sequence[str] | None = None, max_rows: int | None = None,
              id_offset: int = 0, template_key: str | None = None) -> GalaxySet:
    """Load a FITS cube or a directory of per-object cutouts, with its catalogue, into memory.

    `path`: a FITS file whose HDU `hdu` (default: the first 4-d image HDU) is N x C x H x W,
    rows matching the catalogue's rows; or a directory of C x H x W cutouts, each matched to
    the catalogue by id (header keyword `id_header`, else the digits of the file name).
    `catalogue`: a FITS/CSV/ECSV table file; for a cube it defaults to the first binary
    table in the same file. `template_key`: the catalogue's column of a template fit to the image
    bands (a grizy photo-z for HSC), the non-ML reference; none when not named. Raises ValueError naming file,
    key and rows on bad input.
    """
    scan = scan_fits(path, catalogue, label_key=label_key, id_key=id_key, id_header=id_header, hdu=hdu,
                     bands=bands, max_rows=max_rows, id_offset=id_offset, template_key=template_key)
    return scan.galaxy_set(Path(path).name.split(".")[0] if name is None else name)


def _open(path: Path) -> fits.HDUList:
    """astropy's HDU list, its warnings silenced: the header checks above have reported what matters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        return fits.open(path, memmap=True)


def _cube_hdu(hdul: fits.HDUList, hdu: int | str | None):
    if hdu is not None:
        try:
            return hdul[hdu]
        except (KeyError, IndexError):
            return None
    return next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0) == 4), None)


def _read_table(path: Path) -> tuple[Table | None, str]:
    try:
        return Table.read(path, format=_TABLE_FORMATS.get(path.suffix.lower())), str(path)
    except (OSError, ValueError):
        return None, str(path)


def _columns(table: Table) -> dict[str, np.ndarray]:
    """Table columns as arrays; missing (masked) values become NaN so the checks see them."""
    out = {}
    for name in table.colnames:
        col = table[name]
        if np.ma.isMaskedArray(col) and col.dtype.kind == "f":
            out[name] = np.ma.filled(col, np.nan)
        else:
            out[name] = np.asarray(col)
    return out


def _scan_cutouts(path: Path, catalogue, label_key, id_header, hdu, common) -> Scan:
    file = str(path)
    files = sorted(p for p in path.iterdir() if is_fits(p))
    if catalogue is None:
        return Scan(file, [Problem(file, None, "a directory of cutouts needs a catalogue table: pass `catalogue`")])
    if not files:
        return Scan(file, [Problem(file, None, "has no FITS cutouts: the directory or split is empty")])
    table, table_file = _read_table(Path(catalogue))
    if table is None:
        return Scan(file, [Problem(table_file, None, "cannot be read as a table (FITS, CSV or ECSV)")])
    id_key = common["id_key"]
    if id_key not in table.colnames:
        return Scan(file, [Problem(table_file, id_key, "missing: per-object cutouts are matched to the "
                                                       "catalogue by id; name the id column with `id_key`")])
    table_ids = np.asarray(table[id_key]).astype(np.int64)
    problems = check_ids(table_file, id_key, table_ids)
    ids, shapes = [], []
    for f in files:
        bad = header_problems(f)
        if bad:
            problems += bad
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyWarning)
                header = fits.getheader(f, 0 if hdu is None else hdu)
                if header.get("NAXIS", 0) == 0 and hdu is None:  # compressed or extension-only cutouts
                    header = fits.getheader(f, 1)
        except (OSError, ValueError, IndexError, KeyError) as err:
            problems.append(Problem(str(f), "header", f"cannot be read ({type(err).__name__}: {err})"))
            continue
        digits = re.findall(r"\d+", f.name.split(".")[0])
        cutout_id = header.get(id_header, int(digits[-1]) if digits else None)
        if cutout_id is None:
            problems.append(Problem(str(f), id_header, "no id: set the header keyword or put the id in the file name"))
        ids.append(cutout_id)
        shapes.append(tuple(header.get(f"NAXIS{i}", 0) for i in range(header.get("NAXIS", 0), 0, -1)))
    common_shape = max(set(shapes), key=shapes.count)
    problems += [Problem(str(f), "image", f"has shape {s}, the other cutouts {common_shape}")
                 for f, s in zip(files, shapes) if s != common_shape]
    row_of = {int(i): r for r, i in enumerate(table_ids)}
    problems += [Problem(str(f), id_key, f"id {i} is not in the catalogue {table_file}")
                 for f, i in zip(files, ids) if i is not None and int(i) not in row_of]
    if problems:
        return Scan(file, problems)
    rows = np.array([row_of[int(i)] for i in ids])
    columns = {k: v[rows] for k, v in _columns(table).items()}
    scan = scan_columns(file, _Cutouts(files, common_shape, hdu), columns,
                        label_key=label_key or next((k for k in LABEL_KEYS if k in columns), LABEL_KEYS[0]),
                        image_key="image", **common)
    # Name the cutout files behind row numbers, which mean little for a directory.
    scan.problems = [Problem(p.file, p.key, p.message + " (" + ", ".join(files[r].name for r in p.rows) + ")",
                             p.rows, p.n_rows) if p.rows else p for p in scan.problems]
    return scan


class _Cutouts:
    """Per-object cutout files seen as one N x C x H x W array, read a slice at a time."""

    def __init__(self, files: list[Path], shape: tuple[int, ...], hdu: int | str | None):
        self.files, self.hdu = files, hdu
        self.shape = (len(files), *shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.stack([self._read(f) for f in self.files[rows]]).astype(np.float32, copy=False)

    def _read(self, f: Path) -> np.ndarray:
        with warnings.catch_warnings(), fits.open(f) as hdul:
            warnings.simplefilter("ignore", AstropyWarning)
            hdu = self.hdu if self.hdu is not None else next(i for i, h in enumerate(hdul) if h.data is not None)
            return np.asarray(hdul[hdu].data, dtype=np.float32)
