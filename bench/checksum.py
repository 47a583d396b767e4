"""SHA-256 of files the harness reuses: written beside them or into the record, verified before reuse."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_BLOCK = 1 << 20


_KNOWN: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> digest, for files read again unchanged


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (remembered while the file's size and modification time stay the same)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _KNOWN:
        _KNOWN[key] = _digest(path)
    return _KNOWN[key]


def _digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def matches(path: str | Path, expected: str | None) -> bool:
    """True when `path` exists and its SHA-256 is `expected`; an unrecorded checksum never matches."""
    try:
        return bool(expected) and sha256_file(path) == expected
    except OSError:
        return False
