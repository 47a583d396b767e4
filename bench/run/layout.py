"""The layout of a results directory: every path in it comes from here (runner, executors, reports).

    <out>/<run_id>.json            one record per run (run.records)
    <out>/<run_id>.preds.npz       its test-set predictions, in test-set row order
    <out>/<slug>-<hash>.refs.npz   each dataset's test-set reference redshifts, once
    <out>/base/<hash>.safetensors  base models (+ <hash>.json), shared by runs and processes
    <out>/suite/plan.json          the suite's current plan: which records belong to it
    <out>/runs/<run_id>/           what users keep of an ok run (run.outputs), each file's SHA-256 in the record:
        model.json                 backbone, in_chans, img_size, raw cutout size, preprocessing statistics
        catalogue-<test set>.fits  object_id, z_pred, z_label, z_true, mag_<band> per test set (spec, photo, combined)
        adapter/                   peft adapters: adapter_config.json + adapter_model.safetensors (save_pretrained)
        base_changes.safetensors   peft adapters: base tensors training changed (BatchNorm statistics with bn=train)
        model.safetensors          other trained strategies: the full state dict (zero-shot saves no weights)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from zpeft.conventions import slug

RECORD_SUFFIX = ".json"
PREDICTIONS_SUFFIX = ".preds.npz"
REFERENCES_SUFFIX = ".refs.npz"


@dataclass(frozen=True)
class ResultsLayout:
    """Paths of one results directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def record(self, run_id: str) -> Path:
        return self.root / f"{run_id}{RECORD_SUFFIX}"

    def predictions(self, run_id: str) -> Path:
        return self.root / f"{run_id}{PREDICTIONS_SUFFIX}"

    def references(self, dataset: str) -> Path:
        """`<slug>-<hash>.refs.npz`: dataset labels may be paths, so the name is made file-safe and kept unique."""
        name = slug(dataset)[-60:].strip("_") or "dataset"
        digest = hashlib.sha256(dataset.encode()).hexdigest()[:8]
        return self.root / f"{name}-{digest}{REFERENCES_SUFFIX}"

    def run_dir(self, run_id: str) -> Path:
        """`runs/<run_id>/`: the run's kept outputs (weights, catalogues), out of the records' glob."""
        return self.root / "runs" / run_id

    def catalogue(self, run_id: str, test_set: str) -> Path:
        return self.run_dir(run_id) / f"catalogue-{test_set}.fits"

    @property
    def bases(self) -> Path:
        return self.root / "base"

    @property
    def plan(self) -> Path:
        return self.root / "suite" / "plan.json"

    def record_files(self) -> list[Path]:
        """Every record file (sorted); predictions and references do not match the pattern."""
        return sorted(p for p in self.root.glob(f"*{RECORD_SUFFIX}") if p.is_file())

    @staticmethod
    def run_id_of(record_file: Path) -> str:
        return record_file.name[:-len(RECORD_SUFFIX)]
