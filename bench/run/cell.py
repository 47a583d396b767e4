"""The run cell, the one core path: base model on photo-z -> strategy -> predictions -> scores.

Every caller (the runner's executors, and through the runner `zpeft pipeline`, the perf
accuracy check and the test fixtures) goes through these functions. Learning rates arrive
resolved (the run plan fills them in); the cell never picks one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from zpeft import backbones
from zpeft.conventions import TEST_SETS
from zpeft.data.types import photo_rows_outside
from zpeft.metrics import evaluate
from zpeft.run.prepared import PreparedData
from zpeft.strategies import Strategy
from zpeft.training.loop import predict, train_with_oom_retries
from zpeft.training.settings import TrainResult, TrainSettings

# Redshift labels lie in [0, 6]; a model whose predictions mostly leave this wider range has blown up,
# even when its (bounded) HSC loss stayed finite.
PLAUSIBLE_Z = (-1.0, 20.0)
MAX_IMPLAUSIBLE = 0.5  # share of a test set's predictions outside PLAUSIBLE_Z that fails the run


@dataclass
class CellResult:
    """What one strategy made of one base model: the model, its training, its test predictions and scores."""

    model: nn.Module
    result: TrainResult | None  # None for strategies that do not train
    predictions: dict[str, np.ndarray]  # test set -> z_pred in row order
    metrics: dict[str, dict]  # test set -> reference -> range -> metric (see metrics.evaluate)
    calibrations: dict = field(default_factory=dict)  # variant -> uncertainty.Calibration (spec-z validation)
    uncertainty: dict = field(default_factory=dict)  # test set -> variant -> reference -> scores (uncertainty.runs)


def train_base(backbone: str, data: PreparedData, settings: TrainSettings, *, device: torch.device, seed: int,
               progress: bool = True, backbone_options: dict | None = None) -> tuple[nn.Module, TrainResult]:
    """A fresh backbone trained on the photo-z training set (BatchNorm statistics updating).

    `backbone_options` go to the backbone's factory (cnn-small's `width`, say); suites leave them unset.
    """
    torch.manual_seed(seed)
    model = backbones.create(backbone, in_chans=data.in_chans, img_size=data.img_size, **(backbone_options or {}))
    result = train_with_oom_retries(model, data.inputs("photo", "train"), data.inputs("photo", "val"), settings,
                                    device=device, seed=seed, bn_frozen=False, progress=progress,
                                    desc=f"base {backbone}")
    return model, result


def adapt(strategy: Strategy, backbone: str, base_state: dict[str, Tensor] | None, data: PreparedData,
          settings: TrainSettings | None, *, device: torch.device, seed: int,
          progress: bool = True) -> tuple[nn.Module, TrainResult | None]:
    """Apply `strategy`: start from the base weights or from scratch, train on what it says, return the model.

    A strategy that starts from the base validates the start first and never ends worse on validation.
    """
    torch.manual_seed(seed)
    model = backbones.create(backbone, in_chans=data.in_chans, img_size=data.img_size)
    if strategy.starts_from == "base":
        if base_state is None:
            raise ValueError(f"strategy {strategy.label()!r} starts from the base model, but none was given")
        model.load_state_dict(base_state)
    model = strategy.prepare(model)
    if strategy.trains_on == "none":
        return model, None
    if settings is None:
        raise ValueError(f"strategy {strategy.label()!r} trains, but no training settings were given")
    kind = strategy.trains_on
    result = train_with_oom_retries(model, data.inputs(kind, "train"), data.inputs(kind, "val"), settings,
                                    device=device, seed=seed, bn_frozen=strategy.bn == "frozen",
                                    validate_start=strategy.starts_from == "base", progress=progress,
                                    desc=strategy.label())
    return model, result


def predict_tests(model: nn.Module, data: PreparedData, *, device: torch.device,
                  eval_batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Predicted redshifts of `model` on every test set, in row order.

    The combined test set is the photo-z test galaxies outside the spec-z test set, then the spec-z test set; when
    its rows are exactly those, its predictions are taken from theirs, so no galaxy is predicted twice (half the
    prediction work of a run).
    """
    out = {}
    for kind in TEST_SETS:
        rows = combined_rows(data) if kind == "combined" else None
        if rows is None:
            out[kind] = predict(model, data.inputs(kind, "test"), device, eval_batch_size)
        else:
            out[kind] = np.concatenate([out["photo"][rows], out["spec"]])
    return out


def combined_rows(data: PreparedData) -> np.ndarray | None:
    """Rows of the photo-z test set that start the combined test set (the spec-z test set follows), or None when
    the combined test set is not built that way."""
    photo, spec, combined = (data.sets[kind, "test"] for kind in ("photo", "spec", "combined"))
    rows = photo_rows_outside(photo, spec)
    return rows if np.array_equal(combined.ids, np.concatenate([photo.ids[rows], spec.ids])) else None


def score_predictions(predictions: dict[str, np.ndarray], data: PreparedData, *, n_boot: int = 200,
                      seed: int = 0) -> dict[str, dict]:
    """Metrics of test-set predictions against labels and, where known, true z (see metrics.evaluate)."""
    out = {}
    for kind, z_pred in predictions.items():
        galaxies = data.sets[kind, "test"]
        out[kind] = evaluate(z_pred, galaxies.z, galaxies.z_true, n_boot=n_boot, seed=seed)
    return out


def run_cell(strategy: Strategy, backbone: str, base_state: dict[str, Tensor] | None, train_data: PreparedData,
             test_data: PreparedData, settings: TrainSettings | None, *, device: torch.device, seed: int,
             n_boot: int, eval_batch_size: int, progress: bool = True) -> CellResult:
    """Adapt, predict every test set, score: one strategy on one base model.

    `train_data` may hold a fraction of the spec-z training set; `test_data` is scored in full.
    """
    model, result = adapt(strategy, backbone, base_state, train_data, settings, device=device, seed=seed,
                          progress=progress)
    predictions = predict_tests(model, test_data, device=device, eval_batch_size=eval_batch_size)
    check_predictions(predictions, strategy.label())
    metrics = score_predictions(predictions, test_data, n_boot=n_boot, seed=seed)
    calibrations, uncertainty = error_bars(model, train_data, test_data, predictions, device=device, seed=seed,
                                           eval_batch_size=eval_batch_size)
    return CellResult(model, result, predictions, metrics, calibrations, uncertainty)


def error_bars(model: nn.Module, train_data: PreparedData, test_data: PreparedData, predictions: dict[str, np.ndarray],
               *, device: torch.device, seed: int, eval_batch_size: int = 1024) -> tuple[dict, dict]:
    """Conformal calibrations from the run's own spec-z validation set, and the test sets' uncertainty scores."""
    from zpeft.uncertainty.runs import calibrate, score_tests

    validation = train_data.sets["spec", "val"]
    calibrations = calibrate(validation, predict(model, train_data.inputs("spec", "val"), device, eval_batch_size))
    tests = {kind: test_data.sets[kind, "test"] for kind in predictions}
    return calibrations, score_tests(calibrations, predictions, tests, seed=seed)


def check_predictions(predictions: dict[str, np.ndarray], who: str) -> None:
    """ValueError when any prediction is NaN or inf, or most of a test set's lie outside PLAUSIBLE_Z."""
    lo, hi = PLAUSIBLE_Z
    for kind, z in predictions.items():
        bad = int(np.count_nonzero(~np.isfinite(z)))
        if bad:
            raise ValueError(f"{who}: {bad} of {len(z)} predictions on the {kind} test set are NaN or inf: "
                             "the model diverged")
        outside = float(np.mean((z < lo) | (z > hi))) if len(z) else 0.0
        if outside > MAX_IMPLAUSIBLE:
            raise ValueError(f"{who}: {outside:.0%} of the predictions on the {kind} test set lie outside "
                             f"[{lo:g}, {hi:g}] (median {np.median(z):.3g}): the model diverged")


def state_of(model: nn.Module) -> dict[str, Tensor]:
    """A detached CPU copy of the weights, to start each strategy from the same base."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
