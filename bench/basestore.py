"""Base models on disk, keyed by the hash of what determines them, shared by runs, processes and invocations.

`<dir>/<hash>.safetensors` holds the weights and `<dir>/<hash>.json` the TrainResult and the
config. Both are written atomically, the JSON last, so a base counts as present only when its
JSON exists; a second writer of the same base (two processes racing) simply replaces it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

from bench.train import TrainResult


class BaseStore:
    """Read and write base models under one directory (normally `<results>/base`)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def weights_path(self, digest: str) -> Path:
        return self.directory / f"{digest}.safetensors"

    def info_path(self, digest: str) -> Path:
        return self.directory / f"{digest}.json"

    def has(self, digest: str) -> bool:
        return self.info_path(digest).is_file() and self.weights_path(digest).is_file()

    def load(self, digest: str) -> tuple[dict[str, Tensor], TrainResult]:
        """Weights (CPU tensors) and the training result of base `digest`."""
        info = json.loads(self.info_path(digest).read_text())
        return load_file(self.weights_path(digest)), TrainResult(**info["result"])

    def save(self, digest: str, state: dict[str, Tensor], result: TrainResult, config: dict) -> None:
        """Write the weights, then the JSON that marks the base complete."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        _atomic(self.weights_path(digest), lambda tmp: save_file(tensors, tmp, metadata={"config_hash": digest}))
        info = json.dumps({"config_hash": digest, "config": config, "result": asdict(result)}, indent=1)
        _atomic(self.info_path(digest), lambda tmp: Path(tmp).write_text(info))


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path` (atomic on POSIX)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
