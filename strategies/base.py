"""What every adaptation strategy declares: where it starts, what it trains on, what is trainable."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from torch import nn

    from zpeft.backbones.regressor import Regressor

BN_POLICIES = ("frozen", "train")
STARTS_FROM = ("base", "scratch")
TRAINS_ON = ("none", "spec", "combined")


@dataclass(frozen=True)
class Strategy:
    """Base of all strategies: a validated, frozen config that turns a model into a trainable one.

    `bn` says whether BatchNorm running statistics update during training (`train`) or stay
    as the starting model had them (`frozen`); it is recorded with every run because it moves
    results as much as the choice of strategy does.
    """

    bn: Literal["frozen", "train"] = "frozen"

    name: ClassVar[str] = ""
    starts_from: ClassVar[str] = "base"  # "base": the photo-z model; "scratch": fresh weights
    trains_on: ClassVar[str] = "spec"  # "none", "spec" (spec-z train) or "combined" (photo-z + spec-z)
    default_lr: ClassVar[float] = 1e-3  # used when the suite sets no learning rate for it
    rate_is_protocol: ClassVar[bool] = False  # True: the rate is part of what the strategy reproduces; never tuned

    def __post_init__(self) -> None:
        if self.bn not in BN_POLICIES:
            raise ValueError(f"strategy {self.name!r}: bn must be one of {BN_POLICIES}, got {self.bn!r}")

    def prepare(self, model: Regressor) -> nn.Module:
        """Return the model to train (possibly wrapped), with requires_grad set as the strategy says."""
        raise NotImplementedError(f"strategy {type(self).__name__} does not implement prepare()")

    def params(self) -> dict:
        """The strategy's parameters, as recorded in run records and hashed into config hashes."""
        return asdict(self)

    def label(self) -> str:
        """Short display name, e.g. `lora-r4`."""
        return self.name


def freeze_all(model: nn.Module) -> nn.Module:
    """Every parameter of `model` stops requiring grad."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def unfreeze(params) -> None:
    """Each of `params` requires grad again."""
    for p in params:
        p.requires_grad_(True)
