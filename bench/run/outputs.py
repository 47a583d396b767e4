"""What users keep of each ok run: its trained weights and a predictions catalogue per test set.

Files go under `<out>/runs/<run_id>/` (`run.layout`), each written atomically; the record lists
every file with its SHA-256 (`RunRecord.outputs`, paths relative to the results directory), so a
run whose outputs are missing or damaged does not count as done. Weights are the part a run
changed: peft adapters in peft's own format (`save_pretrained`, loadable with
`PeftModel.from_pretrained`), plus any base tensor training changed outside the adapters
(BatchNorm statistics with bn=train); the full state dict for every other trained strategy;
nothing for zero-shot, whose weights are the base model's (`<out>/base/<hash>.safetensors`).

Catalogues are FITS binary tables (astropy, already a dependency; the survey format astronomers'
tools read directly, with no extra package): object_id, z_pred, z_label, z_true where known and
one `mag_<band>` column per magnitude band the test set has; then the run's conformal error bars
(zpeft.uncertainty): z_lo_68, z_hi_68, z_lo_95, z_hi_95 and z_quantiles, p(z) as quantiles at the
levels the header's PZLEVELS lists (qp.quant's locs). The calibration itself goes beside them
(`calibration.json`), so `zpeft export` can ship it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from zpeft.checksum import matches, sha256_file
from zpeft.data import GalaxySet
from zpeft.data.checks import BANDS
from zpeft.data.preprocess import Preprocessor
from zpeft.run.atomic import atomic_write, atomic_write_text
from zpeft.run.basestore import write_safetensors
from zpeft.run.layout import ResultsLayout

ADAPTER_DIR = "adapter"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # what PeftModel.from_pretrained reads
BASE_CHANGES = "base_changes.safetensors"
FULL_WEIGHTS = "model.safetensors"
MODEL_INFO = "model.json"
CALIBRATION = "calibration.json"


def write_outputs(out: str | Path, run_id: str, model: nn.Module, base_state: dict[str, Tensor] | None,
                  info: dict, tests: dict[str, GalaxySet], predictions: dict[str, np.ndarray],
                  trained: bool, calibrations: dict | None = None) -> dict[str, str]:
    """Write a run's model description, weights, calibration and catalogues; {path relative to `out`: SHA-256}.

    `calibrations` (variant -> uncertainty.Calibration) adds `calibration.json` and the catalogues' error bars.
    """
    layout = ResultsLayout(out)
    directory = layout.run_dir(run_id)
    directory.mkdir(parents=True, exist_ok=True)
    files = [_write_json(directory / MODEL_INFO, info)]
    if trained:
        files += save_weights(directory, model, base_state)
    kept = {path.relative_to(layout.root).as_posix(): sha256_file(path) for path in files}
    return {**kept, **write_catalogues(out, run_id, tests, predictions, calibrations)}


def write_catalogues(out: str | Path, run_id: str, tests: dict[str, GalaxySet], predictions: dict[str, np.ndarray],
                     calibrations: dict | None = None) -> dict[str, str]:
    """A run's catalogues, with error bars and `calibration.json` when `calibrations` are given; {path: SHA-256}."""
    from zpeft.uncertainty.runs import calibration_file, preferred

    layout = ResultsLayout(out)
    directory = layout.run_dir(run_id)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    if calibrations:
        files.append(_write_json(directory / CALIBRATION, calibration_file(calibrations)))
    for kind, galaxies in tests.items():
        calibration = preferred(calibrations, galaxies)[1] if calibrations else None
        files.append(write_catalogue(layout.catalogue(run_id, kind), galaxies, predictions[kind], run_id, kind,
                                     calibration))
    return {path.relative_to(layout.root).as_posix(): sha256_file(path) for path in files}


def outputs_intact(out: str | Path, outputs: dict | None) -> bool:
    """True when a record lists outputs and every one exists with its recorded SHA-256."""
    return bool(outputs) and not damaged_outputs(out, outputs)


def damaged_outputs(out: str | Path, outputs: dict | None) -> list[Path]:
    """The files of `outputs` that are missing, truncated or altered."""
    return [Path(out) / rel for rel, digest in (outputs or {}).items() if not matches(Path(out) / rel, digest)]


def model_info(backbone: str, in_chans: int, img_size: int, raw_size: tuple[int, int],
               preprocessor: Preprocessor, strategy: str, params: dict) -> dict:
    """What rebuilding the run's network needs besides weights: backbone, input shape and preprocessing."""
    return {"backbone": backbone, "in_chans": in_chans, "img_size": img_size, "raw_size": list(raw_size),
            "strategy": strategy, "params": params, "preprocessing": preprocessor.to_dict()}


# --- weights ------------------------------------------------------------------------------------------------------

def is_peft(model: nn.Module) -> bool:
    """True for a peft-wrapped model (LoRA, fused LoRA, DoRA, LoHa, LoKr): its adapter is what the run trained."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def save_weights(directory: Path, model: nn.Module, base_state: dict[str, Tensor] | None) -> list[Path]:
    """The adapter (peft's format) plus changed base tensors for peft models, else the full state dict."""
    if not is_peft(model):
        return [write_safetensors(directory / FULL_WEIGHTS, model.state_dict())]
    files = save_adapter(model, directory / ADAPTER_DIR)
    changed = base_changes(model, base_state or {})
    if changed:
        files.append(write_safetensors(directory / BASE_CHANGES, changed))
    return files


def save_adapter(model: nn.Module, directory: Path) -> list[Path]:
    """`save_pretrained` into a scratch folder, then each file into `directory` atomically (peft writes in place)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zpeft-adapter-") as scratch:
        model.save_pretrained(scratch)
        paths = []
        for name in ADAPTER_FILES:
            source = Path(scratch) / name
            if not source.is_file():
                found = sorted(p.name for p in Path(scratch).iterdir())
                raise RuntimeError(f"peft's save_pretrained wrote no {name} (it wrote {found})")
            atomic_write(directory / name, lambda tmp, source=source: shutil.copyfile(source, tmp))
            paths.append(directory / name)
    return paths


def base_changes(model: nn.Module, base_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Base tensors (base key names) that differ after training outside the adapters: BatchNorm statistics."""
    current = model.get_base_model().state_dict()
    return {k: v for k, v in current.items() if k in base_state and not torch.equal(v.detach().cpu(), base_state[k])}


def _write_json(path: Path, data: dict) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=1, allow_nan=False))


# --- catalogues ---------------------------------------------------------------------------------------------------

def catalogue_table(galaxies: GalaxySet, z_pred: np.ndarray, calibration=None):
    """An astropy Table of one test set in row order: ids, prediction, label, true z and magnitudes where known,
    then the error bars of `calibration` (an uncertainty.Calibration) when given."""
    from astropy.table import Table

    if len(z_pred) != len(galaxies):
        raise ValueError(f"{galaxies.name}: {len(z_pred)} predictions for {len(galaxies)} galaxies")
    columns = {"object_id": np.asarray(galaxies.ids, dtype=np.int64), "z_pred": np.asarray(z_pred, dtype=np.float32),
               "z_label": np.asarray(galaxies.z, dtype=np.float32)}
    if galaxies.z_true is not None:
        columns["z_true"] = np.asarray(galaxies.z_true, dtype=np.float32)
    bands = [b for b in BANDS if b in galaxies.mags] + sorted(set(galaxies.mags) - set(BANDS))  # survey order
    columns.update({f"mag_{band}": np.asarray(galaxies.mags[band], dtype=np.float32) for band in bands})
    if calibration is not None:
        from zpeft.uncertainty.runs import catalogue_columns

        columns.update(catalogue_columns(calibration, galaxies, z_pred))
    return Table(columns)


def write_catalogue(path: Path, galaxies: GalaxySet, z_pred: np.ndarray, run_id: str, test_set: str,
                    calibration=None) -> Path:
    """One test set's catalogue as a FITS binary table (header: run id, test set, p(z) levels), written atomically."""
    from zpeft.uncertainty import PZ_LEVELS

    table = catalogue_table(galaxies, z_pred, calibration)
    table.meta.update({"EXTNAME": "CATALOGUE", "RUN_ID": run_id, "TESTSET": test_set})
    if calibration is not None:
        table.meta.update({"CALIB": "mondrian-i" if calibration.mondrian else "marginal",
                           "PZLEVELS": ",".join(f"{q:g}" for q in PZ_LEVELS)})
    atomic_write(path, lambda tmp: table.write(tmp, format="fits", overwrite=True))
    return path


def read_catalogue(path: str | Path):
    """The astropy Table of a catalogue file; ValueError naming the file when it is unreadable."""
    from astropy.table import Table

    try:
        return Table.read(path, format="fits")
    except (OSError, ValueError) as err:
        raise ValueError(f"catalogue {path} is unreadable: {err}") from None
