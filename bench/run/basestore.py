"""Base models on disk, keyed by the hash of what determines them, shared by runs, processes and invocations.

`<dir>/<hash>.safetensors` holds the weights and `<dir>/<hash>.json` the TrainResult and the
config. Both are written atomically, the JSON last, so a base counts as present only when its
JSON exists; a second writer of the same base (two processes racing) simply replaces it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

from zpeft.run.atomic import atomic_write
from zpeft.training.settings import TrainResult


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
        atomic_write(self.weights_path(digest), lambda tmp: save_file(tensors, tmp, metadata={"config_hash": digest}))
        info = json.dumps({"config_hash": digest, "config": config, "result": asdict(result)}, indent=1)
        atomic_write(self.info_path(digest), lambda tmp: Path(tmp).write_text(info))
