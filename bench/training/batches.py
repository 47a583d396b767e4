"""Training batches: augmentation, data placement and the batch source (device-indexed or pinned, one step ahead)."""

from __future__ import annotations

import torch
from torch import Tensor

_DEVICE_DATA_FRACTION = 0.5  # keep the data on the GPU when it needs at most this share of free memory


def random_dihedral(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image independently transposed and flipped: the 8 symmetries of the square, on device."""
    flags = torch.rand(3, x.shape[0], 1, 1, 1, device=x.device, generator=generator) < 0.5
    x = torch.where(flags[0], x.transpose(-1, -2), x)
    x = torch.where(flags[1], x.flip(-1), x)
    x = torch.where(flags[2], x.flip(-2), x)
    # The selects leave a layout that is neither NCHW nor channels_last; CUDA convolutions want the latter.
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


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


def place(xy: tuple[Tensor, Tensor], device: torch.device, placement: str = "auto") -> tuple[Tensor, Tensor]:
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


def epoch_order(n: int, generator: torch.Generator, device: torch.device, seed: int) -> Tensor:
    """The epoch's row order. On CUDA it is drawn on the host from `seed`, so it does not depend on
    whether the data were placed on the device or left on the host (placement follows free memory)."""
    if device.type == "cuda":
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return torch.randperm(n, generator=generator)


