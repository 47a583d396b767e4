"""The one training loop every strategy uses: AdamW, one-cycle schedule, early stopping on validation loss.

On CUDA the data sits on the device when it fits (else batches are gathered into pinned
buffers and copied one step ahead on a side stream), autocast runs in bf16 with
channels_last memory, the optimizer is fused and losses stay on the device until the epoch
ends (no host sync per step). `cuda_graph` replays the whole step from a captured CUDA graph
and `compile` runs the model through torch.compile. Training time excludes validation, includes
any capture or compilation, and is measured with the device synchronised.
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
from bench.steps import EagerStep, GraphStep

_DEVICE_DATA_FRACTION = 0.5  # keep the data on the GPU when it needs at most this share of free memory
DATA_PLACEMENTS = ("auto", "device", "host")


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
    cuda_graph: bool = False  # CUDA only: capture the whole training step once, replay it per batch
    compile: bool = False  # torch.compile the model for training steps (measure: it is not always faster)
    data_placement: str = "auto"  # CUDA only: "device" (all data on the GPU), "host" (pinned, prefetched), "auto"

    def __post_init__(self) -> None:
        get_loss(self.loss)
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError(f"epochs, batch_size and patience must be >= 1: {self}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in ("onecycle", "constant"):
            raise ValueError(f"schedule must be 'onecycle' or 'constant', got {self.schedule!r}")
        if self.data_placement not in DATA_PLACEMENTS:
            raise ValueError(f"data_placement must be one of {DATA_PLACEMENTS}, got {self.data_placement!r}")

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
    step_mode: str = "eager"  # "eager", "compiled" or "cuda_graph": how the training steps ran
    setup_seconds: float = 0.0  # graph capture or first compilation, already included in train_seconds


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
    x = torch.where(flags[2], x.flip(-2), x)
    # The selects leave a layout that is neither NCHW nor channels_last; CUDA convolutions want the latter.
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


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
    x_train, y_train = _place(train_xy, device, settings.data_placement)
    x_val, y_val = _place(val_xy, device, settings.data_placement)
    loss_fn = get_loss(settings.loss)
    n = len(y_train)
    batch = min(settings.batch_size, n)
    steps = n // batch  # drop the ragged tail (a new one each epoch): BatchNorm needs full batches
    batches = BatchSource(x_train, y_train, batch, device)
    best = (math.inf, 0, _snapshot(model))
    history: list[dict] = []
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    set_train_mode(model, bn_frozen)
    stepper = make_step(model, params, loss_fn, settings, device=device, total_steps=settings.epochs * steps,
                        sample=batches.sample())
    synchronize(device)
    setup_seconds = time.perf_counter() - start
    train_seconds = setup_seconds
    images_seen = 0
    epochs = tqdm(range(1, settings.epochs + 1), desc=desc, disable=not progress, leave=False, unit="epoch")
    for epoch in epochs:
        synchronize(device)
        start = time.perf_counter()
        set_train_mode(model, bn_frozen)
        stepper.reset_loss()
        order = _epoch_order(n, generator, device, seed + epoch).to(x_train.device)
        for xb, yb in batches.epoch(order, steps):
            if settings.augment:
                xb = random_dihedral(xb, generator)
            stepper.step(xb, yb)
        synchronize(device)
        train_seconds += time.perf_counter() - start
        images_seen += steps * batch
        val_loss = evaluate_loss(model, x_val, y_val, loss_fn, device, settings.eval_batch_size)
        train_loss = float(stepper.loss_sum) / steps
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        epochs.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if val_loss < best[0]:
            best = (val_loss, epoch, _snapshot(model))
        elif epoch - best[1] >= settings.patience:
            break
    with torch.no_grad():  # in place: a captured graph keeps pointing at these tensors
        for key, value in model.state_dict().items():
            value.copy_(best[2][key])
    peak, kind = peak_memory_mb(device)
    return TrainResult(
        epochs_run=len(history), best_epoch=best[1], best_val_loss=best[0], images_seen=images_seen,
        train_seconds=train_seconds, images_per_second=images_seen / train_seconds if train_seconds else 0.0,
        peak_memory_mb=peak, memory_kind=kind, device=device_name(device), history=history,
        step_mode=stepper.mode, setup_seconds=setup_seconds,
    )


def make_step(model: nn.Module, params: list[Tensor], loss_fn, settings: TrainSettings, *, device: torch.device,
              total_steps: int, sample: tuple[Tensor, Tensor]) -> EagerStep | GraphStep:
    """The stepper `settings` ask for: a captured CUDA graph on CUDA when `cuda_graph`, else eager (maybe compiled)."""
    common = dict(lr=settings.lr, weight_decay=settings.weight_decay, schedule=settings.schedule,
                  total_steps=total_steps, device=device, compile=settings.compile)
    if settings.cuda_graph and device.type == "cuda":
        return GraphStep(model, params, loss_fn, sample=sample, **common)
    return EagerStep(model, params, loss_fn, **common)


class BatchSource:
    """Training batches in a given order: indexed on the device, or from pinned host memory one step ahead.

    Host data (too big for the GPU) is gathered into one of two pinned staging buffers and
    copied to the device on a side stream while the previous step computes; events keep a
    buffer from being overwritten before its copy, or its use, has finished.
    """

    def __init__(self, x: Tensor, y: Tensor, batch: int, device: torch.device) -> None:
        self.x, self.y, self.batch, self.device = x, y, batch, device
        self.prefetch = device.type == "cuda" and x.device.type == "cpu"
        if self.prefetch:
            self.stream = torch.cuda.Stream(device)
            self.host = [(torch.empty((batch, *x.shape[1:]), dtype=x.dtype, pin_memory=True),
                          torch.empty((batch, *y.shape[1:]), dtype=y.dtype, pin_memory=True)) for _ in range(2)]
            self.dev = [(torch.empty((batch, *x.shape[1:]), dtype=x.dtype, device=device).contiguous(
                memory_format=torch.channels_last), torch.empty((batch, *y.shape[1:]), dtype=y.dtype, device=device))
                for _ in range(2)]
            self.copied = [torch.cuda.Event() for _ in range(2)]
            self.consumed = [torch.cuda.Event() for _ in range(2)]

    def sample(self) -> tuple[Tensor, Tensor]:
        """The first batch in stored order, on the device: shapes and dtypes for a graph's static buffers."""
        return _to_device(self.x[:self.batch], self.y[:self.batch], self.device)

    def epoch(self, order: Tensor, steps: int):
        """Yield `steps` batches (x, y) on the device, batch i being rows order[i * batch:(i + 1) * batch]."""
        if not self.prefetch:
            for step in range(steps):
                idx = order[step * self.batch:(step + 1) * self.batch]
                yield _to_device(self.x[idx], self.y[idx], self.device)
            return
        self._issue(order, 0, 0)
        current = torch.cuda.current_stream(self.device)
        for step in range(steps):
            slot = step % 2
            if step + 1 < steps:
                self._issue(order, step + 1, 1 - slot)
            current.wait_event(self.copied[slot])
            yield self.dev[slot]
            self.consumed[slot].record(current)  # the step using this slot has been enqueued

    def _issue(self, order: Tensor, step: int, slot: int) -> None:
        idx = order[step * self.batch:(step + 1) * self.batch]
        host_x, host_y = self.host[slot]
        self.copied[slot].synchronize()  # its previous copy to the device must be done before we overwrite it
        torch.index_select(self.x, 0, idx, out=host_x)
        torch.index_select(self.y, 0, idx, out=host_y)
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(self.consumed[slot])
            dev_x, dev_y = self.dev[slot]
            dev_x.copy_(host_x, non_blocking=True)
            dev_y.copy_(host_y, non_blocking=True)
            self.copied[slot].record(self.stream)


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


def _place(xy: tuple[Tensor, Tensor], device: torch.device, placement: str = "auto") -> tuple[Tensor, Tensor]:
    """Move a dataset to the device when it fits comfortably (or is asked to), else leave it in host memory.

    Host data are not pinned whole (that would double host memory): BatchSource gathers each
    batch into pinned staging buffers.
    """
    x, y = xy
    if device.type != "cuda":
        return x, y
    if placement == "auto":
        free, _ = torch.cuda.mem_get_info(device)
        placement = "device" if x.numel() * x.element_size() < _DEVICE_DATA_FRACTION * free else "host"
    if placement == "device":
        return x.to(device).contiguous(memory_format=torch.channels_last), y.to(device)
    return x, y


def _to_device(xb: Tensor, yb: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    if xb.device != device:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
    if device.type == "cuda":
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, yb


def _epoch_order(n: int, generator: torch.Generator, device: torch.device, seed: int) -> Tensor:
    """The epoch's row order. On CUDA it is drawn on the host from `seed`, so it does not depend on
    whether the data were placed on the device or left on the host (placement follows free memory)."""
    if device.type == "cuda":
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return torch.randperm(n, generator=generator)


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
