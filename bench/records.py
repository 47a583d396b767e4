"""Run records: one JSON file per run, written atomically, plus a predictions file for paired statistics.

A record is data, not behaviour: what was run (config and its hash), what it cost, what it
scored. Per-galaxy predictions go beside it (`<run_id>.preds.npz`), and the test sets' reference
redshifts once per dataset (`<dataset>.refs.npz`), so reports can compare two strategies on the
same test galaxies with a paired bootstrap.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Literal

import numpy as np

RECORD_SUFFIX = ".json"
PREDICTIONS_SUFFIX = ".preds.npz"
REFERENCES_SUFFIX = ".refs.npz"


@dataclass
class RunRecord:
    run_id: str
    config_hash: str
    suite: str
    dataset: str
    backbone: str
    strategy: str  # registry name, e.g. "lora"
    label: str  # display name, e.g. "lora-r4"
    params: dict  # the strategy's parameters (bn included)
    seed: int
    data_fraction: float  # share of the spec-z (or combined) training set used
    train_settings: dict
    status: Literal["ok", "failed"]
    error: str | None = None
    trainable_params: int = 0
    total_params: int = 0
    train_seconds: float = 0.0  # this strategy's own training; the base model's is in base_train_seconds
    base_train_seconds: float = 0.0
    epochs: int = 0
    best_epoch: int = 0
    images_seen: int = 0
    images_per_second: float = 0.0
    peak_memory_mb: float = 0.0
    memory_kind: str = ""
    device: str = ""
    dataset_meta: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # test set -> reference -> range -> metric -> value
    history: list = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    created_at: str = ""
    config: dict = field(default_factory=dict)  # everything hashed into config_hash (bench.plan.plan_run)

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def config_hash(config: dict) -> str:
    """Stable short hash of a JSON-able config: the identity of a run for resuming."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_record(record: RunRecord, directory: str | Path) -> Path:
    """Write `<run_id>.json` atomically (temporary file + os.replace): readers never see half a record."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record.created_at = record.created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = directory / f"{record.run_id}{RECORD_SUFFIX}"
    text = json.dumps(asdict(record), indent=1, allow_nan=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def write_predictions(directory: str | Path, run_id: str, predictions: dict[str, np.ndarray]) -> Path:
    """Predictions per test set (`spec`, `photo`, `combined`), in test-set row order."""
    path = Path(directory) / f"{run_id}{PREDICTIONS_SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: _savez(tmp, {k: np.asarray(v, dtype=np.float32) for k, v in predictions.items()}))
    return path


def read_predictions(directory: str | Path, run_id: str) -> dict[str, np.ndarray]:
    with np.load(Path(directory) / f"{run_id}{PREDICTIONS_SUFFIX}") as f:
        return {k: f[k] for k in f.files}


def write_references(directory: str | Path, dataset: str, references: dict[str, np.ndarray]) -> Path:
    """Reference redshifts of a dataset's test sets, once per results directory, in test-set row order.

    Keys are test sets (`spec`, `photo`, `combined`) for the labels and `<test set>_true` for the
    true redshift where known; `dataset` is the record's `dataset` field. Writing the same arrays
    again is a no-op (every run of a dataset may call it, from any process); different arrays under
    the same dataset name are an error, since the records' predictions would no longer line up.
    """
    arrays = {k: np.asarray(v) for k, v in references.items()}
    for key, value in arrays.items():
        if value.ndim != 1:
            raise ValueError(f"references {key!r} of dataset {dataset!r} must be 1-D, got shape {value.shape}")
    path = references_path(directory, dataset)
    if path.exists():
        old = read_references(directory, dataset)
        if old.keys() != arrays.keys() or any(not np.array_equal(old[k], arrays[k]) for k in arrays):
            raise ValueError(f"{path} already holds different test-set references for dataset {dataset!r}; "
                             "the data changed under the same name: use a fresh results directory")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: _savez(tmp, arrays))
    return path


def read_references(directory: str | Path, dataset: str) -> dict[str, np.ndarray]:
    """The arrays `write_references` stored for `dataset`; FileNotFoundError names the file when absent."""
    path = references_path(directory, dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no test-set references for dataset {dataset!r} in this results directory "
                                "(the runner writes them with bench.records.write_references)")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def references_path(directory: str | Path, dataset: str) -> Path:
    """`<slug>-<hash>.refs.npz`: dataset names may be paths, so the name is made file-safe and kept unique."""
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset)[-60:].strip("_") or "dataset"
    digest = hashlib.sha256(dataset.encode()).hexdigest()[:8]
    return Path(directory) / f"{slug}-{digest}{REFERENCES_SUFFIX}"


def read_records(directory: str | Path) -> list[RunRecord]:
    """Every record in a results directory (sorted by run id); unreadable files are an error naming them."""
    out = []
    for path in sorted(Path(directory).glob(f"*{RECORD_SUFFIX}")):
        try:
            out.append(RunRecord.from_dict(json.loads(path.read_text())))
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"run record {path} is unreadable: {err}") from err
    return out


def versions() -> dict:
    """Library versions and the git commit, so a record says what produced it."""
    import peft
    import timm
    import torch

    import bench

    return {
        "zpeft": bench.__version__, "torch": torch.__version__, "timm": timm.__version__, "peft": peft.__version__,
        "numpy": np.__version__, "python": platform.python_version(), "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a hidden temporary file beside `path`, sync it, then rename it over `path`.

    The rename is atomic on POSIX, so a reader (or a suite killed mid-write) never sees half a
    file; the `.tmp` suffix keeps unfinished files out of the `*.json` record glob.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _savez(filename: str, arrays: dict[str, np.ndarray]) -> None:
    # Through a file object: given a name, numpy would append ".npz" to the temporary file's name.
    with open(filename, "wb") as f:
        np.savez_compressed(f, **arrays)
