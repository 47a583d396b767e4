"""Backbone registry: named factories returning redshift regressors, plus any timm model as `timm/<name>`.

Factories import torch only when called, so listing and checking names costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from zpeft.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from zpeft.backbones.regressor import Regressor

BACKBONES: Registry[Callable[..., Regressor]] = Registry("backbone")
TIMM_PREFIX = "timm/"
register_backbone = BACKBONES.register


def create(name: str, in_chans: int = 5, img_size: int = 64, **kwargs) -> Regressor:
    """Build backbone `name` mapping (B, in_chans, img_size, img_size) images to (B,) redshifts."""
    if name.startswith(TIMM_PREFIX):
        from zpeft.backbones.timm_models import timm_regressor

        return timm_regressor(name.removeprefix(TIMM_PREFIX), in_chans=in_chans, img_size=img_size, **kwargs)
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES.names())}, or timm/<any timm model>")
    return BACKBONES.get(name)(in_chans=in_chans, img_size=img_size, **kwargs)


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered names matching a shell wildcard; `timm/<pattern>` lists timm's models (imports timm)."""
    if pattern.startswith(TIMM_PREFIX):
        import timm

        return [TIMM_PREFIX + m for m in timm.list_models(pattern.removeprefix(TIMM_PREFIX))]
    return BACKBONES.names(pattern)


def is_known(name: str) -> bool:
    """True for a registered name, or a timm model name timm knows (asking timm imports it)."""
    if name.startswith(TIMM_PREFIX):
        import timm

        return timm.is_model(name.removeprefix(TIMM_PREFIX))
    return name in BACKBONES


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
