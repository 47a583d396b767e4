"""Copies of a model's weights and buffers, and putting them back in place (captured graphs keep their tensors)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of every weight and buffer, on the model's device."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def restore(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy `state` into the model's own tensors, in place: a captured CUDA graph keeps pointing at them."""
    for key, value in model.state_dict().items():
        value.copy_(state[key])
