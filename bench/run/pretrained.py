"""A backbone with the user's own pretrained weights (and preprocessing): read, matched to the network, checked.

A suite's `[[backbones]]` entry may name a weights file; its strategies then start from those
weights instead of a base model trained on photo-z, and the file's SHA-256 is part of every
run's identity. Accepted files:

- safetensors (`.safetensors`);
- a PyTorch state dict saved with `torch.save(net.state_dict(), path)`, read with `weights_only=True`
  (a pickled whole model is refused: it could run code on loading);
- a checkpoint dict holding the state dict under `state_dict` or `model` (timm's train.py
  checkpoints, many training scripts).

Keys are matched to the network (a `Regressor`, whose own keys start with `net.`) as they are
(zpeft's own files: `OUT/base/*.safetensors`, and `merged.safetensors`, `model.safetensors` or
`base.safetensors` of `zpeft export`), else with `net.` put in front (the state dict of the bare
network a backbone factory builds), each after dropping a `module.` prefix (DataParallel / DDP).
The match is strict: every key and every shape, or one error naming what is missing, unexpected
or of another shape, and the file.

The preprocessing that goes with the weights replaces the one zpeft fits on the photo-z training
set: zpeft's own `preprocessing.json` (as `zpeft export` writes it) or the same keys inline:
`sky_sigma` per band (x -> arcsinh(x / (3 sky_sigma))), then optional `mean` and `std` per band
(default 0 and 1: no standardisation), and `crop` (must equal the suite's).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zpeft.checksum import sha256_file

if TYPE_CHECKING:
    from torch import Tensor

    from zpeft.data.preprocess import Preprocessor
    from zpeft.run.prepared import PreparedData
    from zpeft.run.suite import Suite

SAFETENSORS_SUFFIX = ".safetensors"
CHECKPOINT_ENTRIES = ("state_dict", "model")  # where checkpoint dicts keep the weights (timm's train.py: state_dict)
DROPPED_PREFIXES = ("module.",)  # DataParallel / DistributedDataParallel
NET_PREFIX = "net."  # Regressor's own keys: a bare network's state dict gets it put in front
PREPROCESSING_KEYS = ("sky_sigma", "mean", "std", "crop")
_SHOWN = 4  # keys named in an error before "(N more)"


class WeightsError(ValueError):
    """A weights or preprocessing file that cannot serve as a backbone's pretrained base; names the file."""


@dataclass(frozen=True)
class BackboneSpec:
    """A suite's backbone: a registered name, optionally with pretrained weights and the preprocessing they expect."""

    name: str
    weights: str = ""  # path of the weights file ("" = train a base model on photo-z, as usual)
    weights_sha256: str = ""
    preprocessing: Preprocessor | None = None  # None: fitted on the photo-z training set, as usual
    preprocessing_source: str = ""  # the file it came from, or "suite" when given inline

    @property
    def pretrained(self) -> bool:
        return bool(self.weights)

    def identity(self) -> dict:
        """What the weights and preprocessing add to a run's config (paths left out: moving files reruns nothing)."""
        return {"weights_sha256": self.weights_sha256,
                "preprocessing": "fitted" if self.preprocessing is None else self.preprocessing.to_dict()}


def backbone_spec(name: str, weights: str | Path | None = None, preprocessing: str | Path | dict | None = None,
                  *, base_dir: Path = Path(), crop: int | None = None) -> BackboneSpec:
    """A BackboneSpec with its files read and checked (paths relative to `base_dir`); WeightsError naming the file."""
    if weights is None:
        if preprocessing is not None:
            raise WeightsError("'preprocessing' goes with 'weights': a base model zpeft trains uses the "
                               "preprocessing zpeft fits")
        return BackboneSpec(name)
    path = _resolve(weights, base_dir)
    read_weights(path)  # a file that is not weights fails here, when the suite is read
    prep, source = None, ""
    if preprocessing is not None:
        prep, source = read_preprocessing(preprocessing, base_dir=base_dir, crop=crop)
    return BackboneSpec(name, str(path), sha256_file(path), prep, source)


def _resolve(path: str | Path, base_dir: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else base_dir / path


# --- weights ------------------------------------------------------------------------------------------------------

def read_weights(path: str | Path) -> dict[str, Tensor]:
    """The state dict in `path` (CPU tensors): safetensors, a torch state dict or a checkpoint holding one."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights {path}: no such file")
    if path.suffix == SAFETENSORS_SUFFIX or _looks_like_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as err:
            raise WeightsError(f"weights {path}: not a safetensors file ({err})") from None
    try:
        with torch.serialization.safe_globals(_checkpoint_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, KeyError... for a file that is not its own
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:
            raise WeightsError(f"weights {path}: holds pickled Python objects ({found.group(1)}), not only tensors; "
                               "a whole model saved with torch.save(model)? save model.state_dict() (or a "
                               "safetensors file) instead") from None
        raise WeightsError(f"weights {path}: not a weights file (neither safetensors nor a torch state dict: "
                           f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    return _state_dict(data, path)


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file under another suffix: an 8-byte header length, then the header's JSON."""
    with open(path, "rb") as f:
        start = f.read(9)
    return len(start) == 9 and start[8:9] == b"{" and 0 < int.from_bytes(start[:8], "little") < path.stat().st_size


def _checkpoint_globals() -> list:
    """Harmless classes training scripts put in checkpoints beside the weights (timm: the argparse Namespace)."""
    import argparse

    return [argparse.Namespace]


def _state_dict(data: Any, path: Path) -> dict[str, Tensor]:
    import torch

    if isinstance(data, dict):
        if data and all(isinstance(v, torch.Tensor) for v in data.values()):
            return dict(data)
        for entry in CHECKPOINT_ENTRIES:
            inner = data.get(entry)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        keys = ", ".join(map(repr, list(data)[:_SHOWN]))
        raise WeightsError(f"weights {path}: a dict (keys {keys}) that is neither a state dict (names -> tensors) "
                           f"nor a checkpoint with one under {' or '.join(map(repr, CHECKPOINT_ENTRIES))}")
    raise WeightsError(f"weights {path}: holds a {type(data).__name__}, not a state dict (names -> tensors)")


def match_keys(state: dict[str, Tensor], expected: dict[str, Tensor], path: str | Path,
               backbone: str) -> dict[str, Tensor]:
    """`state` renamed onto `expected`'s keys (see the module docstring), shapes checked; WeightsError otherwise."""
    candidates = []
    for drop in ("", *DROPPED_PREFIXES):
        stripped = {(k.removeprefix(drop) if drop else k): v for k, v in state.items()}
        candidates += [stripped, {NET_PREFIX + k: v for k, v in stripped.items()}]
    best = max(candidates, key=lambda c: len(set(c) & set(expected)))
    missing, unexpected = sorted(set(expected) - set(best)), sorted(set(best) - set(expected))
    if missing or unexpected:
        parts = [f"missing keys {_names(missing)}" if missing else "",
                 f"unexpected keys {_names(unexpected)}" if unexpected else ""]
        raise WeightsError(f"weights {path}: do not fit backbone {backbone!r}: {'; '.join(p for p in parts if p)} "
                           f"(keys are used as they are or with {NET_PREFIX!r} put in front, after dropping "
                           f"{', '.join(map(repr, DROPPED_PREFIXES))}; the network's keys look like "
                           f"{next(iter(expected))!r})")
    shapes = [f"{k} {tuple(best[k].shape)} (network {tuple(v.shape)})" for k, v in expected.items()
              if tuple(best[k].shape) != tuple(v.shape)]
    if shapes:
        raise WeightsError(f"weights {path}: do not fit backbone {backbone!r}: other shapes for {len(shapes)} "
                           f"tensors: {', '.join(shapes[:_SHOWN])}{_more(shapes)} (another in_chans or width?)")
    return {k: best[k] for k in expected}


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + _more(keys)


def _more(items: list) -> str:
    return f" ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""


def pretrained_state(spec: BackboneSpec, in_chans: int, img_size: int) -> dict[str, Tensor]:
    """The weights of `spec` as the state dict of backbone `spec.name` (checked strictly, CPU tensors).

    The file must still have the SHA-256 the suite was read with: runs are identified by it.
    """
    from zpeft import backbones

    if sha256_file(spec.weights) != spec.weights_sha256:
        raise WeightsError(f"weights {spec.weights}: changed since the suite was read (SHA-256 differs); "
                           "run the suite again")
    model = backbones.create(spec.name, in_chans=in_chans, img_size=img_size)
    state = match_keys(read_weights(spec.weights), model.state_dict(), spec.weights, spec.name)
    model.load_state_dict(state)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def check_backbone(spec: BackboneSpec, in_chans: int, img_size: int) -> None:
    """Before any run: the backbone builds for these images, and its weights and preprocessing fit it."""
    from zpeft import backbones

    if not spec.pretrained:
        backbones.create(spec.name, in_chans=in_chans, img_size=img_size)
        return
    if spec.preprocessing is not None and len(spec.preprocessing.sky_sigma) != in_chans:
        raise WeightsError(f"preprocessing {spec.preprocessing_source}: {len(spec.preprocessing.sky_sigma)} bands, "
                           f"the images have {in_chans}")
    pretrained_state(spec, in_chans, img_size)


def pretrained_result():
    """The TrainResult of a base model that was loaded, not trained: no epochs, no time, no images."""
    from zpeft.training.settings import TrainResult

    return TrainResult(epochs_run=0, best_epoch=0, best_val_loss=math.nan, images_seen=0, train_seconds=0.0,
                       images_per_second=0.0, peak_memory_mb=0.0, memory_kind="", device="", step_mode="")


# --- preprocessing ------------------------------------------------------------------------------------------------

def read_preprocessing(value: str | Path | dict, *, base_dir: Path = Path(),
                       crop: int | None = None) -> tuple[Preprocessor, str]:
    """(Preprocessor, where it came from) from a preprocessing.json path or an inline table."""
    from zpeft.data.preprocess import Preprocessor

    if isinstance(value, dict):
        table, source = value, "suite"
    else:
        path = _resolve(value, base_dir)
        source = str(path)
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise WeightsError(f"preprocessing {path}: unreadable ({err}); expected zpeft's preprocessing.json, "
                               "as `zpeft export` writes it") from None
    if not isinstance(table, dict):
        raise WeightsError(f"preprocessing {source}: expected a table with {', '.join(PREPROCESSING_KEYS)}")
    unknown = sorted(set(table) - set(PREPROCESSING_KEYS))
    if unknown or "sky_sigma" not in table:
        raise WeightsError(f"preprocessing {source}: {'unknown keys ' + ', '.join(unknown) if unknown else 'no sky_sigma'}"
                           f"; allowed: {', '.join(PREPROCESSING_KEYS)} (sky_sigma required)")
    sky = _numbers(table["sky_sigma"], "sky_sigma", source, positive=True)
    mean = _numbers(table.get("mean", [0.0] * len(sky)), "mean", source)
    std = _numbers(table.get("std", [1.0] * len(sky)), "std", source, positive=True)
    if not len(sky) == len(mean) == len(std):
        raise WeightsError(f"preprocessing {source}: sky_sigma, mean and std need one value per band each, "
                           f"got {len(sky)}, {len(mean)} and {len(std)}")
    if "crop" in table and table["crop"] != crop:
        raise WeightsError(f"preprocessing {source}: made for crop {table['crop']}, the suite crops "
                           f"{'none' if crop is None else crop}; set the suite's crop to match")
    return Preprocessor(sky, mean, std, crop), source


def _numbers(values: Any, key: str, source: str, positive: bool = False) -> tuple[float, ...]:
    ok = isinstance(values, list) and values and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
        for v in values)
    if not ok:
        raise WeightsError(f"preprocessing {source}: {key} must be a list of finite numbers"
                           f"{' > 0' if positive else ''}, one per band; got {values!r}")
    return tuple(float(v) for v in values)


def own_preprocessing(data: PreparedData, spec: BackboneSpec | None) -> PreparedData:
    """`data` with the preprocessing that goes with `spec`'s weights, where it has one (else as fitted)."""
    if spec is None or spec.preprocessing is None:
        return data
    return replace(data, preprocessor=spec.preprocessing)


def check_backbones(suite: Suite, in_chans: int, img_size: int, dataset: str) -> None:
    """Every backbone of `suite` on a dataset's images, before any run: SuiteError naming the entry."""
    from zpeft.run.suite import SuiteError

    for index, spec in enumerate(suite.backbones):
        try:
            check_backbone(spec, in_chans, img_size)
        except (TypeError, ValueError) as err:
            raise SuiteError(f"suite {suite.source or suite.name}: backbones[{index}] ({spec.name}) on dataset "
                             f"{dataset!r}: {err}") from None
