"""Arrays computed once and kept under $ZPEFT_CACHE/yardsticks/<kind>/<key>.npz, the key a hash of every input.

A changed input (another survey file, other filter curves, another method version) is another key, so it is
computed afresh; the same inputs read the stored arrays back. Writes are atomic, so concurrent readers of one
survey either find the whole file or compute it themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from zpeft.run.atomic import atomic_write
from zpeft.run.records import load_npz


def cache_dir(kind: str) -> Path:
    """$ZPEFT_CACHE/yardsticks/<kind> (the simulated surveys' cache root, zpeft.simsurvey.simulate.cache_root)."""
    from zpeft.simsurvey.simulate import cache_root

    return cache_root() / "yardsticks" / kind


def input_key(*parts) -> str:
    """A short stable hash of JSON-able parts and arrays (arrays by dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype.str}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def cached(kind: str, key: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored under (kind, key), else `build()`'s, stored there first; a damaged file is rebuilt."""
    path = cache_dir(kind) / f"{key}.npz"
    if path.exists():
        try:
            return load_npz(path, f"cached {kind}")
        except ValueError:
            pass  # truncated or altered: built and written again below
    arrays = {k: np.asarray(v) for k, v in build().items()}
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append ".npz"
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)
    return arrays
