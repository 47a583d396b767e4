"""Image rows read only when asked: the pixels of a set stay where they are (in memory or in an HDF5 file).

A GalaxySet's images are `ImageRows`: a list of row numbers into one or more stores. Taking
a subset or joining sets (the combined photo-z + spec-z set, a spec-z data fraction) only
builds a new list, never copies pixels, and `read` returns just the rows (and centre crop)
a batch needs, in the stored precision (float16 for survey files).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np


class ArrayStore:
    """Images held in memory as one (N, C, H, W) array."""

    in_memory = True

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape, self.dtype = array.shape, array.dtype

    def read(self, rows: np.ndarray | slice, window: tuple[slice, slice]) -> np.ndarray:
        """Rows (sorted, unique, or a slice) cut to `window` (rows and columns of each image)."""
        return self.array[rows, :, window[0], window[1]]


class HDF5Store:
    """Images of one HDF5 dataset, read from disk batch by batch; the file is opened once per process."""

    in_memory = False

    def __init__(self, path: str | Path, key: str, n_rows: int) -> None:
        self.path, self.key = str(path), key
        with h5py.File(self.path, "r") as handle:
            data = handle[key]
            self.shape, self.dtype = (n_rows, *data.shape[1:]), data.dtype
        self._opened: tuple[int, h5py.Dataset] | None = None

    def _dataset(self) -> h5py.Dataset:
        if self._opened is None or self._opened[0] != os.getpid():  # a forked worker opens its own handle
            self._opened = (os.getpid(), h5py.File(self.path, "r")[self.key])
        return self._opened[1]

    def read(self, rows: np.ndarray | slice, window: tuple[slice, slice]) -> np.ndarray:
        """Rows (sorted, unique, or a slice) cut to `window`, straight from the file."""
        data = self._dataset()
        if isinstance(rows, np.ndarray):
            if len(rows) == 0:
                return np.empty((0, self.shape[1], *_window_shape(self.shape, window)), dtype=self.dtype)
            rows = rows.tolist()  # h5py selects increasing row lists
        return data[rows, :, window[0], window[1]]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_opened": None}  # file handles do not cross processes


class ImageRows:
    """Rows of one or more image stores, in a fixed order; pixels are read by `read`, never copied otherwise."""

    def __init__(self, stores: Sequence[ArrayStore | HDF5Store], part: np.ndarray, row: np.ndarray) -> None:
        self.stores, self.part, self.row = tuple(stores), part, row
        shapes = {s.shape[1:] for s in self.stores}
        if len(shapes) != 1:
            raise ValueError(f"image stores differ in image shape: {sorted(shapes)}")
        self.dtype = np.result_type(*(s.dtype for s in self.stores))
        self.shape = (len(row), *shapes.pop())

    @classmethod
    def of(cls, images: np.ndarray | ImageRows) -> ImageRows:
        """`images` as rows: an array becomes an in-memory store (not copied)."""
        if isinstance(images, ImageRows):
            return images
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
        return cls.whole(ArrayStore(images))

    @classmethod
    def whole(cls, store: ArrayStore | HDF5Store) -> ImageRows:
        """Every row of one store, in stored order."""
        n = store.shape[0]
        return cls([store], np.zeros(n, dtype=np.int16), np.arange(n, dtype=np.int64))

    @classmethod
    def concat(cls, parts: Sequence[ImageRows]) -> ImageRows:
        """The rows of `parts` one after the other (stores shared between parts are kept once)."""
        stores: list = []
        part_ids, rows = [], []
        for p in parts:
            index = []
            for s in p.stores:
                if not any(s is kept for kept in stores):
                    stores.append(s)
                index.append(next(i for i, kept in enumerate(stores) if kept is s))
            part_ids.append(np.asarray(index, dtype=np.int16)[p.part])
            rows.append(p.row)
        return cls(stores, np.concatenate(part_ids), np.concatenate(rows))

    def __len__(self) -> int:
        return len(self.row)

    def __getitem__(self, index) -> ImageRows:
        """The rows selected by an integer array, boolean mask or slice, as rows (no pixels read)."""
        if isinstance(index, (int, np.integer)):
            raise TypeError("select rows with an array or slice; read(rows) returns pixels")
        return ImageRows(self.stores, self.part[index], self.row[index])

    @property
    def in_memory(self) -> bool:
        return all(s.in_memory for s in self.stores)

    @property
    def nbytes(self) -> int:
        """Bytes of these rows' pixels in the stored precision."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def cropped_shape(self, crop: int | None) -> tuple[int, ...]:
        """The shape `read(crop=crop)` of every row returns."""
        return (*self.shape[:2], *_window_shape(self.shape, crop_window(self.shape, crop)))

    def read(self, index: np.ndarray | Sequence[int] | None = None, crop: int | None = None) -> np.ndarray:
        """Pixels of rows `index` (all rows when None), in that order, centre-cropped to `crop` x `crop`."""
        window = crop_window(self.shape, crop)
        chosen = np.arange(len(self)) if index is None else np.asarray(index, dtype=np.int64)
        part, row = self.part[chosen], self.row[chosen]
        out = np.empty((len(chosen), self.shape[1], *_window_shape(self.shape, window)), dtype=self.dtype)
        for p in np.unique(part):
            mine = np.flatnonzero(part == p)
            wanted = row[mine]
            out[mine] = _read_rows(self.stores[p], wanted, window)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        pixels = self.read()
        return pixels if dtype is None else pixels.astype(dtype)


def _read_rows(store: ArrayStore | HDF5Store, wanted: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
    """Rows `wanted` of one store in the order given: one contiguous slice when they are, else sorted unique rows."""
    if len(wanted) and wanted[-1] - wanted[0] == len(wanted) - 1 and np.all(np.diff(wanted) == 1):
        return store.read(slice(int(wanted[0]), int(wanted[-1]) + 1), window)
    unique, inverse = np.unique(wanted, return_inverse=True)
    block = store.read(unique, window)
    return block if len(unique) == len(wanted) and np.array_equal(unique, wanted) else block[inverse]


def crop_window(shape: tuple[int, ...], size: int | None) -> tuple[slice, slice]:
    """Rows and columns of the centred size x size window of (.., H, W) images (None: the whole image)."""
    h, w = shape[-2:]
    if size is None:
        return slice(0, h), slice(0, w)
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the {h}x{w} cutouts")
    top, left = (h - size) // 2, (w - size) // 2
    return slice(top, top + size), slice(left, left + size)


def _window_shape(shape: tuple[int, ...], window: tuple[slice, slice]) -> tuple[int, int]:
    return tuple(len(range(*s.indices(n))) for s, n in zip(window, shape[-2:]))
