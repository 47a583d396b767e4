"""The reference paper's data path, reproduced for timing: per-sample HDF5 reads, a DataLoader, fp32 eager.

The reference code opened its HDF5 file for every sample inside a torch Dataset, batched with
a DataLoader, copied each batch to the GPU and trained in fp32 with plain AdamW, reading the
loss back every step. `zpeft perf` times this loop in the same run as the fast loop, so the
speed-up it reports compares two measurements on the same card.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from zpeft.training.device import synchronize
from zpeft.training.loop import set_train_mode
from zpeft.training.losses import hsc_loss


class PerSampleHDF5(Dataset):
    """One (image, z) per item, opening the file anew for each one as the reference loader did."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with h5py.File(self.path, "r") as f:
            self.n = len(f["z"])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        with h5py.File(self.path, "r") as f:
            return torch.from_numpy(f["image"][i]), torch.tensor(f["z"][i])


def write_hdf5(path: str | Path, images: np.ndarray, z: np.ndarray) -> Path:
    """Write `image` (N, C, H, W) float32 and `z` (N,) datasets, one chunk per image as a cutout file has."""
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=images.astype(np.float32), chunks=(1, *images.shape[1:]))
        f.create_dataset("z", data=z.astype(np.float32))
    return path


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def reference_train_throughput(model: nn.Module, path: str | Path, *, batch_size: int, steps: int, warmup: int,
                               device: torch.device, bn_frozen: bool, lr: float = 1e-3,
                               num_workers: int | None = None) -> float:
    """Training images per second of the reference loop over `steps` batches after `warmup` batches."""
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(PerSampleHDF5(path), batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    if len(loader) == 0:
        raise ValueError(f"reference loop: {path} holds fewer images than one batch of {batch_size}")
    model.to(device)
    set_train_mode(model, bn_frozen)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    done, start = 0, 0.0
    while done < warmup + steps:
        for xb, yb in loader:
            if done == warmup:
                synchronize(device)
                start = time.perf_counter()
            xb, yb = xb.to(device), yb.to(device)
            loss = hsc_loss(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()  # the reference logged the loss every step: a host sync per batch
            done += 1
            if done == warmup + steps:
                break
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)
