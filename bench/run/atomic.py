"""Atomic file writes: a reader, or a suite killed mid-write, never sees half a file."""

from __future__ import annotations

import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a hidden temporary file beside `path`, sync it, then rename it over `path`.

    The rename is atomic on POSIX; the hidden `.tmp` name keeps unfinished files out of the
    `*.json` record glob, and names the host and process writing it, so `remove_stale_temporaries`
    can tell a file being written from one left by a killed process.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_writer()}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> Path:
    """`atomic_write` of a text file (records, plans, model descriptions); returns `path`."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return Path(path)


def _writer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete temporary files below `directory` that this host's dead processes left; return them.

    Files of live processes, and of other hosts (a shared results directory under Ray), are kept.
    """
    mine = re.compile(rf"\.{re.escape(socket.gethostname())}-(\d+)\.\w+{re.escape(TEMP_SUFFIX)}$")
    removed = []
    for tmp in Path(directory).rglob(f".*{TEMP_SUFFIX}"):
        match = mine.search(tmp.name)
        if match is None or _alive(int(match.group(1))):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
