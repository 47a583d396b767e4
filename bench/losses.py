"""Training losses on normalised residuals dz = (pred - z) / (1 + z), found by name."""

from __future__ import annotations

from typing import Callable

from torch import Tensor


def hsc_loss(pred: Tensor, z: Tensor) -> Tensor:
    """HSC photo-z loss, 1 - 1 / (1 + (dz / 0.15)^2): bounded, so outliers cannot dominate."""
    dz = (pred - z) / (1 + z)
    return (1 - 1 / (1 + (dz / 0.15) ** 2)).mean()


def mse_loss(pred: Tensor, z: Tensor) -> Tensor:
    """Mean squared dz."""
    return (((pred - z) / (1 + z)) ** 2).mean()


def l1_loss(pred: Tensor, z: Tensor) -> Tensor:
    """Mean absolute dz."""
    return ((pred - z) / (1 + z)).abs().mean()


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"hsc": hsc_loss, "mse": mse_loss, "l1": l1_loss}


def get_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None


__all__ = ["LOSSES", "get_loss", "hsc_loss", "l1_loss", "mse_loss"]
