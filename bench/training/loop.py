"""The one training loop every strategy uses: AdamW, a warm-up/plateau schedule, a stopping rule on validation loss.

Training ends by convergence: after warm-up, `patience` epochs without a validation loss better
by `min_delta` stop it (the plateau schedule cuts the rate after `lr_patience` such epochs
first); the epoch cap is a safety limit, and the result says which of the two ended it. A
fine-tune (`validate_start`) validates its starting weights as epoch 0 and keeps them unless an
epoch beats them, so adaptation never returns a model worse on validation than its start.

Sets arrive as raw pixels (training.batches.Inputs). On the CPU a set held in memory is
preprocessed once per training (batches then only gather rows); on CUDA the raw set sits on the
device when it fits (else each batch is read on the host one step ahead, pinned and copied) and
is preprocessed per batch there, autocast runs in bf16, the optimizer is fused and losses stay on
the device until the epoch ends (no host sync per step). Models and batches use channels_last
memory on both. `cuda_graph` replays the whole step from a captured CUDA graph and `compile`
runs the model through torch.compile. Training time excludes validation, includes any capture or
compilation, and is measured with the device synchronised.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from zpeft.conventions import EPOCH_CAP, STOPPING_RULE
from zpeft.training.batches import Inputs, batches, epoch_order, first_batch, random_dihedral, ready_on
from zpeft.training.device import device_name, peak_memory_mb, reset_peak_memory, synchronize
from zpeft.training.losses import get_loss
from zpeft.training.optim import RateSchedule
from zpeft.training.settings import TrainResult, TrainSettings
from zpeft.training.steps import EagerStep, GraphStep
from zpeft.training.weights import restore, snapshot


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf: the run fails, naming the epoch, instead of keeping weights it never improved."""


def set_train_mode(model: nn.Module, bn_frozen: bool) -> None:
    """Training mode, except BatchNorm layers stay in eval mode (running statistics fixed) when frozen."""
    model.train()
    if bn_frozen:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def train(
    model: nn.Module,
    train_set: Inputs,
    val_set: Inputs,
    settings: TrainSettings,
    *,
    device: torch.device,
    seed: int,
    bn_frozen: bool,
    validate_start: bool = False,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train the parameters of `model` that require grad; restore the weights of the best validation epoch.

    `validate_start`: the starting weights are epoch 0, kept when no epoch beats them (best_epoch 0).
    """
    if settings.lr is None:
        raise ValueError("train() needs settings.lr; fill it with TrainSettings.with_lr(strategy.default_lr)")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: the model has no trainable parameters")
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    model.to(device).to(memory_format=torch.channels_last)
    train_set = ready_on(train_set, device, settings.data_placement)
    val_set = ready_on(val_set, device, settings.data_placement)
    loss_fn = get_loss(settings.loss)
    n = len(train_set)
    batch = min(settings.batch_size, n)
    steps = n // batch  # drop the ragged tail (a new one each epoch): BatchNorm needs full batches
    best = (math.inf, 0, snapshot(model))
    history: list[dict] = []
    if validate_start:
        start_loss = evaluate_loss(model, val_set, loss_fn, device, settings.eval_batch_size)
        history.append({"epoch": 0, "train_loss": None, "val_loss": start_loss})
        if math.isfinite(start_loss):
            best = (start_loss, 0, best[2])
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    set_train_mode(model, bn_frozen)
    schedule = RateSchedule(settings.lr, settings.schedule, total_steps=settings.epochs * steps,
                            warmup_steps=settings.warmup_epochs * steps, factor=settings.lr_factor)
    stepper = make_step(model, params, loss_fn, settings, device=device, schedule=schedule,
                        sample=first_batch(train_set, batch, device))
    synchronize(device)
    setup_seconds = time.perf_counter() - start
    train_seconds = setup_seconds
    images_seen = 0
    stale = 0  # epochs since the last better validation loss, counted after warm-up
    ended_by = EPOCH_CAP
    epochs = tqdm(range(1, settings.epochs + 1), desc=desc, disable=not progress, leave=False, unit="epoch")
    for epoch in epochs:
        synchronize(device)
        start = time.perf_counter()
        set_train_mode(model, bn_frozen)
        stepper.reset_loss()
        order = epoch_order(n, generator, device, seed + epoch)
        for xb, yb in batches(train_set, order, batch, device):
            if settings.augment:
                xb = random_dihedral(xb, generator)
            stepper.step(xb, yb)
        synchronize(device)
        train_seconds += time.perf_counter() - start
        images_seen += steps * batch
        val_loss = evaluate_loss(model, val_set, loss_fn, device, settings.eval_batch_size)
        train_loss = float(stepper.loss_sum) / steps
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "lr": schedule.hypers(epoch * steps - 1)[0]})
        for what, value in (("training", train_loss), ("validation", val_loss)):
            if not math.isfinite(value):
                raise TrainingDiverged(f"{desc}: {what} loss is {value} at epoch {epoch} (lr {settings.lr:g}): "
                                       "training diverged")
        epochs.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if not math.isfinite(best[0]) or val_loss < best[0] * (1 - settings.min_delta):
            best, stale = (val_loss, epoch, snapshot(model)), 0
        elif epoch > settings.warmup_epochs:
            stale += 1
            if stale >= settings.patience:
                ended_by = STOPPING_RULE
                break
            if stale % settings.lr_patience == 0:
                schedule.cut()
    restore(model, best[2])
    peak, kind = peak_memory_mb(device)
    epochs_run = sum(1 for h in history if h["epoch"] > 0)
    return TrainResult(
        epochs_run=epochs_run, best_epoch=best[1], best_val_loss=best[0], images_seen=images_seen,
        train_seconds=train_seconds, images_per_second=images_seen / train_seconds if train_seconds else 0.0,
        peak_memory_mb=peak, memory_kind=kind, device=device_name(device), history=history,
        step_mode=stepper.mode, setup_seconds=setup_seconds, data_on=train_set.storage,
        ended_by=ended_by, lr_cuts=schedule.cuts,
    )


def train_with_oom_retries(model: nn.Module, train_set: Inputs, val_set: Inputs, settings: TrainSettings,
                           **kwargs) -> TrainResult:
    """`train`, started again from the same weights at half the batch when CUDA runs out of memory.

    Up to `settings.oom_retries` times (0: an out-of-memory error fails the run at once); the
    result says which batch it trained with and how many retries it took.
    """
    start = snapshot(model) if settings.oom_retries else None
    batch = settings.batch_size
    for attempt in range(settings.oom_retries + 1):
        try:
            result = train(model, train_set, val_set, replace(settings, batch_size=batch), **kwargs)
        except torch.cuda.OutOfMemoryError:
            if attempt == settings.oom_retries or batch == 1:
                raise
            restore(model, start)
            torch.cuda.empty_cache()
            batch //= 2
            continue
        result.batch_size, result.oom_retries = batch, attempt
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def make_step(model: nn.Module, params: list[Tensor], loss_fn, settings: TrainSettings, *, device: torch.device,
              schedule: RateSchedule, sample: tuple[Tensor, Tensor]) -> EagerStep | GraphStep:
    """The stepper `settings` ask for: a captured CUDA graph on CUDA when `cuda_graph`, else eager (maybe compiled)."""
    common = dict(lr=settings.lr, weight_decay=settings.weight_decay, schedule=schedule, device=device,
                  compile=settings.compile)
    if settings.cuda_graph and device.type == "cuda":
        return GraphStep(model, params, loss_fn, sample=sample, **common)
    return EagerStep(model, params, loss_fn, **common)


@torch.no_grad()
def predict(model: nn.Module, inputs: Inputs, device: torch.device, batch_size: int = 1024) -> np.ndarray:
    """Predicted redshifts for every row of `inputs`, in row order, in eval mode, as float32 numpy."""
    model.to(device).eval()
    out = []
    inputs = ready_on(inputs, device)
    for xb, _ in batches(inputs, torch.arange(len(inputs)), batch_size, device, drop_last=False):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(model(xb).float())
    if not out:
        return np.empty(0, dtype=np.float32)
    return torch.cat(out).cpu().numpy()


@torch.no_grad()
def evaluate_loss(model: nn.Module, inputs: Inputs, loss_fn, device: torch.device, batch_size: int) -> float:
    """Mean loss over a whole set in eval mode (batches weighted by size)."""
    pred = torch.from_numpy(predict(model, inputs, device, batch_size))
    return float(loss_fn(pred, inputs.z.cpu().float()))
