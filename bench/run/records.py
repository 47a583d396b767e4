"""Run records: one JSON file per run, written atomically, plus its predictions and the test sets' references.

A record is data, not behaviour: what was run (config and its hash), what it cost, what it
scored. Per-galaxy predictions go beside it and the test sets' reference redshifts once per
dataset (paths from `run.layout`), so reports can compare two strategies on the same test
galaxies with a paired bootstrap.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np

from zpeft.conventions import EPOCH_CAP, STOPPING_RULE
from zpeft.run.atomic import atomic_write
from zpeft.run.layout import ResultsLayout

TEMPLATE_SUFFIX = "_template_grizy"  # `<test set>` + this: the best-case template fit to the catalogue magnitudes
# Further non-ML photo-z (GalaxySet.yardsticks), stored as `<test set>_<name>`: the best-case templates and prior
# fitted to photometry measured on the cutouts, and desc-bpz's shipped templates and prior fitted to the catalogue
# magnitudes and to the on-stamp ones (zpeft.yardsticks).
YARDSTICKS = ("template_onstamp", "bpz", "bpz_onstamp")
# Suffixes of the references beside a test set's labels. "_template" is what zpeft wrote before the simulated
# survey's reference became a grizy fit: on simulated data it held the deep label fit, so it is kept in old files
# (they still merge) but never read as the template-fit reference.
EXTRA_REFERENCES = ("_true", TEMPLATE_SUFFIX, "_template", *(f"_{name}" for name in YARDSTICKS))


@dataclass
class RunRecord:
    """Everything about one run: identity, settings, costs, scores, status and provenance."""

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
    train_settings: dict  # lr included
    status: Literal["ok", "failed"]
    error: str | None = None
    lr_source: str = ""  # where train_settings' lr came from: tuned, suite, protocol or default ("" if no training)
    lr_grid: list = field(default_factory=list)  # the grid a tuned lr was chosen on
    base_lr_source: str = ""  # where the base model's rate came from (same values as lr_source); "" from scratch
    ended_by: str = ""  # "stopping rule" (converged) or "epoch cap" (the safety limit); "" when it did not train
    lr_cuts: int = 0  # plateau schedule: times the learning rate was cut
    trainable_params: int = 0
    total_params: int = 0
    train_seconds: float = 0.0  # this strategy's own training; the base model's is in base_train_seconds
    base_train_seconds: float = 0.0
    epochs: int = 0
    best_epoch: int = 0  # 0 for a run that trained: no epoch beat the starting weights ("no gain")
    images_seen: int = 0
    images_per_second: float = 0.0
    peak_memory_mb: float = 0.0
    memory_kind: str = ""
    batch_size: int = 0  # the training batch used: smaller than the settings' after out-of-memory retries
    oom_retries: int = 0
    data_storage: str = ""  # the pair's images: memory (host arrays) or stream (read from HDF5 batch by batch)
    train_data_on: str = ""  # where training read its batches from: device (GPU copy), memory or stream
    predictions_sha256: str = ""  # of <run_id>.preds.npz: a record counts as done only with its predictions intact
    outputs: dict = field(default_factory=dict)  # kept files (run.outputs) relative to the results dir -> SHA-256
    step_mode: str = ""  # how the training steps ran: eager, compiled or cuda_graph
    device: str = ""
    dataset_meta: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # test set -> reference -> range -> metric -> value
    uncertainty: dict = field(default_factory=dict)  # test set -> variant -> reference -> scores (zpeft.uncertainty)
    history: list = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    created_at: str = ""
    config: dict = field(default_factory=dict)  # everything hashed into config_hash (zpeft.run.plan.plan_run)

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        """A record read back from JSON; an older record's `stopped_early` becomes `ended_by`."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "ended_by" not in data and "stopped_early" in data and data.get("epochs", 0) > 0:
            values["ended_by"] = STOPPING_RULE if data["stopped_early"] else EPOCH_CAP
        return cls(**values)


def config_hash(config: dict) -> str:
    """Stable short hash of a JSON-able config: the identity of a run for resuming."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_record(record: RunRecord, directory: str | Path) -> Path:
    """Write `<run_id>.json` atomically (temporary file + os.replace): readers never see half a record."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record.created_at = record.created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = ResultsLayout(directory).record(record.run_id)
    text = json.dumps(strict_json(asdict(record)), indent=1, allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def write_predictions(directory: str | Path, run_id: str, predictions: dict[str, np.ndarray]) -> Path:
    """Predictions per test set (`spec`, `photo`, `combined`), in test-set row order."""
    path = ResultsLayout(directory).predictions(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: _savez(tmp, {k: np.asarray(v, dtype=np.float32) for k, v in predictions.items()}))
    return path


def read_predictions(directory: str | Path, run_id: str) -> dict[str, np.ndarray]:
    """Predictions per test set as written by `write_predictions`; ValueError naming a corrupt file."""
    return load_npz(ResultsLayout(directory).predictions(run_id), "predictions")


def write_references(directory: str | Path, dataset: str, references: dict[str, np.ndarray]) -> Path:
    """Reference redshifts of a dataset's test sets, once per results directory, in test-set row order.

    Keys are test sets (`spec`, `photo`, `combined`) for the labels, `<test set>_true` for the true
    redshift where known and `<test set>` + TEMPLATE_SUFFIX for the template-fit photo-z where it
    has one; `dataset` is the record's `dataset` field. Writing the same arrays again is a no-op
    (every run of a dataset may call it, from any process); different arrays under the same dataset
    name are an error, since the records' predictions would no longer line up. Where one side only
    adds arrays (a file written by older code, without template fits), the file keeps the union:
    see `merged_references`.
    """
    arrays = {k: np.asarray(v) for k, v in references.items()}
    for key, value in arrays.items():
        if value.ndim != 1:
            raise ValueError(f"references {key!r} of dataset {dataset!r} must be 1-D, got shape {value.shape}")
    path = ResultsLayout(directory).references(dataset)
    old = None
    if path.exists():
        try:
            old = read_references(directory, dataset)
        except ValueError:  # truncated or altered (zip CRC): written again below, never used
            old = None
    if old is not None:
        merged = merged_references(old, arrays)
        if merged is None:
            raise ValueError(f"{path} already holds different test-set references for dataset {dataset!r}; "
                             "the data changed under the same name: use a fresh results directory")
        if merged.keys() == old.keys():
            return path
        arrays = merged  # an older file lacking some arrays: upgraded in place, its own arrays unchanged
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: _savez(tmp, arrays))
    return path


def merged_references(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The union of two reference sets of one dataset when they agree, None when they conflict.

    They agree when the label arrays are the same keys and, like every array both hold, equal;
    either may hold arrays the other lacks (true z or template fits, added by newer code).
    """
    if {k for k in old if not k.endswith(EXTRA_REFERENCES)} != {k for k in new if not k.endswith(EXTRA_REFERENCES)}:
        return None
    if any(not np.array_equal(old[k], new[k]) for k in old.keys() & new.keys()):
        return None
    return {**old, **new}


def read_references(directory: str | Path, dataset: str) -> dict[str, np.ndarray]:
    """The arrays `write_references` stored for `dataset`; FileNotFoundError names the file when absent."""
    path = ResultsLayout(directory).references(dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no test-set references for dataset {dataset!r} in this results directory "
                                "(the runner writes them with each run)")
    return load_npz(path, "test-set references")


def load_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file; FileNotFoundError when absent, ValueError naming it when truncated or altered.

    Reading every member checks the zip CRC of each, so flipped bytes do not pass unnoticed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {what} file")
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{what} file {path} is unreadable ({type(err).__name__}: {err}); delete it and run the "
                         "suite again to recompute it") from None


def strict_json(value):
    """`value` with every NaN or infinite float replaced by None, so strict JSON parsers read the file."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def read_records(directory: str | Path) -> list[RunRecord]:
    """Every record in a results directory (sorted by run id); unreadable files are an error naming them."""
    out = []
    for path in ResultsLayout(directory).record_files():
        try:
            out.append(RunRecord.from_dict(json.loads(path.read_text())))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"run record {path} is unreadable: {err}") from err
    return out


def _savez(filename: str, arrays: dict[str, np.ndarray]) -> None:
    # Through a file object: given a name, numpy would append ".npz" to the temporary file's name.
    with open(filename, "wb") as f:
        np.savez_compressed(f, **arrays)
