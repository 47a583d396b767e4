"""Retraining from scratch on the union of photo-z and spec-z data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from zpeft.strategies.base import Strategy, unfreeze
from zpeft.strategies.registry import register_strategy

if TYPE_CHECKING:
    from torch import nn

    from zpeft.backbones.regressor import Regressor


@register_strategy("combined")
@dataclass(frozen=True)
class Combined(Strategy):
    """A fresh model trained on photo-z + spec-z training data (spec-z label wins for shared galaxies).

    It gets the base model's training budget, not the fine-tuning one: it replaces the base model.
    """

    bn: Literal["frozen", "train"] = "train"
    starts_from: ClassVar[str] = "scratch"
    trains_on: ClassVar[str] = "combined"
    default_lr: ClassVar[float] = 2e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bn == "frozen":
            raise ValueError("strategy 'combined' trains from scratch: bn='frozen' would keep untrained statistics")

    def prepare(self, model: Regressor) -> nn.Module:
        unfreeze(model.parameters())
        return model
