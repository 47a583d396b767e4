"""The core path: base model on photo-z, each strategy applied to it, every model scored on every test set.

This module does the work of one (dataset pair, backbone, seed) cell; the runner decides
which cells and runs to do and writes records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

import backbones
from bench.data import DatasetPair, GalaxySet
from bench.data.preprocess import Preprocessor
from bench.data.types import photo_rows_outside
from bench.metrics import evaluate
from bench.train import TrainResult, TrainSettings, predict, train
from strategies import Strategy

BASE_LR = 2e-3  # the base model's learning rate when the suite sets none (feasibility trial, DESIGN.md)


@dataclass
class PreparedData:
    """Network-ready tensors for every set and split, preprocessed with statistics of the photo-z train set."""

    pair: DatasetPair
    preprocessor: Preprocessor
    tensors: dict[tuple[str, str], tuple[Tensor, Tensor]]  # (set, split) -> (x, z label)
    sets: dict[tuple[str, str], GalaxySet]

    @property
    def in_chans(self) -> int:
        return next(iter(self.tensors.values()))[0].shape[1]

    @property
    def img_size(self) -> int:
        return next(iter(self.tensors.values()))[0].shape[-1]


def prepare_data(pair: DatasetPair, crop: int | None = None) -> PreparedData:
    """Fit the preprocessor on photo-z train images and transform every split of every set."""
    preprocessor = Preprocessor.fit(pair.photo["train"].images, crop=crop)
    sets: dict[tuple[str, str], GalaxySet] = {}
    tensors: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
    for split in ("train", "val", "test"):
        for kind, galaxies in (("photo", pair.photo[split]), ("spec", pair.spec[split])):
            sets[kind, split] = galaxies
            tensors[kind, split] = (torch.from_numpy(preprocessor(galaxies.images)),
                                    torch.from_numpy(np.asarray(galaxies.z, dtype=np.float32)))
        sets["combined", split] = pair.combined(split)
        # Preprocessing works image by image, so the combined set reuses the photo-z and spec-z tensors.
        tensors["combined", split] = combined_tensors(sets["photo", split], tensors["photo", split],
                                                      sets["spec", split], tensors["spec", split])
    return PreparedData(pair, preprocessor, tensors, sets)


def combined_tensors(photo: GalaxySet, photo_xy: tuple[Tensor, Tensor], spec: GalaxySet,
                     spec_xy: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The tensors of `combine(photo, spec)`, in its row order, from already preprocessed tensors."""
    rows = torch.from_numpy(photo_rows_outside(photo, spec))
    return torch.cat([photo_xy[0][rows], spec_xy[0]]), torch.cat([photo_xy[1][rows], spec_xy[1]])


def train_base(backbone: str, data: PreparedData, settings: TrainSettings, *, device: torch.device, seed: int,
               progress: bool = True) -> tuple[nn.Module, TrainResult]:
    """A fresh backbone trained on the photo-z training set (BatchNorm statistics updating)."""
    torch.manual_seed(seed)
    model = backbones.create(backbone, in_chans=data.in_chans, img_size=data.img_size)
    result = train(model, data.tensors["photo", "train"], data.tensors["photo", "val"], settings.with_lr(BASE_LR),
                   device=device, seed=seed, bn_frozen=False, progress=progress, desc=f"base {backbone}")
    return model, result


def adapt(strategy: Strategy, backbone: str, base_state: dict[str, Tensor] | None, data: PreparedData,
          finetune: TrainSettings, retrain: TrainSettings, *, device: torch.device, seed: int,
          progress: bool = True) -> tuple[nn.Module, TrainResult | None]:
    """Apply `strategy`: start from the base weights or from scratch, train on what it says, return the model."""
    torch.manual_seed(seed)
    model = backbones.create(backbone, in_chans=data.in_chans, img_size=data.img_size)
    if strategy.starts_from == "base":
        if base_state is None:
            raise ValueError(f"strategy {strategy.label()!r} starts from the base model, but none was given")
        model.load_state_dict(base_state)
    model = strategy.prepare(model)
    if strategy.trains_on == "none":
        return model, None
    settings = (retrain if strategy.starts_from == "scratch" else finetune).with_lr(strategy.default_lr)
    kind = strategy.trains_on
    result = train(model, data.tensors[kind, "train"], data.tensors[kind, "val"], settings, device=device, seed=seed,
                   bn_frozen=strategy.bn == "frozen", progress=progress, desc=strategy.label())
    return model, result


TEST_SETS = ("spec", "photo", "combined")


def predict_tests(model: nn.Module, data: PreparedData, *, device: torch.device,
                  eval_batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Predicted redshifts of `model` on the spec-z, photo-z and combined test sets, in row order."""
    return {kind: predict(model, data.tensors[kind, "test"][0], device, eval_batch_size) for kind in TEST_SETS}


def score_predictions(predictions: dict[str, np.ndarray], data: PreparedData, *, n_boot: int = 200,
                      seed: int = 0) -> dict[str, dict]:
    """Metrics of test-set predictions against labels and, where known, true z (see bench.metrics.evaluate)."""
    out = {}
    for kind, z_pred in predictions.items():
        galaxies = data.sets[kind, "test"]
        out[kind] = evaluate(z_pred, galaxies.z, galaxies.z_true, n_boot=n_boot, seed=seed)
    return out


def score(model: nn.Module, data: PreparedData, *, device: torch.device, n_boot: int = 200, seed: int = 0,
          eval_batch_size: int = 1024) -> dict[str, dict]:
    """Metrics of `model` on every test set: predict_tests then score_predictions."""
    predictions = predict_tests(model, data, device=device, eval_batch_size=eval_batch_size)
    return score_predictions(predictions, data, n_boot=n_boot, seed=seed)


def state_of(model: nn.Module) -> dict[str, Tensor]:
    """A detached CPU copy of the weights, to start each strategy from the same base."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
