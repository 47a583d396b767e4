"""Training losses on normalised residuals dz = (pred - z) / (1 + z), registered by name.

The functions only call tensor methods, so this module (and the settings that check a loss
name) import no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from zpeft.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor

LOSSES: Registry[Callable[["Tensor", "Tensor"], "Tensor"]] = Registry("loss")


@LOSSES.register("hsc")
def hsc_loss(pred: Tensor, z: Tensor) -> Tensor:
    """HSC photo-z loss, 1 - 1 / (1 + (dz / 0.15)^2): bounded, so outliers cannot dominate."""
    dz = (pred - z) / (1 + z)
    return (1 - 1 / (1 + (dz / 0.15) ** 2)).mean()


@LOSSES.register("mse")
def mse_loss(pred: Tensor, z: Tensor) -> Tensor:
    """Mean squared dz."""
    return (((pred - z) / (1 + z)) ** 2).mean()


@LOSSES.register("l1")
def l1_loss(pred: Tensor, z: Tensor) -> Tensor:
    """Mean absolute dz."""
    return ((pred - z) / (1 + z)).abs().mean()


def get_loss(name: str) -> Callable:
    """The loss function registered as `name`."""
    return LOSSES.get(name)
