"""Backbone registry: named factories returning redshift regressors, plus any timm model."""

from __future__ import annotations

import fnmatch
from typing import Callable

from torch import nn

from backbones.regressor import Regressor

_BACKBONES: dict[str, Callable[..., Regressor]] = {}
TIMM_PREFIX = "timm/"


def register_backbone(name: str):
    """Decorator: make a factory available as `create(name)`."""

    def add(factory: Callable[..., Regressor]) -> Callable[..., Regressor]:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} registered twice")
        _BACKBONES[name] = factory
        return factory

    return add


def create(name: str, in_chans: int = 5, img_size: int = 64, **kwargs) -> Regressor:
    """Build backbone `name` mapping (B, in_chans, img_size, img_size) images to (B,) redshifts."""
    if name.startswith(TIMM_PREFIX):
        from backbones.timm_models import timm_regressor

        return timm_regressor(name.removeprefix(TIMM_PREFIX), in_chans=in_chans, img_size=img_size, **kwargs)
    try:
        factory = _BACKBONES[name]
    except KeyError:
        raise KeyError(
            f"unknown backbone {name!r}; known: {', '.join(sorted(_BACKBONES))}, or timm/<any timm model>"
        ) from None
    return factory(in_chans=in_chans, img_size=img_size, **kwargs)


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered names matching a shell wildcard; `timm/<pattern>` lists timm's models."""
    if pattern.startswith(TIMM_PREFIX):
        import timm

        return [TIMM_PREFIX + m for m in timm.list_models(pattern.removeprefix(TIMM_PREFIX))]
    return sorted(n for n in _BACKBONES if fnmatch.fnmatch(n, pattern))


def is_known(name: str) -> bool:
    """True for a registered name or a timm model name timm knows."""
    if name.startswith(TIMM_PREFIX):
        import timm

        return timm.is_model(name.removeprefix(TIMM_PREFIX))
    return name in _BACKBONES


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
