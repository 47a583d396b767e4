"""`zpeft export`: one run's model as files that work without zpeft.

The model is rebuilt from the record (backbone, strategy, parameters), the base weights
(`<out>/base/`) and the run's kept weights (`run.outputs`), then written as:

    adapter/                   peft adapters as saved (PeftModel.from_pretrained on the base network)
    base_changes.safetensors   peft runs with bn=train: base tensors training changed (BatchNorm statistics)
    model.safetensors          other trained strategies: their full state dict
    base.safetensors           the base model the run started from (none for strategies trained from scratch)
    merged.safetensors         the run's network as one state dict, adapters merged in: the pretrained `weights`
                               of another suite's backbone (with preprocessing.json as its `preprocessing`)
    calibration.json           the run's conformal calibration: error bars for the model's predictions
    model.json                 backbone name, in_chans, img_size, raw cutout size, strategy, parameters, run id
    preprocessing.json         sky_sigma, mean, std per band and the centre crop
    model.pt2                  torch.export program of the merged model WITH the preprocessing inside
    README.txt                 how to load and apply it

The exported program takes raw cutouts (float32, N x C x H x W at the survey's cutout size) and
does the centre crop, arcsinh(pixel / (3 sky_sigma)) and per-band standardisation itself: the
statistics of the photo-z training set travel with the model, so a user cannot apply other
ones by mistake, and plain `torch.export.load(path).module()` is the whole recipe.

A run id may be given by a prefix that only one run has (`DATASET__BACKBONE__LABEL__f1__s0`,
without the hash). A run whose backbone is not registered in this process (one from a module:
`--import` it again) or whose network torch.export cannot trace is refused in one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import Tensor, nn

from zpeft.run.atomic import atomic_write, atomic_write_text
from zpeft.run.basestore import BaseStore, write_safetensors
from zpeft.run.layout import ResultsLayout
from zpeft.run.outputs import (
    ADAPTER_DIR,
    ADAPTER_FILES,
    BASE_CHANGES,
    CALIBRATION,
    FULL_WEIGHTS,
    MODEL_INFO,
    damaged_outputs,
)
from zpeft.run.records import RunRecord, config_hash

PROGRAM = "model.pt2"
MERGED = "merged.safetensors"
CHECK_TOLERANCE = 1e-4  # exported program against the rebuilt eager model on a random batch


class ExportError(ValueError):
    """A run that cannot be exported: unknown, failed, or with missing or damaged files (named)."""


def export_run(results_dir: str | Path, run_id: str, out_dir: str | Path) -> list[Path]:
    """Write run `run_id` of `results_dir` into `out_dir` (see the module docstring); the files written."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    run_id = resolve_run_id(results_dir, run_id)
    record = load_ok_record(results_dir, run_id)
    layout = ResultsLayout(results_dir)
    info = json.loads((layout.run_dir(run_id) / MODEL_INFO).read_text())
    network = merged(rebuild_model(results_dir, record, info))
    program = export_program(network, info)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = _copy_weights(layout, record, out_dir)
    written.append(write_safetensors(out_dir / MERGED, network.state_dict(), metadata={"run_id": run_id}))
    digest = base_hash(record)
    if digest is not None:
        written.append(_copy(BaseStore(layout.bases).weights_path(digest), out_dir / "base.safetensors"))
    if _kept(record, CALIBRATION):
        written.append(_copy(layout.run_dir(run_id) / CALIBRATION, out_dir / CALIBRATION))
    description = {key: info[key] for key in ("backbone", "in_chans", "img_size", "raw_size", "strategy", "params")}
    description.update(run_id=run_id, label=record.label, dataset=record.dataset, seed=record.seed,
                       program=PROGRAM, program_input="raw float32 cutouts (N, in_chans, *raw_size)")
    written.append(atomic_write_text(out_dir / "model.json", json.dumps(description, indent=1)))
    written.append(atomic_write_text(out_dir / "preprocessing.json", json.dumps(info["preprocessing"], indent=1)))
    atomic_write(out_dir / PROGRAM, lambda tmp: _save_program(program, tmp))
    written.append(out_dir / PROGRAM)
    written.append(atomic_write_text(out_dir / "README.txt", readme(record, info, has_adapter=_has_adapter(record))))
    return written


def resolve_run_id(results_dir: Path, run_id: str) -> str:
    """`run_id` when it is a record's, else the one run id it is a prefix of (before a `__`); ExportError otherwise."""
    layout = ResultsLayout(results_dir)
    if layout.record(run_id).is_file():
        return run_id
    ids = sorted(layout.run_id_of(p) for p in layout.record_files())
    found = [i for i in ids if i.startswith(run_id.rstrip("_") + "__")]
    if len(found) == 1:
        return found[0]
    if found:
        raise ExportError(f"{run_id!r} is the start of {len(found)} run ids in {results_dir} ({', '.join(found[:3])}"
                          f"{', ...' if len(found) > 3 else ''}); give more of the run id")
    return run_id  # load_ok_record says it does not exist


def load_ok_record(results_dir: Path, run_id: str) -> RunRecord:
    """The record of an ok run whose kept outputs and base model are intact; ExportError naming what is not."""
    layout = ResultsLayout(results_dir)
    path = layout.record(run_id)
    if not path.is_file():
        raise ExportError(f"no run {run_id!r} in {results_dir} (no {path.name}); `zpeft report` or the *.json "
                          "files there list the run ids")
    try:
        record = RunRecord.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise ExportError(f"run record {path} is unreadable: {err}") from None
    if record.status != "ok":
        last = (record.error or "").strip().splitlines()
        raise ExportError(f"run {run_id} failed, there is no model to export ({last[-1] if last else 'no error'})")
    if not record.outputs:
        raise ExportError(f"run {run_id} saved no outputs (recorded by an older zpeft); run the suite again")
    damaged = damaged_outputs(results_dir, record.outputs)
    if damaged:
        raise ExportError(f"run {run_id}: {', '.join(map(str, damaged))} missing or not matching the checksum in "
                          f"{path.name}; run the suite again to recompute it")
    digest = base_hash(record)
    if digest is not None and not BaseStore(layout.bases).has(digest):
        raise ExportError(f"run {run_id}: base model {BaseStore(layout.bases).weights_path(digest)} is missing or "
                          "does not match its checksum; run the suite again to retrain it")
    return record


def base_hash(record: RunRecord) -> str | None:
    """The base model's hash (as the plan computes it), or None for a run trained from scratch."""
    base = record.config.get("base")
    return None if base is None else config_hash(base)


def rebuild_model(results_dir: Path, record: RunRecord, info: dict) -> nn.Module:
    """The run's trained network in eval mode: base weights, then the kept adapter or state dict."""
    from safetensors.torch import load_file

    from zpeft import backbones

    layout = ResultsLayout(results_dir)
    run_dir = layout.run_dir(record.run_id)
    if not backbones.is_known(info["backbone"]):
        raise ExportError(f"run {record.run_id} was made with backbone {info['backbone']!r}, which is not registered "
                          "here: give the module that registers it (zpeft export ... --import MODULE) or install its "
                          "package (entry point zpeft.backbones)")
    model = backbones.create(info["backbone"], in_chans=info["in_chans"], img_size=info["img_size"])
    digest = base_hash(record)
    if digest is not None:
        model.load_state_dict(BaseStore(layout.bases).load(digest)[0])
    if _kept(record, FULL_WEIGHTS):
        model.load_state_dict(load_file(run_dir / FULL_WEIGHTS))
    elif _has_adapter(record):
        from peft import PeftModel

        if _kept(record, BASE_CHANGES):
            load_partial(model, load_file(run_dir / BASE_CHANGES), run_dir / BASE_CHANGES)
        model = PeftModel.from_pretrained(model, run_dir / ADAPTER_DIR)
    return model.eval()


def load_partial(model: nn.Module, tensors: dict[str, Tensor], source: Path) -> None:
    """Overwrite some of `model`'s tensors; ValueError naming `source` for keys the model does not have."""
    unknown = sorted(set(tensors) - set(model.state_dict()))
    if unknown:
        raise ExportError(f"{source}: tensors {unknown[:3]} are not in the rebuilt network")
    model.load_state_dict(tensors, strict=False)


def merged(model: nn.Module) -> nn.Module:
    """A plain network: peft adapters merged into their layers (merge_and_unload), others as they are."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


class RawImageRegressor(nn.Module):
    """Raw cutouts in, redshifts out: centre crop, arcsinh(x / (3 sky_sigma)), (x - mean) / std, then the network.

    The same arithmetic, in the same float32 order, as zpeft.data.preprocess.Preprocessor.
    """

    def __init__(self, model: nn.Module, preprocessing: dict, raw_size: tuple[int, int]) -> None:
        super().__init__()
        from zpeft.data.rows import crop_window

        self.model = model
        shape = (1, -1, 1, 1)
        sky = torch.tensor(preprocessing["sky_sigma"], dtype=torch.float64)
        self.register_buffer("scale", (3.0 * sky).float().view(shape))
        self.register_buffer("mean", torch.tensor(preprocessing["mean"], dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(preprocessing["std"], dtype=torch.float32).view(shape))
        self.rows, self.cols = crop_window(tuple(raw_size), preprocessing.get("crop"))

    def forward(self, raw: Tensor) -> Tensor:
        x = raw[:, :, self.rows, self.cols]
        x = torch.asinh(x / self.scale)
        return self.model((x - self.mean) / self.std)


def export_program(model: nn.Module, info: dict) -> torch.export.ExportedProgram:
    """torch.export of the network with its preprocessing, any batch size, checked against the eager module."""
    module = RawImageRegressor(model, info["preprocessing"], tuple(info["raw_size"])).eval()
    example = torch.randn(4, info["in_chans"], *info["raw_size"]) * torch.tensor(info["preprocessing"]["sky_sigma"]
                                                                                  ).view(1, -1, 1, 1)
    with torch.no_grad():
        try:
            program = torch.export.export(module, (example,),
                                          dynamic_shapes={"raw": {0: torch.export.Dim("batch", min=1)}})
        except Exception as err:  # torch.export's many error types: a network it cannot trace
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ExportError(f"torch.export cannot trace backbone {info['backbone']!r}: {type(err).__name__}: "
                              f"{first}") from None
        expected, got = module(example), program.module()(example)
    error = float((expected - got).abs().max())
    if not error <= CHECK_TOLERANCE:
        raise ExportError(f"the exported program differs from the rebuilt model by {error:.3g} on a random batch")
    return program


def readme(record: RunRecord, info: dict, has_adapter: bool) -> str:
    """README.txt of an export: what each file is and how to use it without zpeft."""
    prep = info["preprocessing"]
    c, (h, w) = info["in_chans"], info["raw_size"]
    crop = prep.get("crop")
    lines = [
        f"zpeft export of run {record.run_id} ({record.label}, backbone {info['backbone']}, dataset {record.dataset}, "
        f"seed {record.seed})",
        "",
        "model.pt2: the merged model WITH its preprocessing (torch.export; needs only torch >= 2.6):",
        "",
        "    import torch",
        "    model = torch.export.load('model.pt2').module()",
        f"    z = model(raw)   # raw: float32 tensor (N, {c}, {h}, {w}) of raw cutout pixels, any N; z: (N,) redshifts",
        "",
        "The program applies, in this order (the numbers are in preprocessing.json):",
        f"  1. centre crop to {crop} x {crop} pixels" if crop else "  1. no crop (the whole cutout)",
        "  2. x = arcsinh(pixel / (3 * sky_sigma[band]))",
        "  3. x = (x - mean[band]) / std[band]",
        "  4. the network (model.json: backbone, in_chans, img_size).",
        "To feed the network directly (e.g. from the weights below), apply the same three steps first.",
        "",
    ]
    if _kept(record, CALIBRATION):
        lines += ["calibration.json: split-conformal error bars calibrated on the run's spec-z validation set.",
                  "  r = (z - z_pred) / (1 + z). 'variants' holds 'marginal' and, where i magnitudes were known,",
                  "  'mondrian' (by i-magnitude bin); 'preferred' is the one the run's catalogues use. In a variant,",
                  "  'residuals' lists the sorted validation r of each bin, 'edges' the i magnitudes between bins",
                  "  (a galaxy with edges[k-1] <= i < edges[k] is in bin k; no finite i: the last bin). With R the m",
                  "  residuals of a galaxy's bin, the central interval at level c (e.g. 0.68, 0.95) is",
                  "    r_lo = R[floor((1 - c) / 2 * (m + 1)) - 1], r_hi = R[ceil((1 + c) / 2 * (m + 1)) - 1]  (0-based)",
                  "    z = (z_pred + r) / (1 - r) for each end, clipped to z_range (an index outside 0..m-1: no bound).",
                  "  zpeft.uncertainty.Calibration.from_dict(variant).interval(z_pred, c, i_mag) computes the same.",
                  ""]
    if base_hash(record) is not None:
        lines.append("base.safetensors: the base model's state dict (trained on photo-z, or the suite's pretrained "
                     "weights), for the backbone in model.json.")
    lines.append(f"{MERGED}: the network as one state dict, adapters merged in; with preprocessing.json, the "
                 "pretrained base of another zpeft suite ([[backbones]] weights and preprocessing).")
    if has_adapter:
        lines += ["adapter/: the peft adapter (adapter_config.json, adapter_model.safetensors):",
                  "    peft.PeftModel.from_pretrained(base_network_with_base_weights, 'adapter')",
                  "  base_changes.safetensors (if present): base tensors training changed outside the adapter",
                  "  (BatchNorm statistics with bn=train); load them into the base network first (strict=False)."]
    elif _kept(record, FULL_WEIGHTS):
        lines.append("model.safetensors: the trained network's full state dict.")
    else:
        lines.append("The run trained nothing: the network is the base model.")
    return "\n".join(lines) + "\n"


def _kept(record: RunRecord, name: str) -> bool:
    """True when the record lists `name` (relative to the run's folder) among its kept outputs."""
    return ResultsLayout(Path()).run_dir(record.run_id).joinpath(name).as_posix() in record.outputs


def _has_adapter(record: RunRecord) -> bool:
    return _kept(record, f"{ADAPTER_DIR}/{ADAPTER_FILES[1]}")


def _copy_weights(layout: ResultsLayout, record: RunRecord, out_dir: Path) -> list[Path]:
    """The run's kept weights, as saved (adapter folder, base changes, or full state dict)."""
    run_dir = layout.run_dir(record.run_id)
    names = [f"{ADAPTER_DIR}/{name}" for name in ADAPTER_FILES] + [BASE_CHANGES, FULL_WEIGHTS]
    return [_copy(run_dir / name, out_dir / name) for name in names if _kept(record, name)]


def _save_program(program: torch.export.ExportedProgram, path: str) -> None:
    # Through a file object: given a name, torch warns about the temporary file's suffix (not .pt2).
    with open(path, "wb") as f:
        torch.export.save(program, f)


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
    return target
