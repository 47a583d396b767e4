"""The one training loop every strategy uses: AdamW, one-cycle schedule, early stopping on validation loss.

On CUDA the data sits on the device when it fits, autocast runs in bf16 with channels_last
memory, the optimizer is fused and losses stay on the device until the epoch ends (no host
sync per step). Training time excludes validation and is measured with the device synchronised.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from bench.device import device_name, peak_memory_mb, reset_peak_memory, synchronize
from bench.losses import get_loss

_DEVICE_DATA_FRACTION = 0.5  # keep the data on the GPU when it needs at most this share of free memory


@dataclass(frozen=True)
class TrainSettings:
    """Training budget and optimiser settings; `lr` None means the strategy's default."""

    epochs: int = 15
    lr: float | None = None
    batch_size: int = 128
    weight_decay: float = 1e-4
    loss: str = "hsc"
    patience: int = 5  # epochs without a better validation loss before stopping
    augment: bool = True  # random 90-degree rotations and flips: galaxies have no preferred orientation
    schedule: str = "onecycle"
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        get_loss(self.loss)
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError(f"epochs, batch_size and patience must be >= 1: {self}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in ("onecycle", "constant"):
            raise ValueError(f"schedule must be 'onecycle' or 'constant', got {self.schedule!r}")

    def with_lr(self, default_lr: float) -> "TrainSettings":
        """These settings with `lr` filled in from a default when unset."""
        return self if self.lr is not None else TrainSettings(**{**asdict(self), "lr": default_lr})


@dataclass
class TrainResult:
    """What a training run cost and how it went; the fields go into run records as they are."""

    epochs_run: int
    best_epoch: int
    best_val_loss: float
    images_seen: int
    train_seconds: float
    images_per_second: float
    peak_memory_mb: float
    memory_kind: str
    device: str
    history: list[dict] = field(default_factory=list)


def set_train_mode(model: nn.Module, bn_frozen: bool) -> None:
    """Training mode, except BatchNorm layers stay in eval mode (running statistics fixed) when frozen."""
    model.train()
    if bn_frozen:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def random_dihedral(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image independently transposed and flipped: the 8 symmetries of the square, on device."""
    flags = torch.rand(3, x.shape[0], 1, 1, 1, device=x.device, generator=generator) < 0.5
    x = torch.where(flags[0], x.transpose(-1, -2), x)
    x = torch.where(flags[1], x.flip(-1), x)
    return torch.where(flags[2], x.flip(-2), x)


def train(
    model: nn.Module,
    train_xy: tuple[Tensor, Tensor],
    val_xy: tuple[Tensor, Tensor],
    settings: TrainSettings,
    *,
    device: torch.device,
    seed: int,
    bn_frozen: bool,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train the parameters of `model` that require grad; restore the weights of the best validation epoch."""
    if settings.lr is None:
        raise ValueError("train() needs settings.lr; fill it with TrainSettings.with_lr(strategy.default_lr)")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: the model has no trainable parameters")
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    cuda = device.type == "cuda"
    model.to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
    x_train, y_train = _place(train_xy, device)
    x_val, y_val = _place(val_xy, device)
    loss_fn = get_loss(settings.loss)
    n = len(y_train)
    batch = min(settings.batch_size, n)
    steps = n // batch  # drop the ragged tail (a new one each epoch): BatchNorm needs full batches
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay,
                                  **({"fused": True} if cuda else {"foreach": True}))
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps)
                 if settings.schedule == "onecycle" else None)
    best = (math.inf, 0, _snapshot(model))
    history: list[dict] = []
    train_seconds = 0.0
    images_seen = 0
    reset_peak_memory(device)
    epochs = tqdm(range(1, settings.epochs + 1), desc=desc, disable=not progress, leave=False, unit="epoch")
    for epoch in epochs:
        synchronize(device)
        start = time.perf_counter()
        set_train_mode(model, bn_frozen)
        loss_sum = torch.zeros((), device=device)
        order = torch.randperm(n, device=x_train.device, generator=_host_or(generator, x_train.device, seed + epoch))
        for step in range(steps):
            idx = order[step * batch:(step + 1) * batch]
            xb, yb = _batch(x_train, y_train, idx, device)
            if settings.augment:
                xb = random_dihedral(xb, generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = loss_fn(model(xb).float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.detach()
        synchronize(device)
        train_seconds += time.perf_counter() - start
        images_seen += steps * batch
        val_loss = evaluate_loss(model, x_val, y_val, loss_fn, device, settings.eval_batch_size)
        train_loss = float(loss_sum) / steps
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        epochs.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if val_loss < best[0]:
            best = (val_loss, epoch, _snapshot(model))
        elif epoch - best[1] >= settings.patience:
            break
    model.load_state_dict(best[2])
    peak, kind = peak_memory_mb(device)
    return TrainResult(
        epochs_run=len(history), best_epoch=best[1], best_val_loss=best[0], images_seen=images_seen,
        train_seconds=train_seconds, images_per_second=images_seen / train_seconds if train_seconds else 0.0,
        peak_memory_mb=peak, memory_kind=kind, device=device_name(device), history=history,
    )


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, device: torch.device, batch_size: int = 1024) -> np.ndarray:
    """Predicted redshifts for images `x` (N, C, H, W), in eval mode, as float32 numpy."""
    model.to(device).eval()
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device, non_blocking=True)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(model(xb).float())
    return torch.cat(out).cpu().numpy()


@torch.no_grad()
def evaluate_loss(model: nn.Module, x: Tensor, y: Tensor, loss_fn, device: torch.device, batch_size: int) -> float:
    """Mean loss over a whole set in eval mode (batches weighted by size)."""
    pred = torch.from_numpy(predict(model, x, device, batch_size)).to(y.device)
    return float(loss_fn(pred, y.float()))


def _place(xy: tuple[Tensor, Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """Move a dataset to the device when it fits comfortably, else pin it in host memory for fast copies."""
    x, y = xy
    if device.type != "cuda":
        return x, y
    free, _ = torch.cuda.mem_get_info(device)
    if x.numel() * x.element_size() < _DEVICE_DATA_FRACTION * free:
        return x.to(device).contiguous(memory_format=torch.channels_last), y.to(device)
    return x.pin_memory(), y.pin_memory()


def _batch(x: Tensor, y: Tensor, idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    xb, yb = x[idx], y[idx]
    if xb.device != device:
        xb, yb = xb.pin_memory().to(device, non_blocking=True), yb.to(device, non_blocking=True)
    if device.type == "cuda":
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, yb


def _host_or(generator: torch.Generator, data_device: torch.device, seed: int) -> torch.Generator:
    """The permutation must come from a generator on the data's device (host data on a CUDA run)."""
    if generator.device == data_device:
        return generator
    return torch.Generator(device=data_device).manual_seed(seed)


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
