"""Strategies that change which of the existing weights train: none, the head, all, biases, norms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from zpeft.strategies.base import Strategy, freeze_all, unfreeze
from zpeft.strategies.registry import register_strategy

if TYPE_CHECKING:
    from torch import nn

    from zpeft.backbones.regressor import Regressor


@register_strategy("zero-shot")
@dataclass(frozen=True)
class ZeroShot(Strategy):
    """The photo-z base model evaluated as it is: no retraining."""

    trains_on: ClassVar[str] = "none"

    def prepare(self, model: Regressor) -> nn.Module:
        return freeze_all(model)


@register_strategy("head-only")
@dataclass(frozen=True)
class HeadOnly(Strategy):
    """Traditional transfer learning: the backbone (BatchNorm statistics included) frozen, the head retrained."""

    def prepare(self, model: Regressor) -> nn.Module:
        freeze_all(model)
        unfreeze(model.head_parameters())
        return model


@register_strategy("full")
@dataclass(frozen=True)
class Full(Strategy):
    """Every weight of the base model fine-tuned on spec-z."""

    bn: Literal["frozen", "train"] = "train"
    default_lr: ClassVar[float] = 3e-4

    def prepare(self, model: Regressor) -> nn.Module:
        unfreeze(model.parameters())
        return model


@register_strategy("bitfit")
@dataclass(frozen=True)
class BitFit(Strategy):
    """Only bias terms (BatchNorm shifts included) and the head train (Ben Zaken et al. 2022)."""

    def prepare(self, model: Regressor) -> nn.Module:
        freeze_all(model)
        unfreeze(p for n, p in model.named_parameters() if n.endswith("bias"))
        unfreeze(model.head_parameters())
        return model


@register_strategy("norm-only")
@dataclass(frozen=True)
class NormOnly(Strategy):
    """Only normalisation layers' affine parameters and the head train."""

    def prepare(self, model: Regressor) -> nn.Module:
        from torch import nn

        freeze_all(model)
        norms = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
        unfreeze(p for m in model.modules() if isinstance(m, norms) for p in m.parameters(recurse=False))
        unfreeze(model.head_parameters())
        return model
