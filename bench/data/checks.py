"""Checks on survey files: every problem names the file, the key and the rows, and says how to fix it.

The readers run the same checks while they load (and raise on any problem), so `zpeft data
validate` and a failing run report a bad file in the same words. Pixels are checked chunk by
chunk as they are copied, so a large file never needs twice its size in memory.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from zpeft.data.rows import ImageRows
from zpeft.data.types import GalaxySet

BANDS = ("g", "r", "i", "z", "y")
LABEL_KEYS = ("specz_redshift", "lp_zPDF_CLASSIC", "z_truth")  # the usual label columns, most specific first
Z_RANGE = (0.0, 6.0)
SHOWN_ROWS = 5  # a problem lists at most this many example rows
_CHUNK_BYTES = 64 * 2**20  # pixels are copied and checked in blocks of about this size
_PROGRESS_ROWS = 50_000  # show a progress bar when a file has more rows than this

ImageMode = Literal["load", "check", "skip"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: where (file, key, first rows) and what, with a hint to fix it."""

    file: str
    key: str | None
    message: str
    rows: tuple[int, ...] = ()
    n_rows: int = 0  # how many rows are affected in all (rows lists only the first few)

    def __str__(self) -> str:
        where = f"file {self.file}"
        if self.key is not None:
            where += f", key {self.key!r}"
        if self.rows:
            listed = ", ".join(map(str, self.rows))
            more = f" ({self.n_rows} rows in all)" if self.n_rows > len(self.rows) else ""
            where += f", row{'s' if self.n_rows > 1 else ''} {listed}{more}"
        return f"{where}: {self.message}"


def rows_problem(file: str, key: str | None, bad: np.ndarray, message: str) -> list[Problem]:
    """A problem for the rows where the boolean mask `bad` is set, or none when it is all False."""
    rows = np.flatnonzero(bad)
    if len(rows) == 0:
        return []
    return [Problem(file, key, message, tuple(int(r) for r in rows[:SHOWN_ROWS]), len(rows))]


def raise_problems(problems: Sequence[Problem]) -> None:
    """Raise one ValueError listing every problem (one per line), or do nothing when there are none."""
    if problems:
        lines = "\n".join(str(p) for p in problems)
        raise ValueError(f"{len(problems)} problem(s) in the input data (run `zpeft data validate` on it):\n{lines}")


def check_image_shape(file: str, key: str, shape: tuple[int, ...], n_bands: int = len(BANDS)) -> list[Problem]:
    """Images must be (N, bands, H, W) with N > 0 and the expected number of bands."""
    if len(shape) != 4:
        return [Problem(file, key, f"has shape {shape}, expected (N, {n_bands}, H, W): one cutout per row")]
    if shape[1] != n_bands:
        return [Problem(file, key, f"has {shape[1]} bands (shape {shape}), expected {n_bands}; "
                                   "pass the bands the file holds, or fix the file")]
    if shape[0] == 0:
        return [Problem(file, key, "has no rows: the file or split is empty")]
    return []


def check_lengths(file: str, n: int, reference_key: str, columns: dict[str, int]) -> list[Problem]:
    """Every per-galaxy column must have as many rows as the images."""
    return [Problem(file, key, f"has {m} rows but {reference_key!r} has {n}; each row must be one galaxy")
            for key, m in columns.items() if m != n]


def check_labels(file: str, key: str, z: np.ndarray, z_range: tuple[float, float] = Z_RANGE) -> list[Problem]:
    """Redshift labels must be finite and inside `z_range` (failed fits are often stored as -99)."""
    lo, hi = z_range
    bad = ~np.isfinite(z) | (z < lo) | (z > hi)
    examples = ", ".join(f"{v:g}" for v in np.unique(z[bad])[:3])
    return rows_problem(file, key, bad, f"redshift outside [{lo:g}, {hi:g}] or not finite (e.g. {examples}); "
                                        "drop those rows or fix the label column")


def check_ids(file: str, key: str, ids: np.ndarray) -> list[Problem]:
    """Object ids must be unique: they match galaxies between catalogues."""
    order = np.argsort(ids, kind="stable")
    repeat = np.zeros(len(ids), dtype=bool)
    repeat[order[1:]] = ids[order[1:]] == ids[order[:-1]]
    examples = ", ".join(str(v) for v in np.unique(ids[repeat])[:3])
    return rows_problem(file, key, repeat, f"duplicate object ids (e.g. {examples}); each galaxy must appear once")


def check_disjoint(kind: str, ids_by_split: dict[str, tuple[str, np.ndarray]]) -> list[Problem]:
    """The train, val and test splits of one catalogue must not share galaxies (that would leak test data)."""
    problems = []
    splits = list(ids_by_split)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            file_a, ids_a = ids_by_split[a]
            file_b, ids_b = ids_by_split[b]
            shared = np.isin(ids_b, ids_a)
            problems += rows_problem(file_b, "object_id", shared,
                                     f"{kind}-z {b} split shares object ids with the {a} split ({file_a}); "
                                     "splits must be disjoint")
    return problems


def check_same_split_across_sets(ids_by_kind: dict[str, dict[str, tuple[str, np.ndarray]]]) -> list[Problem]:
    """A galaxy in both the photo-z and the spec-z set must sit in the same split of each.

    Otherwise a spec-z test galaxy can be a photo-z training galaxy, and the base model (and
    the combined set) would train on test images.
    """
    problems = []
    kinds = list(ids_by_kind)
    for i, kind_a in enumerate(kinds):
        for kind_b in kinds[i + 1:]:
            for split_a, (file_a, ids_a) in ids_by_kind[kind_a].items():
                for split_b, (file_b, ids_b) in ids_by_kind[kind_b].items():
                    if split_a == split_b:
                        continue
                    shared = np.isin(ids_b, ids_a)
                    problems += rows_problem(file_b, "object_id", shared,
                                             f"{kind_b}-z {split_b} galaxies are in the {kind_a}-z {split_a} split "
                                             f"({file_a}); a galaxy in both sets must be in the same split of each")
    return problems


def copy_checked_pixels(file: str, key: str, images, out: np.ndarray | None = None) -> list[Problem]:
    """Read `images` (an h5py dataset, memmap or array) block by block, into `out` if given, flagging NaN/inf rows.

    Reading in blocks keeps memory at one output array plus one block, whatever the file size.
    """
    n = len(images)
    row_bytes = max(1, int(np.prod(images.shape[1:])) * np.dtype(images.dtype).itemsize)
    step = max(1, _CHUNK_BYTES // row_bytes)
    bad = np.zeros(n, dtype=bool)
    with tqdm(total=n, unit="img", desc=f"reading {os.path.basename(file)}", disable=n <= _PROGRESS_ROWS) as bar:
        for start in range(0, n, step):
            block = np.asarray(images[start:start + step])
            if out is not None:
                out[start:start + len(block)] = block
                block = out[start:start + len(block)]
            bad[start:start + len(block)] = ~np.isfinite(block).all(axis=tuple(range(1, block.ndim)))
            bar.update(len(block))
    return rows_problem(file, key, bad, "NaN or inf pixels; drop or repair those cutouts")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable on Linux), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def image_dtype(dtype) -> np.dtype:
    """Keep float16 (half the memory of the paper-size sets); everything else becomes float32."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float16) if dtype.kind == "f" and dtype.itemsize == 2 else np.dtype(np.float32)


@dataclass
class Scan:
    """What a reader found in one file: its columns (images only when loaded) and its problems."""

    file: str
    problems: list[Problem] = field(default_factory=list)
    shape: tuple[int, ...] | None = None  # the image shape on disk (after max_rows)
    itemsize: int = 4  # bytes per pixel once read (float16 stays float16)
    images: np.ndarray | ImageRows | None = None  # rows left in the file when streamed
    z: np.ndarray | None = None
    ids: np.ndarray | None = None
    z_true: np.ndarray | None = None
    z_template: np.ndarray | None = None
    yardsticks: dict[str, np.ndarray] = field(default_factory=dict)  # GalaxySet.yardsticks
    mags: dict[str, np.ndarray] = field(default_factory=dict)
    ids_from_rows: bool = False  # the file has no id column: ids are row index + offset

    def galaxy_set(self, name: str) -> GalaxySet:
        """The loaded set; raises ValueError listing every problem if there is any."""
        raise_problems(self.problems)
        if self.images is None:
            raise ValueError(f"file {self.file}: images were not loaded (scan with mode='load')")
        if self.ids_from_rows:
            warnings.warn(f"file {self.file}: no object id column; using row index + {int(self.ids[0])} as ids, "
                          "so its galaxies cannot be matched with other catalogues", stacklevel=3)
        return GalaxySet(self.images, self.z, self.ids, z_true=self.z_true, mags=self.mags, name=name,
                         z_template=self.z_template, yardsticks=self.yardsticks)


def scan_columns(file: str, images, columns: dict, *, label_key: str, id_key: str, image_key: str,
                 bands: Sequence[str], max_rows: int | None, id_offset: int, mode: ImageMode,
                 template_key: str | None = None) -> Scan:
    """Check images and per-galaxy columns of one file (any format) and collect them.

    `images` is array-like (h5py dataset, FITS memmap, array) or None when the file has none;
    `columns` maps column name to an array-like with one row per galaxy. The label column
    must be present; `id_key`, `z_truth` and `{band}_cmodel_mag` are optional. Missing ids
    fall back to row index + `id_offset`. `mode`: 'load' keeps the images, 'check' reads and
    checks the pixels only, 'skip' leaves the pixels alone (a quick look at the columns).
    The template-fit photo-z reference comes from `template_key` only (then it must be present and
    valid): a column of a template fit to the same bands as the images, which only the user can name
    (for HSC, a grizy photo-z such as Mizuki's). No column is taken by default: the usual photo-z
    columns (`lp_zPDF_CLASSIC`, the simulated survey's `photoz_label`) are deep many-band label fits,
    not a reference at the images' depth.
    """
    scan = Scan(file)
    present = ", ".join(sorted(columns)) or "none"
    if images is None:
        scan.problems.append(Problem(file, image_key, f"missing: no image cube found (columns present: {present})"))
    if label_key not in columns:
        scan.problems.append(Problem(file, label_key, f"missing; columns present: {present}; "
                                                      "name the label column the file uses"))
    elif np.ndim(columns[label_key]) != 1:
        scan.problems.append(Problem(file, label_key, f"has shape {np.shape(columns[label_key])}, "
                                                      "expected one label per row"))
    if images is not None:
        scan.problems += check_image_shape(file, image_key, tuple(images.shape), len(bands))
    if scan.problems:
        return scan
    n_all = images.shape[0]
    if template_key is not None and template_key not in columns:
        scan.problems.append(Problem(file, template_key, f"missing (named as the template-fit photo-z column); "
                                                         f"columns present: {present}"))
        return scan
    optional = [k for k in (id_key, "z_truth", template_key, *(f"{b}_cmodel_mag" for b in bands))
                if k is not None and k in columns]
    scan.problems += check_lengths(file, n_all, image_key, {k: len(columns[k]) for k in (label_key, *optional)})
    if scan.problems:
        return scan
    n = n_all if max_rows is None else min(n_all, max_rows)
    scan.shape = (n, *images.shape[1:])
    scan.itemsize = image_dtype(images.dtype).itemsize
    scan.z = np.asarray(columns[label_key][:n], dtype=np.float32)
    scan.problems += check_labels(file, label_key, scan.z)
    if id_key in columns:
        scan.ids = np.asarray(columns[id_key][:n]).astype(np.int64)
        scan.problems += check_ids(file, id_key, scan.ids)
    else:
        scan.ids = np.arange(id_offset, id_offset + n, dtype=np.int64)
        scan.ids_from_rows = True
    if "z_truth" in columns and label_key != "z_truth":
        scan.z_true = np.asarray(columns["z_truth"][:n], dtype=np.float32)
        scan.problems += check_labels(file, "z_truth", scan.z_true)
    if template_key is not None:
        scan.z_template = np.asarray(columns[template_key][:n], dtype=np.float32)
        scan.problems += check_labels(file, template_key, scan.z_template)
    scan.mags = {b: np.asarray(columns[f"{b}_cmodel_mag"][:n], dtype=np.float32)
                 for b in bands if f"{b}_cmodel_mag" in columns}
    if mode == "skip":
        return scan
    if mode == "load":
        needed = int(np.prod(scan.shape)) * image_dtype(images.dtype).itemsize
        available = available_memory()
        if available is not None and needed > available:
            scan.problems.append(Problem(file, image_key, f"{scan.shape} images need {needed / 2**30:.1f} GiB to load; "
                                                          f"{available / 2**30:.1f} GiB of memory is available"))
            return scan
    out = np.empty(scan.shape, dtype=image_dtype(images.dtype)) if mode == "load" else None
    scan.problems += copy_checked_pixels(file, image_key, images[:n] if isinstance(images, np.ndarray) else
                                         _Rows(images, n), out)
    scan.images = out
    return scan


class _Rows:
    """The first n rows of an array-like, sliced lazily (h5py datasets must not be read whole)."""

    def __init__(self, data, n: int):
        self.data, self.shape, self.dtype = data, (n, *data.shape[1:]), data.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice):
        start, stop, _ = rows.indices(self.shape[0])
        return self.data[start:stop]
