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

from zpeft.checksum import matches, sha256_file
from zpeft.run.atomic import atomic_write, atomic_write_text
from zpeft.run.records import strict_json
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
        """True when base `digest` is complete and its weights match the checksum recorded with them.

        A truncated or altered file counts as absent, so the base model is trained again (and
        replaced) rather than used.
        """
        info = self._info(digest)
        return info is not None and matches(self.weights_path(digest), info.get("weights_sha256"))

    def load(self, digest: str) -> tuple[dict[str, Tensor], TrainResult]:
        """Weights (CPU tensors) and the training result of base `digest`; ValueError naming a corrupt file."""
        info = self._info(digest)
        if info is None or not matches(self.weights_path(digest), info.get("weights_sha256")):
            raise ValueError(f"base model {self.weights_path(digest)} is missing, unreadable or does not match its "
                             f"checksum in {self.info_path(digest).name}; it will be trained again")
        return load_file(self.weights_path(digest)), TrainResult.from_dict(info["result"])

    def result(self, digest: str) -> TrainResult | None:
        """How base `digest` trained (its JSON only, weights not read); None when it is not complete on disk."""
        return TrainResult.from_dict(self._info(digest)["result"]) if self.has(digest) else None

    def _info(self, digest: str) -> dict | None:
        try:
            info = json.loads(self.info_path(digest).read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) and "result" in info else None

    def save(self, digest: str, state: dict[str, Tensor], result: TrainResult, config: dict) -> None:
        """Write the weights, then the JSON that marks the base complete."""
        self.directory.mkdir(parents=True, exist_ok=True)
        write_safetensors(self.weights_path(digest), state, metadata={"config_hash": digest})
        info = json.dumps({"config_hash": digest, "config": config, "result": strict_json(asdict(result)),
                           "weights_sha256": sha256_file(self.weights_path(digest))}, indent=1)
        atomic_write_text(self.info_path(digest), info)


def write_safetensors(path: Path, state: dict[str, Tensor], metadata: dict[str, str] | None = None) -> Path:
    """A state dict as a safetensors file (CPU, contiguous copies), written atomically; returns `path`."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path
