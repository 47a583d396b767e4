"""Batches for training and prediction: raw pixels gathered per batch, preprocessed where the model runs.

A set enters training as `Inputs`: its raw image rows (in memory or streamed from HDF5, in
the stored precision), its labels and its Preprocessor. `ready_on` readies a set once per
training: on CUDA the raw (float16) pixels move to the GPU when they fit and each batch is
preprocessed there; on the CPU a set held in memory is preprocessed whole, once, so batches only
gather rows (per-batch arcsinh cost a tenth of a CPU epoch); a streamed set stays on disk and
each batch is read one ahead in a background thread, so host memory grows with the batch, not
with the survey.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from zpeft.data.preprocess import Preprocessor
from zpeft.data.rows import ImageRows

_DEVICE_DATA_FRACTION = 0.5  # keep the data on the GPU when it needs at most this share of free memory
_HOST_READY_BYTES = 2 << 30  # a host set is preprocessed whole only when its float32 copy fits in this
_PLACE_ROWS = 4096  # rows copied to the GPU at a time when placing a set there (bounded host staging)


@dataclass
class Inputs:
    """One set as the trainer sees it: raw images (host rows, or a cropped raw tensor once placed), labels, preprocessing."""

    images: ImageRows | Tensor
    z: Tensor  # (N,) float32 labels
    preprocess: Preprocessor
    ready: bool = False  # images are already network input (preprocessed float32), not raw pixels

    @classmethod
    def fitted(cls, images: np.ndarray | Tensor, z: np.ndarray | Tensor, crop: int | None = None) -> Inputs:
        """Raw images and labels with a preprocessor fitted on these images: training outside a suite."""
        pixels = images.numpy() if isinstance(images, Tensor) else np.asarray(images)
        return cls(ImageRows.of(pixels), torch.as_tensor(z, dtype=torch.float32), Preprocessor.fit(pixels, crop=crop))

    def __len__(self) -> int:
        return len(self.z)

    @property
    def device(self) -> torch.device:
        """Where the pixels are: the GPU once placed there, else the host."""
        return self.images.device if isinstance(self.images, Tensor) else torch.device("cpu")

    @property
    def storage(self) -> str:
        """`device`, `memory` (host arrays) or `stream` (read from files batch by batch)."""
        if isinstance(self.images, Tensor):
            return "device" if self.images.is_cuda else "memory"
        return "memory" if self.images.in_memory else "stream"

    def raw(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Raw (cropped) pixels and labels of `rows`, in that order, where the pixels are."""
        if isinstance(self.images, Tensor):
            rows = rows.to(self.images.device)
            return self.images.index_select(0, rows), self.z.to(self.images.device).index_select(0, rows)
        rows = rows.cpu()
        pixels = self.images.read(rows.numpy(), crop=self.preprocess.crop)
        return torch.from_numpy(pixels), self.z.index_select(0, rows)


def random_dihedral(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image independently transposed and flipped: the 8 symmetries of the square, on device."""
    flags = torch.rand(3, x.shape[0], 1, 1, 1, device=x.device, generator=generator) < 0.5
    x = torch.where(flags[0], x.transpose(-1, -2), x)
    x = torch.where(flags[1], x.flip(-1), x)
    x = torch.where(flags[2], x.flip(-2), x)
    # The selects leave a layout that is neither NCHW nor channels_last; convolutions want the latter.
    return x.contiguous(memory_format=torch.channels_last)


def batches(inputs: Inputs, order: Tensor, batch: int, device: torch.device, *,
            drop_last: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
    """Network-ready (x, y) on `device` for rows order[0:batch], order[batch:2 batch], ...

    `drop_last` leaves out a ragged final batch (training: BatchNorm wants full batches);
    prediction keeps it. Host data are read one batch ahead in a background thread.
    """
    order = order.to(inputs.device)  # rows are gathered where the pixels are
    n = len(order) // batch * batch if drop_last else len(order)
    chunks = [order[start:start + batch] for start in range(0, n, batch)]
    if isinstance(inputs.images, Tensor):  # placed on the GPU: gathered there
        for rows in chunks:
            pixels, z = inputs.raw(rows)
            yield _network_ready(inputs, pixels.to(device), z.to(device), device)
        return
    pin = device.type == "cuda"

    def read(rows: Tensor) -> tuple[Tensor, Tensor]:
        pixels, z = inputs.raw(rows)
        return (pixels.pin_memory(), z.pin_memory()) if pin else (pixels, z)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zpeft-batches") as reader:
        pending = reader.submit(read, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            pixels, z = pending.result()
            if k + 1 < len(chunks):
                pending = reader.submit(read, chunks[k + 1])
            # Pinned host blocks are recycled only after their copy has finished (torch's caching host allocator).
            yield _network_ready(inputs, pixels.to(device, non_blocking=True), z.to(device, non_blocking=True),
                                 device)


def _network_ready(inputs: Inputs, pixels: Tensor, z: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    x = pixels if inputs.ready else inputs.preprocess(pixels)
    # channels_last: faster convolutions on CUDA and, measured, on the CPU too (1.37x for cnn-small at 32x32).
    return x.contiguous(memory_format=torch.channels_last), z


def first_batch(inputs: Inputs, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The first batch in stored order: shapes and dtypes for a CUDA graph's static buffers."""
    return next(batches(inputs, torch.arange(min(batch, len(inputs))), batch, device, drop_last=False))


def ready_on(inputs: Inputs, device: torch.device, placement: str = "auto") -> Inputs:
    """The set readied for `device` once: placed on the GPU (CUDA), or preprocessed whole (CPU, in memory)."""
    if device.type == "cuda":
        return place(inputs, device, placement)
    if inputs.ready or isinstance(inputs.images, Tensor) or not inputs.images.in_memory:
        return inputs
    if 4 * int(np.prod(inputs.images.cropped_shape(inputs.preprocess.crop))) > _HOST_READY_BYTES:
        return inputs  # too large to hold as float32 beside the raw pixels: preprocessed per batch instead
    return preprocessed(inputs)


def preprocessed(inputs: Inputs) -> Inputs:
    """The whole set as network input on the host, computed a block of rows at a time (bitwise as per batch)."""
    rows = inputs.images
    shape = rows.cropped_shape(inputs.preprocess.crop)
    out = torch.empty(shape, dtype=torch.float32)
    for start in range(0, len(rows), _PLACE_ROWS):
        block = torch.from_numpy(rows.read(np.arange(start, min(start + _PLACE_ROWS, len(rows))),
                                           crop=inputs.preprocess.crop))
        out[start:start + len(block)] = inputs.preprocess(block)
    return Inputs(out, inputs.z, inputs.preprocess, ready=True)


def place(inputs: Inputs, device: torch.device, placement: str = "auto") -> Inputs:
    """The set's raw (cropped) pixels moved to the GPU when they fit comfortably (or are asked to), else left on the host.

    Copied a block of rows at a time, so placing a large set never needs a second host copy of it.
    """
    if device.type != "cuda" or isinstance(inputs.images, Tensor):
        return inputs
    rows = inputs.images
    crop = inputs.preprocess.crop
    shape = rows.cropped_shape(crop)
    if placement == "auto":
        free, _ = torch.cuda.mem_get_info(device)
        nbytes = int(np.prod(shape)) * rows.dtype.itemsize
        placement = "device" if nbytes < _DEVICE_DATA_FRACTION * free else "host"
    if placement == "host":
        return inputs
    on_device = torch.empty(shape, dtype=_torch_dtype(rows.dtype), device=device)
    for start in range(0, len(rows), _PLACE_ROWS):
        block = torch.from_numpy(rows.read(np.arange(start, min(start + _PLACE_ROWS, len(rows))), crop=crop))
        on_device[start:start + len(block)].copy_(block)
    return Inputs(on_device, inputs.z.to(device), inputs.preprocess)


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


def epoch_order(n: int, generator: torch.Generator, device: torch.device, seed: int) -> Tensor:
    """The epoch's row order. On CUDA it is drawn on the host from `seed`, so it does not depend on
    whether the data were placed on the device or left on the host (placement follows free memory)."""
    if device.type == "cuda":
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return torch.randperm(n, generator=generator)
