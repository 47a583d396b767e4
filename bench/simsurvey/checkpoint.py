"""A generation in progress, kept on disk so that a killed run resumes where it stopped.

Its directory sits beside the output and is named by the config hash. It holds the labelled
catalogue (saved once), the stamps of each finished shard (a run of galaxies of one set and
split), the pair being assembled, and a lock. Every file is written under a temporary name and
renamed, so a kill leaves either nothing or a whole file, never a torn one.
"""

from __future__ import annotations

import os
import shutil
import warnings
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
import pandas as pd

from zpeft.run.atomic import atomic_write

CATALOG = "catalog.npz"
SHARDS = "shards"
ASSEMBLY = "pair"  # the HDF5 files and manifest, renamed to the output when complete
LOCK = "lock"
_HELD: set[int] = set()  # descriptors of the locks this process holds


def _close_held_in_child() -> None:
    """A forked worker drops its copies of its parent's locks: else they would outlive a killed parent."""
    for fd in _HELD:
        with suppress(OSError):  # closed already
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


def partial_dir(out: Path, key: str) -> Path:
    """Where the generation of `out` under config hash `key` keeps its work: beside `out`, on the same disk."""
    return out.parent / f".{out.name}.partial-{key}"


def _writing(write: Callable[[BinaryIO], None]) -> Callable[[str], None]:
    """A writer of a temporary path from a writer of an open file (numpy would add .npy/.npz to a bare path)."""
    def to_path(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write(f)
    return to_path


def clear(directory: Path) -> None:
    """Remove everything in a partial directory but its lock: work of an unknown or other generation."""
    for entry in directory.iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def save_catalog(directory: Path, catalog: pd.DataFrame, key: str) -> None:
    """Save the labelled catalogue, column by column with exact dtypes, tagged with its config hash."""
    columns = list(catalog.columns)
    arrays = {f"c{k}": catalog[name].to_numpy() for k, name in enumerate(columns)}
    odd = [name for name, array in zip(columns, arrays.values()) if array.dtype == object]
    if odd:
        raise TypeError(f"catalogue columns {', '.join(odd)} are Python objects and cannot be checkpointed")
    atomic_write(directory / CATALOG, _writing(lambda f: np.savez(f, config_hash=np.array(key),
                                                                  columns=np.array(columns), **arrays)))


def load_catalog(directory: Path, key: str) -> pd.DataFrame | None:
    """The saved catalogue if there is one for config hash `key`, else None."""
    path = directory / CATALOG
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["config_hash"]) != key:
                return None
            columns = [str(name) for name in saved["columns"]]
            return pd.DataFrame({name: saved[f"c{k}"] for k, name in enumerate(columns)})
    except (OSError, ValueError, KeyError) as err:  # unreadable: it is rebuilt
        warnings.warn(f"{path}: unreadable checkpoint ({err}); building the catalogue again", stacklevel=2)
        return None


@dataclass(frozen=True)
class Shard:
    """Rows [start, stop) of the galaxies of one set and split, in the order of its file."""

    kind: str
    split: str
    start: int
    stop: int

    @property
    def name(self) -> str:
        """Its file name, which says which rows it holds (so a run with another shard size never takes it)."""
        return f"{self.kind}_{self.split}_{self.start:07d}-{self.stop:07d}.npy"

    def __len__(self) -> int:
        """How many galaxies it holds."""
        return self.stop - self.start


def plan_shards(counts: dict[tuple[str, str], int], size: int) -> list[Shard]:
    """Cut each (set, split) of `counts` galaxies into shards of `size`, in file order."""
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    return [Shard(kind, split, start, min(start + size, n))
            for (kind, split), n in counts.items() for start in range(0, n, size)]


def save_shard(directory: Path, shard: Shard, images: np.ndarray) -> None:
    """Save a shard's stamps (n, bands, stamp, stamp) atomically."""
    if len(images) != len(shard):
        raise ValueError(f"shard {shard.name}: {len(images)} stamps for {len(shard)} galaxies")
    (directory / SHARDS).mkdir(exist_ok=True)
    atomic_write(directory / SHARDS / shard.name, _writing(lambda f: np.save(f, images, allow_pickle=False)))


def shard_done(directory: Path, shard: Shard, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether a shard's file exists with the stamps it should hold (shape and dtype)."""
    path = directory / SHARDS / shard.name
    if not path.is_file():
        return False
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    return images.shape == (len(shard), *shape) and images.dtype == dtype


def load_shard(directory: Path, shard: Shard) -> np.ndarray:
    """A saved shard's stamps."""
    return np.load(directory / SHARDS / shard.name, allow_pickle=False)


@contextmanager
def locked(directory: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the lock of a partial directory (created if missing); yields whether it is held.

    An flock, released by the kernel when its owner dies, so a killed run never leaves a stale
    lock; the owner's pid is written in it for the message of a process that waits. With
    `wait` False, yields False at once when another process holds it.
    """
    fd = _acquire(directory, wait)
    if fd is not None:
        _HELD.add(fd)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            _HELD.discard(fd)
            os.close(fd)


def _acquire(directory: Path, wait: bool) -> int | None:
    """The open, locked lock file of `directory`, or None if another process holds it and `wait` is False."""
    import fcntl  # POSIX only, as GalSim is

    while True:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # its owner removed the directory meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    return None
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                warnings.warn(f"{directory}: process {owner} is generating this survey; waiting for it to finish",
                              stacklevel=4)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if not _is_file(fd, directory / LOCK):  # the owner finished and removed it: lock a new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise


def _is_file(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the file at `path`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
